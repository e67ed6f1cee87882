"""`/mask`: the top-k fillers of one `[MASK]`, with scores.

The forward is hand-batched: the encoder runs on the padded batch, but the vocabulary
projection (the costliest layer per position) runs only at the mask positions, which is faster
than `pipeline(list, batch_size=32)` (benchmarks/RESULTS.md, "Figures behind the code"). An
equivalence test checks the answers against the pipeline run one request at a time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from core.errors import InvalidInput
from core.i18n import lazy
from core.inference.models import Head, LoadedModel
from core.inference.tasks.base import Task, Timings, check_range, clean_text, too_long
from core.inference.tasks.padding import hidden_by_length

#: What students type for the mask; normalised to the model's own mask token (`with_mask_token`).
MASK_SPELLINGS = re.compile(r"\[mask\]|<mask>", re.IGNORECASE)


@dataclass(frozen=True)
class FillMaskRequest:
    text: str
    top_k: int = 5


@dataclass(frozen=True)
class MaskFiller:
    token_id: int
    token: str
    score: float
    #: The text with the mask replaced by this filler.
    sequence: str


@dataclass(frozen=True)
class FillMaskResult:
    model_id: str
    text: str
    mask_token: str
    fillers: tuple[MaskFiller, ...]
    timings: Timings | None = None


class FillMaskTask(Task[FillMaskRequest, FillMaskResult]):
    name = "mask"
    needs = {"mask": frozenset({Head.MASKED_LM})}
    request_type = FillMaskRequest

    def validate(self, request: FillMaskRequest) -> FillMaskRequest:
        text = clean_text(request.text, what=lazy("text"), max_chars=self.limits.max_text_chars)
        check_range("top_k", request.top_k, 1, self.limits.max_mask_top_k)
        masks = len(MASK_SPELLINGS.findall(text))
        if masks != 1:
            if masks == 0:
                raise InvalidInput(lazy(
                    "Your text has no [MASK]. Put exactly one `[MASK]` where the missing word "
                    "goes, e.g. `Paris is the [MASK] of France.`"))
            raise InvalidInput(lazy(
                "Your text has {n} masks. Put exactly one `[MASK]` where the missing word goes, "
                "e.g. `Paris is the [MASK] of France.`", n=masks))
        return FillMaskRequest(text, int(request.top_k))

    def preprocess(self, model: LoadedModel, request: FillMaskRequest) -> str:
        text = with_mask_token(model.tokenizer, request.text)
        if error := too_long(model, len(model.tokenizer(text)["input_ids"])):
            raise error
        return text

    def forward(self, model: LoadedModel, inputs: Sequence[str],
                wanted: Callable[[int], bool]) -> Iterable[tuple[int, Any]]:
        input_ids, probs = mask_distributions(model, inputs)
        return enumerate(zip(input_ids, probs))

    def postprocess(self, model: LoadedModel, request: FillMaskRequest, prepared: str,
                    output: tuple[torch.Tensor, torch.Tensor]) -> FillMaskResult:
        input_ids, probs = output
        tokenizer = model.tokenizer
        return FillMaskResult(str(model.spec), request.text, tokenizer.mask_token,
                              fillers(tokenizer, input_ids, probs, request.top_k))


def with_mask_token(tokenizer: Any, text: str) -> str:
    """`text` with the student's spelling of the mask (`[mask]`, `<mask>`...) as the model's."""
    return MASK_SPELLINGS.sub(tokenizer.mask_token, text)


def mask_distributions(
    model: LoadedModel, texts: Sequence[str]
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each text's unpadded input ids, and the full filler distribution at its one mask.

    The encoder runs on the padded batch (rows of similar length together); the vocabulary
    projection runs only at the mask positions. Shared by `/mask` and `/maskpair`, so their
    numbers are the same by construction.
    """
    tokenizer = model.tokenizer
    batch = tokenizer(list(texts), padding=True, return_tensors="pt")
    positions = (batch["input_ids"] == tokenizer.mask_token_id).nonzero()
    if positions[:, 0].tolist() != list(range(len(texts))):  # validate allows one mask each
        raise RuntimeError(f"expected one mask per text, found rows {positions[:, 0].tolist()}")
    mlm = model.module(Head.MASKED_LM)
    head = mlm_head(mlm)
    ids, mask = batch["input_ids"].to(model.device), batch["attention_mask"].to(model.device)
    if head is None:
        # Another family (ALBERT, ELECTRA, ModernBERT...): its own forward, then its own
        # logits at the mask rows. Slower (the vocabulary projection runs at every position),
        # but right for any masked LM transformers can load.
        logits = mlm(input_ids=ids, attention_mask=mask).logits
        logits = logits[positions[:, 0], positions[:, 1]]
    else:
        # Inputs on the model's device; the ids for decoding stay here.
        hidden = hidden_by_length(mlm.base_model, ids, mask, tokenizer.padding_side)
        logits = head(hidden[positions[:, 0], positions[:, 1]])
    input_ids = [ids[mask.bool()] for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]
    return input_ids, logits.float().softmax(dim=-1).cpu()


def fillers(tokenizer, input_ids: torch.Tensor, probs: torch.Tensor,
            top_k: int) -> tuple[MaskFiller, ...]:
    """The `top_k` fillers of the one mask in `input_ids`, best first, with their sentences.

    Decoded from Python lists in two calls: ten `decode` calls on tensors took half as long
    again, under the GIL, in the tokenizer's own conversions (the fastest path's batches are
    short enough for that to show)."""
    listed = input_ids.tolist()
    position = listed.index(tokenizer.mask_token_id)
    scores, token_ids = probs.topk(top_k)
    chosen = token_ids.tolist()
    filled = []
    for token_id in chosen:
        sentence = listed.copy()
        sentence[position] = token_id
        filled.append(sentence)
    tokens = tokenizer.decode([[token_id] for token_id in chosen])
    sequences = tokenizer.decode(filled, skip_special_tokens=True)
    return tuple(MaskFiller(token_id=token_id, token=token, score=score, sequence=sequence)
                 for token_id, token, score, sequence
                 in zip(chosen, tokens, scores.tolist(), sequences))


def mlm_head(mlm) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The layers between the encoder's hidden state and the vocabulary logits, for the
    families whose head is known to be exactly that (None: use the model's own forward)."""
    if all(hasattr(mlm, n) for n in ("vocab_transform", "vocab_layer_norm", "vocab_projector")):
        # DistilBERT: mirrors DistilBertForMaskedLM.forward after the encoder.
        return lambda h: mlm.vocab_projector(
            mlm.vocab_layer_norm(mlm.activation(mlm.vocab_transform(h)))
        )
    family = type(mlm).__name__
    if family == "BertForMaskedLM":
        return mlm.cls
    if family in ("RobertaForMaskedLM", "XLMRobertaForMaskedLM", "CamembertForMaskedLM"):
        return mlm.lm_head
    return None
