"""Loading refuses what cannot work, in one line, fast: wrong heads, missing folders, no hub.

Issue 13: a model without the head's weights answered with random scores; a wrong `generate`
model printed ~200 config class names; a missing local folder was reported as an unreachable hub
id; and with the hub unreachable a load spent ~50 s in retries and printed tracebacks.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from core.config import ModelSpec, load_config
from core.errors import ModelUnavailable
from core.inference.engine import InferenceEngine
from core.inference.models import LOAD_LOCK, Head, ModelRegistry
from core.inference.tasks.fill_mask import FillMaskRequest
from tests.tiny_models import TinyModelPaths

REPO = Path(__file__).resolve().parents[1]


async def _load(spec: ModelSpec, *heads: Head):
    registry = ModelRegistry({spec: {*heads, Head.TOKENIZER}})
    try:
        return await registry.get(spec)
    finally:
        await registry.aclose()


async def test_a_checkpoint_without_the_masked_lm_head_is_refused(tiny_models):
    with pytest.raises(ModelUnavailable) as info:
        await _load(ModelSpec(str(tiny_models.qa)), Head.MASKED_LM)
    assert "has no masked-LM head: choose a fill-mask model" in info.value.message


async def test_a_checkpoint_without_the_qa_head_is_refused(tiny_models):
    with pytest.raises(ModelUnavailable, match="has no question-answering head"):
        await _load(ModelSpec(str(tiny_models.masked_lm)), Head.QA)


async def test_the_matching_heads_still_load(tiny_models):
    model = await _load(ModelSpec(str(tiny_models.qa)), Head.QA)
    assert set(model.modules) == {Head.QA}
    # The bare encoder may come from any checkpoint of the family: extra head weights are fine.
    model = await _load(ModelSpec(str(tiny_models.qa)), Head.ENCODER)
    assert set(model.modules) == {Head.ENCODER}


async def test_a_wrong_generate_model_gets_one_short_message(tiny_models):
    with pytest.raises(ModelUnavailable) as info:
        await _load(ModelSpec(str(tiny_models.masked_lm)), Head.CAUSAL_LM)
    message = info.value.message
    assert "a distilbert model, with no causal-LM head: choose a text-generation model" in message
    assert "distilbert" in message and "Config," not in message and len(message) < 400


@pytest.fixture(scope="module")
def tiny_albert(tiny_models: TinyModelPaths, tmp_path_factory) -> Path:
    """A masked LM of another family (its head is `predictions`), with the tiny WordPiece."""
    from transformers import AlbertConfig, AlbertForMaskedLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("albert")
    tokenizer = AutoTokenizer.from_pretrained(tiny_models.masked_lm)
    config = AlbertConfig(
        vocab_size=len(tokenizer), embedding_size=16, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=37, max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    AlbertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


async def test_a_masked_lm_of_another_family_fills_the_mask_with_its_own_logits(
    tiny_config, tiny_albert
):
    from transformers import AlbertForMaskedLM, AutoTokenizer

    spec = ModelSpec(str(tiny_albert))
    config = dataclasses.replace(tiny_config, models=dataclasses.replace(
        tiny_config.models, mask=spec, load_at_start=False))
    texts = ["Paris is the [MASK] of France.", "The [MASK] sat on the mat today."]
    async with InferenceEngine(config, tasks={"mask"}) as engine:
        results = [await engine.submit(FillMaskRequest(t, top_k=3)) for t in texts]
    with LOAD_LOCK:
        model = AlbertForMaskedLM.from_pretrained(tiny_albert).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_albert)
    for text, result in zip(texts, results):
        batch = tokenizer(text, return_tensors="pt")
        position = int((batch["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0])
        with torch.no_grad():
            probs = model(**batch).logits[0, position].softmax(-1)
        scores, ids = probs.topk(3)
        assert [f.token_id for f in result.fillers] == ids.tolist()
        assert [f.score for f in result.fillers] == pytest.approx(scores.tolist(), abs=1e-5)


def test_relative_model_paths_are_read_from_the_config_folder(tiny_models, tmp_path):
    folder = tmp_path / "course"
    shutil.copytree(tiny_models.masked_lm, folder / "models" / "mask")
    config_file = folder / "config.toml"
    config_file.write_text(textwrap.dedent("""
        [models]
        mask = "models/mask"
        qa = "./models/absent"
        generate = "openai-community/gpt2"
    """), encoding="utf-8")
    config = load_config(config_file)
    assert config.models.mask.id == str((folder / "models" / "mask").resolve())
    assert config.models.qa.id == str((folder / "models" / "absent").resolve())
    assert config.models.generate.id == "openai-community/gpt2"  # a hub id stays one


async def test_a_missing_local_folder_is_reported_as_such(tmp_path):
    with pytest.raises(ModelUnavailable) as info:
        await _load(ModelSpec(str(tmp_path / "absent")), Head.QA)
    assert "local folder" in info.value.message and "does not exist" in info.value.message
    assert "hub" not in info.value.message


_LOAD_SCRIPT = """
import asyncio, logging, sys, time
logging.basicConfig(level=logging.INFO)
from core.config import ModelSpec
from core.errors import ModelUnavailable
from core.inference.models import Head, ModelRegistry

async def main():
    spec = ModelSpec("tlm-bot-tests/not-cached-anywhere")
    registry = ModelRegistry({spec: {Head.MASKED_LM, Head.TOKENIZER}})
    started = time.perf_counter()
    try:
        await registry.get(spec)
    except ModelUnavailable as exc:
        print("SECONDS", time.perf_counter() - started)
        print("MESSAGE", exc.message)
    finally:
        await registry.aclose()

asyncio.run(main())
"""


@pytest.mark.parametrize("network", ["offline", "unreachable"])
def test_a_model_not_cached_fails_fast_with_what_to_do(tmp_path, network):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "PYTHONPATH": str(REPO)}
    env.pop("TRANSFORMERS_OFFLINE", None)
    if network == "offline":
        env["HF_HUB_OFFLINE"] = "1"
    else:  # a loopback port where nothing listens: the connection is refused at once
        env["HF_HUB_OFFLINE"] = "0"
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    seconds = float(done.stdout.split("SECONDS", 1)[1].split()[0])
    message = done.stdout.split("MESSAGE", 1)[1]
    print(f"\n{network}: refused after {seconds:.2f} s (process {elapsed:.1f} s)")
    assert seconds < 5, output
    assert "tlm-bot download-models" in message and "local folders" in message
    assert ("HF_HUB_OFFLINE=1 forbids" in message) == (network == "offline")
    assert "Traceback" not in output


def test_try_loads_reports_every_role(tiny_config, tiny_models):
    from core.inference.load_check import try_loads

    good = try_loads(tiny_config)
    assert [r.role for r in good] == ["mask", "qa", "generate", "features"]
    assert all(r.ok for r in good), [str(r) for r in good]
    # mask and features share one folder, hence one load with both roles' heads.
    assert good[0].heads == good[3].heads == {Head.MASKED_LM, Head.ENCODER, Head.TOKENIZER}
    wrong = dataclasses.replace(tiny_config, models=dataclasses.replace(
        tiny_config.models, qa=ModelSpec(str(tiny_models.masked_lm))))
    (qa,) = try_loads(wrong, roles={"qa"})
    assert not qa.ok and "no question-answering head" in qa.detail
    assert str(qa).startswith("qa: ") and "FAILED" in str(qa)
