"""The inference core: a lane per model, a small worker pool, and the drawing stage.

Why this shape: batching beats threads on the small CPU machines the bot targets. One padded
forward for many fill-mask requests is several times faster than single forwards, and two
forwards in parallel threads only fight for the cores (benchmarks/RESULTS.md, "Figures behind
the code"). So each model gets one *lane* (`core.inference.lanes`): a bounded queue and a batcher
that hands one batch at a time to its runner; a couple of worker threads let different models'
lanes progress side by side (`core.inference.worker.WorkerThreads`: one of them may spread a
lone batch over every core, the others use one each).

The engine validates on the event loop (a bad request never takes a queue slot), picks the
request's lane and admits it there. Where a lane's batches run is its `BatchRunner`: here,
`LocalRunner` (the worker pool running `core.inference.worker.run_batch`); with
`engine.backend = "ray"`, `core.inference.serving.backend.RemoteRunner`.

A teaching command's picture is drawn after that, in the drawing stage (`core.pictures.stage`): the
lane is free again as soon as the forward is done, so a text answer never waits for a picture.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from core.config import Config, ModelSpec
from core.errors import EngineClosed, ModelUnavailable, RequestTimeout, UserError
from core.i18n import current_language, lazy
from core.inference.backends import resolve_placement, usable_cores
from core.inference.lanes import BatchRunner, Lane, Pending, QueuePlace
from core.inference.models import Head, LoadedModel, LoadState, ModelRegistry
from core.inference.streams import Stream
from core.inference.task_table import TASK_TYPES, model_needs
from core.inference.tasks.base import Task
from core.inference.worker import WorkerThreads, run_batch
from core.pictures.stage import PictureStage, Ticket, auto_workers

log = logging.getLogger(__name__)

#: What a request hears while the engine shuts down (queued, or arriving then).
RESTARTING = lazy("The bot is restarting. Try again in a minute.")

R = TypeVar("R")

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
            if (roles is None or role in roles)
            and getattr(config.models, role) is not None  # an optional model left out
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
        self._workers: WorkerThreads | None = None
        self._lanes: dict[tuple[ModelSpec, str | None], Lane] = {}
        self.pictures = PictureStage(
            workers=auto_workers(config.engine.picture_workers, usable_cores()),
            queue_size=config.engine.picture_queue_size,
        )
        self._closed = False
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
        self._workers = WorkerThreads(self.config.engine.workers, usable_cores(),
                                      self.config.engine.torch_threads)
        if self.config.models.load_at_start:
            self.registry.start_all()
            self.pictures.start()

    async def settled(self, specs: Iterable[ModelSpec] | None = None) -> None:
        """Wait until the models (`specs`, default every one) are loaded and the drawing
        processes have started: what a measurement waits for, since a drawing process still
        importing matplotlib takes most of a core for a second or two."""
        await asyncio.gather(*(self.registry.get(s) for s in specs or self.registry.specs))
        await self.pictures.warmed()

    def task_for(self, request: Any) -> Task:
        try:
            return self._tasks[type(request)]
        except KeyError:
            raise TypeError(f"no task handles {type(request).__name__}") from None

    def status(self, request: Any) -> ModelStatus:
        """Is the model behind this request ready, loading or broken?"""
        task = self.task_for(request)
        spec = self._spec(task, request)
        if self.remote is not None and not task.tokenizer_only:
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
        return self._admit(request, timeout, None)

    def stream(self, request: Any, *, timeout: float | None = None) -> Stream[Any]:
        """`admit`, and the request's partial results as it runs (`core.inference.streams`):
        `async for partial in stream`, then `await stream` for the result. A task that makes
        no partial results (`Task.streams` False; a Ray backend) only gives the result."""
        stream: Stream[Any] = Stream(asyncio.get_running_loop())
        stream.future = self._admit(request, timeout, stream)
        return stream

    def _admit(self, request: Any, timeout: float | None,
               stream: Stream[Any] | None) -> asyncio.Future[Any]:
        if self._closed or self._workers is None:
            raise EngineClosed(RESTARTING)
        task = self.task_for(request)
        request = task.validate(request)
        spec = self._spec(task, request)
        status = self.status(request)
        if status.state is LoadState.FAILED:
            raise ModelUnavailable(lazy("The model `{model}` is not available: {error}",
                                        model=str(spec), error=str(status.error)))
        key = (spec, task.name if task.own_lane else None)
        lane = self._lanes.get(key)
        if lane is None:
            runner: BatchRunner
            if self.remote is not None and not task.tokenizer_only:
                runner = self.remote.runner(spec)
            else:
                runner = LocalRunner(self, spec, own_tokenizer=key[1])
            name = str(spec) if key[1] is None else f"{spec} ({key[1]})"
            lane = self._lanes[key] = Lane(name, self.config.engine, runner)
        # A picture request is admitted by the drawing stage first: refused while it is full,
        # before it costs a forward.
        ticket = self.pictures.reserve() if task.draws else None
        try:
            future = lane.put(request, task, stream if task.streams else None)
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

    def serves(self, request: Any) -> bool:
        """Whether this engine has the model `request` runs on (an optional one, such as
        `[models] multilingual`, may be left out of the config)."""
        return self.task_for(request).role(request) in self.roles

    def queue_place(self, future: asyncio.Future) -> QueuePlace | None:
        """Where the request behind `admit`'s `future` waits; None once its batch runs."""
        forward = self._forward_of.get(future, future)
        for lane in self._lanes.values():
            place = lane.place_of(forward)
            if place is not None:
                return place
        return None

    async def submit(self, request: Any, *, timeout: float | None = None) -> Any:
        """Validate, queue, and wait for the result (with `timings` filled in)."""
        return await self.admit(request, timeout=timeout)

    def _spec(self, task: Task, request: Any) -> ModelSpec:
        role = task.role(request)
        if role not in self.roles:
            raise ModelUnavailable(lazy("The `{role}` model is not loaded in this run.",
                                        role=role))
        return task.spec(request)

    def _with_picture(self, forward: asyncio.Future, ticket: Ticket) -> asyncio.Future:
        """A future for the forward's result with its picture drawn (by the drawing stage,
        after the lane has moved on). Cancelling it cancels the forward (freeing the queue
        slot) or the drawing still queued; the ticket comes back whatever happens."""
        answer = asyncio.get_running_loop().create_future()
        drawing: list[asyncio.Future] = []
        # Admitted in the front door's task: the language of the reply being built.
        language = current_language()

        def forward_done(f: asyncio.Future) -> None:
            error = None if f.cancelled() else f.exception()  # marks the error as seen
            if answer.done() or f.cancelled() or error is not None:
                ticket.release()
                if not answer.done():
                    answer.cancel() if f.cancelled() else answer.set_exception(error)
                return
            job = asyncio.ensure_future(self.pictures.finish(f.result(), ticket, language))
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
            lane.fail_queued(EngineClosed(RESTARTING))
        await asyncio.gather(*(lane.stop(drain_timeout) for lane in self._lanes.values()))
        await self.pictures.aclose(drain_timeout)
        await self.registry.aclose()
        if self.remote is not None:
            await self.remote.aclose()
        if self._workers is not None:
            # Off the loop: a worker may still be finishing an abandoned batch.
            await asyncio.to_thread(self._workers.shutdown)

    @property
    def running_batches(self) -> int:
        """Batches in worker threads right now (tokenizer-only ones not counted)."""
        return self._workers.running if self._workers is not None else 0

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
        waiting = {lane.name: lane.waiting() for lane in self._lanes.values()}
        return QueueState(waiting, self.running_batches, self.pictures.in_flight,
                          self.config.engine.queue_size)

    @property
    def lanes(self) -> Mapping[tuple[ModelSpec, str | None], Lane]:
        """The lanes opened so far, by (model, task name for a task's own lane, else None)."""
        return self._lanes

    @property
    def workers(self) -> WorkerThreads:
        if self._workers is None:
            raise EngineClosed(lazy("The engine has not started."))
        return self._workers


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(RequestTimeout(lazy(
            "That took too long and was stopped. The bot may be very busy: try again soon."
        )))


