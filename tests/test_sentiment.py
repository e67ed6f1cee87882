"""The sentiment classifier: data parsing, training, numpy prediction, and safe persistence.

Features come from a bag-of-words counter over a fixed vocabulary: real, deterministic and fast;
the training code does not care which encoder produced the vectors.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.errors import InvalidInput, NotReady
from core.sentiment import (
    EncoderInfo,
    LabelledData,
    SentimentClassifier,
    load_labelled_data,
    parse_labelled_bytes,
    persistence,
    train_classifier,
)
from core.sentiment.persistence import load_classifier, save_classifier

POSITIVE = ["good", "great", "excellent", "wonderful", "fun", "moving"]
NEGATIVE = ["bad", "awful", "boring", "terrible", "dull", "tedious"]
NEUTRAL = ["the", "movie", "film", "was", "plot", "actors", "quite", "and", "story"]
VOCAB = {word: i for i, word in enumerate(POSITIVE + NEGATIVE + NEUTRAL)}
ENCODER = EncoderInfo(model_id="test/bag-of-words", revision="abc123", pooling="cls")


async def bag_of_words(texts: Sequence[str]) -> np.ndarray:
    out = np.zeros((len(texts), len(VOCAB)), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.split():
            if word in VOCAB:
                out[row, VOCAB[word]] += 1
    return out


def generated(n: int = 200, positive_share: float = 0.6, seed: int = 1) -> LabelledData:
    """Sentences with 1-3 sentiment words among neutral ones; 5% carry one opposite word."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = 1 if i < n * positive_share else 0
        own, other = (POSITIVE, NEGATIVE) if label else (NEGATIVE, POSITIVE)
        words = rng.sample(NEUTRAL, 4) + rng.sample(own, rng.randint(1, 3))
        if rng.random() < 0.05:
            words.append(rng.choice(other))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return LabelledData(texts=tuple(texts), labels=tuple(labels))


@pytest.fixture
async def trained() -> SentimentClassifier:
    classifier, _ = await train_classifier(generated(), bag_of_words, ENCODER)
    return classifier


def probe_features() -> np.ndarray:
    return np.random.default_rng(0).poisson(0.7, size=(50, len(VOCAB))).astype(np.float32)


# --------------------------------------------------------------------------- training


async def test_training_report_is_sane_and_features_come_in_chunks() -> None:
    data = generated(n=300)
    calls: list[int] = []

    async def counting(texts: Sequence[str]) -> np.ndarray:
        calls.append(len(texts))
        return await bag_of_words(texts)

    classifier, report = await train_classifier(data, counting, ENCODER, test_size=0.2)

    assert calls == [64, 64, 64, 64, 44]  # chunked so the engine can batch and interleave
    assert report.n_train == 240 and report.n_test == 60
    assert report.dummy_accuracy == pytest.approx(0.6)  # stratified split keeps the 60/40 share
    assert report.majority_label == "positive"
    assert report.accuracy > 0.9 > report.dummy_accuracy
    assert all(0.8 < value <= 1.0 for value in report.precision + report.recall)
    assert report.label_names == ("negative", "positive")
    assert report.encoder == ENCODER
    assert report.seconds >= report.featurize_seconds > 0
    assert classifier.report == report and classifier.encoder == ENCODER
    assert classifier.coef.shape == (len(VOCAB),)
    # The classifier learnt the words: "great" pushes positive, "awful" negative.
    assert classifier.coef[VOCAB["great"]] > 0 > classifier.coef[VOCAB["awful"]]


@pytest.mark.parametrize("standardize", [False, True])
async def test_report_accuracy_is_that_of_the_saved_weights(standardize: bool) -> None:
    from sklearn.model_selection import train_test_split

    data = generated(n=300, seed=5)
    classifier, report = await train_classifier(
        data, bag_of_words, ENCODER, seed=3, standardize=standardize
    )
    _, test_idx = train_test_split(
        np.arange(300), test_size=0.2, stratify=data.labels, random_state=3
    )
    features = await bag_of_words([data.texts[i] for i in test_idx])
    predicted = [p.label for p in classifier.predict_features(features)]
    expected = [data.label_names[data.labels[i]] for i in test_idx]
    assert report.accuracy == np.mean([a == b for a, b in zip(predicted, expected, strict=True)])
    assert report.standardized is standardize


