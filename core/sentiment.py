"""Sentiment as in the course notebook: a frozen encoder's sentence vector -> logistic regression.

The encoder is never fine-tuned; students see that a linear model on top of pretrained features
already separates positive from negative. This module owns everything after the features: reading
labelled data, training and evaluating, and persisting the two arrays the classifier consists of.
Features come from a `Featurize` callable (the inference engine in the bot, a local function in
the benchmark, a bag of words in the tests), so nothing here loads a model.

Persistence deliberately avoids pickle: a classifier directory holds `classifier.npz` (coef,
intercept; loaded with `allow_pickle=False`) and `manifest.json` (which encoder and pooling made
the features, the label names, the training report and the npz's sha256). A classifier trained on
one encoder is meaningless on another, so `load` refuses a mismatch instead of answering nonsense.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.errors import InvalidInput, NotReady

log = logging.getLogger(__name__)

#: Turns texts into one float32 row per text, shape (n, dim). Supplied by the caller.
Featurize = Callable[[Sequence[str]], Awaitable[np.ndarray]]

Pooling = Literal["cls", "mean"]

FORMAT_VERSION = 1
NPZ_NAME = "classifier.npz"
MANIFEST_NAME = "manifest.json"
DEFAULT_LABEL_NAMES = ("negative", "positive")
#: Texts per featurize call: big enough for the engine to batch, small enough that other
#: students' requests get a turn between chunks while a class-sized training set is encoded.
FEATURIZE_CHUNK = 64
#: Label names end up in every prediction shown on Discord; keep them short.
MAX_LABEL_NAME_CHARS = 40
_LABEL_SYNONYMS = {"neg": "negative", "pos": "positive"}


@dataclass(frozen=True)
class EncoderInfo:
    """Which features a classifier expects: the same weights *and* the same pooling."""

    model_id: str
    revision: str
    pooling: Pooling

    def describe(self) -> str:
        return f"{self.model_id} (revision {self.revision}) with {self.pooling} pooling"


@dataclass(frozen=True)
class LabelledData:
    """Sentences and their 0/1 labels; `label_names[i]` is what label `i` means."""

    texts: tuple[str, ...]
    labels: tuple[int, ...]
    label_names: tuple[str, str] = DEFAULT_LABEL_NAMES

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")
        if any(label not in (0, 1) for label in self.labels):
            raise ValueError("labels must be 0 or 1")

    def class_counts(self) -> tuple[int, int]:
        positives = sum(self.labels)
        return len(self.labels) - positives, positives


# --------------------------------------------------------------------------- reading data


def load_labelled_data(path: Path | str, *, limit: int | None = None) -> LabelledData:
    """Read a labelled file from disk; `limit` keeps only the first rows (the notebook used 2000).

    Accepts SST-2's header-less `sentence<TAB>label` TSV, or a CSV/TSV whose header names `text`
    (or `sentence`) and `label` columns.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"No such file: {path}") from None
    return _parse(data, path.name, max_rows=None, limit=limit)


def parse_labelled_bytes(data: bytes, filename: str, *, max_rows: int) -> LabelledData:
    """Parse an uploaded file (a Discord attachment); more than `max_rows` rows is an error.

    Unlike `load_labelled_data`'s `limit`, extra rows are refused rather than silently dropped,
    so a student never trains on a different set than the one they uploaded.
    """
    return _parse(data, filename, max_rows=max_rows, limit=None)


def _parse(data: bytes, filename: str, *, max_rows: int | None, limit: int | None) -> LabelledData:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInput(
            f"{filename} is not UTF-8 text (line {line}); save it as UTF-8 and upload it again."
        ) from None
    rows = _rows(text, filename, max_rows=max_rows, limit=limit)
    if not rows:
        raise InvalidInput(f"{filename} has no labelled rows.")
    labels, label_names = _labels(rows, filename)
    result = LabelledData(
        texts=tuple(row[1] for row in rows), labels=tuple(labels), label_names=label_names
    )
    negatives, positives = result.class_counts()
    if negatives == 0 or positives == 0:
        only = label_names[1] if negatives == 0 else label_names[0]
        raise InvalidInput(
            f"Every row of {filename} is labelled {only!r}; a classifier needs examples of both "
            "classes."
        )
    return result


