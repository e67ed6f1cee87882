"""Device/dtype plumbing and the CPU fast paths (int8, ONNX Runtime) on the tiny models.

Every comparison is against the same engine in float32 torch: the fast paths must give the
same answers where their precision allows (same top-1 fillers, same greedy text, features
cosine >= 0.99, same QA spans), and fall back to torch for what they cannot compute.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import ModelSpec, parse_config
from core.errors import ConfigError, Overloaded
from core.inference.backends import describe_runtime, resolve_placement
from core.inference.backends.layer_forms import conv1d_to_linear
from core.inference.backends.placement import auto_dtype
from core.inference.engine import InferenceEngine
from core.inference.models import Head
from core.inference.tasks.attention import AttentionRequest
from core.inference.tasks.features import FeaturesRequest
from core.inference.tasks.fill_mask import FillMaskRequest
from core.inference.tasks.generate import GenerateRequest
from core.inference.tasks.qa import QARequest
from tests.conftest import tiny_config_dict, write_tiny_config

try:
    import onnxruntime  # noqa: F401

    HAS_ORT = True
except ImportError:
    HAS_ORT = False
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed (extra 'onnx')")
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")

MASK_TEXTS = [
    "Paris is the [MASK] of France.", "The cat sat on the [MASK].",
    "Students in the [MASK] ask the bot questions.", "A new word can be [MASK] with pieces.",
    "The model reads the [MASK] both ways.", "I [MASK] to school every day.",
]
PROMPTS = ["The class", "A model reads", "Students ask the bot", "Hello"]
QUESTION = QARequest(
    "What do students ask?",
    "Students in the class ask the bot questions about words and the model answers them.",
)


def config_with(tiny_models, tmp_path, *, engine=None, **model_fields):
    raw = tiny_config_dict(tiny_models)
    for role in ("mask", "qa", "generate", "features"):
        raw["models"][role] = {"id": raw["models"][role], **model_fields}
    raw["engine"].update(engine or {})
    return parse_config(raw, base_dir=tmp_path)


async def answers(config):
    """Every task the fast paths touch, answered by a fresh engine with this config."""
    async with InferenceEngine(config) as engine:
        masks = await asyncio.gather(*(engine.submit(FillMaskRequest(t, 3)) for t in MASK_TEXTS))
        features = await asyncio.gather(*(
            engine.submit(FeaturesRequest(t.replace("[MASK]", "word"), "mean"))
            for t in MASK_TEXTS
        ))
        greedy = await asyncio.gather(*(
            engine.submit(GenerateRequest(p, max_new_tokens=8, greedy=True)) for p in PROMPTS
        ))
        qa = await engine.submit(QUESTION)
        mlm = (await engine.registry.get(config.models.mask)).module(Head.MASKED_LM)
        return {
            "projector": type(mlm.vocab_projector).__module__,
            "encoder": type(mlm.base_model).__name__,
            "dtype": next(mlm.base_model.parameters(), torch.empty(0)).dtype,
            "top1": [m.fillers[0].token_id for m in masks],
            "probs": [[f.score for f in m.fillers] for m in masks],
            "features": np.stack([f.vector for f in features]),
            "greedy": [g.continuations[0] for g in greedy],
            "qa": (qa.start, qa.end),
            "placement": engine.placement,
        }


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture
async def float32(tiny_models, tmp_path):
    return await answers(config_with(tiny_models, tmp_path, engine={"device": "cpu"}))


# --- configuration and placement --------------------------------------------------------------

@pytest.mark.parametrize("raw, key", [
    ({"engine": {"device": "gpu"}}, "engine.device"),
    ({"engine": {"device": "cuda:x"}}, "engine.device"),
    ({"engine": {"dtype": "half"}}, "engine.dtype"),
    ({"models": {"mask": {"id": "m", "quantize": "int4"}}}, "models.mask.quantize"),
    ({"models": {"mask": {"id": "m", "backend": "tensorrt"}}}, "models.mask.backend"),
])
def test_bad_runtime_settings_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config(raw)


def test_runtime_settings_parse():
    config = parse_config({
        "engine": {"device": "cuda:1", "dtype": "bfloat16"},
        "models": {"mask": {"id": "m", "quantize": "int8", "backend": "onnxruntime"}},
    })
    assert (config.engine.device, config.engine.dtype) == ("cuda:1", "bfloat16")
    assert config.models.mask == ModelSpec("m", "main", "int8", "onnxruntime")
    assert str(config.models.mask) == "m"  # results still name the model by its id


AMX_CPU = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
AVX2_CPU = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"


@no_gpu
def test_auto_on_a_cpu_without_bfloat16_units_is_float32():
    placement = resolve_placement("auto", "auto", cpuinfo=AVX2_CPU)
    assert (placement.device, placement.dtype) == ("cpu", "float32")
    assert "no CUDA GPU" in placement.reason and "no bfloat16 matrix units" in placement.reason


@no_gpu
def test_auto_on_a_cpu_with_bfloat16_units_is_bfloat16():
    placement = resolve_placement("auto", "auto", cpuinfo=AMX_CPU)
    assert (placement.device, placement.dtype) == ("cpu", "bfloat16") and placement.dtype_auto
    assert "avx512_bf16, amx_bf16" not in placement.reason  # named in BF16_FLAGS' order
    assert "amx_bf16, avx512_bf16" in placement.reason
    only_avx512 = AMX_CPU.replace(" amx_bf16", "")
    assert resolve_placement("cpu", "auto", cpuinfo=only_avx512).dtype == "bfloat16"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_an_explicit_dtype_always_wins(dtype):
    for cpu in (AMX_CPU, AVX2_CPU):
        placement = resolve_placement("cpu", dtype, cpuinfo=cpu)
        assert placement.dtype == dtype and not placement.dtype_auto
        assert f"dtype {dtype} as configured" in placement.reason


@no_gpu
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_asking_for_a_missing_gpu_is_a_clear_error(device):
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        resolve_placement(device, "auto")


def test_float16_on_the_cpu_is_refused():
    with pytest.raises(ConfigError, match="bfloat16"):
        resolve_placement("cpu", "float16")


@no_gpu
def test_check_config_reports_the_runtime_and_why(tiny_models, tmp_path):
    path = write_tiny_config(tmp_path / "config.toml", tiny_models,
                             engine={"device": "auto", "dtype": "auto"})
    out = subprocess.run([sys.executable, "-m", "bot.cli", "check-config", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    chosen, why = auto_dtype("cpu")  # this machine's CPU, read from /proc/cpuinfo
    assert f"runtime: cpu, {chosen} (device auto: torch sees no CUDA GPU; dtype auto: {why})" \
        in out.stdout
    config = parse_config({"engine": {"device": "cuda"}})
    assert describe_runtime(config)[0].startswith("runtime: cannot run here: engine.device")


def test_describe_runtime_names_each_fast_path(tiny_models, tmp_path):
    config = config_with(tiny_models, tmp_path, engine={"device": "cpu"}, quantize="int8")
    lines = describe_runtime(config)
    assert lines[0].startswith("runtime: cpu, float32")
    assert any("int8" in line and line.startswith("models.mask") for line in lines)


# --- dtype on the CPU -------------------------------------------------------------------------

async def test_bfloat16_on_the_cpu_agrees_with_float32(tiny_models, tmp_path, float32):
    got = await answers(config_with(tiny_models, tmp_path,
                                    engine={"device": "cpu", "dtype": "bfloat16"}))
    assert got["placement"].dtype == "bfloat16" and got["dtype"] == torch.bfloat16
    np.testing.assert_allclose(got["probs"], float32["probs"], atol=0.05)
    assert cosine(got["features"], float32["features"]).min() >= 0.99
    assert sum(a == b for a, b in zip(got["top1"], float32["top1"])) >= len(MASK_TEXTS) - 1


def test_auto_moves_every_model_to_bfloat16_on_a_cpu_with_bfloat16_units(tiny_models):
    """Through the production loader: under `dtype = "auto"` on a CPU with bfloat16 units the
    encoders and GPT-2 run in bfloat16 (GPT-2's batched decoding is faster there too)."""
    from core.inference.models import load_model

    auto = resolve_placement("cpu", "auto", cpuinfo=AMX_CPU)
    for spec, head in ((tiny_models.causal_lm, Head.CAUSAL_LM),
                       (tiny_models.masked_lm, Head.MASKED_LM)):
        module = load_model(ModelSpec(str(spec)), frozenset({head}), auto).modules[head]
        assert next(module.parameters()).dtype == torch.bfloat16, spec
    assert resolve_placement("cpu", "auto", cpuinfo=AVX2_CPU).dtype == "float32"


def test_bfloat16_gpt2_runs_its_layers_in_the_cpu_kernels_forms(tiny_models):
    """GPT-2's Conv1D projections become Linear layers holding a contiguous [out, in] copy
    (oneDNN's faster bfloat16 layout), its tanh GELU torch's one op, and the logits stay the
    transformers model's."""
    from transformers import AutoModelForCausalLM
    from transformers.activations import NewGELUActivation
    from transformers.pytorch_utils import Conv1D

    from core.inference.models import load_model

    gpt2 = load_model(ModelSpec(str(tiny_models.causal_lm)), frozenset({Head.CAUSAL_LM}),
                      resolve_placement("cpu", "bfloat16")).modules[Head.CAUSAL_LM]
    reference = AutoModelForCausalLM.from_pretrained(str(tiny_models.causal_lm)).to(
        torch.bfloat16).eval()
    assert not [m for m in gpt2.modules() if isinstance(m, (Conv1D, NewGELUActivation))]
    assert len([m for m in gpt2.modules() if isinstance(m, torch.nn.GELU)]) == len(
        gpt2.transformer.h)
    projections = [m for m in gpt2.transformer.h.modules() if isinstance(m, torch.nn.Linear)]
    assert len(projections) == 4 * len(gpt2.transformer.h)
    assert all(m.weight.is_contiguous() for m in projections)
    ids = torch.tensor([[5, 17, 42, 8, 99]])
    with torch.inference_mode():
        torch.testing.assert_close(gpt2(ids).logits, reference(ids).logits, atol=0.05, rtol=0.02)


# --- int8 -------------------------------------------------------------------------------------

def test_conv1d_becomes_an_equal_linear(tiny_models):
    from transformers import AutoModelForCausalLM

    from core.inference.models import LOAD_LOCK

    with LOAD_LOCK:
        lm = AutoModelForCausalLM.from_pretrained(tiny_models.causal_lm).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        before = lm(ids).logits
        assert conv1d_to_linear(lm) > 0
        after = lm(ids).logits
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


async def test_int8_gives_the_same_top1_fillers_and_greedy_text(tiny_models, tmp_path, float32):
    got = await answers(config_with(tiny_models, tmp_path, engine={"device": "cpu"},
                                    quantize="int8"))
    assert "quantized" in got["projector"]
    assert got["top1"] == float32["top1"]
    assert got["greedy"] == float32["greedy"]
    assert cosine(got["features"], float32["features"]).min() >= 0.99


# --- ONNX Runtime -----------------------------------------------------------------------------

@needs_ort
async def test_onnxruntime_matches_torch_and_falls_back_for_attention(
        tiny_models, tmp_path, float32, onnx_cache, monkeypatch, caplog):
    monkeypatch.setenv("TLM_BOT_ONNX_CACHE", str(onnx_cache))
    config = config_with(tiny_models, tmp_path, engine={"device": "cpu"}, backend="onnxruntime")
    caplog.set_level(logging.INFO)
    got = await answers(config)
    assert got["encoder"] == "OnnxEncoder" and float32["encoder"] != "OnnxEncoder"
    np.testing.assert_allclose(got["probs"], float32["probs"], atol=1e-4)
    assert got["top1"] == float32["top1"]
    np.testing.assert_allclose(got["features"], float32["features"], atol=1e-4)
    assert got["qa"] == float32["qa"]
    assert got["greedy"] == float32["greedy"]  # GPT-2 stays torch, and says so
    assert "this decoder runs on torch" in caplog.text
    exported = sorted(p.name for p in onnx_cache.iterdir())
    assert len(exported) == 2 and all("opset" in name for name in exported)  # mask + QA models

    caplog.clear()
    async with InferenceEngine(config) as engine:
        picture = await engine.submit(AttentionRequest("The cat sat on the mat.", "mask"))
        torch_config = dataclasses.replace(config, models=dataclasses.replace(
            config.models, mask=ModelSpec(config.models.mask.id)))
    assert "exporting" not in caplog.text  # cached: not exported again
    assert "cannot give output_attentions; torch runs those calls" in caplog.text
    async with InferenceEngine(torch_config) as engine:
        reference = await engine.submit(AttentionRequest("The cat sat on the mat.", "mask"))
    np.testing.assert_allclose(picture.weights, reference.weights, atol=1e-6)


def _track_torch_encoders(monkeypatch) -> list:
    """Weak references to every torch DistilBERT encoder built from now on."""
    import weakref

    from transformers import DistilBertModel

    built: list = []
    real = DistilBertModel.__init__

    def init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        built.append(weakref.ref(self))

    monkeypatch.setattr(DistilBertModel, "__init__", init)
    return built


def _alive(built: list) -> int:
    import gc

    gc.collect()
    return sum(ref() is not None for ref in built)


@needs_ort
async def test_onnxruntime_holds_no_torch_encoder_until_attention_asks(
        tiny_models, tmp_path, onnx_cache, monkeypatch, caplog):
    """Memory: the torch encoder (weights as large as the session's) is not kept beside the
    ONNX session; /attention loads it on first need, once, and still gets torch's maps."""
    monkeypatch.setenv("TLM_BOT_ONNX_CACHE", str(onnx_cache))
    config = config_with(tiny_models, tmp_path, engine={"device": "cpu"}, backend="onnxruntime")
    caplog.set_level(logging.INFO)
    built = _track_torch_encoders(monkeypatch)
    async with InferenceEngine(config) as engine:
        await engine.submit(FillMaskRequest(MASK_TEXTS[0], 3))
        await engine.submit(FeaturesRequest("A fine film.", "mean"))
        await engine.submit(QUESTION)
        mlm = (await engine.registry.get(config.models.mask)).module(Head.MASKED_LM)
        qa = (await engine.registry.get(config.models.qa)).module(Head.QA)
        for encoder in (mlm.base_model, qa.base_model):
            assert type(encoder).__name__ == "OnnxEncoder" and not encoder.torch_loaded
            assert not [m for m in encoder.modules() if isinstance(m, torch.nn.Linear)]
        assert len(built) == 2 and _alive(built) == 0  # the mask and QA models' encoders
        # One word-embedding table: the projector's, looked up in torch for the graph.
        assert mlm.base_model.get_input_embeddings().weight is mlm.vocab_projector.weight
        assert "loading the torch encoder" not in caplog.text

        first = await engine.submit(AttentionRequest("The cat sat on the mat.", "mask"))
        again = await engine.submit(AttentionRequest("The cat sat on the mat.", "mask"))
        assert mlm.base_model.torch_loaded and not qa.base_model.torch_loaded
        assert len(built) == 3 and _alive(built) == 1
        assert caplog.text.count("loading the torch encoder") == 1
        assert (mlm.base_model.torch_encoder.get_input_embeddings()
                is mlm.base_model.get_input_embeddings())
        np.testing.assert_array_equal(first.weights, again.weights)
        filled = await engine.submit(FillMaskRequest(MASK_TEXTS[0], 3))  # still the ONNX path
        assert filled.fillers


@needs_ort
async def test_onnxruntime_with_int8_keeps_top1_fillers(
        tiny_models, tmp_path, float32, onnx_cache, monkeypatch):
    monkeypatch.setenv("TLM_BOT_ONNX_CACHE", str(onnx_cache))
    got = await answers(config_with(tiny_models, tmp_path, engine={"device": "cpu"},
                                    backend="onnxruntime", quantize="int8"))
    assert got["top1"] == float32["top1"]
    assert cosine(got["features"], float32["features"]).min() >= 0.99


def _record_mask_batches(monkeypatch, meet: bool) -> list[dict]:
    """Record each /mask batch the engine runs: its size, tokenizer and the most /mask batches
    running at once. With `meet`, each batch waits (up to 5 s) until a second is running too."""
    import threading

    import core.inference.engine as engine_module
    from core.inference.tasks.fill_mask import FillMaskTask

    real = engine_module.run_batch
    seen: list[dict] = []
    running = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(2, timeout=5)

    def recording(loop, model, batch, threads):
        if not isinstance(batch[0].task, FillMaskTask):
            return real(loop, model, batch, threads)
        with lock:
            running[0] += 1
            seen.append({"size": len(batch), "tokenizer": id(model.tokenizer),
                         "at_once": running[0]})
        try:
            if meet:
                barrier.wait()
            return real(loop, model, batch, threads)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(engine_module, "run_batch", recording)
    return seen


@needs_ort
async def test_an_onnx_lane_runs_a_batch_per_worker_each_with_its_own_tokenizer(
        tiny_models, tmp_path, float32, onnx_cache, monkeypatch):
    """ONNX Runtime's one-thread sessions: a burst is split over both workers, which run
    side by side (each waits for the other at a barrier), with two tokenizers, and the answers
    are the one-lane answers."""
    monkeypatch.setenv("TLM_BOT_ONNX_CACHE", str(onnx_cache))
    config = config_with(tiny_models, tmp_path, engine={"device": "cpu", "workers": 2},
                         backend="onnxruntime")
    seen = _record_mask_batches(monkeypatch, meet=True)
    async with InferenceEngine(config) as engine:
        await engine.registry.get(config.models.mask)
        masks = await asyncio.gather(*(engine.submit(FillMaskRequest(t, 3))
                                       for t in MASK_TEXTS))
    assert sorted(b["size"] for b in seen) == [3, 3]
    assert len({b["tokenizer"] for b in seen}) == 2
    assert [m.fillers[0].token_id for m in masks] == float32["top1"]


async def test_a_torch_lane_runs_one_batch_at_a_time(tiny_models, tmp_path, monkeypatch):
    """torch spreads one batch over the free cores instead: the burst stays one batch, and
    never two /mask batches run at once."""
    config = config_with(tiny_models, tmp_path, engine={"device": "cpu", "workers": 2})
    seen = _record_mask_batches(monkeypatch, meet=False)
    async with InferenceEngine(config) as engine:
        await engine.registry.get(config.models.mask)
        await asyncio.gather(*(engine.submit(FillMaskRequest(t, 3)) for t in MASK_TEXTS * 3))
    assert seen and max(b["at_once"] for b in seen) == 1
    assert seen[0]["size"] == len(MASK_TEXTS) * 3


# --- GPU out of memory ------------------------------------------------------------------------

async def test_out_of_memory_splits_the_batch_until_it_fits(engine, monkeypatch, caplog):
    from core.inference.tasks.fill_mask import FillMaskTask

    sizes = []
    real = FillMaskTask.run_batch

    def small_gpu(self, model, requests, emit):
        sizes.append(len(requests))
        if len(requests) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        if any("alone" in r.text for r in requests):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, model, requests, emit)

    monkeypatch.setattr(FillMaskTask, "run_batch", small_gpu)
    texts = [f"Word {i} is the [MASK] here." for i in range(7)] + ["Too big alone [MASK]."]
    results = await asyncio.gather(*(engine.submit(FillMaskRequest(t)) for t in texts),
                                   return_exceptions=True)
    assert all(len(r.fillers) == 5 for r in results[:7]), results
    assert isinstance(results[7], Overloaded)
    assert sizes[0] == 8 and max(sizes[1:]) <= 4 and 2 in sizes  # halves, not one by one
    assert "ran out of GPU memory; splitting it" in caplog.text


