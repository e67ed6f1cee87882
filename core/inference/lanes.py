"""A model's lane: a bounded queue of admitted requests, and the batcher that drains it.

Every lane follows the same life of a request (after TEI's `core/src/queue.rs` and Ray Serve's
`@serve.batch`): admit or refuse with `Overloaded` (callers that went away hold no place) ->
wait for company (up to the task's row budget or `max_wait_ms`) -> hand the batch to the lane's
`BatchRunner` -> each caller's future is settled with `resolve`, which skips callers that went
away, so a cancelled caller can never break the batcher.

The lane knows nothing of where a batch runs. This process's worker threads
(`core.inference.engine.LocalRunner`) and Ray Serve replicas
(`core.inference.serving.backend.RemoteRunner`) are both a `BatchRunner`: wait until the model
can serve, say how many batches may run at once, run one batch.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from core.config import EngineConfig
from core.errors import ModelUnavailable, Overloaded
from core.i18n import lazy

if TYPE_CHECKING:
    from core.inference.streams import Stream
    from core.inference.tasks.base import Task

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY = lazy("The bot is very busy right now. Please try again in a moment.")
#: The longest wait for company, as a share of the lane's recent batch time (`company_wait`).
WAIT_SHARE = 0.25


class Pending:
    """One admitted request: what to run, which requests it may share a batch with (`key`),
    the caller's future (its reply channel) and when it was queued (for `Timings`)."""

    __slots__ = ("request", "task", "key", "future", "enqueued_at", "stream")

    def __init__(self, request: Any, task: Task, key: Hashable, future: asyncio.Future,
                 stream: Stream | None = None) -> None:
        self.request = request
        self.task = task
        self.key = key
        self.future = future
        self.enqueued_at = time.perf_counter()
        #: Where the worker offers partial results, for a caller that reads them as they come.
        self.stream = stream

    @property
    def live(self) -> bool:
        """False once the caller went away (cancelled, timed out) or was answered."""
        return not self.future.done()


def resolve(future: asyncio.Future, outcome: Any) -> None:
    """Settle a caller's future with a result or an exception; call it on the future's loop.

    A caller that went away (its future already cancelled or timed out) is skipped: setting a
    result on it would raise, and Ray Serve's old batcher died of exactly that.
    """
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def resolve_all(items: list[Pending], error: Exception) -> None:
    """Fail every caller of `items` that is still waiting."""
    for item in items:
        resolve(item.future, error)


@dataclass(frozen=True)
class QueuePlace:
    """Where an admitted request waits: its place in its model's line (1 = next) and a rough
    wait, from how long that lane's recent batches took."""

    place: int
    about_s: float


class BatchRunner(Protocol):
    """Where a lane's batches run: the small interface between the queue and a backend."""

    #: Batches this runner may have in flight at once (one lane's share of the backend).
    slots: int

    async def ready(self) -> None:
        """Wait until the model can take a batch; raise `ModelUnavailable` if it never will."""

    async def run(self, batch: list[Pending]) -> None:
        """Run one batch and `resolve` each waiting caller's future with its outcome."""


