"""Where the models run: `[engine] device` and `dtype` resolved against this machine.

One decision, made once at engine start and reported by `tlm-bot check-config`: `auto` takes
the first CUDA GPU when torch sees one, and otherwise the CPU. MPS is never chosen automatically
(several ops the tasks use fall back to the CPU there); ask for it by name.

`dtype = "auto"` picks the fastest precision whose answers stay within the project's tolerance
of float32 (features cosine >= 0.99 at minimum over 300 SST-2 sentences and sentiment accuracy
within 0.5 point on the real MiniLM weights: tests/test_fast_default.py):
- on a CUDA GPU, float16 (its tensor cores; the tasks read results back in float32);
- on a CPU with bfloat16 matrix units (Intel AMX `amx_bf16`, or `avx512_bf16`), bfloat16: oneDNN
  runs its Linear layers there at several times float32's speed (benchmarks/RESULTS.md);
- on any other CPU, float32: without those units bfloat16 is emulated and slower than float32.
GPT-2 included: its batched decoding runs faster in bfloat16 than in float32 on such a CPU;
its greedy text can leave float32's after some tokens, and the fastpath benchmark says how
often (benchmarks/RESULTS.md, "/generate at batch 16").
An explicit dtype always wins. float16 on the CPU is refused: most CPU kernels lack it, so it is
slower than float32 and some layers fail; bfloat16 is the CPU's half precision.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DTYPES = ("auto", "float32", "float16", "bfloat16")
#: /proc/cpuinfo flags of the units that run bfloat16 matrix products natively.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Placement:
    """The torch device and dtype every model is moved to, and why they were chosen."""

    device: str
    dtype: str
    reason: str
    #: Threads an ONNX Runtime session may use on the CPU (0 = one: `LocalRunner` runs a batch per
    #: worker side by side instead).
    cpu_threads: int = 0
    #: The dtype was chosen by `auto`, not written in the config (a per-model CPU fast path then
    #: takes precedence over it without a warning).
    dtype_auto: bool = False

    @property
    def is_cpu(self) -> bool:
        return self.device == "cpu"

    @property
    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)

    def __str__(self) -> str:
        return f"{self.device}, {self.dtype} ({self.reason})"


CPU_FLOAT32 = Placement("cpu", "float32", "the default")


def check_device_setting(value: str) -> None:
    """Config-time syntax check (the machine itself is checked by `resolve_placement`)."""
    if not isinstance(value, str) or not DEVICE_PATTERN.fullmatch(value):
        raise ConfigError(
            f"engine.device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {value!r}"
        )


def cpu_bfloat16_units(cpuinfo: str | None = None) -> tuple[str, ...]:
    """Which of `BF16_FLAGS` this CPU has (empty when unknown: not Linux, or no flags line)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ()
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                  if line.startswith(("flags", "Features"))), [])
    return tuple(flag for flag in BF16_FLAGS if flag in flags)


def auto_dtype(device: str, cpuinfo: str | None = None) -> tuple[str, str]:
    """(dtype, why) for `dtype = "auto"` on this device (see the module docstring)."""
    if device.startswith("cuda"):
        return "float16", "float16 on the GPU"
    if device != "cpu":
        return "float32", f"float32 on {device}"
    units = cpu_bfloat16_units(cpuinfo)
    if units:
        return "bfloat16", (f"bfloat16: this CPU has bfloat16 matrix units ({', '.join(units)}), "
                            "answers within tolerance of float32")
    return "float32", ("float32: this CPU has no bfloat16 matrix units (amx_bf16/avx512_bf16), "
                       "so bfloat16 would be slower")


def resolve_placement(device: str = "auto", dtype: str = "auto", *, cpu_threads: int = 0,
                      cpuinfo: str | None = None) -> Placement:
    """The placement for these settings on this machine; `ConfigError` if it cannot run here.
    `cpuinfo`: /proc/cpuinfo's text, for tests (read from the machine when None)."""
    import torch

    check_device_setting(device)
    if dtype not in DTYPES:
        raise ConfigError(f"engine.dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    cuda = torch.cuda.is_available()
    if device == "auto":
        if cuda:
            chosen = "cuda:0"
            why = f"device auto: CUDA GPU found ({torch.cuda.get_device_name(0)})"
        else:
            chosen = "cpu"
            why = "device auto: torch sees no CUDA GPU"
    else:
        chosen = "cuda:0" if device == "cuda" else device
        why = f"device {device} as configured"
    if chosen.startswith("cuda"):
        if not cuda:
            built = "with" if torch.version.cuda else "without"
            raise ConfigError(
                f"engine.device = {device!r}, but torch sees no CUDA GPU (this torch is built "
                f"{built} CUDA). Use device = \"auto\" or \"cpu\"."
            )
        index = int(chosen.split(":")[1])
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"engine.device = {device!r}, but only {torch.cuda.device_count()} CUDA "
                "device(s) exist (numbered from 0)."
            )
    if chosen == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ConfigError("engine.device = 'mps', but torch reports MPS as unavailable here.")
    if dtype == "auto":
        chosen_dtype, dtype_why = auto_dtype(chosen, cpuinfo)
        why += f"; dtype auto: {dtype_why}"
    else:
        chosen_dtype = dtype
        why += f"; dtype {dtype} as configured"
    if chosen == "cpu" and chosen_dtype == "float16":
        raise ConfigError(
            "engine.dtype = 'float16' on the CPU: most CPU kernels lack float16 (slower than "
            "float32, some layers fail). Use 'bfloat16' or 'float32'."
        )
    return Placement(chosen, chosen_dtype, why, cpu_threads, dtype_auto=dtype == "auto")


def usable_cores() -> int:
    """Cores this process may run on (a container or taskset may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