def _rows(
    text: str, filename: str, *, max_rows: int | None, limit: int | None
) -> list[tuple[int, str, str]]:
    """(line number, text, raw label) per data row; blank lines are skipped."""
    # Not str.splitlines(): it also splits on form feeds and U+2028, which can occur in text.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return []
    is_csv = filename.lower().endswith(".csv")
    delimiter = "," if is_csv else "\t"
    header = [cell.strip().lower() for cell in _split(lines[first], delimiter, is_csv)]
    has_header = any(name in ("text", "sentence", "label") for name in header)
    if not has_header and is_csv:
        raise InvalidInput(
            f"{filename}: a CSV file needs a header row with `text` and `label` columns "
            f"(line {first + 1} is not one)."
        )
    if has_header:
        text_col = _column(header, ("text", "sentence"), filename, first + 1)
        label_col = _column(header, ("label",), filename, first + 1)
        start = first + 1
    else:  # SST-2 style: sentence<TAB>label, the sentence may not contain a tab
        text_col, label_col, start = 0, 1, first

    rows: list[tuple[int, str, str]] = []
    if is_csv:
        # The csv module handles quoted fields spanning lines; line_num follows it.
        reader = csv.reader(io.StringIO("\n".join(lines[start:])))
        numbered = ((start + reader.line_num, cells) for cells in reader)
    else:
        numbered = (
            (start + i + 1, line.split("\t") if has_header else line.rsplit("\t", 1))
            for i, line in enumerate(lines[start:])
        )
    for line_no, cells in numbered:
        if not any(cell.strip() for cell in cells):
            continue
        if limit is not None and len(rows) >= limit:
            break
        if max_rows is not None and len(rows) >= max_rows:
            raise InvalidInput(
                f"{filename} has more than {max_rows} rows (line {line_no} is row "
                f"{max_rows + 1}); upload at most {max_rows}."
            )
        if len(cells) <= max(text_col, label_col):
            expected = "`sentence<TAB>label`" if not has_header else f"{len(header)} columns"
            raise InvalidInput(
                f"{filename} line {line_no}: expected {expected}, found {len(cells)} column(s)."
            )
        sentence = cells[text_col].strip()
        label = cells[label_col].strip()
        if not sentence:
            raise InvalidInput(f"{filename} line {line_no}: the text is empty.")
        if not label:
            raise InvalidInput(f"{filename} line {line_no}: the label is empty.")
        rows.append((line_no, sentence, label))
    return rows


def _split(line: str, delimiter: str, is_csv: bool) -> list[str]:
    if is_csv:
        return next(csv.reader([line]), [])
    return line.split(delimiter)


def _column(header: list[str], names: tuple[str, ...], filename: str, line: int) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise InvalidInput(
        f"{filename} line {line}: the header has no `{names[0]}` column "
        f"(found: {', '.join(h or '(empty)' for h in header)})."
    )


def _labels(rows: list[tuple[int, str, str]], filename: str) -> tuple[list[int], tuple[str, str]]:
    """Map raw labels to 0/1: numbers must be 0/1; two names are sorted (negative < positive)."""
    numeric = [row for row in rows if _is_number(row[2])]
    if numeric:
        for line_no, _, raw in numeric:
            if float(raw) not in (0.0, 1.0):  # "1.0" is how pandas writes an int column with NaN
                raise InvalidInput(
                    f"{filename} line {line_no}: label {raw!r} is not 0 or 1 "
                    "(0 = negative, 1 = positive)."
                )
        if len(numeric) != len(rows):
            line_no, _, raw = next(row for row in rows if not _is_number(row[2]))
            raise InvalidInput(
                f"{filename} line {line_no}: label {raw!r} is a name, but other rows use 0/1; "
                "use one or the other."
            )
        return [int(float(row[2])) for row in rows], DEFAULT_LABEL_NAMES

    seen: dict[str, int] = {}
    for line_no, _, raw in rows:
        name = _LABEL_SYNONYMS.get(raw.lower(), raw.lower())
        if name in seen:
            continue
        if len(seen) == 2:
            first, second = sorted(seen)
            raise InvalidInput(
                f"{filename} line {line_no}: a third label {raw!r}; the classifier has two "
                f"classes and earlier rows already use {first!r} and {second!r}."
            )
        if len(name) > MAX_LABEL_NAME_CHARS:
            raise InvalidInput(
                f"{filename} line {line_no}: label {raw[:20]!r}... is longer than "
                f"{MAX_LABEL_NAME_CHARS} characters."
            )
        seen[name] = line_no
    names = sorted(seen)
    if len(names) == 1:
        names.append("")  # caught by the one-class check with a clearer message
    label_names = (names[0], names[1])
    index = {name: i for i, name in enumerate(label_names)}
    labels = [index[_LABEL_SYNONYMS.get(raw.lower(), raw.lower())] for _, _, raw in rows]
    return labels, label_names


