"""What every task shares: the task protocol and its batch loop, timings, and input checks.

Tasks follow transformers' pipeline split (`pipelines/base.py`): `validate` sanitises a request
once (cheap, on the event loop, before it is queued, so a bad request never takes a queue slot);
then, in a worker thread, `Task.run_batch` owns the loop for a whole batch: `preprocess` each
request (tokenize, length check: its own `UserError` goes to that student alone) -> `forward`
once for every request that is ready -> `postprocess` and emit each result as it comes. A task
fills in those three steps; it never writes the loop.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

from core.config import EngineConfig, LimitsConfig, ModelsConfig, ModelSpec
from core.errors import InputTooLong, InvalidInput, UserError
from core.i18n import Localised, lazy, number
from core.inference.models import Head, LoadedModel

Req = TypeVar("Req")
Res = TypeVar("Res")

#: A model's role: its key in the config's `[models]` table.
Role = Literal["mask", "qa", "generate", "features", "multilingual"]
ROLES: tuple[Role, ...] = ("mask", "qa", "generate", "features")
#: Roles a config may leave unset (`[models] multilingual`: a third tokenizer for /tokens).
OPTIONAL_ROLES: tuple[Role, ...] = ("multilingual",)


class Emit(Protocol):
    """How a worker hands back outcomes, one per request, as soon as each is ready."""

    def __call__(self, index: int, outcome: Any) -> None:
        """Deliver a result or a `UserError` for request `index` (safe from any thread)."""

    def wanted(self, index: int) -> bool:
        """False once the caller went away (cancelled or timed out): skip the work if you can."""

    def progress(self, index: int) -> Callable[[Any], None] | None:
        """Where to offer request `index`'s partial result right now, or None: nobody asked
        (`core.inference.streams`). Only a task that `streams` calls it."""


@dataclass(frozen=True)
class Timings:
    """Where a request's time went, so slow answers can be told apart from long queues."""

    queued_ms: float
    inference_ms: float
    batch_size: int
    #: Drawing the picture, after the forward (teaching commands only).
    drawing_ms: float = 0.0


class Task(Generic[Req, Res]):
    """One kind of request, and everything the engine needs to know about it, declared.

    Subclasses set `name`, `request_type` and `needs`; the engine reads these declarations (and
    `rows`, `max_batch_rows`, `own_lane`, `tokenizer_only`, `draws`) and never asks what type a
    task is. `needs` drives the model registry: each role's model is loaded with the union of
    the heads that the engine's tasks declare for it, and only for the tasks an engine serves.
    """

    name: ClassVar[str]
    request_type: ClassVar[type]
    #: The models this task may use, by role, and the heads each must be loaded with.
    needs: ClassVar[Mapping[Role, frozenset[Head]]]
    #: Run in a lane of its own rather than the model's: for work so light (a tokenizer call)
    #: that waiting behind a forward pass would cost it many times its own time, or so heavy
    #: (an attribution: tens of forwards and backwards) that the model's quick answers must
    #: not wait behind it. Such a lane has its own copy of the tokenizer.
    own_lane: ClassVar[bool] = False
    #: A tokenizer call, no forward: not counted as a running batch when threads are shared
    #: out, and run in this process even when a Ray backend runs the models.
    tokenizer_only: ClassVar[bool] = False
    #: Results carry a `drawing` that the engine's drawing stage turns into `png` after the
    #: forward, so a picture never holds the model's lane (see `core.pictures.stage`).
    draws: ClassVar[bool] = False
    #: `forward` takes a `progress` (request j -> where to offer its partial result now, or
    #: None) and offers partial results as it goes, for `InferenceEngine.stream` (/generate).
    streams: ClassVar[bool] = False

    def __init__(self, models: ModelsConfig, limits: LimitsConfig) -> None:
        self.models = models
        self.limits = limits

    def role(self, request: Req) -> Role:
        """Which model this request runs on; tasks with a model choice override this."""
        (role,) = self.needs
        return role

    def spec(self, request: Req) -> ModelSpec:
        return getattr(self.models, self.role(request))

    def rows(self, request: Req) -> int:
        """Rows of a batch this request costs (a request for n sequences costs n)."""
        return 1

    def max_batch_rows(self, engine: EngineConfig) -> int:
        """The most rows one batch of this task may hold."""
        return engine.max_batch_size

    def validate(self, request: Req) -> Req:
        """Raise a `UserError` for input that can never succeed; return the cleaned request."""
        return request

    def batch_key(self, request: Req) -> Hashable:
        """Requests with equal keys may share one forward pass."""
        return self.name

    # ------------------------------------------------------------------ the batch loop

    def run_batch(self, model: LoadedModel, requests: Sequence[Req], emit: Emit) -> None:
        """Compute every request's result (or a `UserError`) and `emit` it. Worker thread.

        The one loop every task runs; tasks fill in `preprocess`, `forward` and `postprocess`.
        Callers that went away are skipped before any work is spent on them.
        """
        todo: list[int] = []
        inputs: list[Any] = []
        for index, request in enumerate(requests):
            if not emit.wanted(index):
                continue
            try:
                inputs.append(self.preprocess(model, request))
            except UserError as exc:
                emit(index, exc)
                continue
            todo.append(index)
        if not todo:
            return
        progress = getattr(emit, "progress", None)
        if self.streams and progress is not None:
            outputs = self.forward(model, inputs, lambda j: emit.wanted(todo[j]),
                                   progress=lambda j: progress(todo[j]))
        else:
            outputs = self.forward(model, inputs, lambda j: emit.wanted(todo[j]))
        try:
            for j, output in outputs:
                index = todo[j]
                emit(index, self.postprocess(model, requests[index], inputs[j], output))
        finally:
            close = getattr(outputs, "close", None)
            if close is not None:  # a generator's `finally` (e.g. a model switch) runs now
                close()

    def preprocess(self, model: LoadedModel, request: Req) -> Any:
        """One request's model input (tokenized, length-checked). Raise a `UserError` for an
        input this model cannot take: that student alone gets it. Default: the request."""
        return request

    def forward(self, model: LoadedModel, inputs: Sequence[Any],
                wanted: Callable[[int], bool]) -> Iterable[tuple[int, Any]]:
        """`(j, output)` for `inputs[j]`, in any order, each as soon as it is ready.

        Default: one unpadded forward per input (`forward_one`), skipping inputs whose caller
        went away meanwhile (`wanted(j)` is False). Batching tasks override this with one
        padded forward; a task that finishes rows at different times (`/generate`) yields each
        as it finishes.
        """
        return _one_by_one(self, model, inputs, wanted)

    def forward_one(self, model: LoadedModel, prepared: Any) -> Any:
        """The output for one input, when `forward` runs them one by one."""
        raise NotImplementedError(f"{type(self).__name__} defines neither forward nor forward_one")

    def postprocess(self, model: LoadedModel, request: Req, prepared: Any, output: Any) -> Res:
        """The result a student gets, from the request, its model input and its output."""
        raise NotImplementedError


