"""How a loaded model runs: device and dtype, and the opt-in CPU fast paths.

The model registry loads each module with transformers, then hands it to `prepare` (the one
seam): it is moved to the configured device and dtype, or, on the CPU, turned into its fast
path when the model's config asks (`quantize = "int8"`: `core.inference.backends.int8`;
`backend = "onnxruntime"`: `core.inference.backends.onnx`). Tasks never know which: they build their
inputs on `LoadedModel.device` and read results back as torch tensors.

The fast paths are CPU paths: on a GPU they are ignored (said in the log and by
`tlm-bot check-config`) and the model runs on torch in the configured dtype. They run in
float32, whatever `engine.dtype` says.
"""

from __future__ import annotations

import logging
from typing import Any

from core.config import Config, ModelSpec
from core.inference.backends.placement import (
    CPU_FLOAT32,
    Placement,
    resolve_placement,
    usable_cores,
)

log = logging.getLogger(__name__)

__all__ = ["Placement", "CPU_FLOAT32", "resolve_placement", "prepare", "describe_runtime",
           "usable_cores"]


def prepare(module: Any, spec: ModelSpec, placement: Placement, *, label: str = "") -> Any:
    """The module ready to serve: placed, quantized and/or behind ONNX Runtime."""
    label = label or str(spec)
    fast = spec.quantize != "none" or spec.backend != "torch"
    if not placement.is_cpu:
        if fast:
            log.warning("%s: quantize/backend are CPU fast paths; on %s it runs on torch in %s",
                        label, placement.device, placement.dtype)
        return module.to(device=placement.device, dtype=placement.torch_dtype)
    if not fast:
        if placement.dtype != "float32":
            module = module.to(dtype=placement.torch_dtype)
            from core.inference.backends.layer_forms import conv1d_to_linear, fuse_tanh_gelu

            conv1d_to_linear(module, contiguous=True)  # GPT-2's layers, in oneDNN's forms
            fuse_tanh_gelu(module)
        return module
    if placement.dtype != "float32" and not placement.dtype_auto:
        log.warning("%s: the CPU fast path runs in float32 (engine.dtype = %s ignored for it)",
                    label, placement.dtype)
    onnx_encoder = None
    if spec.backend == "onnxruntime":
        onnx_encoder = _onnx_encoder(module, spec, placement, label)
    if onnx_encoder is not None:
        # First: the torch encoder's weights are then never read here (nor quantized), and
        # nothing but the word-embedding table keeps them.
        module = _swap_encoder(module, onnx_encoder)
    if spec.quantize == "int8":
        from core.inference.backends.int8 import quantize_int8

        module = quantize_int8(module)
    return module


def is_decoder(module: Any) -> bool:
    """A causal LM (GPT-2 and kin), as opposed to an encoder."""
    config = getattr(module, "config", None)
    return bool(getattr(config, "is_decoder", False)
                or getattr(config, "model_type", "") in _DECODERS)


def _onnx_encoder(module: Any, spec: ModelSpec, placement: Placement, label: str) -> Any:
    """A function of the torch encoder giving its `OnnxEncoder` (None: this one stays torch)."""
    from core.inference.backends import onnx

    if is_decoder(module):
        log.info("%s: the onnxruntime backend covers encoders; this decoder runs on torch%s",
                 label, " (int8)" if spec.quantize == "int8" else "")
        return None
    if not onnx.available():
        raise RuntimeError(
            "backend = 'onnxruntime' needs the onnxruntime package: pip install 'tlm-bot[onnx]'"
        )
    encoder = module.base_model
    kind = type(encoder).__name__
    int8 = spec.quantize == "int8"
    path = onnx.export_encoder(spec.id, spec.revision, kind, encoder.config, int8=int8)
    # One thread per session unless told (a Ray replica's CPUs): two one-thread batches side by
    # side beat one batch on two threads (`core.inference.engine.LocalRunner`;
    # benchmarks/RESULTS.md, "Figures behind the code", "two batches of one lane").
    threads = placement.cpu_threads or 1
    log.info("%s: encoder runs in ONNX Runtime (%s, %d thread(s))", label, path.parent.name,
             threads)
    ort_session = onnx.session(path, threads, int8=int8)
    load_torch = onnx.torch_loader(spec.id, spec.revision, kind, encoder.config)

    def make(torch_encoder: Any) -> Any:
        return onnx.OnnxEncoder(torch_encoder.config, torch_encoder.get_input_embeddings(),
                                ort_session, label, load_torch, type(torch_encoder))

    return make


def _swap_encoder(module: Any, make: Any) -> Any:
    """Put the ONNX encoder where the head module keeps its encoder (or return it, bare)."""
    prefix = getattr(module, "base_model_prefix", "")
    if prefix and hasattr(module, prefix) and module.base_model is not module:
        setattr(module, prefix, make(getattr(module, prefix)))
        return module
    return make(module)  # an encoder loaded on its own (`AutoModel`)


_DECODERS = {"gpt2", "gpt_neo", "gptj", "llama", "mistral", "qwen2", "opt", "phi", "gemma"}


def describe_runtime(config: Config) -> list[str]:
    """What `tlm-bot check-config` prints: the device and dtype chosen and why, and each model's
    path. A device this machine lacks is reported, not raised: the file may be for another."""
    from core.errors import ConfigError

    engine = config.engine
    try:
        placement = resolve_placement(engine.device, engine.dtype)
        lines = [f"runtime: {placement.device}, {placement.dtype} ({placement.reason})"]
    except ConfigError as exc:
        return [f"runtime: cannot run here: {exc}"]
    seen: set[ModelSpec] = set()
    for role in ("mask", "qa", "generate", "features"):
        spec = getattr(config.models, role)
        if spec in seen or (spec.quantize == "none" and spec.backend == "torch"):
            continue
        seen.add(spec)
        if not placement.is_cpu:
            lines.append(f"models.{role}: quantize/backend ignored on {placement.device} "
                         f"(CPU fast paths); torch in {placement.dtype}")
            continue
        parts = []
        if spec.backend == "onnxruntime":
            from core.inference.backends import onnx

            if not onnx.available():
                parts.append("backend onnxruntime NOT INSTALLED (pip install 'tlm-bot[onnx]')")
            else:
                precision = "int8" if spec.quantize == "int8" else "float32"
                parts.append(f"encoder in ONNX Runtime ({precision}; the torch encoder is loaded "
                             "only when attention maps or hidden states are asked for; decoders "
                             "stay torch)")
        if spec.quantize == "int8":
            parts.append("torch layers int8 (dynamic quantization)")
        lines.append(f"models.{role}: " + "; ".join(parts))
    return lines
