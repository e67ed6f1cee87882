"""`/nexttoken`: GPT-2's next-token distribution, before and after the sampling knobs.

Students tune temperature, top-k and top-p in `/generate` without seeing what they do; this
shows the three stages for one prompt: the model's own distribution, the distribution after
temperature, and the one actually sampled from after top-k and top-p. The last stage is
`sampling_candidates` from the generate task, the very function `/generate` samples with, so
the picture cannot drift from the behaviour. Temperature 0 means greedy there, and here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from core.i18n import Localised, join, lazy, lazy_ngettext, number
from core.inference.models import Head, LoadedModel
from core.inference.tasks.base import Task, Timings, check_range, clean_text, too_long
from core.inference.tasks.generate import MAX_TOP_K, sampling_candidates
from core.pictures import charts
from core.pictures.stage import PictureResult

log = logging.getLogger(__name__)

#: Candidates listed and drawn (the most probable under the model).
SHOWN = 15


@dataclass(frozen=True)
class NextTokenRequest:
    prompt: str
    #: 0 means greedy, as in `/generate`.
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0


@dataclass(frozen=True)
class NextTokenCandidate:
    token_id: int
    #: Decoded as GPT-2 writes it, leading space included (" Paris").
    token: str
    #: The model's softmax (temperature 1).
    model_prob: float
    #: After temperature only.
    scaled_prob: float
    #: After temperature, top-k and top-p, renormalised: what sampling draws from.
    final_prob: float


@dataclass(frozen=True)
class NextTokenResult(PictureResult):
    model_id: str
    prompt: str
    temperature: float
    top_k: int
    top_p: float
    greedy: bool
    #: The `SHOWN` most probable tokens under the model, best first.
    candidates: tuple[NextTokenCandidate, ...]
    #: How many tokens can be sampled at all after the knobs (1 when greedy).
    kept: int
    #: The model's (temperature 1) probability mass of the tokens that can be sampled.
    kept_model_mass: float
    timings: Timings | None = None


class NextTokenTask(Task[NextTokenRequest, NextTokenResult]):
    name = "nexttoken"
    needs = {"generate": frozenset({Head.CAUSAL_LM})}
    draws = True
    request_type = NextTokenRequest

    def validate(self, request: NextTokenRequest) -> NextTokenRequest:
        prompt = clean_text(request.prompt, what=lazy("prompt"),
                            max_chars=self.limits.max_text_chars)
        check_range("temperature", request.temperature, 0, 2)
        check_range("top_k", request.top_k, 1, MAX_TOP_K)
        check_range("top_p", request.top_p, 0, 1, low_open=True)
        return NextTokenRequest(prompt, float(request.temperature), int(request.top_k),
                                float(request.top_p))

    def preprocess(self, model: LoadedModel, request: NextTokenRequest) -> list[int]:
        ids = model.tokenizer(request.prompt)["input_ids"]
        # Room for one more: the position of the token predicted.
        if error := too_long(model, len(ids), what=lazy("The prompt"), reserve=1):
            raise error
        return ids

    def forward_one(self, model: LoadedModel, prepared: list[int]) -> torch.Tensor:
        """The next-token logits: one unpadded forward, as `/generate`'s first step sees it."""
        lm = model.module(Head.CAUSAL_LM)
        return lm(torch.tensor([prepared], device=model.device),
                  logits_to_keep=1).logits[0, -1].float().cpu()

    def postprocess(self, model: LoadedModel, request: NextTokenRequest, prepared: list[int],
                    output: torch.Tensor) -> NextTokenResult:
        return _result(model, request, output)


def next_token_distribution(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Over the whole vocabulary: (after temperature, after temperature -> top-k -> top-p).

    Both sum to 1. The second is `/generate`'s sampling distribution (renormalised); at
    temperature 0 both put all the mass on the most likely token, as greedy decoding does.
    """
    logits = logits.float()
    if temperature == 0:
        greedy = torch.zeros_like(logits)
        greedy[logits.argmax()] = 1.0
        return greedy, greedy.clone()
    scaled = (logits / temperature).softmax(dim=-1)
    weights, ids = sampling_candidates(logits[None], [temperature], [top_k], [top_p])
    final = torch.zeros_like(logits).scatter(0, ids[0], weights[0])
    return scaled, final / final.sum()


def _result(model: LoadedModel, request: NextTokenRequest, logits: torch.Tensor) -> NextTokenResult:
    tokenizer = model.tokenizer
    model_probs = logits.softmax(dim=-1)
    scaled, final = next_token_distribution(logits, request.temperature, request.top_k,
                                            request.top_p)
    shown = model_probs.topk(min(SHOWN, logits.shape[-1])).indices.tolist()
    candidates = tuple(
        NextTokenCandidate(
            token_id=t,
            token=tokenizer.decode([t]),
            model_prob=float(model_probs[t]),
            scaled_prob=float(scaled[t]),
            final_prob=float(final[t]),
        )
        for t in shown
    )
    kept_mask = final > 0
    kept = int(kept_mask.sum())
    greedy = request.temperature == 0
    knobs = (lazy("greedy (temperature 0)") if greedy else
             lazy("temperature {t}, top-k {k}, top-p {p}", t=number(request.temperature),
                  k=request.top_k, p=number(request.top_p)))
    hidden = kept - sum(1 for c in candidates if c.final_prob > 0)
    footnote = (lazy_ngettext("{n} token can be sampled; {hidden} of them are not shown",
                              "{n} tokens can be sampled; {hidden} of them are not shown",
                              kept, hidden=hidden) if hidden > 0 else
                lazy_ngettext("{n} token can be sampled", "{n} tokens can be sampled", kept))
    labels = [charts.visible_token(c.token) for c in candidates]
    return NextTokenResult(
        model_id=str(model.spec),
        prompt=request.prompt,
        temperature=request.temperature,
        top_k=request.top_k,
        top_p=request.top_p,
        greedy=greedy,
        candidates=candidates,
        kept=kept,
        kept_model_mass=float(model_probs[kept_mask].sum()),
        drawing=charts.drawing(
            charts.next_token_bars, labels, [c.model_prob for c in candidates],
            [c.scaled_prob for c in candidates],
            [c.final_prob for c in candidates],
            title=lazy("Next token after '{prompt}' ({knobs})", prompt=request.prompt[-60:],
                       knobs=knobs), footnote=footnote,
        ),
        alt_text=_alt_text(knobs, labels, candidates, kept),
    )


def _alt_text(knobs: Localised, labels: Sequence[str],
              candidates: Sequence[NextTokenCandidate], kept: int) -> Localised:
    parts = join("; ", (join(" ", (label, number(c.model_prob, "0.000"), "->",
                                   number(c.final_prob, "0.000")))
                        for label, c in zip(labels, candidates)))
    return charts.alt_text(lazy_ngettext(
        "Bar chart of the most likely next tokens, model probability then the sampling "
        "probability with {knobs}; {n} token can be sampled. {parts}",
        "Bar chart of the most likely next tokens, model probability then the sampling "
        "probability with {knobs}; {n} tokens can be sampled. {parts}",
        kept, knobs=knobs, parts=parts))
