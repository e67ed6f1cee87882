"""`backend = "onnxruntime"`: the encoder of a model runs in ONNX Runtime, on the CPU.

What moves: the bare encoder (`base_model`: embeddings + transformer layers, nearly all of a
/mask batch's time). The heads (DistilBERT's vocabulary projection, which /mask runs only at the
mask positions; the QA span head) stay in torch, so every task, the batcher and the results are
unchanged: `OnnxEncoder` is a drop-in module for the encoder. Whatever the exported graph cannot
give (attention maps for `/attention`, per-layer hidden states for `/contextsim`) runs the
original torch encoder for that call, said once per kind in the log. GPT-2 is not exported:
decoding with a KV cache through ONNX needs a graph per cache shape; `/generate` keeps torch
(use `quantize = "int8"` there).

Export is done once and cached beside the Hugging Face cache (`<HF_HOME>/tlm-bot-onnx/`),
keyed by model id, revision (the resolved commit when the hub gave one, else the local files'
size and time), opset and precision; a half-written file is never used (written aside, then
renamed).

Why `torch.onnx` and not optimum: optimum's ONNX exporter (`optimum-onnx` 0.1) requires
transformers < 4.58 and this project runs transformers 5. Of torch's two exporters, measured
on the real-size DistilBERT encoder, the TorchScript one exported faster and its graph ran
faster than the torch.export ("dynamo") one's, both matching torch (benchmarks/RESULTS.md,
"Figures behind the code"). So the TorchScript exporter, with its deprecation notice silenced
around the call (the dynamo one is the fallback if it goes away).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

OPSET = 17
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
    """A folder name that changes whenever the weights, the opset or the precision change."""
    commit = getattr(config, "_commit_hash", None)
    if not commit:
        local = Path(model_id)
        files = sorted(local.glob("*.safetensors")) + sorted(local.glob("*.bin"))
        stamp = ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
        commit = hashlib.sha256(f"{local.resolve()}|{stamp}".encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]+", "--", model_id.strip("/"))[-80:]
    return f"{name}--{revision}--{commit[:16]}--opset{OPSET}--{'int8pc' if int8 else 'fp32'}"


class _EncoderGraph(nn.Module):
    """What is exported: ids and mask in, last hidden state out."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


_EXPORT_LOCK = threading.Lock()


def export_encoder(encoder: nn.Module, model_id: str, revision: str, *, int8: bool) -> Path:
    """The cached ONNX file of this encoder, exporting (and quantizing) it the first time."""
    folder = cache_dir() / export_key(model_id, revision, encoder.config, int8=int8)
    target = folder / "encoder.onnx"
    with _EXPORT_LOCK:
        if target.exists():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        fp32 = folder / f"encoder.fp32.{os.getpid()}.onnx"
        log.info("exporting the %s encoder to ONNX (once; cached in %s)", model_id, folder)
        _export(encoder, fp32)
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            aside = folder / f"encoder.int8.{os.getpid()}.onnx"
            # Per channel, as the torch int8 path (see core/inference/backends/int8.py for why).
            quantize_dynamic(str(fp32), str(aside), weight_type=QuantType.QInt8,
                             per_channel=True)
            fp32.unlink()
            fp32 = aside
        os.replace(fp32, target)
    return target


def _export(encoder: nn.Module, path: Path) -> None:
    graph = _EncoderGraph(encoder).eval()  # eval: export restores the mode it found, recursively
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 0, 0, 0]])
    mask = (ids != 0).long()
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            graph, (ids, mask), str(path),
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=OPSET, dynamo=False,
        )
    encoder.eval()


def session(path: Path, threads: int) -> Any:
    """An ORT CPU session. Idle threads sleep instead of spinning: a spinning pool burns the
    core a neighbouring lane (or another process on a shared machine) needs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxEncoder(nn.Module):
    """Stands in for a transformers encoder; anything but a plain forward goes to torch."""

    def __init__(self, torch_encoder: nn.Module, ort_session: Any, label: str) -> None:
        super().__init__()
        self.torch_encoder = torch_encoder
        self._session = ort_session
        self._label = label
        self._fallbacks_logged: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        # config, get_input_embeddings, set_attn_implementation...: the torch encoder's.
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("torch_encoder"), name)

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
        (hidden,) = self._session.run(["last_hidden_state"], {
            "input_ids": input_ids.to(torch.int64).numpy(),
            "attention_mask": attention_mask.to(torch.int64).numpy(),
        })
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))
