"""Batched answers must equal unbatched ones: the engine's speed may never change an answer.

References are transformers' own pipelines (fill-mask, feature-extraction) and `model.generate`,
run one request at a time on the same tiny checkpoints; QA has no pipeline in transformers 5, so
its reference is our own task run with batch size 1.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from core.config import ModelSpec
from core.inference.engine import InferenceEngine
from core.inference.models import LOAD_LOCK
from core.inference.tasks.features import FeaturesRequest
from core.inference.tasks.fill_mask import FillMaskRequest
from core.inference.tasks.generate import GenerateRequest
from core.inference.tasks.padding import length_groups
from core.inference.tasks.qa import QARequest
from tests.conftest import with_engine
from tests.tiny_models import TinyModelPaths

MASK_TEXTS = [
    "Paris is the [MASK] of France.",
    "The man works as a [MASK].",
    "[MASK] is a good movie , said the happy woman who went to the river bank yesterday .",
    "I like the [MASK].",
    "The tokenization of this sentence is [MASK] and long , with many many words in it .",
]

FEATURE_TEXTS = [
    "a good movie",
    "The river bank was quiet , and the woman was happy .",
    "bad",
    "The doctor said the movie was really very good and not bad at all .",
]

QA_CASES = [
    ("What is the capital of France?", "Paris is the capital of France. It is a big city."),
    ("Who works as a nurse?", "The woman works as a nurse and the man works as a doctor."),
    ("Where is the bank?", "The bank is by the river. " * 40),  # several windows
    ("What was good?", "The movie was good."),
]

PROMPTS = ["Hello", "The capital of France is", "Once upon a time there was a", "I"]


#: Far apart in length (two length groups, with padding inside each), one mask each.
CONTEXT_MASK_TEXTS = [
    "The man is a [MASK].",
    "I like the [MASK] here.",
    "[MASK] is good.",
    "The doctor said the movie was really very good and not bad at all , and the woman who "
    "went to the river bank yesterday said the [MASK] was great too , and the children agreed "
    "with her .",
    "Once upon a time there was a king who lived in a big city by the sea , and he loved his "
    "family and his friends and the [MASK] of his country more than anything .",
]


async def _batched(engine: InferenceEngine, requests: list) -> list:
    """Submit all at once so the batcher merges them, and check that it did."""
    results = await asyncio.gather(*(engine.submit(r) for r in requests))
    assert max(r.timings.batch_size for r in results) > 1
    return results


async def test_fill_mask_batched_equals_pipeline_one_by_one(engine, tiny_models):
    results = await _batched(engine, [FillMaskRequest(t, top_k=5) for t in MASK_TEXTS])
    with LOAD_LOCK:
        pipe = transformers.pipeline("fill-mask", model=str(tiny_models.masked_lm), top_k=5)
    for text, result in zip(MASK_TEXTS, results):
        expected = pipe(text)
        assert [f.token_id for f in result.fillers] == [e["token"] for e in expected]
        np.testing.assert_allclose(
            [f.score for f in result.fillers], [e["score"] for e in expected], atol=1e-4
        )
        assert [f.token for f in result.fillers] == [e["token_str"] for e in expected]
        assert [f.sequence for f in result.fillers] == [e["sequence"] for e in expected]


@pytest.fixture(scope="module")
def context_masked_lm(tiny_models: TinyModelPaths, tmp_path_factory: pytest.TempPathFactory
                      ) -> Path:
    """The tiny masked LM with its attention and output weights drawn wide (std 0.3, not 0.02).

    The default tiny model barely looks at its context: attending to padding moves its
    probabilities by about a millionth. This one's answers depend on the context, so padding
    attended, or the wrong columns read, changes them by far more than any tolerance here.
    """
    path = tmp_path_factory.mktemp("context-masked-lm")
    with LOAD_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.AutoModelForMaskedLM.from_pretrained(tiny_models.masked_lm)
        tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_models.masked_lm)
        for layer in model.distilbert.transformer.layer:
            attention = layer.attention
            for linear in (attention.q_lin, attention.k_lin, attention.v_lin, attention.out_lin):
                torch.nn.init.normal_(linear.weight, std=0.3)
        torch.nn.init.normal_(model.vocab_projector.weight, std=0.3)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return path


async def test_fill_mask_batched_equals_one_by_one_when_context_matters(
    tiny_config, context_masked_lm
):
    """Short and long sentences in one batch (several length groups, padding in each): every
    answer equals the pipeline's for that sentence alone. Fails if the forward attends to
    padding (an all-ones attention mask) or slices the wrong padding side."""
    spec = ModelSpec(str(context_masked_lm))
    config = dataclasses.replace(tiny_config, models=dataclasses.replace(
        tiny_config.models, mask=spec, features=spec))
    async with InferenceEngine(config, tasks={"mask"}) as engine:
        results = await _batched(engine, [FillMaskRequest(t, top_k=10)
                                          for t in CONTEXT_MASK_TEXTS])
        tokenizer = (await engine.registry.get(spec)).tokenizer
    assert {r.timings.batch_size for r in results} == {len(CONTEXT_MASK_TEXTS)}  # one batch
    lengths = [len(ids) for ids in tokenizer(CONTEXT_MASK_TEXTS)["input_ids"]]
    groups = length_groups(lengths)
    assert len(groups) >= 2 and all(len({lengths[i] for i in g}) > 1 for g in groups)
    with LOAD_LOCK:
        pipe = transformers.pipeline("fill-mask", model=str(context_masked_lm), top_k=10)
    for text, result in zip(CONTEXT_MASK_TEXTS, results):
        expected = pipe(text)
        assert [f.token_id for f in result.fillers] == [e["token"] for e in expected], text
        np.testing.assert_allclose([f.score for f in result.fillers],
                                   [e["score"] for e in expected], rtol=1e-3, err_msg=text)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
async def test_features_batched_equal_pipeline_one_by_one(engine, tiny_models, pooling):
    results = await _batched(engine, [FeaturesRequest(t, pooling) for t in FEATURE_TEXTS])
    with LOAD_LOCK:
        pipe = transformers.pipeline("feature-extraction", model=str(tiny_models.masked_lm))
    for text, result in zip(FEATURE_TEXTS, results):
        hidden = np.asarray(pipe(text)[0])  # (tokens, dim) for one text, no padding
        expected = hidden[0] if pooling == "cls" else hidden.mean(axis=0)
        np.testing.assert_allclose(result.vector, expected, atol=1e-4)


async def test_qa_batched_spans_equal_one_by_one(tiny_config):
    requests = [QARequest(q, c) for q, c in QA_CASES]
    async with InferenceEngine(tiny_config) as engine:
        batched = await _batched(engine, requests)
    async with InferenceEngine(with_engine(tiny_config, max_batch_size=1)) as engine:
        single = [await engine.submit(r) for r in requests]
    for b, s in zip(batched, single):
        assert (b.start, b.end, b.answer) == (s.start, s.end, s.answer)
        assert b.score == pytest.approx(s.score, abs=1e-5)
        assert b.answer == b.context[b.start:b.end] and b.answer
    assert batched[2].windows > 1


async def test_greedy_generation_batched_equals_generate_one_by_one(engine, tiny_models):
    requests = [GenerateRequest(p, max_new_tokens=12, temperature=0) for p in PROMPTS]
    results = await _batched(engine, requests)
    with LOAD_LOCK:
        tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_models.causal_lm)
        model = transformers.AutoModelForCausalLM.from_pretrained(tiny_models.causal_lm)
    for prompt, result in zip(PROMPTS, results):
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**ids, do_sample=False, max_new_tokens=12, min_new_tokens=12)
        expected = tokenizer.decode(out[0], skip_special_tokens=True)
        assert prompt + result.continuations[0] == expected
        assert result.new_tokens == (12,) and result.greedy


async def test_sequences_leave_the_batch_when_done_and_the_rest_are_unchanged(engine):
    """A short request in a batch with long ones ends early without changing theirs."""
    long_alone = await engine.submit(GenerateRequest("Once upon", max_new_tokens=20, temperature=0))
    short, long_ = await asyncio.gather(
        engine.submit(GenerateRequest("Hello", max_new_tokens=2, temperature=0)),
        engine.submit(GenerateRequest("Once upon", max_new_tokens=20, temperature=0)),
    )
    assert short.new_tokens == (2,) and long_.continuations == long_alone.continuations
    assert long_.timings.batch_size == 2
