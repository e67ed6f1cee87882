"""GPU out-of-memory: a batch that does not fit is split in halves and retried, never a crash.

A batch's memory grows with rows x longest row, so a burst of long inputs can exceed what a
GPU has free while each half fits; halving finds the size that fits in log2(n) retries, where
the engine's generic one-by-one retry would run n forwards. One request alone that still does
not fit is answered "busy" (`Overloaded`), as when the queue is full.
"""

from __future__ import annotations


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError)


def release_cached_memory() -> None:
    """Return the failed batch's cached blocks to the GPU before the halves run."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
