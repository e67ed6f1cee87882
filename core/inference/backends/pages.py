"""Checkpoint pages a fast path has read and will not read again, handed back to the kernel.

transformers loads safetensors memory-mapped: a tensor is a view into a private mapping of the
file, and a page of it becomes resident (counted in the process's RSS) once anything reads it,
staying so while the mapping lives. int8 quantization reads every float weight once to make
its int8 copy; without this, all those pages stay resident until the last view of the file goes
(peak RSS: every float page plus the int8 copies, above float32's own RSS).

`release(tensor)` drops this process's pages under one tensor (`madvise(MADV_DONTNEED)`, on
the whole pages inside the tensor, so no neighbour loses a page). The file is not touched: a
later read of those bytes faults them in again from the page cache, the very bytes that were
there, under two rules:
- only ranges inside a mapping of a `*.safetensors` file are released (never heap memory,
  which the allocator may have handed to someone else);
- only while that mapping has no privately modified page (`Anonymous: 0 kB` in
  /proc/self/smaps, read before the first release; quantization only reads): a page someone
  wrote to would come back as the file's bytes, so then nothing of that file is released.
Linux only; elsewhere `Mappings.read()` finds none and nothing is released.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MADV_DONTNEED = 4
PAGE = mmap.PAGESIZE


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    path: str
    #: No page of it privately modified: every page can be faulted in again from the file.
    clean: bool


class Mappings:
    """This process's mappings of checkpoint files, read once (they do not move while a model
    is being prepared under the load lock)."""

    def __init__(self, mappings: list[Mapping]) -> None:
        self.mappings = mappings
        self.released = 0

    @classmethod
    def read(cls) -> Mappings:
        if not sys.platform.startswith("linux"):
            return cls([])
        try:
            text = Path("/proc/self/smaps").read_text()
        except OSError:
            return cls([])
        found, current, anonymous = [], None, 0
        for line in text.splitlines():
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                if current is not None:
                    found.append(Mapping(*current, clean=anonymous == 0))
                current, anonymous = None, 0
                if len(head) >= 6 and head[5].endswith(".safetensors"):
                    start, end = (int(x, 16) for x in head[0].split("-"))
                    current = (start, end, head[5])
            elif current is not None and line.startswith("Anonymous:"):
                anonymous = int(head[1])
        if current is not None:
            found.append(Mapping(*current, clean=anonymous == 0))
        return cls(found)

    def release(self, tensor: Any) -> int:
        """Drop the resident pages under `tensor`; the bytes released (0 if none may be)."""
        if tensor is None or not self.mappings or tensor.device.type != "cpu":
            return 0
        start = tensor.data_ptr()
        extent = 1 + sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride())
                         if size > 0) if tensor.numel() else 0
        end = start + extent * tensor.element_size()
        mapping = next((m for m in self.mappings if m.start <= start and end <= m.end), None)
        if mapping is None or not mapping.clean:
            return 0
        first = -(-start // PAGE) * PAGE
        last = end // PAGE * PAGE
        if last <= first:
            return 0
        if _libc().madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first),
                           MADV_DONTNEED) != 0:
            log.debug("madvise failed on %s (errno %d)", mapping.path, ctypes.get_errno())
            return 0
        self.released += last - first
        return last - first


_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        _LIBC.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return _LIBC


def resident_bytes(path_part: str) -> int:
    """Resident bytes of this process's mappings whose path contains `path_part` (tests,
    benchmarks)."""
    total, counting = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):
            counting = len(head) >= 6 and path_part in head[5]
        elif counting and line.startswith("Rss:"):
            total += int(head[1]) * 1024
    return total
