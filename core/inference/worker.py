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
from concurrent.futures import ThreadPoolExecutor
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


class WorkerThreads:
    """The engine's worker threads: one *wide* thread that may spread a batch over every core,
    the others one core each.

    Why not one pool whose threads all pick their torch threads per batch: torch's CPU threads
    are GNU OpenMP's (libgomp). Each thread that once ran torch on n > 1 cores keeps n - 1 helper
    threads for life, and once the helpers of all threads outnumber the cores libgomp
    *throttles*: helpers stop spinning between parallel regions and sleep in the kernel. A
    forward is hundreds of small parallel regions, so every forward in the process slowed the
    moment a second thread had used two cores (benchmarks/RESULTS.md, "Figures behind the
    code", "one wide worker"). So only the wide worker ever uses more than one core, and
    model loading runs on one (`core.inference.models.load_model`).

    A batch goes to the wide worker when it is free, with every core no other batch is using;
    else to a narrow worker, with one core. An explicit `[engine] torch_threads` wins
    everywhere (the operator's choice, throttling included).
    """

    def __init__(self, count: int, cores: int, fixed_threads: int = 0) -> None:
        self.cores = max(1, cores)
        self.fixed_threads = fixed_threads
        first = fixed_threads or 1
        self._wide = ThreadPoolExecutor(1, thread_name_prefix="tlm-worker-wide",
                                        initializer=start_worker, initargs=(first,))
        self._narrow_count = max(1, count) - 1
        self._narrow = (ThreadPoolExecutor(self._narrow_count, thread_name_prefix="tlm-worker",
                                           initializer=start_worker, initargs=(first,))
                        if self._narrow_count else None)
        self._free = asyncio.Semaphore(max(1, count))
        self._wide_busy = False
        self._narrow_busy = 0
        #: Batches running now that use a core (a tokenizer-only batch does not count).
        self.running = 0

    async def run(self, fn: Callable[..., None], *args: Any, uses_cores: bool = True) -> None:
        """Run `fn(*args, threads)` on a free worker; `threads` is the torch threads it gets.
        A tokenizer-only batch (`uses_cores=False`) leaves the wide worker to a forward.

        Cancelling the caller does not stop the thread: its worker stays counted as busy (and
        the caller waits) until the thread is free, so a batch routed meanwhile is never told it
        has cores, or a worker, that a running batch still holds."""
        loop = asyncio.get_running_loop()
        async with self._free:
            narrow_free = self._narrow_busy < self._narrow_count
            wide = not self._wide_busy and (uses_cores or not narrow_free)
            threads = self.fixed_threads or (max(1, self.cores - self.running) if wide else 1)
            if wide:
                self._wide_busy = True
            else:
                self._narrow_busy += 1
            self.running += 1 if uses_cores else 0
            try:
                executor = self._wide if wide else self._narrow
                await _until_done(loop.run_in_executor(executor, fn, *args, threads))
            finally:
                self.running -= 1 if uses_cores else 0
                if wide:
                    self._wide_busy = False
                else:
                    self._narrow_busy -= 1

    def shutdown(self) -> None:
        """Wait for the batches in flight; drop those not started."""
        for executor in (self._wide, self._narrow):
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)


async def _until_done(future: asyncio.Future) -> None:
    """Await a thread's future; if cancelled meanwhile, still wait for the thread to finish (a
    thread cannot be stopped), then raise the cancellation. The executor drops a batch that
    never started (shutdown), which ends the wait at once."""
    cancelled = False
    while True:
        try:
            await asyncio.shield(future)
            break
        except asyncio.CancelledError:
            if future.done():
                break
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    future.result()


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


__all__ = ["GPU_FULL", "WorkerThreads", "run_batch", "start_worker"]
