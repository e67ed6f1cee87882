"""`quantize = "int8"`: torch dynamic quantization of every `nn.Linear`, on the CPU.

Weights are stored as int8 and activations quantized on the fly per batch, so no calibration
data is needed (tests: same top-1 fillers and greedy text on the tiny models). On the real
MiniLM weights its features stay *outside* the default's tolerance (cosine >= 0.99 at the
minimum: benchmarks/RESULTS.md), so `dtype = "auto"` never picks it: it is an opt-in for CPUs
without bfloat16 units. Tried and not enough (issue 26): keeping the feed-forward and attention
output layers in float32, and SmoothQuant-style per-channel input scales calibrated on SST-2
sentences; what remains is per-tensor activation quantization across tokens with outliers.
On a CPU with AMX, bfloat16 matrix products are faster than int8 ones through this path, so
there bfloat16 (the `auto` choice) is also the fastest path. Before bfloat16 was measured,
it was the cheapest large win on the 2-core machine (issue 16; the figures:
benchmarks/RESULTS.md, "Figures behind the code").

Weights are quantized per output channel, not per tensor: on the real MiniLM-L6 weights that
brought the features much closer to float32's. The remaining error comes from the
feed-forward layers (quantized alone, they lose the most; q/k/attention output barely any):
activations are quantized per tensor at run time, and those layers' inputs have outliers.
Keeping them in float32 would give back most of the speed (they hold most of the FLOPs).

GPT-2 implements its projections as transformers' `Conv1D` (a Linear with the weight stored
transposed), which dynamic quantization does not know: they become `nn.Linear` first (views of
the same weights, not copies).

`torch.ao.quantization` is deprecated in favour of torchao, but still ships and works in the
torch this project pins (<3), has no extra dependency, and is what was measured; its
deprecation warnings are silenced here only, around the quantization loop. The loop is its
`quantize_dynamic` done one Linear at a time (`nnqd.Linear.from_float`, as it swaps modules), so
that each float weight's checkpoint pages can be handed back as soon as its int8 copy exists:
memory never holds all the float weights beside the int8 ones (peak RSS under float32's;
`core.inference.backends.pages`).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from torch import nn

from core.inference.backends.layer_forms import conv1d_to_linear

log = logging.getLogger(__name__)


def quantize_int8(module: Any) -> Any:
    """The module with its Linear layers (and GPT-2's Conv1D) as dynamic int8; in place.

    Layer by layer, each float weight's checkpoint pages handed back as soon as its int8 copy
    exists (`core.inference.backends.pages`), so the float weights are never all resident at
    once: peak RSS stays near the int8 model's. The float tensors that remain (embeddings,
    layer norms, biases) stay views of the checkpoint, resident only where a forward reads them
    (an embedding table: the rows of the tokens seen), as in float32."""
    from torch.ao.nn.quantized import dynamic as quantized_dynamic

    from core.inference.backends.pages import Mappings

    converted = conv1d_to_linear(module)
    pages = Mappings.read()
    swapped: dict[int, nn.Module] = {}  # a Linear registered twice is quantized once
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notices; see the module docstring
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        for parent in list(module.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is not nn.Linear:
                    continue
                if id(child) not in swapped:
                    child.qconfig = qconfig
                    swapped[id(child)] = quantized_dynamic.Linear.from_float(child)
                    # Read whole once; from now on only an embedding table tied to it (the
                    # MLM's vocabulary, GPT-2's wte) is read again, a row at a time.
                    pages.release(child.weight)
                setattr(parent, name, swapped[id(child)])
    log.info("%s: int8 dynamic quantization (%d Conv1D converted to Linear first; %d MB of "
             "checkpoint pages handed back)", type(module).__name__, converted,
             pages.released // 2**20)
    return module
