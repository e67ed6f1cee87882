"""Child processes that end when the bot ends, even after a `kill -9`.

A process the bot spawns (the picture drawers) is re-parented to init when the bot dies
without cleaning up, and nothing tells it: a `spawn` worker of a `ProcessPoolExecutor` holds
both ends of its call-queue pipe, so it never reads EOF, and multiprocessing's
`resource_tracker` lives as long as any child holds its pipe. Before this module, every
`kill -9` left a pair of orphans (benchmarks/RESULTS.md, "Figures behind the code").

Two guards, both installed by `exit_with_parent` in the child at start:
- Linux: `prctl(PR_SET_PDEATHSIG, SIGKILL)`: the kernel kills the child the instant its
  parent dies. (Precisely: when the *thread* that spawned it ends; the engine spawns its
  drawers from the event-loop thread, which lives as long as the engine.)
- Everywhere: a daemon thread polls the parent's pid twice a second and exits the process
  when it has changed (the child was re-parented), in case prctl is unavailable.
Once the drawers are gone the resource tracker reads EOF and exits by itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
#: How often the fallback watchdog looks at the parent pid.
POLL_S = 0.5


def exit_with_parent(parent_pid: int) -> None:
    """Make this (child) process die when `parent_pid` does. Call first thing in the child."""
    if os.getppid() != parent_pid:  # the parent died before we got here
        os._exit(0)
    _set_parent_death_signal()
    threading.Thread(target=_watch, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _set_parent_death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):  # an unusual libc: the watchdog still covers it
        return False
    return True


def _watch(parent_pid: int) -> None:
    stop = threading.Event()
    while not stop.wait(POLL_S):
        if os.getppid() != parent_pid:
            os._exit(0)


__all__ = ["exit_with_parent"]