class Lane:
    """One model's bounded queue and the batcher that drains it into a `BatchRunner`."""

    def __init__(self, name: str, config: EngineConfig, runner: BatchRunner) -> None:
        self.name = name
        self.config = config
        self.runner = runner
        self.pending: collections.deque[Pending] = collections.deque()
        #: Seconds per batch, smoothed (for `place_of`'s estimate); None before the first.
        self.batch_seconds: float | None = None
        #: Seconds between arrivals, smoothed (for `company_wait`); None before the second.
        self.arrival_gap: float | None = None
        self.last_arrival: float | None = None
        #: Batches the runner may still take now, and their senders in flight.
        self.free = max(1, runner.slots)
        self.in_flight: set[asyncio.Task] = set()
        self.slot_freed = asyncio.Event()
        self.wakeup = asyncio.Event()
        self.closing = False
        self.batcher = asyncio.create_task(self._batch_forever(), name=f"lane:{name}")

    # ------------------------------------------------------------------ admission

    def waiting(self) -> int:
        """Requests whose callers still wait (those that went away hold no place)."""
        return sum(1 for item in self.pending if item.live)

    def put(self, request: Any, task: Task, stream: Stream | None = None) -> asyncio.Future:
        """Queue one validated request, or raise `Overloaded` at once when the lane is full."""
        if self.waiting() >= self.config.queue_size:
            raise Overloaded(BUSY)
        future = asyncio.get_running_loop().create_future()
        item = Pending(request, task, task.batch_key(request), future, stream)
        if self.last_arrival is not None:
            gap = item.enqueued_at - self.last_arrival
            self.arrival_gap = gap if self.arrival_gap is None else (
                0.7 * self.arrival_gap + 0.3 * gap)
        self.last_arrival = item.enqueued_at
        self.pending.append(item)
        self.wakeup.set()
        return future

    def place_of(self, future: asyncio.Future) -> QueuePlace | None:
        """`future`'s place in the line, or None once its batch runs (or for another lane)."""
        ahead = 0
        for item in self.pending:
            if item.future is future:
                limit = max(1, self.config.max_batch_size)
                per_batch = self.batch_seconds if self.batch_seconds is not None else 1.0
                # The batch in flight, then one batch per `limit` requests ahead of this one.
                return QueuePlace(ahead + 1, per_batch * (1 + ahead // limit + 1))
            if item.live:
                ahead += 1
        return None

    def fail_queued(self, error: Exception) -> None:
        """Fail every request still waiting in the queue (not those in a batch)."""
        while self.pending:
            resolve(self.pending.popleft().future, error)

    async def stop(self, timeout: float) -> None:
        """Let the batches in flight finish (their callers get their answers), then end."""
        self.closing = True
        self.wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.batcher), timeout)
        except asyncio.TimeoutError:
            log.warning("lane %s still busy after %.0fs; abandoning it", self.name, timeout)
            self.batcher.cancel()

    # ------------------------------------------------------------------ batching

    async def collect(self) -> list[Pending]:
        """Take the oldest request and every compatible one, waiting briefly for more.

        Compatible: the same batch key, within the first request's row budget
        (`Task.max_batch_rows`; a request for n sequences costs n rows). Callers that went away
        are dropped here and never resolved.
        """
        first = self.pending[0]
        limit = first.task.max_batch_rows(self.config)
        deadline = first.enqueued_at + self.company_wait()
        while sum(1 for p in self.pending if p.key == first.key) < limit:
            delay = deadline - time.perf_counter()
            if delay <= 0:
                break
            await asyncio.sleep(min(delay, 0.002))
        batch: list[Pending] = []
        rest: collections.deque[Pending] = collections.deque()
        rows = 0
        for item in self.pending:
            if not item.live:  # the caller went away: skip, never resolve it
                continue
            size = item.task.rows(item.request)
            if item.key == first.key and (rows + size <= limit or not batch):
                batch.append(item)
                rows += size
            else:
                rest.append(item)
        self.pending = rest
        return batch

    def company_wait(self) -> float:
        """Seconds the first request of a batch waits for company.

        Waiting w lets a request that arrives within w share this batch instead of waiting up
        to a whole batch time B for the next one; a request alone pays w in full. With arrivals
        every g seconds on average that saves about w * B / g and costs w: it pays only where
        g < B, and little until g is well under B. So:
        - where requests come further apart than half a batch time (g > B / 2), the batch is
          sent at once: a lone /mask answers one forward after it arrives (issue 26). The half
          keeps one student's back-to-back requests (g just above B, noisy) from waiting;
        - otherwise it waits `max_wait_ms`, but never more than `WAIT_SHARE` of B: where a
          forward is short (an encoder in bfloat16) a long wait only adds latency, where it is
          long (a /generate batch) the full wait pays for itself.
        Before the lane has timed a batch and seen two arrivals it waits `max_wait_ms`.
        (The batcher asks only when a slot is free, so the wait never idles a busy runner.)
        """
        wait = self.config.max_wait_ms / 1000
        if self.batch_seconds is None:
            return wait
        if self.arrival_gap is not None and self.arrival_gap > self.batch_seconds / 2:
            return 0.0
        return min(wait, WAIT_SHARE * self.batch_seconds)

    async def _batch_forever(self) -> None:
        try:
            while not self.closing:
                await self.wakeup.wait()
                self.wakeup.clear()
                while self.pending:
                    try:
                        await self.runner.ready()
                    except ModelUnavailable as exc:
                        self.fail_queued(exc)
                        break
                    while self.free == 0:
                        self.slot_freed.clear()
                        await self.slot_freed.wait()
                    if not self.pending:  # emptied by `fail_queued` (shutdown) meanwhile
                        break
                    batch = await self.collect()
                    for chunk in split(batch, self.free):
                        self.free -= 1
                        sender = asyncio.create_task(self._send(chunk))
                        self.in_flight.add(sender)
                        sender.add_done_callback(self.in_flight.discard)
            await asyncio.gather(*self.in_flight, return_exceptions=True)
        except asyncio.CancelledError:
            for sender in list(self.in_flight):
                sender.cancel()
            raise

    async def _send(self, chunk: list[Pending]) -> None:
        started = time.perf_counter()
        try:
            await self.runner.run(chunk)
            took = time.perf_counter() - started
            self.batch_seconds = took if self.batch_seconds is None else (
                0.7 * self.batch_seconds + 0.3 * took)
        except Exception as exc:  # the batcher must outlive anything a batch does
            log.exception("a batch for %s failed outside its task", self.name)
            resolve_all(chunk, exc)
        finally:
            # A runner bug or a cancelled send: never leave a caller waiting forever.
            resolve_all(chunk, RuntimeError(f"{self.name}: the batch returned no result"))
            self.free += 1
            self.slot_freed.set()


def split(batch: list[T], parts: int) -> list[list[T]]:
    """`batch` in at most `parts` contiguous chunks of near-equal size (order kept): 32
    requests and two idle replicas make two batches of 16, not one of 32."""
    parts = max(1, min(parts, len(batch)))
    size, extra = divmod(len(batch), parts)
    chunks, start = [], 0
    for n in range(parts):
        end = start + size + (1 if n < extra else 0)
        chunks.append(batch[start:end])
        start = end
    return [c for c in chunks if c]


__all__ = ["BUSY", "BatchRunner", "Lane", "Pending", "QueuePlace", "resolve", "resolve_all",
           "split"]
