"""The drawing stage: a teaching answer's picture is drawn after its forward, off the model lane.

Why a stage of its own: drawing used to run inside the task's `run_batch`, so the worker thread
waited on the picture process while the model's lane (shared by `/mask`, features,
`/attention`, `/contextsim`, `/maskpair`) stood still, and a burst of mixed commands kept
`/mask` waiting many times longer than `/qa` on another lane (benchmarks/RESULTS.md, "Figures
behind the code"). Now the forward hands back a `PictureResult` carrying a `drawing` (a
picklable call of a `core.pictures.charts` function), the lane moves on, and the picture is
drawn here; `/mask` never waits for somebody's picture (`benchmarks/mixed_burst.py`).

Admission is bounded like a lane's queue: a drawing request takes a *ticket* before its
forward is even queued, and gives it back when its picture is done (or it fails, or its caller
went away and the queued drawing was cancelled). With all tickets out, new picture requests are
refused at once as `Overloaded` ("busy"), before they cost a forward.

Drawing runs in `spawn` processes (Agg holds the GIL while it rasterises: in a thread, one
heatmap stalled the event loop for a long time), as many as the cores allow (`[engine]
picture_workers`, default: the usable cores, at most 4), each at a lower CPU priority than the
model workers so a text answer wins the cores, and each ending with the bot (`parent_watch`).
If the processes cannot start (twice), pictures are drawn in a thread instead: slower for the
loop, never a failed command.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from core.errors import Overloaded
from core.i18n import Localised, current_language, lazy, using
from core.pictures.parent_watch import exit_with_parent

log = logging.getLogger(__name__)

P = TypeVar("P", bound="PictureResult")

#: Auto `picture_workers`: the usable cores, but no more than this (each process costs memory:
#: benchmarks/RESULTS.md, "Figures behind the code").
MAX_AUTO_WORKERS = 4
#: Drawers are nicer than the model workers (5): pictures give way to text answers.
DRAWER_NICENESS = 10
#: Failed process starts after which drawing stays in threads.
_MAX_POOL_FAILURES = 2

BUSY_MESSAGE = lazy("The bot is drawing many pictures right now. Please try again in a moment.")


@dataclass(frozen=True, kw_only=True)
class PictureResult:
    """What every result with a picture carries; each teaching result (and a quiz's reveal)
    is one of these.

    The forward fills `drawing` (a picklable call of a `core.pictures.charts` function, run in
    a drawing process) and `alt_text` (the attachment's description, for those who cannot see
    the picture); the stage runs the drawing after the model's lane has moved on and fills
    `png`. The fields are keyword-only, so a result type adds its own fields before them.
    """

    png: bytes = field(default=b"", repr=False)
    drawing: Callable[[], bytes] | None = field(default=None, compare=False, repr=False)
    #: Usually a `core.i18n` message: written in the reply's language when it is sent.
    alt_text: str | Localised = ""


def drawn_in(language: str, drawing: Callable[[], bytes]) -> bytes:
    """Run `drawing` with `language` current, in whichever process draws it: the charts write
    their titles and axis labels through the catalog (`core.i18n.tr`)."""
    with using(language):
        return drawing()


class Ticket:
    """A picture request's place in the stage; given back exactly once."""

    __slots__ = ("_stage", "held", "drawing")

    def __init__(self, stage: PictureStage) -> None:
        self._stage = stage
        self.held = True
        #: Handed to a drawing process: given back when that job ends, whatever the caller does.
        self.drawing = False

    def release(self) -> None:
        if self.held:
            self.held = False
            self._stage._returned()


class PictureStage:
    """A bounded queue in front of a pool of drawing processes."""

    def __init__(self, *, workers: int, queue_size: int) -> None:
        self.workers = workers
        self.queue_size = queue_size
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._pool_failures = 0
        self._out = 0
        self._idle = asyncio.Event()  # binds no loop until awaited (3.10+)
        self._idle.set()
        self._closed = False
        self._warming: list[concurrent.futures.Future] = []

    @property
    def in_flight(self) -> int:
        """Picture requests admitted and not finished (queued for a forward, or drawing)."""
        return self._out

    def start(self) -> None:
        """Start every drawing process now (matplotlib imported), so no picture waits for it.

        Call from the event loop's thread: the processes are spawned from the calling thread,
        and their parent-death signal is tied to it (see `core.pictures.parent_watch`).
        """
        pool = self._ensure_pool()
        if pool is not None:
            self._warming = [pool.submit(_import_matplotlib) for _ in range(self.workers)]

    async def warmed(self) -> None:
        """Wait until the drawing processes `start` began have imported matplotlib. For
        benchmarks: a process still importing takes most of a core for a second or two."""
        for future in self._warming:
            try:
                await asyncio.wrap_future(future)
            except Exception:  # a broken pool draws in a thread instead; nothing to wait for
                return

    def reserve(self) -> Ticket:
        """Admit one picture request or refuse it with `Overloaded`."""
        if self._out >= self.queue_size:
            raise Overloaded(BUSY_MESSAGE)
        self._out += 1
        self._idle.clear()
        return Ticket(self)

    def _returned(self) -> None:
        self._out -= 1
        if self._out == 0:
            self._idle.set()

    async def finish(self, result: P, ticket: Ticket, language: str | None = None) -> P:
        """Draw `result.drawing` and return the result with its `png` (and, for a result that
        keeps `timings`, the time drawing took). Its words are in `language` (default: the
        current one, `core.i18n`): the engine passes the language the request was admitted in."""
        drawing = result.drawing
        if drawing is None:
            ticket.release()
            return result
        started = time.perf_counter()
        png = await self._draw(
            functools.partial(drawn_in, language or current_language(), drawing), ticket)
        changes: dict[str, Any] = {"png": png, "drawing": None}
        timings = getattr(result, "timings", None)
        if timings is not None:
            changes["timings"] = replace(timings,
                                         drawing_ms=(time.perf_counter() - started) * 1000)
        return replace(result, **changes)

    async def _draw(self, drawing: Callable[[], bytes], ticket: Ticket) -> bytes:
        loop = asyncio.get_running_loop()
        pool = self._ensure_pool()
        if pool is not None:
            try:
                job = pool.submit(drawing)
            except (BrokenProcessPool, RuntimeError, OSError):
                self._pool_broke()
            else:
                ticket.drawing = True
                job.add_done_callback(lambda _: _call_soon(loop, ticket.release))
                try:
                    return await asyncio.wrap_future(job)
                except (BrokenProcessPool, OSError):
                    self._pool_broke()
        try:
            return await asyncio.to_thread(drawing)
        finally:
            ticket.release()

    def _ensure_pool(self) -> concurrent.futures.ProcessPoolExecutor | None:
        if self._closed or self._pool_failures >= _MAX_POOL_FAILURES:
            return None
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_drawer, initargs=(os.getpid(),),
            )
        return self._pool

    def _pool_broke(self) -> None:
        self._pool_failures += 1
        log.warning("the drawing processes failed (%d); drawing in a thread for now",
                    self._pool_failures, exc_info=True)
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def aclose(self, timeout: float = 30.0) -> None:
        """Let admitted pictures finish (bounded), then stop the processes. Idempotent."""
        if self._out:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("%d pictures still drawing after %.0fs; stopping anyway",
                            self._out, timeout)
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


def auto_workers(configured: int, usable_cores: int) -> int:
    """`picture_workers = 0` means as many as the cores allow (at most `MAX_AUTO_WORKERS`)."""
    return configured or max(1, min(usable_cores, MAX_AUTO_WORKERS))


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], Any]) -> None:
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:  # the loop is closed: nobody counts tickets any more
        pass


def _start_drawer(parent_pid: int) -> None:
    """In each drawing process: end with the bot, and give way to the model workers."""
    exit_with_parent(parent_pid)
    try:
        os.nice(DRAWER_NICENESS)
    except (AttributeError, OSError):  # not permitted or not POSIX: only less polite
        pass


def _import_matplotlib() -> None:
    import matplotlib.backends.backend_agg  # noqa: F401


__all__ = ["PictureResult", "PictureStage", "Ticket", "auto_workers"]