class LocalRunner:
    """A lane's batches in this process: its model from the registry, run in the engine's
    worker threads (`core.inference.worker.run_batch`), up to `slots` batches at once.

    An ONNX Runtime encoder's main lane runs as many batches at once as there are workers,
    each session on one thread: its int8 encoder gained little from a second thread, while two
    one-thread batches side by side did nearly twice the work of one (benchmarks/RESULTS.md,
    "Figures behind the code", "two batches of one lane"). A torch lane runs one batch at a time
    on every free core: two of its batches side by side held no more /mask requests a second
    than one on two cores, and a second batch beside a two-core one oversubscribes the cores.
    Each batch running at once gets its own copy of the tokenizer: a fast tokenizer used from
    two threads at once fails ("Already borrowed") when one of them pads or truncates.
    """

    def __init__(self, engine: InferenceEngine, spec: ModelSpec, *,
                 own_tokenizer: str | None = None) -> None:
        self.engine = engine
        self.spec = spec
        #: A lane beside the model's main lane (named by its task) must not share its
        #: tokenizer with it either.
        self.own_tokenizer = own_tokenizer
        side_by_side = (own_tokenizer is None and spec.backend == "onnxruntime"
                        and spec != engine.config.models.generate)
        self.slots = max(1, engine.config.engine.workers) if side_by_side else 1
        self.model: LoadedModel | None = None
        #: Tokenizer owners of the batches running now (`_view`).
        self._busy: set[int] = set()

    async def ready(self) -> None:
        model = await self.engine.registry.get(self.spec)
        self.model = (model if self.own_tokenizer is None
                      else model.with_own_tokenizer(self.own_tokenizer))

    def _view(self, slot: int) -> LoadedModel:
        """The model with slot `slot`'s tokenizer: the lane's own for the first slot, a copy
        (made once, then reused) for each other."""
        assert self.model is not None, "run() before ready()"
        if slot == 0:
            return self.model
        return self.model.with_own_tokenizer(f"{self.own_tokenizer or ''}#slot{slot}")

    async def run(self, batch: list[Pending]) -> None:
        loop = asyncio.get_running_loop()
        slot = min(set(range(self.slots)) - self._busy)  # the lane never runs more than slots
        self._busy.add(slot)
        try:
            # A tokenizer-only batch takes a millisecond: it should not cost a forward its
            # threads.
            uses_cores = not (batch and batch[0].task.tokenizer_only)
            await self.engine.workers.run(run_batch, loop, self._view(slot), batch,
                                          uses_cores=uses_cores)
        finally:
            self._busy.discard(slot)


__all__ = ["InferenceEngine", "LocalRunner", "ModelStatus", "QueuePlace", "QueueState", "UserError"]
