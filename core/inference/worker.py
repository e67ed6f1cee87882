"""What a worker thread does with one batch: the same code in this process and on a Ray replica.

`run_batch` calls the task once for the whole batch and hands each outcome back to the event
loop as soon as it is ready (`call_soon_threadsafe` -> `core.inference.lanes.resolve`, which
skips callers that went away). A batch that fails is retried request by request, so one odd
input cannot take its neighbours down, and a `UserError` raised for one request reaches that
student alone; a batch that runs out of GPU memory is halved instead
(`core.inference.backends.oom`). Nothing a task raises escapes, and no caller is left waiting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from core.errors import Overloaded
from core.i18n import lazy
from core.inference.backends.oom import is_out_of_memory, release_cached_memory
from core.inference.lanes import Pending, resolve
from core.inference.models import LoadedModel
from core.inference.tasks.base import Timings

log = logging.getLogger(__name__)

GPU_FULL = lazy("The bot's GPU is full right now. Please try again in a moment.")


def run_batch(
    loop: asyncio.AbstractEventLoop, model: LoadedModel, batch: list[Pending], threads: int
) -> None:
    """Worker thread: run one batch; on an unexpected error, retry its members one by one."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    delivered: set[int] = set()

    def deliver(group: list[int]):
        def emit(index: int, outcome: Any) -> None:
            position = group[index]
            delivered.add(position)
            item = batch[position]
            if not isinstance(outcome, Exception):
                outcome = replace(outcome, timings=Timings(
                    queued_ms=(started - item.enqueued_at) * 1000,
                    inference_ms=(time.perf_counter() - started) * 1000,
                    batch_size=len(batch),
                ))
            loop.call_soon_threadsafe(resolve, item.future, outcome)

        def progress(index: int) -> Callable[[Any], None] | None:
            """Where to offer request `index`'s partial result now, if its reader asked."""
            stream = batch[group[index]].stream
            return stream.offer if stream is not None and stream.asked else None

        emit.wanted = lambda index: batch[group[index]].live  # type: ignore[attr-defined]
        emit.progress = progress  # type: ignore[attr-defined]
        return emit

    task = batch[0].task

    def fail(position: int, error: Exception | None = None) -> None:
        """Fail one caller with what the task raised, so a `UserError` still reaches them."""
        delivered.add(position)
        if error is None:
            error = RuntimeError(f"{task.name} produced no result")
        loop.call_soon_threadsafe(resolve, batch[position].future, error)

    def run_halving_on_oom(group: list[int]) -> None:
        """Run `group`; on GPU out-of-memory run each half instead."""
        try:
            task.run_batch(model, [batch[p].request for p in group], deliver(group))
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            release_cached_memory()
            left = [p for p in group if p not in delivered]
            if len(left) <= 1:  # one request that does not fit alone: "busy", as a full queue
                for position in left:
                    log.warning("%s: one request ran out of GPU memory", task.name)
                    fail(position, Overloaded(GPU_FULL))
                return
            log.warning("%s batch of %d ran out of GPU memory; splitting it", task.name, len(left))
            half = len(left) // 2
            run_halving_on_oom(left[:half])
            run_halving_on_oom([p for p in left[half:] if p not in delivered])

    with torch.inference_mode():
        try:
            run_halving_on_oom(list(range(len(batch))))
        except Exception as exc:
            if len(batch) == 1:
                log.exception("%s failed for one request", task.name)
                fail(0, exc)
                return
            log.warning("%s batch of %d failed; retrying one by one", task.name, len(batch),
                        exc_info=True)
            for position in range(len(batch)):
                if position in delivered:
                    continue
                try:
                    task.run_batch(model, [batch[position].request], deliver([position]))
                except Exception as exc:
                    log.exception("%s failed for one request", task.name)
                    fail(position, exc)
    for position in range(len(batch)):
        if position not in delivered:  # a task bug: never leave a caller waiting forever
            fail(position)


def start_worker(threads: int) -> None:
    """A worker thread's initializer: its torch threads, and a lower CPU priority than the
    event loop.

    With both cores busy in torch, the loop thread otherwise waits for a core like any other
    thread; a nicer worker lets the scheduler run the loop first (Linux: per-thread nice).
    """
    import torch

    torch.set_num_threads(threads)
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 5)
    except (AttributeError, OSError):  # not Linux, or not permitted: only slower to react
        pass


__all__ = ["GPU_FULL", "run_batch", "start_worker"]
