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
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from core import plots
from core.config import Config, ModelsConfig, ModelSpec
from core.errors import EngineClosed, ModelUnavailable, Overloaded, RequestTimeout, UserError
from core.models import Head, LoadedModel, LoadState, ModelRegistry
from core.tasks.attention import AttentionTask
from core.tasks.base import Task, Timings
from core.tasks.contextsim import ContextSimTask
from core.tasks.features import FeaturesTask
from core.tasks.fill_mask import FillMaskTask
from core.tasks.generate import GenerateTask
from core.tasks.maskpair import MaskPairTask
from core.tasks.nexttoken import NextTokenTask
from core.tasks.qa import QATask
from core.tasks.tokens import TokensTask

log = logging.getLogger(__name__)

R = TypeVar("R")

TASK_TYPES: tuple[type[Task], ...] = (
    TokensTask, FillMaskTask, QATask, FeaturesTask, GenerateTask,
    # Teaching pictures; they use the mask and generate models already listed below.
    AttentionTask, ContextSimTask, MaskPairTask, NextTokenTask,
)


def task_models(models: ModelsConfig) -> list[tuple[ModelSpec, Head]]:
    """Each model the tasks use, with a head it must be loaded with (here and on a replica)."""
    m = models
    return [
        (m.mask, Head.MASKED_LM), (m.mask, Head.TOKENIZER), (m.qa, Head.QA),
        (m.generate, Head.CAUSAL_LM), (m.generate, Head.TOKENIZER), (m.features, Head.ENCODER),
    ]


@dataclass(frozen=True)
class ModelStatus:
    """What a caller can tell a student while they wait."""

    model_id: str
    state: LoadState
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.state is LoadState.READY


class _Pending:
    __slots__ = ("request", "task", "key", "future", "enqueued_at")

    def __init__(self, request: Any, task: Task, key: Hashable, future: asyncio.Future) -> None:
        self.request = request
        self.task = task
        self.key = key
        self.future = future
        self.enqueued_at = time.perf_counter()


class InferenceEngine:
    """Owns the model registry, the worker pool and one lane per model."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._tasks: dict[type, Task] = {}
        needs: dict[ModelSpec, set[Head]] = collections.defaultdict(set)
        for task_type in TASK_TYPES:
            task = task_type(config.models, config.limits)
            self._tasks[task_type.request_type] = task
        #: Another backend running the forwards (Ray Serve replicas), or None: this process.
        self.remote = None
        if config.engine.backend == "ray":
            from core.serving.backend import RayBackend

            self.remote = RayBackend(config)
        for spec, head in self._task_models():
            # With a remote backend the bot keeps only the tokenizers `/tokens` runs here.
            if self.remote is None or head is Head.TOKENIZER:
                needs[spec].add(head)
        self.registry = ModelRegistry(dict(needs))
        self._pool: ThreadPoolExecutor | None = None
        self._lanes: dict[tuple[ModelSpec, str | None], _Lane] = {}
        self._closed = False
        #: Batches in worker threads right now (updated on the event loop).
        self.running_batches = 0

    def _task_models(self) -> list[tuple[ModelSpec, Head]]:
        return task_models(self.config.models)

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
            plots.warm_up()

    def task_for(self, request: Any) -> Task:
        try:
            return self._tasks[type(request)]
        except KeyError:
            raise TypeError(f"no task handles {type(request).__name__}") from None

    def status(self, request: Any) -> ModelStatus:
        """Is the model behind this request ready, loading or broken?"""
        task = self.task_for(request)
        spec = task.spec(request)
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
        spec = task.spec(request)
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
        future = lane.put(request, task)
        timeout = self.config.engine.request_timeout_s if timeout is None else timeout
        # The lane's own future, not a wrapper task: cancelling the caller cancels it at once,
        # so the batcher never spends a row on a caller that left.
        expiry = asyncio.get_running_loop().call_later(timeout, _expire, future)
        future.add_done_callback(lambda _: expiry.cancel())
        return future

    async def submit(self, request: Any, *, timeout: float | None = None) -> Any:
        """Validate, queue, and wait for the result (with `timings` filled in)."""
        return await self.admit(request, timeout=timeout)

    async def aclose(self, *, drain_timeout: float = 30.0) -> None:
        """Finish what is running, fail what is still queued, then stop the workers."""
        if self._closed:
            return
        self._closed = True
        for lane in self._lanes.values():
            lane.fail_queued(EngineClosed("The bot is restarting. Try again in a minute."))
        await asyncio.gather(*(lane.stop(drain_timeout) for lane in self._lanes.values()))
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
        limit = config.max_batch_size
        if isinstance(first.task, GenerateTask):
            limit = min(limit, config.max_generate_batch)
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
            size = getattr(item.request, "num_return_sequences", 1)
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
        try:
            await loop.run_in_executor(self.engine.pool, _run_batch, loop, model, batch, threads)
        except Exception as exc:  # the batcher must outlive anything a batch does
            log.exception("batch for %s failed outside the task", self.spec)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
        finally:
            self.engine.running_batches -= counted


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
    with torch.inference_mode():
        try:
            everyone = deliver(list(range(len(batch))))
            task.run_batch(model, [item.request for item in batch], everyone)
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


__all__ = ["InferenceEngine", "ModelStatus", "TASK_TYPES", "UserError"]
