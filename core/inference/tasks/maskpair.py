"""`/maskpair`: two masked sentences side by side, e.g. "The man works as a [MASK]." vs "The
woman works as a [MASK].", with each one's top fillers and how every filler's probability moves.

The probabilities must equal `/mask`'s, so each sentence goes through `FillMaskTask.validate`
and the very function `/mask` computes with (`mask_distributions`, then `fillers`); a test
compares the two. The difference from `/mask`
is that the whole distribution is kept, so a filler of one sentence can be looked up in the
other and `targets` (words a student asks about) get a probability even outside the top-k.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from core.errors import InvalidInput, UserError
from core.i18n import Localised, join, lazy, number
from core.inference.models import Head, LoadedModel
from core.inference.tasks.base import Task, Timings, check_range, too_long
from core.inference.tasks.fill_mask import (
    FillMaskRequest,
    FillMaskTask,
    MaskFiller,
    fillers,
    mask_distributions,
    with_mask_token,
)
from core.pictures import charts
from core.pictures.stage import PictureResult

log = logging.getLogger(__name__)

MAX_TARGETS = 10
_TARGET_SEPARATORS = re.compile(r"[,\s]+")


@dataclass(frozen=True)
class MaskPairRequest:
    sentence_a: str
    sentence_b: str
    top_k: int = 5
    #: Words whose probabilities are reported even outside the top-k. A string is split on
    #: commas and spaces ("doctor, nurse"), so a slash command can pass its option as is.
    targets: tuple[str, ...] | str = ()


@dataclass(frozen=True)
class MaskPairRow:
    """One candidate filler and its probability in each sentence."""

    token_id: int
    token: str
    prob_a: float
    prob_b: float
    #: True if the student asked for this word in `targets`.
    target: bool

    @property
    def difference(self) -> float:
        """prob_b - prob_a: positive when sentence B makes the word more likely."""
        return self.prob_b - self.prob_a


@dataclass(frozen=True)
class MaskPairResult(PictureResult):
    model_id: str
    sentence_a: str
    sentence_b: str
    mask_token: str
    #: Exactly what `/mask` answers for each sentence with this top_k.
    fillers_a: tuple[MaskFiller, ...]
    fillers_b: tuple[MaskFiller, ...]
    #: Union of both top-k lists and the targets, most probable (in either sentence) first.
    rows: tuple[MaskPairRow, ...]
    timings: Timings | None = None


class MaskPairTask(Task[MaskPairRequest, MaskPairResult]):
    name = "maskpair"
    needs = {"mask": frozenset({Head.MASKED_LM})}
    draws = True
    request_type = MaskPairRequest

    def validate(self, request: MaskPairRequest) -> MaskPairRequest:
        check_range("top_k", request.top_k, 1, self.limits.max_mask_top_k)
        fill_mask = FillMaskTask(self.models, self.limits)
        sentences = []
        for which, text in (("A", request.sentence_a), ("B", request.sentence_b)):
            try:
                sentences.append(fill_mask.validate(FillMaskRequest(text, request.top_k)).text)
            except UserError as exc:
                raise type(exc)(lazy("Sentence {which}: {message}", which=which,
                                     message=exc.message)) from None
        return MaskPairRequest(sentences[0], sentences[1], int(request.top_k),
                               _clean_targets(request.targets))

    def preprocess(self, model: LoadedModel, request: MaskPairRequest) -> _Input:
        tokenizer = model.tokenizer
        texts = []
        for which, text in (("A", request.sentence_a), ("B", request.sentence_b)):
            text = with_mask_token(tokenizer, text)
            if error := too_long(model, len(tokenizer(text)["input_ids"]),
                                 what=lazy("Sentence {which}", which=which)):
                raise error
            texts.append(text)
        return _Input(texts[0], texts[1], [_target_id(tokenizer, t) for t in request.targets])

    def forward(self, model: LoadedModel, inputs: Sequence[_Input],
                wanted: Callable[[int], bool]) -> Iterable[tuple[int, Any]]:
        """Both sentences of every request in one batch: per request, (ids, distribution) of
        sentence A, then of sentence B."""
        input_ids, probs = mask_distributions(
            model, [text for item in inputs for text in (item.text_a, item.text_b)])
        return ((n, ((input_ids[2 * n], probs[2 * n]), (input_ids[2 * n + 1], probs[2 * n + 1])))
                for n in range(len(inputs)))

    def postprocess(self, model: LoadedModel, request: MaskPairRequest, prepared: _Input,
                    output: Any) -> MaskPairResult:
        tokenizer = model.tokenizer
        mask_token = tokenizer.mask_token
        (ids_a, probs_a), (ids_b, probs_b) = output
        sides = [fillers(tokenizer, ids_a, probs_a, request.top_k),
                 fillers(tokenizer, ids_b, probs_b, request.top_k)]
        table = _rows(tokenizer, probs_a, probs_b, sides, prepared.target_ids)
        return MaskPairResult(
            model_id=str(model.spec),
            sentence_a=request.sentence_a,
            sentence_b=request.sentence_b,
            mask_token=mask_token,
            fillers_a=sides[0],
            fillers_b=sides[1],
            rows=table,
            drawing=charts.drawing(
                charts.paired_bars, [r.token for r in table], [r.prob_a for r in table],
                [r.prob_b for r in table], name_a=f"A: {request.sentence_a}",
                name_b=f"B: {request.sentence_b}",
                title=lazy("Fillers for {mask} in two sentences ({model})", mask=mask_token,
                           model=model.spec.short_name),
                xlabel=lazy("probability of the filler"), highlight=[r.target for r in table],
            ),
            alt_text=_alt_text(table),
        )


@dataclass(frozen=True)
class _Input:
    """Both sentences with the model's mask token, and the targets as vocabulary ids."""

    text_a: str
    text_b: str
    target_ids: list[int]