def _is_number(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- the classifier


@dataclass(frozen=True)
class TrainingReport:
    """How well a classifier did on held-out sentences, next to the always-the-majority baseline."""

    accuracy: float
    dummy_accuracy: float
    precision: tuple[float, float]
    recall: tuple[float, float]
    n_train: int
    n_test: int
    label_names: tuple[str, str]
    encoder: EncoderInfo
    seconds: float
    #: Of `seconds`, the time spent computing features (the rest is splitting and fitting).
    featurize_seconds: float = 0.0
    #: Whether features were standardised before fitting (folded into the saved weights).
    standardized: bool = False
    #: The class the baseline always predicts (the training set's majority).
    majority_label: str = ""

    @property
    def beats_baseline(self) -> bool:
        """Better than always answering the majority class on the held-out sentences."""
        return self.accuracy > self.dummy_accuracy

    def baseline_warning(self) -> str:
        return (
            f"this classifier is no better than always answering {self.majority_label!r} "
            f"({self.accuracy:.3f} vs {self.dummy_accuracy:.3f} on {self.n_test} held-out "
            "sentences). It was installed anyway; give more (and more varied) examples, or a "
            "better encoder, and train again."
        )

    def to_text(self) -> str:
        """A small aligned table; Discord callers wrap it in a code block to keep the columns."""
        neg, pos = (name[:20] for name in self.label_names)
        majority = self.majority_label[:20] or "majority"
        model = self.encoder.model_id
        if len(model) > 60:
            model = "..." + model[-57:]
        width = max(len(neg), len(pos), len("classifier"), len(f"always {majority!r}")) + 2
        lines = [
            f"encoder   {model} ({self.encoder.pooling} pooling)",
            f"trained   {self.n_train} sentences, tested on {self.n_test} held out, "
            f"{self.seconds:.1f} s",
            "",
            f"{'':<{width}}accuracy",
            f"{'classifier':<{width}}{self.accuracy:.3f}",
            f"{'always ' + repr(majority):<{width}}{self.dummy_accuracy:.3f}",
            "",
            f"{'label':<{width}}precision  recall",
            f"{neg:<{width}}{self.precision[0]:<11.3f}{self.recall[0]:.3f}",
            f"{pos:<{width}}{self.precision[1]:<11.3f}{self.recall[1]:.3f}",
        ]
        if not self.beats_baseline:
            lines += ["", "WARNING: no better than the baseline: " + self.baseline_warning()]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainingReport:
        return cls(
            accuracy=float(data["accuracy"]),
            dummy_accuracy=float(data["dummy_accuracy"]),
            precision=_pair(data["precision"], float),
            recall=_pair(data["recall"], float),
            n_train=int(data["n_train"]),
            n_test=int(data["n_test"]),
            label_names=_pair(data["label_names"], str),
            encoder=_encoder_from_json(data["encoder"]),
            seconds=float(data["seconds"]),
            featurize_seconds=float(data.get("featurize_seconds", 0.0)),
            standardized=bool(data.get("standardized", False)),
            majority_label=str(data.get("majority_label", "")),
        )


@dataclass(frozen=True)
class SentimentPrediction:
    label: str
    #: Probability of `label`, the more likely class.
    probability: float
    #: (P(label_names[0]), P(label_names[1])).
    probabilities: tuple[float, float]


class SentimentClassifier:
    """Binary logistic regression held as two arrays, so predicting needs only numpy."""

    def __init__(
        self,
        encoder: EncoderInfo,
        label_names: tuple[str, str],
        coef: np.ndarray,
        intercept: float,
        report: TrainingReport | None = None,
    ) -> None:
        coef = np.asarray(coef, dtype=np.float64)
        if coef.ndim != 1 or coef.size == 0 or not np.all(np.isfinite(coef)):
            raise ValueError(f"coef must be a non-empty finite vector, got shape {coef.shape}")
        if not math.isfinite(float(intercept)):
            raise ValueError("intercept must be finite")
        self.encoder = encoder
        self.label_names = label_names
        self.coef = coef
        self.intercept = float(intercept)
        self.report = report

    @property
    def dim(self) -> int:
        return int(self.coef.shape[0])

    @classmethod
    def from_sklearn(
        cls,
        estimator: Any,
        encoder: EncoderInfo,
        label_names: tuple[str, str],
        report: TrainingReport | None = None,
    ) -> SentimentClassifier:
        """Take a fitted LogisticRegression, or a Pipeline(StandardScaler, LogisticRegression).

        The scaler is folded into the weights (w' = w / scale, b' = b - w' . mean), so standardising
        costs nothing at prediction time and the saved classifier stays two arrays.
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        scaler = None
        model = estimator
        if isinstance(estimator, Pipeline):
            steps = [step for _, step in estimator.steps]
            if len(steps) != 2 or not isinstance(steps[0], StandardScaler):
                raise TypeError("expected Pipeline(StandardScaler, LogisticRegression)")
            scaler, model = steps
        if not isinstance(model, LogisticRegression):
            raise TypeError(f"expected a LogisticRegression, got {type(model).__name__}")
        if list(model.classes_) != [0, 1]:
            raise ValueError(f"expected classes [0, 1], got {list(model.classes_)}")
        coef = np.asarray(model.coef_, dtype=np.float64).reshape(-1)
        intercept = float(np.asarray(model.intercept_).reshape(-1)[0])
        if scaler is not None:
            scale = np.asarray(scaler.scale_, dtype=np.float64)
            mean = np.asarray(scaler.mean_, dtype=np.float64)
            coef = coef / scale
            intercept = intercept - float(coef @ mean)
        return cls(encoder, label_names, coef, intercept, report)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(n, 2) class probabilities, as sklearn's `predict_proba` would give."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (n, {self.dim}), got {x.shape}")
        z = x @ self.coef + self.intercept
        # Stable sigmoid: exp of a non-positive number never overflows.
        e = np.exp(-np.abs(z))
        p1 = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return np.stack([1.0 - p1, p1], axis=1)

    def predict_features(self, features: np.ndarray) -> list[SentimentPrediction]:
        probs = self.probabilities(features)
        predictions = []
        for p0, p1 in probs.tolist():
            index = 1 if p1 > 0.5 else 0  # sklearn predicts class 1 only when z > 0
            predictions.append(
                SentimentPrediction(
                    label=self.label_names[index],
                    probability=(p0, p1)[index],
                    probabilities=(p0, p1),
                )
            )
        return predictions

    # ----------------------------------------------------------------------- persistence

    def save(self, directory: Path) -> None:
        """Write atomically: a reader sees the old classifier or the new one, never a mix.

        Everything is written and fsynced in a temporary sibling directory, then swapped in with
        two renames (old -> `.<name>.previous`, new -> `<name>`). A crash between those renames
        leaves only the previous copy, which `load` falls back to and the next `save` restores.
        Not safe for two concurrent saves to the same directory; the caller serialises training.
        """
        directory = Path(directory)
        parent = directory.parent
        parent.mkdir(parents=True, exist_ok=True)
        backup = _backup_path(directory)
        _recover(directory, backup)

        buffer = io.BytesIO()
        np.savez(buffer, coef=self.coef, intercept=np.array([self.intercept]))
        npz_bytes = buffer.getvalue()
        manifest = {
            "format_version": FORMAT_VERSION,
            "encoder": asdict(self.encoder),
            "label_names": list(self.label_names),
            "dim": self.dim,
            "npz_sha256": hashlib.sha256(npz_bytes).hexdigest(),
            "report": self.report.to_json() if self.report else None,
        }
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=parent))
        try:
            _write_synced(tmp / NPZ_NAME, npz_bytes)
            manifest_bytes = json.dumps(manifest, indent=2).encode("utf-8")
            _write_synced(tmp / MANIFEST_NAME, manifest_bytes)
            _fsync_dir(tmp)
            replaced = directory.exists()
            if replaced:
                os.rename(directory, backup)
            try:
                os.rename(tmp, directory)
            except BaseException:
                if replaced:
                    os.rename(backup, directory)
                raise
            _fsync_dir(parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if replaced:
            shutil.rmtree(backup, ignore_errors=True)
        log.info("saved sentiment classifier to %s (%s)", directory, self.encoder.describe())

    @classmethod
    def load(cls, directory: Path, *, expected: EncoderInfo) -> SentimentClassifier:
        """Load and check a saved classifier; refuse one that does not fit `expected` features."""
        directory = Path(directory)
        if not (directory / MANIFEST_NAME).exists():
            backup = _backup_path(directory)
            if (backup / MANIFEST_NAME).exists() and not directory.exists():
                log.warning(
                    "%s is missing; using %s left by an interrupted save", directory, backup
                )
                directory = backup
            else:
                raise NotReady(
                    "No sentiment classifier has been trained yet "
                    f"(nothing at {directory}); train one first."
                )
        try:
            manifest = json.loads((directory / MANIFEST_NAME).read_text("utf-8"))
            version = manifest["format_version"]
            if version != FORMAT_VERSION:
                raise InvalidInput(
                    f"The sentiment classifier at {directory} has format version {version}; "
                    f"this bot reads version {FORMAT_VERSION}. Retrain it."
                )
            encoder = _encoder_from_json(manifest["encoder"])
            label_names = _pair(manifest["label_names"], str)
            dim = int(manifest["dim"])
            digest = str(manifest["npz_sha256"])
            report = TrainingReport.from_json(manifest["report"]) if manifest["report"] else None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(
                f"The sentiment classifier's manifest at {directory} is unreadable "
                f"({type(exc).__name__}); retrain it."
            ) from None

        if encoder != expected:
            raise InvalidInput(
                f"This classifier was trained on {encoder.describe()}, but the bot is configured "
                f"for {expected.describe()}. Retrain it with the configured encoder, or configure "
                "the encoder it was trained on."
            )
        try:
            npz_bytes = (directory / NPZ_NAME).read_bytes()
        except OSError:
            raise InvalidInput(
                f"{directory / NPZ_NAME} is missing; retrain the classifier."
            ) from None
        if hashlib.sha256(npz_bytes).hexdigest() != digest:
            raise InvalidInput(
                f"{directory / NPZ_NAME} does not match its manifest (changed or corrupted "
                "after training); retrain the classifier."
            )
        try:
            with np.load(io.BytesIO(npz_bytes), allow_pickle=False) as arrays:
                coef = np.array(arrays["coef"])
                intercept = np.array(arrays["intercept"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise InvalidInput(
                f"{directory / NPZ_NAME} is unreadable ({type(exc).__name__}); retrain it."
            ) from None
        if (
            coef.shape != (dim,)
            or intercept.shape != (1,)
            or coef.dtype.kind != "f"
            or intercept.dtype.kind != "f"
            or not np.all(np.isfinite(coef))
            or not np.all(np.isfinite(intercept))
        ):
            raise InvalidInput(
                f"{directory / NPZ_NAME} holds arrays of the wrong shape or type (coef "
                f"{coef.shape}, intercept {intercept.shape}; expected ({dim},) and (1,)); "
                "retrain the classifier."
            )
        return cls(encoder, label_names, coef, float(intercept[0]), report)


def _backup_path(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.previous"


def _recover(directory: Path, backup: Path) -> None:
    """Finish or undo a save that crashed between its two renames."""
    if not backup.exists():
        return
    if directory.exists():
        shutil.rmtree(backup, ignore_errors=True)
    else:
        log.warning("restoring %s from an interrupted save", directory)
        os.rename(backup, directory)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pair(values: Any, kind: type) -> tuple[Any, Any]:
    items = list(values)
    if len(items) != 2 or not all(isinstance(item, (int, float, str)) for item in items):
        raise ValueError(f"expected two values, got {values!r}")
    return kind(items[0]), kind(items[1])


def _encoder_from_json(data: Any) -> EncoderInfo:
    pooling = data["pooling"]
    if pooling not in ("cls", "mean"):
        raise ValueError(f"unknown pooling {pooling!r}")
    return EncoderInfo(
        model_id=str(data["model_id"]), revision=str(data["revision"]), pooling=pooling
    )


# --------------------------------------------------------------------------- training


async def featurize_all(
    texts: Sequence[str], featurize: Featurize, *, chunk_size: int = FEATURIZE_CHUNK
) -> np.ndarray:
    """Featurize in chunks and check what comes back; a wrong shape is a featurizer bug."""
    parts: list[np.ndarray] = []
    for start in range(0, len(texts), chunk_size):
        chunk = list(texts[start : start + chunk_size])
        part = np.asarray(await featurize(chunk))
        if part.ndim != 2 or part.shape[0] != len(chunk):
            raise ValueError(f"featurize returned shape {part.shape} for {len(chunk)} texts")
        if parts and part.shape[1] != parts[0].shape[1]:
            raise ValueError(f"featurize changed dimension: {parts[0].shape[1]} -> {part.shape[1]}")
        if not np.all(np.isfinite(part)):
            raise ValueError("featurize returned non-finite values")
        parts.append(part.astype(np.float32, copy=False))
    return np.concatenate(parts, axis=0)


async def train_classifier(
    data: LabelledData,
    featurize: Featurize,
    encoder: EncoderInfo,
    *,
    test_size: float = 0.2,
    seed: int = 0,
    max_iter: int = 1000,
    standardize: bool = False,
    chunk_size: int = FEATURIZE_CHUNK,
) -> tuple[SentimentClassifier, TrainingReport]:
    """Hold out a stratified test set, fit on the rest, and report against the majority baseline.

    Featurization awaits the engine chunk by chunk; the CPU-bound fitting runs in a worker
    thread so the bot keeps answering while a classifier trains.
    """
    from sklearn.model_selection import train_test_split

    started = time.perf_counter()
    n = len(data.texts)
    n_test = math.ceil(test_size * n)
    smallest = min(data.class_counts())
    if smallest < 2 or n_test < 2 or n - n_test < 2:
        raise InvalidInput(
            f"Too few examples to train and test ({n} rows, {smallest} in the smaller class); "
            "give at least a handful of each class."
        )
    labels = np.asarray(data.labels, dtype=np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(n), test_size=test_size, stratify=labels, random_state=seed
    )

    features = await featurize_all(data.texts, featurize, chunk_size=chunk_size)
    featurize_seconds = time.perf_counter() - started

    estimator, dummy_accuracy, majority = await asyncio.to_thread(
        _fit,
        features[train_idx],
        labels[train_idx],
        features[test_idx],
        labels[test_idx],
        standardize=standardize,
        seed=seed,
        max_iter=max_iter,
    )
    classifier = SentimentClassifier.from_sklearn(estimator, encoder, data.label_names)
    # Score the folded weights, not the sklearn object: the report describes what is saved.
    predicted = (classifier.probabilities(features[test_idx])[:, 1] > 0.5).astype(np.int64)
    report = _report(
        labels[test_idx],
        predicted,
        dummy_accuracy,
        n_train=len(train_idx),
        label_names=data.label_names,
        encoder=encoder,
        seconds=time.perf_counter() - started,
        featurize_seconds=featurize_seconds,
        standardized=standardize,
        majority_label=data.label_names[majority],
    )
    classifier.report = report
    log.info(
        "trained sentiment classifier on %d sentences: accuracy %.3f (dummy %.3f) in %.1f s",
        report.n_train,
        report.accuracy,
        report.dummy_accuracy,
        report.seconds,
    )
    return classifier, report


def _fit(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    standardize: bool,
    seed: int,
    max_iter: int,
) -> tuple[Any, float, int]:
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = LogisticRegression(max_iter=max_iter, random_state=seed)
    estimator = make_pipeline(StandardScaler(), model) if standardize else model
    estimator.fit(x_train.astype(np.float64), y_train)
    dummy = DummyClassifier(strategy="most_frequent").fit(x_train, y_train)
    majority = int(dummy.predict(x_test[:1])[0])
    return estimator, float(dummy.score(x_test, y_test)), majority


def _report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    dummy_accuracy: float,
    **fields: Any,
) -> TrainingReport:
    from sklearn.metrics import accuracy_score, precision_score, recall_score

    precision = precision_score(y_true, y_pred, labels=[0, 1], average=None, zero_division=0)
    recall = recall_score(y_true, y_pred, labels=[0, 1], average=None, zero_division=0)
    return TrainingReport(
        accuracy=float(accuracy_score(y_true, y_pred)),
        dummy_accuracy=dummy_accuracy,
        precision=(float(precision[0]), float(precision[1])),
        recall=(float(recall[0]), float(recall[1])),
        n_test=len(y_true),
        **fields,
    )
