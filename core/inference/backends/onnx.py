"""`backend = "onnxruntime"`: the encoder of a model runs in ONNX Runtime, on the CPU.

What moves: the encoder's transformer (position embeddings, embedding layer norm and the
layers: nearly all of a /mask batch's time). The word-embedding lookup stays in torch, with the
one table the head already holds (DistilBERT's vocabulary projection is tied to it), so the
table is not kept twice; the heads (the vocabulary projection, which /mask runs only at the
mask positions; the QA span head) stay in torch too. Every task, the batcher and the results are
unchanged: `OnnxEncoder` is a drop-in module for the encoder. GPT-2 is not exported: decoding
with a KV cache through ONNX needs a graph per cache shape; `/generate` keeps torch (use
`quantize = "int8"` there).

Memory (no path above float32's RSS, issue 26): the torch encoder is not kept beside the
session. Whatever the graph cannot give (attention maps for `/attention`, per-layer hidden
states for `/contextsim` and `/neighbours`) loads the torch encoder from the checkpoint on the
first such call (`OnnxEncoder.torch_encoder`), said once in the log, and keeps it from then on.
The export itself runs in a child process (`python -m core.inference.backends.onnx`), so its
transient memory (the traced graph, the serialized weights, the quantizer's copies) and the
checkpoint pages it reads never count against the serving process, first start included.

Export is done once and cached beside the Hugging Face cache (`<HF_HOME>/tlm-bot-onnx/`),
keyed by model id, revision (the resolved commit when the hub gave one, else the local files'
size and time), opset, graph layout and precision; a half-written file is never used (written
aside, then renamed).

Why `torch.onnx` and not optimum: optimum's ONNX exporter (`optimum-onnx` 0.1) requires
transformers < 4.58 and this project runs transformers 5. Of torch's two exporters, measured
on the real-size DistilBERT encoder, the TorchScript one exported faster and its graph ran
faster than the torch.export ("dynamo") one's, both matching torch (benchmarks/RESULTS.md,
"Figures behind the code"). So the TorchScript exporter, with its deprecation notice silenced
around the call (the dynamo one is the fallback if it goes away).

Not used: ONNX Runtime's offline transformer optimizer (`onnxruntime.transformers.optimizer`,
model type "bert"). It fuses attention, layer norms and GELU, but on this project's CPUs the
fused graphs ran slower than the plain export under the session's own (online) fusions, in
float32 and before int8 quantization alike (benchmarks/RESULTS.md, "Figures behind the code").
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import logging
import os
import re
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

OPSET = 17
#: The exported graph's layout: word embeddings in, last hidden state out. Part of the cache
#: key, so a graph of an older layout (token ids in) is never loaded by this code.
GRAPH = "embeds"
CACHE_ENV = "TLM_BOT_ONNX_CACHE"


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cache_dir() -> Path:
    """`$TLM_BOT_ONNX_CACHE`, else `tlm-bot-onnx/` beside the Hugging Face hub cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).parent / "tlm-bot-onnx"


def export_key(model_id: str, revision: str, config: Any, *, int8: bool) -> str:
    """A folder name that changes whenever the weights, the opset, the graph or the precision
    change."""
    commit = getattr(config, "_commit_hash", None)
    if not commit:
        local = Path(model_id)
        files = sorted(local.glob("*.safetensors")) + sorted(local.glob("*.bin"))
        stamp = ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
        commit = hashlib.sha256(f"{local.resolve()}|{stamp}".encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]+", "--", model_id.strip("/"))[-80:]
    return (f"{name}--{revision}--{commit[:16]}--opset{OPSET}--{GRAPH}--"
            f"{'int8pc' if int8 else 'fp32'}")


class _EncoderGraph(nn.Module):
    """What is exported: word embeddings and mask in, last hidden state out."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(inputs_embeds=inputs_embeds,
                            attention_mask=attention_mask).last_hidden_state


_EXPORT_LOCK = threading.Lock()


def export_encoder(model_id: str, revision: str, encoder_class: str, config: Any, *,
                   int8: bool) -> Path:
    """The cached ONNX file of this checkpoint's encoder, exported (and quantized) the first
    time by a child process (see the module docstring for why not here). The child reads the
    checkpoint from local files only: this process has just loaded it from them (or from the
    cache it downloaded to)."""
    folder = cache_dir() / export_key(model_id, revision, config, int8=int8)
    target = folder / "encoder.onnx"
    with _EXPORT_LOCK:
        if target.exists():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        log.info("exporting the %s encoder to ONNX (once, in a child process; cached in %s)",
                 model_id, folder)
        job = {"model_id": model_id, "revision": revision, "encoder_class": encoder_class,
               "target": str(target), "int8": int8}
        # The child imports this package from wherever this process did.
        path = os.pathsep.join(p for p in sys.path if p and Path(p).is_dir())
        done = subprocess.run(
            [sys.executable, "-m", __name__, json.dumps(job)], capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": path}, check=False,
        )
        if done.returncode or not target.exists():
            raise RuntimeError(f"exporting {model_id} to ONNX failed: "
                               f"{done.stderr.strip()[-1500:]}")
    return target


def _export_here(job: dict) -> None:
    """The child's work: load the bare encoder, export it, quantize it if asked, publish."""
    import transformers

    target = Path(job["target"])
    encoder = getattr(transformers, job["encoder_class"]).from_pretrained(
        job["model_id"], revision=job["revision"], trust_remote_code=False, local_files_only=True,
    ).eval()
    written = target.with_name(f"encoder.fp32.{os.getpid()}.onnx")
    _export(encoder, written)
    del encoder
    if job["int8"]:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        aside = target.with_name(f"encoder.int8.{os.getpid()}.onnx")
        # Per channel, as the torch int8 path (see core/inference/backends/int8.py for why).
        quantize_dynamic(str(written), str(aside), weight_type=QuantType.QInt8,
                         per_channel=True)
        written.unlink()
        written = aside
    os.replace(written, target)