async def test_training_refuses_too_few_examples() -> None:
    data = LabelledData(texts=("good", "bad", "great"), labels=(1, 0, 1))
    with pytest.raises(InvalidInput, match="Too few examples"):
        await train_classifier(data, bag_of_words, ENCODER)


async def test_training_rejects_a_featurizer_returning_the_wrong_shape() -> None:
    async def broken(texts: Sequence[str]) -> np.ndarray:
        return np.zeros((len(texts) - 1, 3), dtype=np.float32)

    with pytest.raises(ValueError, match="shape"):
        await train_classifier(generated(), broken, ENCODER)


# --------------------------------------------------------------------------- prediction


@pytest.mark.parametrize("standardize", [False, True])
async def test_numpy_prediction_equals_sklearn_predict_proba(standardize: bool) -> None:
    data = generated(n=300, seed=2)
    # float64 like train_classifier fits: sklearn keeps float32 inputs in float32 arithmetic.
    x = (await bag_of_words(data.texts)).astype(np.float64)
    y = np.array(data.labels)
    model = LogisticRegression(max_iter=1000)
    estimator = make_pipeline(StandardScaler(), model) if standardize else model
    estimator.fit(x, y)

    classifier = SentimentClassifier.from_sklearn(estimator, ENCODER, data.label_names)
    probe = probe_features().astype(np.float64)
    ours = classifier.probabilities(probe)
    np.testing.assert_allclose(ours, estimator.predict_proba(probe), rtol=1e-9, atol=1e-12)

    predictions = classifier.predict_features(probe)
    assert [p.label for p in predictions] == [data.label_names[i] for i in estimator.predict(probe)]
    for prediction, row in zip(predictions, ours, strict=True):
        assert prediction.probabilities == (row[0], row[1])
        assert prediction.probability == max(row) >= 0.5


def test_prediction_is_stable_for_extreme_scores() -> None:
    classifier = SentimentClassifier(ENCODER, ("neg", "pos"), np.array([1.0]), 0.0)
    probs = classifier.probabilities(np.array([[-1000.0], [0.0], [1000.0]]))
    np.testing.assert_allclose(probs, [[1, 0], [0.5, 0.5], [0, 1]])
    assert [p.label for p in classifier.predict_features(np.array([[-1000.0], [1000.0]]))] == [
        "neg",
        "pos",
    ]


def test_prediction_rejects_features_of_the_wrong_dimension(
    trained: SentimentClassifier,
) -> None:
    with pytest.raises(ValueError, match="shape"):
        trained.predict_features(np.zeros((2, len(VOCAB) + 1)))


# --------------------------------------------------------------------------- persistence


def test_save_load_round_trip_gives_identical_predictions(
    trained: SentimentClassifier, tmp_path: Path
) -> None:
    target = tmp_path / "sentiment"
    save_classifier(trained, target)
    assert sorted(p.name for p in target.iterdir()) == ["classifier.npz", "manifest.json"]

    loaded = load_classifier(target, expected=ENCODER)
    probe = probe_features()
    assert loaded.predict_features(probe) == trained.predict_features(probe)
    np.testing.assert_array_equal(loaded.coef, trained.coef)
    assert loaded.intercept == trained.intercept
    assert loaded.report == trained.report
    assert loaded.label_names == trained.label_names
    # Loading never needs pickle: the arrays open with allow_pickle=False.
    with np.load(target / "classifier.npz", allow_pickle=False) as arrays:
        assert set(arrays.files) == {"coef", "intercept"}


def test_save_replaces_an_existing_classifier(trained: SentimentClassifier, tmp_path: Path) -> None:
    target = tmp_path / "sentiment"
    other = SentimentClassifier(ENCODER, ("sad", "happy"), -trained.coef, 1.5)
    save_classifier(trained, target)
    save_classifier(other, target)
    loaded = load_classifier(target, expected=ENCODER)
    assert loaded.label_names == ("sad", "happy") and loaded.intercept == 1.5
    assert loaded.report is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sentiment"]  # no temp or backup left


