"""`features`: one vector per text from a frozen encoder, for the sentiment classifier.

The course notebook feeds the `[CLS]` vector (position 0 of the last hidden state) to a
LogisticRegression; mean pooling over real tokens is offered because sentence encoders such as
MiniLM were trained for it. Texts longer than the model's window are truncated (and flagged):
a sentiment of the first 512 tokens is still useful, an error would not be.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from core.errors import InvalidInput
from core.inference.models import Head, LoadedModel
from core.inference.tasks.base import Emit, Task, Timings, clean_text
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
            raise InvalidInput(f"pooling must be 'cls' or 'mean', got {request.pooling!r}")
        text = clean_text(request.text, what="text", max_chars=self.limits.max_text_chars)
        return FeaturesRequest(text, request.pooling)

    def run_batch(
        self, model: LoadedModel, requests: Sequence[FeaturesRequest], emit: Emit
    ) -> None:
        tokenizer = model.tokenizer
        texts = [r.text for r in requests]
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
        for i, request in enumerate(requests):
            vector = (cls if request.pooling == "cls" else mean)[i].numpy().copy()
            emit(i, FeaturesResult(
                str(model.spec), request.pooling, vector, truncated=lengths[i] > model.max_length
            ))
