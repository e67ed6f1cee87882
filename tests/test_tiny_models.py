"""The offline test kit must produce checkpoints that load and behave like real ones.

Every other test trusts these models, so here we check them through the same `Auto*` loading the
core uses, with the hub switched off and warnings (Python and transformers' logger) as failures.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoTokenizer,
)

from tests.tiny_models import (
    BPE_VOCAB_SIZE,
    ENDOFTEXT,
    MAX_POSITIONS,
    WORDPIECE_VOCAB,
    WORDPIECE_VOCAB_SIZE,
    TinyModelPaths,
    build_bpe_tokenizer,
    build_tiny_models,
)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> TinyModelPaths:
    return build_tiny_models(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@contextlib.contextmanager
def no_warnings() -> Iterator[None]:
    """Fail on Python warnings and on transformers' logger warnings (missing weights etc.).

    transformers' root logger does not propagate, so caplog cannot see it; listen directly.
    """
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    hf_logger = logging.getLogger("transformers")
    hf_logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yield
    finally:
        hf_logger.removeHandler(handler)
    assert not records, [r.getMessage() for r in records]


@pytest.fixture(scope="module")
def wordpiece(paths: TinyModelPaths):
    return AutoTokenizer.from_pretrained(paths.masked_lm)


@pytest.fixture(scope="module")
def bpe(paths: TinyModelPaths):
    return AutoTokenizer.from_pretrained(paths.causal_lm)


def test_build_is_fast(tmp_path: Path) -> None:
    started = time.perf_counter()
    build_tiny_models(tmp_path)
    assert time.perf_counter() - started < 5.0


@pytest.mark.parametrize(
    ("field", "auto_class", "class_name"),
    [
        ("masked_lm", AutoModelForMaskedLM, "DistilBertForMaskedLM"),
        ("qa", AutoModelForQuestionAnswering, "DistilBertForQuestionAnswering"),
        ("encoder", AutoModel, "DistilBertModel"),
        ("causal_lm", AutoModelForCausalLM, "GPT2LMHeadModel"),
    ],
)
def test_each_checkpoint_reloads_cleanly_offline(
    paths: TinyModelPaths, field: str, auto_class: type, class_name: str
) -> None:
    directory = getattr(paths, field)
    with no_warnings():
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = auto_class.from_pretrained(directory)
    assert type(model).__name__ == class_name
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.model_max_length == MAX_POSITIONS
    positions = getattr(model.config, "max_position_embeddings", None) or model.config.n_positions
    assert positions == MAX_POSITIONS
    assert tokenizer.is_fast


def test_distilbert_heads_are_tiny_and_run(paths: TinyModelPaths, wordpiece) -> None:
    with no_warnings():
        mlm = AutoModelForMaskedLM.from_pretrained(paths.masked_lm)
        qa = AutoModelForQuestionAnswering.from_pretrained(paths.qa)
    assert (mlm.config.dim, mlm.config.n_layers, mlm.config.n_heads) == (32, 2, 2)
    assert mlm.config.hidden_dim == 64
    assert mlm.config.pad_token_id == wordpiece.pad_token_id

    batch = wordpiece(["The capital of France is [MASK] ."], return_tensors="pt")
    with torch.no_grad():
        logits = mlm(**batch).logits
        spans = qa(**wordpiece("Where?", "In Paris.", return_tensors="pt"))
    assert logits.shape == (1, batch["input_ids"].shape[1], WORDPIECE_VOCAB_SIZE)
    assert spans.start_logits.shape == spans.end_logits.shape


def test_wordpiece_vocabulary_size_and_special_tokens(wordpiece) -> None:
    assert len(wordpiece) == WORDPIECE_VOCAB_SIZE == len(WORDPIECE_VOCAB)
    assert 300 < WORDPIECE_VOCAB_SIZE < 2000
    assert wordpiece.convert_ids_to_tokens([0, 1, 2, 3, 4]) == [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    ]
    assert wordpiece.mask_token == "[MASK]"
    assert wordpiece.mask_token_id == WORDPIECE_VOCAB.index("[MASK]")
    assert wordpiece.tokenize("The capital of [MASK] .") == ["The", "capital", "of", "[MASK]", "."]


def test_wordpiece_splits_unknown_words_and_marks_emoji_unknown(wordpiece) -> None:
    pieces = wordpiece.tokenize("tokenization")
    assert pieces[0] == "token"
    assert len([p for p in pieces if p.startswith("##")]) >= 2
    assert wordpiece.tokenize("I am 😀") == ["I", "am", "[UNK]"]


def test_wordpiece_is_cased(wordpiece) -> None:
    assert wordpiece.tokenize("The the Paris") == ["The", "the", "Paris"]
    ids = wordpiece.convert_tokens_to_ids(["The", "the"])
    assert ids[0] != ids[1]


def test_wordpiece_adds_cls_and_sep_for_single_and_pair(wordpiece) -> None:
    single = wordpiece("a man")["input_ids"]
    pair = wordpiece("a man", "a woman")["input_ids"]
    cls, sep = wordpiece.cls_token_id, wordpiece.sep_token_id
    assert single[0] == cls and single[-1] == sep
    assert pair[0] == cls and pair.count(sep) == 2 and pair[-1] == sep
    assert wordpiece.decode(pair) == "[CLS] a man [SEP] a woman [SEP]"


def test_wordpiece_offsets_point_back_into_the_text(wordpiece) -> None:
    text = "The river bank was muddy."
    encoding = wordpiece(text, return_offsets_mapping=True)
    tokens = wordpiece.convert_ids_to_tokens(encoding["input_ids"])
    for token, (start, end) in zip(tokens, encoding["offset_mapping"], strict=True):
        if token in ("[CLS]", "[SEP]"):
            assert (start, end) == (0, 0)
        else:
            assert text[start:end] == token.removeprefix("##")


def test_wordpiece_windows_a_context_longer_than_the_model(wordpiece) -> None:
    """QA slides a window over long contexts; that needs overflow + stride to work."""
    context = " ".join(["The river is long and the bank is green ."] * 40)
    windows = wordpiece(
        "Where is the bank?",
        context,
        truncation="only_second",
        max_length=MAX_POSITIONS,
        stride=32,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    assert len(windows["input_ids"]) > 1
    assert all(len(ids) <= MAX_POSITIONS for ids in windows["input_ids"])


def test_bpe_vocabulary_and_special_tokens(bpe) -> None:
    assert len(bpe) == BPE_VOCAB_SIZE
    eos = bpe.convert_tokens_to_ids(ENDOFTEXT)
    assert bpe.eos_token_id == bpe.bos_token_id == bpe.unk_token_id == bpe.pad_token_id == eos
    # Common words from the training text are single tokens, as in real GPT-2.
    assert bpe.tokenize("The capital of") == ["The", "Ġcapital", "Ġof"]


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127)))
def test_bpe_round_trips_ascii_text(bpe, text: str) -> None:
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_round_trips_non_ascii_text(bpe) -> None:
    text = "Café 😀 中文 — naïve"
    assert bpe.decode(bpe.encode(text)) == text


def test_gpt2_generates_a_hundred_tokens_from_a_left_padded_batch(
    paths: TinyModelPaths, bpe
) -> None:
    with no_warnings():
        model = AutoModelForCausalLM.from_pretrained(paths.causal_lm)
    assert (model.config.n_embd, model.config.n_layer, model.config.n_head) == (32, 2, 2)
    assert model.config.eos_token_id == model.config.bos_token_id == bpe.eos_token_id
    assert model.generation_config.pad_token_id == bpe.eos_token_id

    bpe.padding_side = "left"
    batch = bpe(["Hello", "The capital of France is"], return_tensors="pt", padding=True)
    with no_warnings(), torch.no_grad():
        out = model.generate(**batch, max_new_tokens=100, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 100)


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


def test_same_seed_builds_identical_checkpoints(tmp_path: Path) -> None:
    first = build_tiny_models(tmp_path / "one", seed=7)
    second = build_tiny_models(tmp_path / "two", seed=7)
    for field in ("masked_lm", "qa", "encoder", "causal_lm"):
        a, b = _weights(getattr(first, field)), _weights(getattr(second, field))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[name], b[name]) for name in a), field
        tokenizer_json = "tokenizer.json"
        assert (getattr(first, field) / tokenizer_json).read_bytes() == (
            getattr(second, field) / tokenizer_json
        ).read_bytes()


def test_different_seeds_give_different_weights(tmp_path: Path) -> None:
    first = build_tiny_models(tmp_path / "one", seed=1)
    second = build_tiny_models(tmp_path / "two", seed=2)
    a, b = _weights(first.causal_lm), _weights(second.causal_lm)
    assert not torch.equal(a["transformer.wte.weight"], b["transformer.wte.weight"])


def test_build_leaves_the_global_torch_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    build_tiny_models(tmp_path)
    assert torch.equal(torch.rand(4), expected)


def test_bpe_training_is_deterministic() -> None:
    first, second = build_bpe_tokenizer(), build_bpe_tokenizer()
    assert first.get_vocab() == second.get_vocab()
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()
