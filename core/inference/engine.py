"""The inference core: bounded per-model queues, a batcher per model, a small worker pool.

Why this shape (measured on the 2-core target machine): batching beats threads. Sixteen
fill-mask requests as one padded forward ran ~3.5x faster than sixteen single forwards, and two
forwards in parallel threads only fight for the cores. So each model gets one *lane*: a bounded
queue and one batcher that runs one batch at a time; a couple of single-threaded workers let
different models' lanes progress side by side.

Every lane follows the same life of a request (after TEI and Ray Serve's `@serve.batch`):
validate on the event loop (a bad request never takes a queue slot) -> admit or refuse with
`Overloaded` -> wait for company (up to `max_batch_size` or `max_wait_ms`) -> one forward in a
worker -> each caller's future is resolved from the loop with `call_soon_threadsafe`, skipping
callers that went away. A failure inside a batch is retried request by request so one odd input
cannot take its neighbours down, and nothing a worker raises can kill the batcher.

A teaching command's picture is drawn after that, in the drawing stage (`core.pictures.stage`): the
lane is free again as soon as the forward is done, so a text answer never waits for a picture.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from core.inference.backends import resolve_placement
from core.inference.backends.oom import is_out_of_memory, release_cached_memory
from core.config import Config, ModelSpec
from core.errors import EngineClosed, ModelUnavailable, Overloaded, RequestTimeout, UserError
from core.inference.models import Head, LoadedModel, LoadState, ModelRegistry
from core.pictures.stage import PictureStage, Ticket, auto_workers
from core.inference.tasks.attention import AttentionTask
from core.inference.tasks.base import Task, Timings
from core.inference.tasks.contextsim import ContextSimTask
from core.inference.tasks.features import FeaturesTask
from core.inference.tasks.fill_mask import FillMaskTask
from core.inference.tasks.generate import GenerateTask
from core.inference.tasks.logitlens import LogitLensTask
from core.inference.tasks.maskpair import MaskPairTask
from core.inference.tasks.neighbours import NeighboursTask
from core.inference.tasks.nexttoken import NextTokenTask
from core.inference.tasks.qa import QATask
from core.inference.tasks.tokens import TokensTask

log = logging.getLogger(__name__)

R = TypeVar("R")

TASK_TYPES: tuple[type[Task], ...] = (
    TokensTask, FillMaskTask, QATask, FeaturesTask, GenerateTask,
    # Teaching pictures; they use the mask and generate models already listed below.
    AttentionTask, ContextSimTask, MaskPairTask, NextTokenTask, LogitLensTask, NeighboursTask,
)


@dataclass(frozen=True)
class ModelStatus:
    """What a caller can tell a student while they wait."""

    model_id: str
    state: LoadState
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.state is LoadState.READY


@dataclass(frozen=True)
class QueuePlace:
    """Where an admitted request waits: its place in its model's line (1 = next) and a rough
    wait, from how long that lane's recent batches took."""

    place: int
    about_s: float


@dataclass(frozen=True)
class QueueState:
    """A snapshot of the work waiting in the core, for members (`/help`): read-only."""

    #: Requests waiting per model lane, by model (`id@revision`); a task's own lane beside the
    #: model's main lane (tokenizer-only work) is listed as "<model> (<task>)".
    waiting: dict[str, int]
    #: Batches in worker threads right now.
    running_batches: int
    #: Picture requests admitted to the drawing stage and not finished.
    pictures_in_flight: int
    #: A lane refuses new requests ("busy") beyond this many waiting.
    queue_size: int


class _Pending:
    __slots__ = ("request", "task", "key", "future", "enqueued_at")

    def __init__(self, request: Any, task: Task, key: Hashable, future: asyncio.Future) -> None:
        self.request = request
        self.task = task
        self.key = key
        self.future = future
        self.enqueued_at = time.perf_counter()