def _peak_kb() -> int:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))


def _wide_copy(tiny_models, tmp_path, family: str):
    """A wider copy of a tiny model (random weights, its tokenizer): the tiny models' weights fit
    in a few pages, a wider copy makes pages measurable. (folder, head)."""
    import shutil

    import transformers

    source = tiny_models.masked_lm if family == "distilbert" else tiny_models.causal_lm
    config = transformers.AutoConfig.from_pretrained(source)
    if family == "distilbert":
        config.update({"dim": 512, "hidden_dim": 2048, "n_heads": 8, "n_layers": 4})
        cls, head = transformers.AutoModelForMaskedLM, Head.MASKED_LM
    else:
        config.update({"n_embd": 512, "n_head": 8, "n_layer": 4})
        cls, head = transformers.AutoModelForCausalLM, Head.CAUSAL_LM
    folder = tmp_path / family
    torch.manual_seed(0)
    cls.from_config(config).save_pretrained(folder)
    for name in source.iterdir():
        if name.name.startswith(("tokenizer", "vocab", "merges", "special")):
            shutil.copy(name, folder / name.name)
    return folder, head


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("family", ["distilbert", "gpt2"])
def test_int8_hands_back_the_float_weights_pages_as_it_quantizes(tiny_models, tmp_path, family):
    """Peak RSS: quantization reads every float weight of the (memory-mapped) checkpoint once.
    The pages it read are handed back layer by layer, so loading an int8 model never holds all
    the float weights at once, and afterwards only a sliver of the checkpoint stays resident;
    the tables still in use read back the checkpoint's very bytes."""
    from core.inference.backends.pages import resident_bytes
    from core.inference.models import load_model

    folder, head = _wide_copy(tiny_models, tmp_path, family)
    float_bytes = (folder / "model.safetensors").stat().st_size
    reference = load_model(ModelSpec(str(folder)), frozenset({head})).module(head)
    table = reference.get_input_embeddings().weight.clone()
    del reference

    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _peak_kb()
    model = load_model(ModelSpec(str(folder), quantize="int8"), frozenset({head})).module(head)
    grown = (_peak_kb() - before) * 1024
    assert "quantized" in type(model.get_output_embeddings()).__module__
    # Before: every float page read and all resident at once beside the int8 copies (> 1x).
    assert grown < 0.6 * float_bytes, (grown, float_bytes)
    assert resident_bytes(str(folder)) < 0.1 * float_bytes
    assert torch.equal(model.get_input_embeddings().weight, table)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_int8_never_hands_back_a_page_someone_wrote_to(tiny_models, tmp_path):
    """A handed-back page comes back as the file's bytes: were any page of the checkpoint's
    mapping privately modified, a table still in use (GPT-2's wte, tied to the quantized
    projection) would silently lose the change. Then nothing of that file is handed back."""
    import transformers

    from core.inference.backends.int8 import quantize_int8

    folder, _ = _wide_copy(tiny_models, tmp_path, "gpt2")
    module = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    table = module.get_input_embeddings().weight
    row = table.shape[0] // 2
    with torch.no_grad():
        table[row] += 1.0  # copy-on-write: that page of the mapping is now this process's own
    expected = table[row].clone()
    quantize_int8(module)
    assert "quantized" in type(module.get_output_embeddings()).__module__
    assert torch.equal(module.get_input_embeddings().weight[row], expected)