def _rows(tokenizer, probs_a: torch.Tensor, probs_b: torch.Tensor,
          sides: Sequence[Sequence[MaskFiller]], targets: Sequence[int]) -> tuple[MaskPairRow, ...]:
    ids = list(dict.fromkeys([f.token_id for side in sides for f in side] + list(targets)))
    rows = [
        MaskPairRow(
            token_id=token_id,
            token=tokenizer.decode([token_id]),
            prob_a=float(probs_a[token_id]),
            prob_b=float(probs_b[token_id]),
            target=token_id in targets,
        )
        for token_id in ids
    ]
    rows.sort(key=lambda r: max(r.prob_a, r.prob_b), reverse=True)
    return tuple(rows)


def _clean_targets(targets: tuple[str, ...] | str) -> tuple[str, ...]:
    if isinstance(targets, str):
        targets = tuple(_TARGET_SEPARATORS.split(targets))
    words = tuple(dict.fromkeys(t.strip() for t in targets if t and t.strip()))
    if len(words) > MAX_TARGETS:
        raise InvalidInput(lazy(
            "Ask about at most {MAX_TARGETS} target words (got {count}).",
            MAX_TARGETS=MAX_TARGETS, count=len(words)))
    for word in words:
        if any(ch.isspace() for ch in word) or len(word) > 50:
            raise InvalidInput(lazy(
                "Each target must be one short word; `{word}` is not.",
                word=word[:50]))
    return words


def _target_id(tokenizer, word: str) -> int:
    """A target must be one token of the vocabulary: the mask is filled by exactly one."""
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        pieces = " ".join(tokenizer.convert_ids_to_tokens(ids))
        raise InvalidInput(
            lazy(
                "The target `{word}` is not a single token of the model's vocabulary (it "
                "becomes `{pieces}`), so it can never fill the mask. Try a more common word.",
                word=word, pieces=pieces)
        )
    return ids[0]


def _alt_text(rows: Sequence[MaskPairRow]) -> Localised:
    parts = join("; ", (join("", (r.token.strip(), ": A ", number(r.prob_a, "0.000"), ", B ",
                                  number(r.prob_b, "0.000"))) for r in rows))
    return charts.alt_text(lazy(
        "Bar chart of mask fillers, each with its probability in sentence A (blue) and "
        "sentence B (orange). {parts}", parts=parts))