class InferenceEngine:
    """Owns the model registry, the worker pool, one lane per model and the drawing stage.

    By default it serves every task and loads every configured model. A caller that needs
    less (the CLI's `ask tokens`, `train-sentiment`) names the `tasks` it will submit and/or
    the model `roles` it may load: only those models are loaded (at start if
    `[models] load_at_start`, else on first use), each with only the heads those tasks declare,
    e.g. `InferenceEngine(config, tasks={"features"})` loads the features encoder alone.
    A request for a task outside `tasks` raises `TypeError` (a caller's bug); one whose model
    role is outside `roles` raises `ModelUnavailable`.
    """

    def __init__(self, config: Config, *, tasks: Iterable[str] | None = None,
                 roles: Iterable[str] | None = None) -> None:
        self.config = config
        wanted = None if tasks is None else set(tasks)
        unknown = (wanted or set()) - {t.name for t in TASK_TYPES}
        if unknown:
            raise ValueError(f"unknown tasks: {', '.join(sorted(unknown))}")
        self._tasks: dict[type, Task] = {
            task_type.request_type: task_type(config.models, config.limits)
            for task_type in TASK_TYPES if wanted is None or task_type.name in wanted
        }
        #: Roles whose models this engine may load: those its tasks need, within `roles`.
        self.roles: frozenset[str] = frozenset(
            role for task in self._tasks.values() for role in task.needs
            if roles is None or role in roles
        )
        engine = config.engine
        #: Where every model runs (`ConfigError` here if this machine lacks the device).
        self.placement = resolve_placement(engine.device, engine.dtype,
                                           cpu_threads=engine.torch_threads)
        #: Another backend running the forwards (Ray Serve replicas), or None: this process.
        self.remote = None
        needs = model_needs(config, self._tasks.values(), self.roles)
        if config.engine.backend == "ray":
            from core.inference.serving.backend import RayBackend

            self.remote = RayBackend(config)
            # The bot keeps only the tokenizers `/tokens` runs here; replicas hold the rest.
            needs = {spec: {Head.TOKENIZER} for spec, heads in needs.items()
                     if Head.TOKENIZER in heads}
        self.registry = ModelRegistry(needs, self.placement)
        self._pool: ThreadPoolExecutor | None = None
        self._lanes: dict[tuple[ModelSpec, str | None], _Lane] = {}
        self.pictures = PictureStage(
            workers=auto_workers(config.engine.picture_workers, _usable_cores()),
            queue_size=config.engine.picture_queue_size,
        )
        self._closed = False
        #: Batches in worker threads right now (updated on the event loop).
        self.running_batches = 0
        #: A picture request's answer future -> its forward's lane future (`queue_place`).
        self._forward_of: weakref.WeakKeyDictionary[asyncio.Future, asyncio.Future] = (
            weakref.WeakKeyDictionary())

    async def __aenter__(self) -> InferenceEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        if self.remote is not None:
            await self.remote.start()
        threads = self.config.engine.torch_threads or 1
        self._pool = ThreadPoolExecutor(
            max_workers=self.config.engine.workers,
            thread_name_prefix="tlm-worker",
            initializer=_start_worker,
            initargs=(threads,),
        )
        if self.config.models.load_at_start:
            self.registry.start_all()
            self.pictures.start()

    def task_for(self, request: Any) -> Task:
        try:
            return self._tasks[type(request)]
        except KeyError:
            raise TypeError(f"no task handles {type(request).__name__}") from None

    def status(self, request: Any) -> ModelStatus:
        """Is the model behind this request ready, loading or broken?"""
        task = self.task_for(request)
        spec = self._spec(task, request)
        if self.remote is not None and not task.own_lane:
            return ModelStatus(str(spec), *self.remote.state(spec))
        return ModelStatus(str(spec), self.registry.state(spec), self.registry.error(spec))

    def validate(self, request: R) -> R:
        """Check a request without queueing it (raises `UserError`)."""
        return self.task_for(request).validate(request)

    def admit(self, request: Any, *, timeout: float | None = None) -> asyncio.Future[Any]:
        """Validate and queue now, or raise now; the returned future resolves to the result.

        Admission is synchronous on purpose: a caller learns "busy" (`Overloaded`) or a bad
        input before it shows anything to a student, even when it admits several requests for
        one answer (`/tokens model:compare`). Cancelling the future frees the queue slot.
        """
        if self._closed or self._pool is None:
            raise EngineClosed("The bot is restarting. Try again in a minute.")
        task = self.task_for(request)
        request = task.validate(request)
        spec = self._spec(task, request)
        status = self.status(request)
        if status.state is LoadState.FAILED:
            raise ModelUnavailable(f"The model `{spec}` is not available: {status.error}")
        key = (spec, task.name if task.own_lane else None)
        lane = self._lanes.get(key)
        if lane is None:
            if self.remote is not None and not task.own_lane:
                lane = self._lanes[key] = self.remote.lane(self, spec)
            else:
                lane = self._lanes[key] = _Lane(self, spec, own_tokenizer=task.own_lane)
        # A picture request is admitted by the drawing stage first: refused while it is full,
        # before it costs a forward.
        ticket = self.pictures.reserve() if task.draws else None
        try:
            future = lane.put(request, task)
        except BaseException:
            if ticket is not None:
                ticket.release()
            raise
        if ticket is not None:
            forward, future = future, self._with_picture(future, ticket)
            self._forward_of[future] = forward
        timeout = self.config.engine.request_timeout_s if timeout is None else timeout
        # The lane's own future, not a wrapper task: cancelling the caller cancels it at once,
        # so the batcher never spends a row on a caller that left.
        expiry = asyncio.get_running_loop().call_later(timeout, _expire, future)
        future.add_done_callback(lambda _: expiry.cancel())
        return future

    def queue_place(self, future: asyncio.Future) -> QueuePlace | None:
        """Where the request behind `admit`'s `future` waits; None once its batch runs (or
        for a lane this process does not queue, e.g. on Ray)."""
        forward = self._forward_of.get(future, future)
        for lane in self._lanes.values():
            place = lane.place_of(forward) if isinstance(lane, _Lane) else None
            if place is not None:
                return place
        return None

    async def submit(self, request: Any, *, timeout: float | None = None) -> Any:
        """Validate, queue, and wait for the result (with `timings` filled in)."""
        return await self.admit(request, timeout=timeout)

    def _spec(self, task: Task, request: Any) -> ModelSpec:
        role = task.role(request)
        if role not in self.roles:
            raise ModelUnavailable(f"The `{role}` model is not loaded in this run.")
        return task.spec(request)

    def _with_picture(self, forward: asyncio.Future, ticket: Ticket) -> asyncio.Future:
        """A future for the forward's result with its picture drawn (by the drawing stage,
        after the lane has moved on). Cancelling it cancels the forward (freeing the queue
        slot) or the drawing still queued; the ticket comes back whatever happens."""
        answer = asyncio.get_running_loop().create_future()
        drawing: list[asyncio.Future] = []

        def forward_done(f: asyncio.Future) -> None:
            error = None if f.cancelled() else f.exception()  # marks the error as seen
            if answer.done() or f.cancelled() or error is not None:
                ticket.release()
                if not answer.done():
                    answer.cancel() if f.cancelled() else answer.set_exception(error)
                return
            job = asyncio.ensure_future(self.pictures.finish(f.result(), ticket))
            drawing.append(job)
            job.add_done_callback(drawing_done)

        def drawing_done(job: asyncio.Future) -> None:
            if not ticket.drawing:  # never reached a drawing process: give the place back
                ticket.release()
            error = None if job.cancelled() else job.exception()
            if answer.done():
                return
            if job.cancelled():
                answer.cancel()
            elif error is not None:
                answer.set_exception(error)
            else:
                answer.set_result(job.result())

        def answer_done(_: asyncio.Future) -> None:
            if not forward.done():
                forward.cancel()
            for job in drawing:
                job.cancel()

        forward.add_done_callback(forward_done)
        answer.add_done_callback(answer_done)
        return answer

    async def aclose(self, *, drain_timeout: float = 30.0) -> None:
        """Finish what is running, fail what is still queued, then stop the workers."""
        if self._closed:
            return
        self._closed = True
        for lane in self._lanes.values():
            lane.fail_queued(EngineClosed("The bot is restarting. Try again in a minute."))
        await asyncio.gather(*(lane.stop(drain_timeout) for lane in self._lanes.values()))
        await self.pictures.aclose(drain_timeout)
        await self.registry.aclose()
        if self.remote is not None:
            await self.remote.aclose()
        if self._pool is not None:
            # Off the loop: a worker may still be finishing an abandoned batch.
            await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)

    def threads_for_next_batch(self) -> int:
        """torch threads for a batch about to start.

        A fixed `torch_threads` is used as is. 0 means auto: every core when no other batch
        is running, one when another is (two lanes then share the cores instead of fighting
        over them). Measured (benchmarks/RESULTS.md): 2 threads nearly double a lone /mask
        burst on 2 idle cores, but slow everything 2.5-9x once a neighbour is busy.
        """
        fixed = self.config.engine.torch_threads
        if fixed:
            return fixed
        return max(1, _usable_cores() - self.running_batches)

    def model_state(self, spec: ModelSpec) -> LoadState | None:
        """Loading, ready or failed, wherever the model runs; None for a model not served."""
        try:
            if self.remote is not None:
                return self.remote.state(spec)[0]
            return self.registry.state(spec)
        except KeyError:
            return None

    def queue_state(self) -> QueueState:
        """What is waiting now, per lane (callers that went away are not counted)."""
        waiting: dict[str, int] = {}
        for (spec, own_lane), lane in self._lanes.items():
            name = str(spec) if own_lane is None else f"{spec} ({own_lane})"
            waiting[name] = sum(1 for p in lane.pending if not p.future.done())
        return QueueState(waiting, self.running_batches, self.pictures.in_flight,
                          self.config.engine.queue_size)

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            raise EngineClosed("The engine has not started.")
        return self._pool


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(RequestTimeout(
            "That took too long and was stopped. The bot may be very busy: try again soon."
        ))