@needs_ort
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_onnxruntime_never_reads_the_encoder_weights_in_this_process(
        tiny_models, tmp_path, monkeypatch, quantize):
    """Peak and steady RSS, first start included: the export (which reads every weight and
    writes them out again, several copies at once) runs in a child process, and the torch
    encoder is dropped unread, so this process holds the session and never the checkpoint's
    encoder pages."""
    from core.inference.backends.pages import resident_bytes
    from core.inference.models import load_model

    monkeypatch.setenv("TLM_BOT_ONNX_CACHE", str(tmp_path / "onnx"))  # empty: exports now
    folder, head = _wide_copy(tiny_models, tmp_path, "distilbert")
    float_bytes = (folder / "model.safetensors").stat().st_size
    spec = ModelSpec(str(folder), quantize=quantize, backend="onnxruntime")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _peak_kb()
    model = load_model(spec, frozenset({head})).module(head)
    grown = (_peak_kb() - before) * 1024
    assert type(model.base_model).__name__ == "OnnxEncoder"
    assert list((tmp_path / "onnx").glob("*/encoder.onnx"))
    # What stays: the session (the encoder's weights in float32, a quarter of them in int8).
    # Exported here, the peak was the float weights read, traced and serialized besides.
    assert grown < (1.4 if quantize == "none" else 0.6) * float_bytes, (grown, float_bytes)
    assert resident_bytes(str(folder)) < 0.1 * float_bytes


