"""`features`: one vector per text from a frozen encoder, for the sentiment classifier.

The course notebook feeds the `[CLS]` vector (position 0 of the last hidden state) to a
LogisticRegression; mean pooling over real tokens is offered because sentence encoders such as
MiniLM were trained for it. Texts longer than the model's window are truncated (and flagged):
a sentiment of the first 512 tokens is still useful, an error would not be.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from core.errors import InvalidInput
from core.i18n import lazy
from core.inference.models import Head, LoadedModel
from core.inference.tasks.base import Task, Timings, clean_text
from core.inference.tasks.padding import hidden_by_length

Pooling = Literal["cls", "mean"]


@dataclass(frozen=True)
class FeaturesRequest:
    text: str
    pooling: Pooling = "cls"


@dataclass(frozen=True)
class FeaturesResult:
    model_id: str
    pooling: Pooling
    vector: np.ndarray = field(compare=False, repr=False)
    truncated: bool = False
    timings: Timings | None = None


class FeaturesTask(Task[FeaturesRequest, FeaturesResult]):
    name = "features"
    needs = {"features": frozenset({Head.ENCODER})}
    request_type = FeaturesRequest

    def validate(self, request: FeaturesRequest) -> FeaturesRequest:
        if request.pooling not in ("cls", "mean"):
            raise InvalidInput(lazy(
                "pooling must be 'cls' or 'mean', got {pooling}",
                pooling=repr(request.pooling)))
        text = clean_text(request.text, what=lazy("text"), max_chars=self.limits.max_text_chars)
        return FeaturesRequest(text, request.pooling)

    def forward(self, model: LoadedModel, inputs: Sequence[FeaturesRequest],
                wanted: Callable[[int], bool]) -> Iterable[tuple[int, Any]]:
        """Per text: its [CLS] vector, its mean vector, and whether it was cut to fit."""
        tokenizer = model.tokenizer
        texts = [r.text for r in inputs]
        lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
        batch = tokenizer(
            texts, padding=True, truncation=True, max_length=model.max_length, return_tensors="pt"
        )
        encoder = model.module(Head.ENCODER)
        attention_mask = batch["attention_mask"].to(model.device)
        hidden = hidden_by_length(  # rows of similar length share a forward
            encoder, batch["input_ids"].to(model.device), attention_mask, tokenizer.padding_side
        ).float()
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)).cpu()
        cls = hidden[:, 0].cpu()
        return enumerate(zip(cls, mean, [n > model.max_length for n in lengths]))

    def postprocess(self, model: LoadedModel, request: FeaturesRequest, prepared: FeaturesRequest,
                    output: tuple[torch.Tensor, torch.Tensor, bool]) -> FeaturesResult:
        cls, mean, truncated = output
        vector = (cls if request.pooling == "cls" else mean).numpy().copy()
        return FeaturesResult(str(model.spec), request.pooling, vector, truncated=truncated)
