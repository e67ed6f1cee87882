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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from core.pictures import charts
from core.errors import InvalidInput, UserError
from core.inference.models import Head, LoadedModel
from core.inference.tasks.base import Emit, Task, Timings, check_range, too_long
from core.inference.tasks.fill_mask import (
    _MASK_SPELLINGS,
    FillMaskRequest,
    FillMaskTask,
    MaskFiller,
    fillers,
    mask_distributions,
)

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
class MaskPairResult:
    model_id: str
    sentence_a: str
    sentence_b: str
    mask_token: str
    #: Exactly what `/mask` answers for each sentence with this top_k.
    fillers_a: tuple[MaskFiller, ...]
    fillers_b: tuple[MaskFiller, ...]
    #: Union of both top-k lists and the targets, most probable (in either sentence) first.
    rows: tuple[MaskPairRow, ...]
    #: Filled in by the engine's drawing stage from `drawing`, after the forward.
    png: bytes = field(default=b"", repr=False)
    drawing: Callable[[], bytes] | None = field(default=None, compare=False, repr=False)
    alt_text: str = ""
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
                raise type(exc)(f"Sentence {which}: {exc.message}") from None
        return MaskPairRequest(sentences[0], sentences[1], int(request.top_k),
                               _clean_targets(request.targets))

    def run_batch(self, model: LoadedModel, requests: Sequence[MaskPairRequest],
                  emit: Emit) -> None:
        tokenizer = model.tokenizer
        mask_token = tokenizer.mask_token
        rows: list[int] = []
        target_ids: dict[int, list[int]] = {}
        for i, request in enumerate(requests):
            try:
                for which, text in (("A", request.sentence_a), ("B", request.sentence_b)):
                    length = len(tokenizer(_MASK_SPELLINGS.sub(mask_token, text))["input_ids"])
                    error = too_long(model, length, what=f"Sentence {which}")
                    if error:
                        raise error
                target_ids[i] = [_target_id(tokenizer, t) for t in request.targets]
            except UserError as exc:
                emit(i, exc)
                continue
            if emit.wanted(i):
                rows.append(i)
        if not rows:
            return
        texts = [_MASK_SPELLINGS.sub(mask_token, text)
                 for i in rows for text in (requests[i].sentence_a, requests[i].sentence_b)]
        input_ids, probs = mask_distributions(model, texts)
        for n, i in enumerate(rows):
            request = requests[i]
            sides = []
            for side in (2 * n, 2 * n + 1):
                sides.append(fillers(tokenizer, input_ids[side], probs[side], request.top_k))
            table = _rows(tokenizer, probs[2 * n], probs[2 * n + 1], sides, target_ids[i])
            emit(i, MaskPairResult(
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
                    title=f"Fillers for {mask_token} in two sentences ({model.spec.short_name})",
                    xlabel="probability of the filler", highlight=[r.target for r in table],
                ),
                alt_text=_alt_text(table),
            ))


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
        raise InvalidInput(f"Ask about at most {MAX_TARGETS} target words (got {len(words)}).")
    for word in words:
        if any(ch.isspace() for ch in word) or len(word) > 50:
            raise InvalidInput(f"Each target must be one short word; `{word[:50]}` is not.")
    return words


def _target_id(tokenizer, word: str) -> int:
    """A target must be one token of the vocabulary: the mask is filled by exactly one."""
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        pieces = " ".join(tokenizer.convert_ids_to_tokens(ids))
        raise InvalidInput(
            f"The target `{word}` is not a single token of the model's vocabulary (it becomes "
            f"`{pieces}`), so it can never fill the mask. Try a more common word."
        )
    return ids[0]


def _alt_text(rows: Sequence[MaskPairRow]) -> str:
    parts = [f"{r.token.strip()}: A {r.prob_a:.3f}, B {r.prob_b:.3f}" for r in rows]
    return ("Bar chart of mask fillers, each with its probability in sentence A (blue) and "
            "sentence B (orange). " + "; ".join(parts))[:1000]
