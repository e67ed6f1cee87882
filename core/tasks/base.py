"""What every task shares: the task protocol, timings, and input checks.

Tasks follow transformers' pipeline split: `validate` sanitises a request once (cheap, on the
event loop, before it is queued, so a bad request never takes a queue slot); `run_batch` does
preprocess -> one padded forward -> postprocess for a whole batch in a worker thread.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from core.config import LimitsConfig, ModelsConfig, ModelSpec
from core.errors import InputTooLong, InvalidInput
from core.models import Head, LoadedModel

Req = TypeVar("Req")
Res = TypeVar("Res")


class Emit(Protocol):
    """How a worker hands back outcomes, one per request, as soon as each is ready."""

    def __call__(self, index: int, outcome: Any) -> None:
        """Deliver a result or a `UserError` for request `index` (safe from any thread)."""

    def wanted(self, index: int) -> bool:
        """False once the caller went away (cancelled or timed out): skip the work if you can."""


@dataclass(frozen=True)
class Timings:
    """Where a request's time went, so slow answers can be told apart from long queues."""

    queued_ms: float
    inference_ms: float
    batch_size: int
    #: Drawing the picture, after the forward (teaching commands only).
    drawing_ms: float = 0.0


class Task(Generic[Req, Res]):
    """One kind of request. Subclasses set `name`, `head` and `request_type`."""

    name: ClassVar[str]
    head: ClassVar[Head]
    request_type: ClassVar[type]
    #: Run in a lane of its own rather than the model's: for work so light (a tokenizer call)
    #: that waiting behind a forward pass would cost it 100x its own time.
    own_lane: ClassVar[bool] = False
    #: Results carry a `drawing` that the engine's drawing stage turns into `png` after the
    #: forward, so a picture never holds the model's lane (see `core.pictures`).
    draws: ClassVar[bool] = False

    def __init__(self, models: ModelsConfig, limits: LimitsConfig) -> None:
        self.models = models
        self.limits = limits

    def spec(self, request: Req) -> ModelSpec:
        raise NotImplementedError

    def validate(self, request: Req) -> Req:
        """Raise a `UserError` for input that can never succeed; return the cleaned request."""
        return request

    def batch_key(self, request: Req) -> Hashable:
        """Requests with equal keys may share one forward pass."""
        return self.name

    def run_batch(self, model: LoadedModel, requests: Sequence[Req], emit: Emit) -> None:
        """Compute every request's result (or a `UserError`) and `emit` it. Worker thread."""
        raise NotImplementedError


def clean_text(text: str, *, what: str, max_chars: int) -> str:
    """Normalise what a student typed; reject what no model can use.

    Control characters (other than newlines and tabs) are dropped because tokenizers map them to
    nothing and the reply would not match the input; NFC keeps offsets stable for highlighting.
    """
    if not isinstance(text, str):
        raise InvalidInput(f"The {what} must be text.")
    text = unicodedata.normalize("NFC", text)
    text = "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs")
    )
    text = text.strip()
    if not text:
        raise InvalidInput(f"The {what} is empty. Type some text and try again.")
    if len(text) > max_chars:
        raise InputTooLong(
            f"The {what} is {len(text)} characters long; the limit is {max_chars}. "
            "Try a shorter one."
        )
    return text


def check_range(
    name: str, value: float, low: float, high: float, *, low_open: bool = False
) -> None:
    ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise InvalidInput(f"`{name}` must be in {bracket}{low}, {high}], got {value}.")