def _one_by_one(task: Task, model: LoadedModel, inputs: Sequence[Any],
                wanted: Callable[[int], bool]) -> Iterator[tuple[int, Any]]:
    for j, prepared in enumerate(inputs):
        if wanted(j):
            yield j, task.forward_one(model, prepared)


def clean_text(text: str, *, what: str | Localised, max_chars: int) -> str:
    """Normalise what a student typed; reject what no model can use.

    Control characters (other than newlines and tabs) are dropped because tokenizers map them to
    nothing and the reply would not match the input; NFC keeps offsets stable for highlighting.
    """
    if not isinstance(text, str):
        raise InvalidInput(lazy("The {what} must be text.", what=what))
    text = unicodedata.normalize("NFC", text)
    text = "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs")
    )
    text = text.strip()
    if not text:
        raise InvalidInput(lazy("The {what} is empty. Type some text and try again.",
                                what=what))
    if len(text) > max_chars:
        raise InputTooLong(lazy(
            "The {what} is {count} characters long; the limit is {limit}. Try a shorter one.",
            what=what, count=len(text), limit=max_chars))
    return text


def too_long(model: LoadedModel, count: int, *, what: str | Localised | None = None,
             reserve: int = 0, cap: int | None = None, cap_reason: str | Localised = "",
             advice: str | Localised | None = None) -> InputTooLong | None:
    """The one token-length check: `count` tokens must fit what the model reads.

    The window is the model's `max_length` less `reserve` (room a task needs after the input,
    e.g. new tokens to generate), or `cap` if that is smaller (a task's own limit, explained by
    `cap_reason`). Returns the `InputTooLong` to emit (naming the count, the limit and what to
    do), or None when it fits.
    """
    window = model.max_length - reserve
    reason: str | Localised
    if cap is not None and cap < window:
        limit, reason = cap, cap_reason or lazy("this command reads at most {n}", n=cap)
    elif reserve:
        limit, reason = window, lazy("`{model}` reads at most {n} (of its {total}, leaving "
                                     "room for {reserve} more)", model=str(model.spec),
                                     n=window, total=model.max_length, reserve=reserve)
    else:
        limit, reason = window, lazy("`{model}` reads at most {n}", model=str(model.spec),
                                     n=window)
    if count <= limit:
        return None
    return InputTooLong(lazy("{what} is {count} tokens; {reason}. {advice}",
                             what=what or lazy("That text"), count=count, reason=reason,
                             advice=advice or lazy("Try a shorter one.")))


def check_range(
    name: str, value: float, low: float, high: float, *, low_open: bool = False
) -> None:
    ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise InvalidInput(lazy("`{name}` must be in {bracket}{low}, {high}], got {value}.",
                                name=name, bracket=bracket, low=low, high=high,
                                value=number(value, "0.0##") if isinstance(value, float)
                                else value))