@pytest.mark.parametrize(
    "expected",
    [
        EncoderInfo("test/other-model", "abc123", "cls"),
        EncoderInfo("test/bag-of-words", "def456", "cls"),
        EncoderInfo("test/bag-of-words", "abc123", "mean"),
    ],
)
def test_load_refuses_a_different_encoder(
    trained: SentimentClassifier, tmp_path: Path, expected: EncoderInfo
) -> None:
    save_classifier(trained, tmp_path / "sentiment")
    with pytest.raises(InvalidInput) as info:
        load_classifier(tmp_path / "sentiment", expected=expected)
    message = info.value.message
    assert "trained on test/bag-of-words (revision abc123) with cls pooling" in message
    assert f"configured for {expected.describe()}" in message


def test_load_refuses_a_tampered_npz(trained: SentimentClassifier, tmp_path: Path) -> None:
    save_classifier(trained, tmp_path / "sentiment")
    npz = tmp_path / "sentiment" / "classifier.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0x01
    npz.write_bytes(bytes(data))
    with pytest.raises(InvalidInput, match="does not match its manifest"):
        load_classifier(tmp_path / "sentiment", expected=ENCODER)


def test_load_refuses_arrays_of_the_wrong_shape(
    trained: SentimentClassifier, tmp_path: Path
) -> None:
    # Someone swaps the arrays and fixes the hash: the dimension check still catches it.
    target = tmp_path / "sentiment"
    save_classifier(trained, target)
    buffer = io.BytesIO()
    np.savez(buffer, coef=np.zeros(3), intercept=np.zeros(1))
    (target / "classifier.npz").write_bytes(buffer.getvalue())
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["npz_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidInput, match="wrong shape"):
        load_classifier(target, expected=ENCODER)


def test_load_refuses_a_missing_classifier(tmp_path: Path) -> None:
    with pytest.raises(NotReady, match="No sentiment classifier has been trained"):
        load_classifier(tmp_path / "nothing-here", expected=ENCODER)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotReady):
        load_classifier(tmp_path / "empty", expected=ENCODER)


