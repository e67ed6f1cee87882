"""`/qa` answers what transformers 4.57's question-answering pipeline answered: whole words.

transformers 5 has no QA pipeline, so span decoding is ours (core/inference/tasks/qa.py). The
reference is
tests/fixtures/qa_pipeline_4_57.json, written by tests/fixtures/make_qa_fixture.py in a separate
transformers 4.57 venv from the same tiny QA model (tests/tiny_models.py builds it
deterministically; the fixture keeps a fingerprint of its weights). The pipeline ran with its
defaults: align_to_words=True, handle_impossible_answer=False, top_k=1, max_answer_len=15; the
engine here gets max_answer_tokens=15 to match.

Answer text and character offsets must be equal. Scores differ by design: the 4.x pipeline took
the softmax over the context tokens *and* [CLS] (then zeroed [CLS]), while `/qa` takes it over
the context tokens only (the module docstring), so our p(start) and p(end) are each larger by
the factor 1 / (1 - p_cls). Within one window that factor is common to every span, so it never
changes which answer wins; the test checks our score is at least 4.57's and, being a pooled
probability mass, at most 1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from safetensors.torch import load_file

from core.config import Config
from core.inference.engine import InferenceEngine
from core.inference.tasks.qa import QARequest
from tests.tiny_models import TinyModelPaths

FIXTURE = json.loads(
    (Path(__file__).parent / "fixtures" / "qa_pipeline_4_57.json").read_text(encoding="utf-8")
)
CASES = FIXTURE["cases"]


def weights_fingerprint(model_dir: Path) -> str:
    """The same fingerprint make_qa_fixture.py stores."""
    state = load_file(str(model_dir / "model.safetensors"))
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture
async def qa_engine(tiny_config: Config) -> AsyncIterator[InferenceEngine]:
    limits = dataclasses.replace(
        tiny_config.limits, max_answer_tokens=FIXTURE["pipeline_args"]["max_answer_len"]
    )
    async with InferenceEngine(dataclasses.replace(tiny_config, limits=limits)) as engine:
        yield engine


def test_fixture_was_made_from_this_tiny_model(tiny_models: TinyModelPaths) -> None:
    assert weights_fingerprint(tiny_models.qa) == FIXTURE["qa_weights_sha256"], (
        "tests/tiny_models.py now builds a different QA model: rerun "
        "tests/fixtures/make_qa_fixture.py in a transformers 4.57 venv"
    )


def test_fixture_exercises_widening_to_words() -> None:
    """Most cases' best raw token span starts or ends inside a word; 4.57 widened them."""
    widened = [c for c in CASES if c["answer"] != c["unaligned"]["answer"]]
    assert len(widened) >= len(CASES) // 2


@pytest.mark.parametrize("case", CASES, ids=[c["question"] for c in CASES])
async def test_qa_matches_transformers_4_57_pipeline(
    qa_engine: InferenceEngine, tiny_models: TinyModelPaths, case: dict
) -> None:
    result = await qa_engine.submit(QARequest(case["question"], case["context"]))
    assert (result.answer, result.start, result.end) == (
        case["answer"], case["start"], case["end"]
    )
    assert result.answer == case["context"][result.start : result.end]
    assert case["score"] - 1e-6 <= result.score <= 1.0