class _Lane:
    """One model's bounded queue and the batcher that drains it, one batch at a time."""

    def __init__(self, engine: InferenceEngine, spec: ModelSpec, *, own_tokenizer: bool = False
                 ) -> None:
        self.engine = engine
        self.spec = spec
        #: A lane beside the model's main lane must not share its tokenizer: a fast tokenizer
        #: used from two threads at once fails ("Already borrowed") when one of them pads.
        self.own_tokenizer = own_tokenizer
        self.pending: collections.deque[_Pending] = collections.deque()
        #: Seconds per batch, smoothed (for `place_of`'s estimate); None before the first.
        self.batch_seconds: float | None = None
        self.wakeup = asyncio.Event()
        self.closing = False
        self.runner = asyncio.create_task(self._run(), name=f"lane:{spec}")

    def put(self, request: Any, task: Task) -> asyncio.Future:
        config = self.engine.config.engine
        # Callers that went away (cancelled, timed out) no longer hold a place in the queue.
        if sum(1 for p in self.pending if not p.future.done()) >= config.queue_size:
            raise Overloaded(
                "The bot is very busy right now. Please try again in a moment."
            )
        future = asyncio.get_running_loop().create_future()
        self.pending.append(_Pending(request, task, task.batch_key(request), future))
        self.wakeup.set()
        return future

    def place_of(self, future: asyncio.Future) -> QueuePlace | None:
        ahead = 0
        for item in self.pending:
            if item.future is future:
                limit = max(1, self.engine.config.engine.max_batch_size)
                per_batch = self.batch_seconds if self.batch_seconds is not None else 1.0
                # The batch in flight, then one batch per `limit` requests ahead of this one.
                return QueuePlace(ahead + 1, per_batch * (1 + ahead // limit + 1))
            if not item.future.done():
                ahead += 1
        return None

    def fail_queued(self, error: Exception) -> None:
        while self.pending:
            item = self.pending.popleft()
            if not item.future.done():
                item.future.set_exception(error)

    async def stop(self, timeout: float) -> None:
        """Let the batch in flight finish (its callers get their answers), then end."""
        self.closing = True
        self.wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.runner), timeout)
        except asyncio.TimeoutError:
            log.warning("lane %s still busy after %.0fs; abandoning it", self.spec, timeout)
            self.runner.cancel()

    async def _run(self) -> None:
        while not self.closing:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.pending:
                try:
                    model = await self.engine.registry.get(self.spec)
                except ModelUnavailable as exc:
                    self.fail_queued(exc)
                    break
                if self.own_tokenizer:
                    model = model.with_own_tokenizer()
                if not self.pending:  # emptied by aclose while the model was loading
                    break
                batch = await self._collect()
                if batch:
                    await self._execute(model, batch)

    async def _collect(self) -> list[_Pending]:
        """Take the oldest request and every compatible one, waiting briefly for more."""
        config = self.engine.config.engine
        first = self.pending[0]
        limit = first.task.max_batch_rows(config)
        deadline = first.enqueued_at + config.max_wait_ms / 1000
        while sum(1 for p in self.pending if p.key == first.key) < limit:
            delay = deadline - time.perf_counter()
            if delay <= 0:
                break
            await asyncio.sleep(min(delay, 0.002))
        batch, rest, rows = [], collections.deque(), 0
        for item in self.pending:
            if item.future.done():  # the caller went away: skip, never resolve it
                continue
            size = item.task.rows(item.request)
            if item.key == first.key and (rows + size <= limit or not batch):
                batch.append(item)
                rows += size
            else:
                rest.append(item)
        self.pending = rest
        return batch

    async def _execute(self, model: LoadedModel, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        threads = self.engine.threads_for_next_batch()
        # A tokenizer-only batch takes a millisecond: it should not cost a forward its threads.
        counted = 0 if self.own_tokenizer else 1
        self.engine.running_batches += counted
        started = time.perf_counter()
        try:
            await loop.run_in_executor(self.engine.pool, _run_batch, loop, model, batch, threads)
            took = time.perf_counter() - started
            self.batch_seconds = took if self.batch_seconds is None else (
                0.7 * self.batch_seconds + 0.3 * took)
        except Exception as exc:  # the batcher must outlive anything a batch does
            log.exception("batch for %s failed outside the task", self.spec)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
        finally:
            self.engine.running_batches -= counted


def all_model_needs(config: Config) -> dict[ModelSpec, set[Head]]:
    """Every model any task uses and its heads: what the bot loads by default, and what a Ray
    replica for one of those models loads (`core.inference.serving.replica`)."""
    tasks = [task_type(config.models, config.limits) for task_type in TASK_TYPES]
    return model_needs(config, tasks, {role for task in tasks for role in task.needs})


def model_needs(config: Config, tasks: Iterable[Task],
                roles: Iterable[str]) -> dict[ModelSpec, set[Head]]:
    """Each model to load and its heads: the union of what the tasks declare per role.

    Roles naming the same model (by default `mask` and `features`) share one load.
    """
    needs: dict[ModelSpec, set[Head]] = collections.defaultdict(set)
    allowed = set(roles)
    for task in tasks:
        for role, heads in task.needs.items():
            if role in allowed:
                needs[getattr(config.models, role)] |= heads
    return dict(needs)


def _run_batch(
    loop: asyncio.AbstractEventLoop, model: LoadedModel, batch: list[_Pending], threads: int
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
            loop.call_soon_threadsafe(_resolve, item.future, outcome)

        emit.wanted = lambda index: not batch[group[index]].future.done()  # type: ignore[attr-defined]
        return emit

    task = batch[0].task

    def run_halving_on_oom(group: list[int]) -> None:
        """Run `group`; on GPU out-of-memory run each half instead (core/inference/backends/oom.py)."""
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
                    _fail(loop, batch[position], delivered, position, Overloaded(
                        "The bot's GPU is full right now. Please try again in a moment."))
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
                _fail(loop, batch[0], delivered, 0, exc)
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
                    _fail(loop, batch[position], delivered, position, exc)
    for position, item in enumerate(batch):
        if position not in delivered:  # a task bug: never leave a caller waiting forever
            _fail(loop, item, delivered, position)


def _fail(loop: asyncio.AbstractEventLoop, item: _Pending, delivered: set[int], position: int,
          error: Exception | None = None) -> None:
    """Fail one caller with what the task raised, so a `UserError` still reaches the student."""
    delivered.add(position)
    if error is None:
        error = RuntimeError(f"{item.task.name} produced no result")
    loop.call_soon_threadsafe(_resolve, item.future, error)


def _resolve(future: asyncio.Future, outcome: Any) -> None:
    """Runs on the loop. A cancelled or timed-out caller's future is simply skipped."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _usable_cores() -> int:
    """Cores this process may run on (a container or taskset may allow fewer than exist)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _start_worker(threads: int) -> None:
    """A worker thread: its torch threads, and a lower CPU priority than the event loop.

    With both cores busy in torch, the loop thread otherwise waits for a core like any other
    thread; a nicer worker lets the scheduler run the loop first (Linux: per-thread nice).
    """
    _set_torch_threads(threads)
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 5)
    except (AttributeError, OSError):  # not Linux, or not permitted: only slower to react
        pass


__all__ = ["InferenceEngine", "ModelStatus", "TASK_TYPES", "UserError", "model_needs"]