def _export(encoder: nn.Module, path: Path) -> None:
    graph = _EncoderGraph(encoder).eval()
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 0, 0, 0]])
    mask = (ids != 0).long()
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        embeds = encoder.get_input_embeddings()(ids)
        torch.onnx.export(
            graph, (embeds, mask), str(path),
            input_names=["inputs_embeds", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"inputs_embeds": axes, "attention_mask": axes,
                          "last_hidden_state": axes},
            opset_version=OPSET, dynamo=False,
        )


#: Session fusions left out. SkipLayerNormalization (residual add + layer norm in one kernel):
#: on the int8 DistilBERT graph the fused kernel made a batch ~15% slower in CPU time than the
#: plain Add and LayerNormalization it replaces, with the same answers; on the float32 graph it
#: made no difference (benchmarks/RESULTS.md, "Figures behind the code").
DISABLED_FUSIONS = ["SkipLayerNormFusion"]


def session(path: Path, threads: int, *, int8: bool) -> Any:
    """An ORT CPU session. Idle threads sleep instead of spinning: a spinning pool burns the
    core a neighbouring lane (or another process on a shared machine) needs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not int8:
        # Prepacking keeps a second, repacked copy of each float32 weight matrix beside the
        # original: faster float32 products, but the session then holds more than torch's
        # float32 model does (RSS above float32's). The int8 graph is a quarter of that size,
        # so there the speed is kept.
        options.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=DISABLED_FUSIONS)


def torch_loader(model_id: str, revision: str, encoder_class: str, config: Any
                 ) -> Callable[[], nn.Module]:
    """Loads the checkpoint's torch encoder again, on demand (from local files: the model was
    loaded from them, or from the cache, a moment before)."""

    def load() -> nn.Module:
        import transformers

        from core.inference.load_lock import LOAD_LOCK

        with LOAD_LOCK:  # transformers' loading is not thread-safe
            encoder = getattr(transformers, encoder_class).from_pretrained(
                model_id, revision=revision, config=config, trust_remote_code=False,
                local_files_only=True,
            )
        encoder.eval()
        encoder.requires_grad_(False)
        return encoder

    return load


class OnnxEncoder(nn.Module):
    """Stands in for a transformers encoder: a plain forward runs the ONNX graph on the word
    embeddings looked up here; anything else goes to the torch encoder, loaded on first need."""

    def __init__(self, config: Any, word_embeddings: nn.Module, ort_session: Any, label: str,
                 load_torch: Callable[[], nn.Module], torch_class: type) -> None:
        super().__init__()
        self.config = config
        self.word_embeddings = word_embeddings
        self._session = ort_session
        self._label = label
        self._load_torch = load_torch
        self._torch_class = torch_class
        self._torch: nn.Module | None = None
        self._torch_lock = threading.Lock()
        self._fallbacks_logged: set[str] = set()

    @property
    def torch_encoder(self) -> nn.Module:
        """The full torch encoder, loaded on the first call that needs it and kept."""
        if self._torch is None:
            with self._torch_lock:
                if self._torch is None:
                    log.info("%s: loading the torch encoder (attention maps, hidden states)",
                             self._label)
                    encoder = self._load_torch()
                    encoder.set_input_embeddings(self.word_embeddings)  # one table, not two
                    self._torch = encoder
        return self._torch

    @property
    def torch_loaded(self) -> bool:
        return self._torch is not None

    def get_input_embeddings(self) -> nn.Module:
        return self.word_embeddings

    def set_attn_implementation(self, implementation: Any) -> None:
        self.torch_encoder.set_attn_implementation(implementation)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # a CPU path

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            # What the torch encoder's class offers is had from it: a plain class attribute
            # (`main_input_name`) as is, a method (`get_head_mask`) from the torch encoder,
            # loading it. Anything else (`qconfig`, probed by torch.ao) is absent here as there.
            cls = self.__dict__.get("_torch_class")
            if cls is None or name.startswith("_") or not hasattr(cls, name):
                raise
            value = inspect.getattr_static(cls, name)
            if not callable(value) and not hasattr(value, "__get__"):
                return value
            return getattr(self.torch_encoder, name)

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, **kwargs: Any) -> Any:
        asked = sorted(k for k, v in kwargs.items()
                       if v is not None and v is not False and k != "return_dict")
        if asked or input_ids is None:
            why = ", ".join(asked) or "inputs_embeds"
            if why not in self._fallbacks_logged:
                self._fallbacks_logged.add(why)
                log.info("%s: the ONNX encoder cannot give %s; torch runs those calls", self._label,
                         why)
            return self.torch_encoder(input_ids=input_ids, attention_mask=attention_mask,
                                      **kwargs)
        from transformers.modeling_outputs import BaseModelOutput

        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds = self.word_embeddings(input_ids)
        (hidden,) = self._session.run(["last_hidden_state"], {
            "inputs_embeds": embeds.float().numpy(),
            "attention_mask": attention_mask.to(torch.int64).numpy(),
        })
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))


def main(argv: list[str] | None = None) -> int:
    """The export child: `python -m core.inference.backends.onnx '<job as JSON>'`."""
    # No description: an internal entry point, started by `export_encoder` only.
    parser = argparse.ArgumentParser(prog="python -m core.inference.backends.onnx")
    parser.add_argument("job")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    _export_here(json.loads(args.job))
    return 0


if __name__ == "__main__":
    sys.exit(main())