def test_a_decode_batch_projects_each_step_s_last_positions_in_one_product(tiny_models):
    """The vocabulary projection of a batch's first step runs on a gathered, contiguous last
    position: transformers' `logits_to_keep=1` slice made matmul copy the vocabulary matrix once
    per row in bfloat16 (an `aten::bmm` as large as the batch), and that first step outlasted
    the rest of a 30-token batch."""
    from torch.profiler import ProfilerActivity, profile

    from core.config import LimitsConfig, ModelsConfig
    from core.inference.models import load_model
    from core.inference.tasks.generate import GenerateTask

    model = load_model(ModelSpec(str(tiny_models.causal_lm)),
                       frozenset({Head.CAUSAL_LM, Head.TOKENIZER}),
                       resolve_placement("cpu", "bfloat16"))
    task = GenerateTask(ModelsConfig(), LimitsConfig())
    requests = [GenerateRequest(p, max_new_tokens=3, greedy=True) for p in PROMPTS]
    results = []

    def emit(index, outcome):
        results.append(outcome)

    emit.wanted = lambda index: True
    emit.progress = lambda index: None
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as trace:
        task.run_batch(model, [task.validate(r) for r in requests], emit)
    assert len(results) == len(PROMPTS) and not any(isinstance(r, Exception) for r in results)
    assert not [e for e in trace.events() if e.name == "aten::bmm"]
