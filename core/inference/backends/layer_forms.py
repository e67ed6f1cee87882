"""GPT-2's layers rewritten into the forms the CPU kernels prefer, same functions.

- Its projections as `nn.Linear`: transformers' `Conv1D` is a Linear with its weight stored
  transposed ([in, out]), which dynamic quantization does not know and oneDNN's bfloat16 products
  run slower on. Used by the int8 path (views of the same weights) and the bfloat16 one (copies
  in Linear's layout).
- Its tanh GELU as torch's one fused op (bfloat16 path): transformers' `NewGELUActivation`
  spells the same formula in five elementwise ops, each a pass over the activations rounded to
  bfloat16 in between.
Measured gains: benchmarks/RESULTS.md, "Figures behind the code".
"""

from __future__ import annotations

from torch import nn


def conv1d_to_linear(module: nn.Module, *, contiguous: bool = False) -> int:
    """Replace every transformers `Conv1D` inside `module` by an equal `nn.Linear`; the count.

    `contiguous`: the Linear gets its own [out, in] copy of the weight instead of a transposed
    view of the Conv1D's [in, out] one. oneDNN's bfloat16 products ran GPT-2's batched decoding
    about a tenth faster on that layout (benchmarks/RESULTS.md, "Figures behind the code")."""
    from transformers.pytorch_utils import Conv1D

    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                in_features, out_features = child.weight.shape
                linear = nn.Linear(in_features, out_features, bias=False, device="meta")
                # For int8, views, not copies: a float copy of every projection, freed once
                # quantized, would stay in the allocator's heap (RSS above float32's), and the
                # view's checkpoint pages can be handed back once quantized (`quantize_int8`).
                weight = child.weight.detach().t()
                linear.weight = nn.Parameter(weight.contiguous() if contiguous else weight,
                                             requires_grad=False)
                linear.bias = (None if child.bias is None
                               else nn.Parameter(child.bias.detach(), requires_grad=False))
                setattr(parent, name, linear)
                replaced += 1
    return replaced


def fuse_tanh_gelu(module: nn.Module) -> int:
    """Replace transformers' `NewGELUActivation` (GPT-2's "gelu_new") inside `module` by
    `nn.GELU(approximate="tanh")`, the same function in one op; the count."""
    from transformers.activations import NewGELUActivation

    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, NewGELUActivation):
                setattr(parent, name, nn.GELU(approximate="tanh"))
                replaced += 1
    return replaced