def test_load_refuses_a_corrupt_manifest(trained: SentimentClassifier, tmp_path: Path) -> None:
    save_classifier(trained, tmp_path / "sentiment")
    (tmp_path / "sentiment" / "manifest.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="manifest .* is unreadable"):
        load_classifier(tmp_path / "sentiment", expected=ENCODER)


def test_failed_save_leaves_the_existing_classifier_intact(
    trained: SentimentClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "sentiment"
    save_classifier(trained, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    replacement = SentimentClassifier(ENCODER, ("sad", "happy"), -trained.coef, 1.5)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(persistence, "_write_synced", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_classifier(replacement, target)
    monkeypatch.undo()

    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sentiment"]
    assert load_classifier(target, expected=ENCODER).intercept == trained.intercept


def test_failed_swap_puts_the_old_classifier_back(
    trained: SentimentClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "sentiment"
    save_classifier(trained, target)
    real_rename = os.rename

    def rename(src: object, dst: object) -> None:
        if Path(str(src)).name.startswith(".sentiment.tmp-"):
            raise OSError(5, "I/O error")
        real_rename(src, dst)

    monkeypatch.setattr(persistence.os, "rename", rename)
    with pytest.raises(OSError, match="I/O error"):
        save_classifier(SentimentClassifier(ENCODER, ("sad", "happy"), -trained.coef, 1.5), target)
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["sentiment"]
    assert load_classifier(target, expected=ENCODER).intercept == trained.intercept


def test_a_save_interrupted_between_renames_is_recovered(
    trained: SentimentClassifier, tmp_path: Path
) -> None:
    # The state a crash after "old -> backup" and before "new -> target" leaves behind.
    target = tmp_path / "sentiment"
    save_classifier(trained, target)
    os.rename(target, tmp_path / ".sentiment.previous")

    loaded = load_classifier(target, expected=ENCODER)
    assert loaded.intercept == trained.intercept

    save_classifier(SentimentClassifier(ENCODER, ("sad", "happy"), -trained.coef, 1.5), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sentiment"]
    assert load_classifier(target, expected=ENCODER).intercept == 1.5


# --------------------------------------------------------------------------- reading data


def test_reads_sst2_style_tsv_without_header(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text(
        "a stirring , funny and finally transporting film\t1\n"
        "apparently reassembled from the cutting room floor\t0\n"
        "\n"
        'it \'s a "charming" and often affecting journey\t1\n',
        encoding="utf-8",
    )
    data = load_labelled_data(path)
    assert data.labels == (1, 0, 1)
    assert data.texts[2] == 'it \'s a "charming" and often affecting journey'
    assert data.label_names == ("negative", "positive")
    assert load_labelled_data(path, limit=2).labels == (1, 0)


def test_reads_csv_with_header_and_named_labels() -> None:
    raw = (
        "\ufeffid,text,label\n"
        '1,"Great, really great.",pos\n'
        "2,Dull and slow.,NEG\n"
        '3,"Two\nlines",positive\n'
    ).encode()
    data = parse_labelled_bytes(raw, "reviews.csv", max_rows=10)
    assert data.texts == ("Great, really great.", "Dull and slow.", "Two\nlines")
    assert data.labels == (1, 0, 1)
    assert data.label_names == ("negative", "positive")


def test_any_two_label_names_are_sorted() -> None:
    raw = b"text\tlabel\nwhat a day\thappy\nrain again\tsad\nsunshine\tHappy\n"
    data = parse_labelled_bytes(raw, "mood.tsv", max_rows=10)
    assert data.label_names == ("happy", "sad")
    assert data.labels == (0, 1, 0)


def test_float_labels_written_by_pandas_are_accepted() -> None:
    data = parse_labelled_bytes(b"text,label\nfine,1.0\nbad,0.0\n", "x.csv", max_rows=10)
    assert data.labels == (1, 0)


@pytest.mark.parametrize(
    ("raw", "filename", "message"),
    [
        (b"text,score\nnice,1\n", "x.csv", r"line 1: the header has no `label` column"),
        (b"review,label\nnice,1\n", "x.csv", r"line 1: the header has no `text` column"),
        (b"nice,1\nbad,0\n", "x.csv", r"needs a header row"),
        (b"nice\t1\njust text\nbad\t0\n", "x.tsv", r"line 2: expected `sentence<TAB>label`"),
        (b"text,label\nnice,1\n,0\n", "x.csv", r"line 3: the text is empty"),
        (b"nice\t1\nbad\t\n", "x.tsv", r"line 2: the label is empty"),
        (b"nice\t1\nbad\t0\nmeh\t2\n", "x.tsv", r"line 3: label '2' is not 0 or 1"),
        (b"nice\t1\nbad\tnegative\n", "x.tsv", r"line 2: label 'negative' is a name"),
        (
            b"text,label\nnice,positive\nbad,negative\nmeh,neutral\n",
            "x.csv",
            r"line 4: a third label 'neutral'.*'negative' and 'positive'",
        ),
        (b"", "x.tsv", r"no labelled rows"),
        (b"\n  \n", "x.tsv", r"no labelled rows"),
        (b"text,label\n", "x.csv", r"no labelled rows"),
        (b"nice\t1\ngreat\t1\n", "x.tsv", r"Every row of x.tsv is labelled 'positive'"),
        (b"a\t1\nb\t0\nc\t1\nd\t0\n", "x.tsv", r"more than 3 rows \(line 4 is row 4\)"),
        (b"nice\t1\ncaf\xe9\t0\n", "x.tsv", r"not UTF-8 text \(line 2\)"),
        (
            b"text\tlabel\nnice\t" + b"x" * 41 + b"\n",
            "x.tsv",
            r"line 2: label .* longer than 40",
        ),
    ],
)
def test_bad_data_is_refused_with_the_line(raw: bytes, filename: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_labelled_bytes(raw, filename, max_rows=3)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="No such file"):
        load_labelled_data(tmp_path / "absent.tsv")


# --------------------------------------------------------------------------- report text


async def test_report_text_is_short_and_readable() -> None:
    data = LabelledData(
        texts=generated().texts, labels=generated().labels, label_names=("n" * 40, "p" * 40)
    )
    encoder = EncoderInfo("/very/long/local/path/" * 10 + "model", "r" * 40, "mean")
    _, report = await train_classifier(data, bag_of_words, encoder)
    text = report.to_text()
    assert len(text) < 1500
    assert f"{report.accuracy:.3f}" in text and f"{report.dummy_accuracy:.3f}" in text
    assert "mean pooling" in text and "p" * 20 in text
