"""`quantize = "int8"`: torch dynamic quantization of every `nn.Linear`, on the CPU.

Weights are stored as int8 and activations quantized on the fly per batch, so no calibration
data is needed and the outputs stay close to float32 (tests: same top-1 fillers and greedy
text on the tiny models; benchmarks/RESULTS.md: features cosine and sentiment accuracy on real
MiniLM weights). On the 2-core machine it was the cheapest large win measured before this was
built (issue 16; the figures: benchmarks/RESULTS.md, "Figures behind the code").

Weights are quantized per output channel, not per tensor: on the real MiniLM-L6 weights that
brought the features much closer to float32's. The remaining error comes from the
feed-forward layers (quantized alone, they lose the most; q/k/attention output barely any):
activations are quantized per tensor at run time, and those layers' inputs have outliers.
Keeping them in float32 would give back most of the speed (they hold most of the FLOPs).

GPT-2 implements its projections as transformers' `Conv1D` (a Linear with the weight stored
transposed), which dynamic quantization does not know: they become `nn.Linear` first.

`torch.ao.quantization` is deprecated in favour of torchao, but still ships and works in the
torch this project pins (<3), has no extra dependency, and is what was measured; its
deprecation warnings are silenced here only, around the one call.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


def conv1d_to_linear(module: nn.Module) -> int:
    """Replace every transformers `Conv1D` inside `module` by an equal `nn.Linear`; the count."""
    from transformers.pytorch_utils import Conv1D

    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                in_features, out_features = child.weight.shape
                linear = nn.Linear(in_features, out_features, bias=child.bias is not None)
                with torch.no_grad():
                    linear.weight.copy_(child.weight.t())
                    if child.bias is not None:
                        linear.bias.copy_(child.bias)
                linear.requires_grad_(False)
                setattr(parent, name, linear)
                replaced += 1
    return replaced


def quantize_int8(module: Any) -> Any:
    """The module with its Linear layers (and GPT-2's Conv1D) as dynamic int8; in place."""
    converted = conv1d_to_linear(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notices; see the module docstring
        quantization = torch.ao.quantization
        quantized = quantization.quantize_dynamic(
            module, {nn.Linear: quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8,
            inplace=True,
        )
    log.info("%s: int8 dynamic quantization (%d Conv1D converted to Linear first)",
             type(module).__name__, converted)
    return quantized
