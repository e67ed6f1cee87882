"""Whether measured figures may go into benchmarks/RESULTS.md, and the one writer that puts them.

The benchmarks run on a 2-core machine shared with other jobs. A figure taken while neighbours
keep the cores busy measures them as much as the code (a Ray "2 replicas 1.84x" taken at load ~16
was later 0.84x on a quiet machine), so a section's figures are published only if the machine was
quiet when it ran: a 1-minute load average of at most `QUIET_LOAD` (2 cores: under one core busy
elsewhere, with room for the noise of a shell or an editor).

The load is read *before* each section starts, idle (`settled_load`): the 1-minute average also
counts this benchmark's own threads, and a section that keeps both cores busy drives it to ~2 by
itself; reading it after the section would refuse every figure. So before each section the
benchmark waits, doing nothing, for its own share from the previous section to decay (up to
`SETTLE_S`); what is left is the neighbours'. The load after each section is recorded beside the
figures, for the reader to judge.

`write_block` is the only function that writes RESULTS.md. It refuses (`NoisyMachine`, nothing
written) when any load it is given is above `QUIET_LOAD`, unless the caller passes
`record_noisy=True` (each script's `--record-noisy`): then the block is written with a warning
line naming the load, so a noisy figure is never mistaken for a quiet one.

RESULTS.md is made of blocks, each owned by one script and delimited by `<!-- NAME:start -->` /
`<!-- NAME:end -->` markers: `write_block` replaces only its own, so each measured number has one
writer and one place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

#: The highest 1-minute load average at which figures are published (2 cores).
QUIET_LOAD = 1.5
#: How long a section waits, idle, for the load to fall to `QUIET_LOAD` before it starts.
SETTLE_S = 90.0


class NoisyMachine(RuntimeError):
    """Figures measured at a load above `QUIET_LOAD`: not written (re-run on a quiet machine)."""


def loadavg() -> float:
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def settled_load(max_wait_s: float = SETTLE_S, *, read: Callable[[], float] = loadavg,
                 sleep: Callable[[float], None] = time.sleep, poll_s: float = 5.0) -> float:
    """The load before a section: wait idle (at most `max_wait_s`) until it is at most
    `QUIET_LOAD`, then return it (or the last reading if it never fell that far)."""
    waited = 0.0
    load = read()
    while load > QUIET_LOAD and waited < max_wait_s:
        if waited == 0:
            log.info("load %.2f > %.1f: waiting up to %.0f s for it to settle", load, QUIET_LOAD,
                     max_wait_s)
        sleep(poll_s)
        waited += poll_s
        load = read()
    return load


def noisy_label(loads: Sequence[float]) -> str | None:
    """Why figures taken at these loads are not quiet ones; None when they are."""
    worst = max(loads, default=0.0)
    if worst <= QUIET_LOAD:
        return None
    return (f"**Not a quiet machine: measured at a 1-minute load average up to {worst:.1f} "
            f"(> {QUIET_LOAD}); recorded with --record-noisy. These figures measure the "
            "neighbours as much as the code: re-run on a quiet machine before relying on them.**")


def write_block(path: Path, name: str, text: str, *, loads: Sequence[float],
                record_noisy: bool = False) -> None:
    """Replace block `name` of the file at `path` (append it if absent), keeping the rest.

    `loads`: the 1-minute load average before each section whose figures `text` holds (empty
    only for figures that do not depend on the machine's speed, e.g. mutation kill ratios).
    Raises `NoisyMachine`, writing nothing, if one is above `QUIET_LOAD` and not `record_noisy`.
    """
    label = noisy_label(loads)
    if label is not None:
        if not record_noisy:
            raise NoisyMachine(
                f"not writing the {name!r} figures into {path.name}: the 1-minute load average "
                f"was {max(loads):.2f} (> {QUIET_LOAD}) while they were measured, so they "
                "measure the neighbours. Re-run on a quiet machine (check `uptime`), or pass "
                "--record-noisy to write them labelled as noisy."
            )
        text = _labelled(text, label)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text.strip()}\n{end}"
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if start in current and end in current:
        head, _, rest = current.partition(start)
        _, _, tail = rest.partition(end)
        current = head + block + tail
    elif current.strip():
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    else:
        current = block + "\n"
    path.write_text(current, encoding="utf-8")


def _labelled(text: str, label: str) -> str:
    """The warning right under the block's first heading (or first, if it has none)."""
    lines = text.strip().splitlines()
    if lines and lines[0].startswith("#"):
        return "\n".join([lines[0], "", label, *lines[1:]])
    return "\n".join([label, "", *lines])


__all__ = ["QUIET_LOAD", "SETTLE_S", "NoisyMachine", "loadavg", "noisy_label", "settled_load",
           "write_block"]
