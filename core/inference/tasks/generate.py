"""`/generate`: GPT-2 continuations with the knobs the course explains.

The decode loop is ours rather than `model.generate`, for three reasons (the measured one:
benchmarks/RESULTS.md, "Figures behind the code"):
- sampling only within the top-k candidates (a softmax and sort over the whole 50k-token
  vocabulary at every step is costly at batch 16);
- a finished sequence leaves the batch at once (the KV cache rows are dropped), and its
  request is answered then, instead of waiting for the longest one;
- each request keeps its own options and its own seeded generator inside a shared batch, and
  only the allow-listed options below exist: nothing a user types reaches `generate` kwargs.
Greedy output equals `model.generate(do_sample=False)` run one prompt at a time (tested).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from core.config import EngineConfig
from core.i18n import lazy
from core.inference.models import Head, LoadedModel
from core.inference.tasks.base import Task, Timings, check_range, clean_text, too_long

MAX_TOP_K = 1000


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    max_new_tokens: int = 30
    #: 0 means greedy (always the most likely token).
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    num_return_sequences: int = 1
    seed: int | None = None
    greedy: bool = False
    #: Also score every generated token (`StepScore`): for the step-scores picture.
    step_scores: bool = False

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0


@dataclass(frozen=True)
class StepScore:
    """How the model saw one generated token when it was chosen (inseq's step scores)."""

    token: str
    #: Its probability under the model (softmax at temperature 1, before any knob).
    probability: float
    #: Its rank among all candidates by that probability (1: the likeliest, what greedy takes).
    rank: int
    #: The entropy of that step's distribution, in bits: how unsure the model was.
    entropy: float


@dataclass(frozen=True)
class GenerateResult:
    model_id: str
    prompt: str
    #: The new text of each sequence (without the prompt).
    continuations: tuple[str, ...]
    new_tokens: tuple[int, ...]
    #: Why each sequence stopped: "eos" or "length".
    stop_reasons: tuple[str, ...]
    greedy: bool
    seed: int | None
    timings: Timings | None = None
    #: The knobs it ran with, so an answer can state them (and a button can repeat them).
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    #: Per sequence, per new token: its step score (when the request asked for them).
    steps: tuple[tuple[StepScore, ...], ...] = ()


@dataclass(frozen=True)
class GeneratePartial:
    """A request's text so far (`InferenceEngine.stream`): one entry per return sequence."""

    continuations: tuple[str, ...]
    new_tokens: tuple[int, ...]
    #: Per sequence: it has stopped (its text is final).
    finished: tuple[bool, ...]


#: Where a partial result goes: request j -> the stream's `offer` if its reader asked, or None.
Progress = Callable[[int], "Callable[[GeneratePartial], None] | None"]


class GenerateTask(Task[GenerateRequest, GenerateResult]):
    name = "generate"
    needs = {"generate": frozenset({Head.CAUSAL_LM})}
    request_type = GenerateRequest
    streams = True

    def rows(self, request: GenerateRequest) -> int:
        return request.num_return_sequences

    def max_batch_rows(self, engine: EngineConfig) -> int:
        return min(engine.max_batch_size, engine.max_generate_batch)

    def validate(self, request: GenerateRequest) -> GenerateRequest:
        prompt = clean_text(request.prompt, what=lazy("prompt"),
                            max_chars=self.limits.max_text_chars)
        check_range("max_new_tokens", request.max_new_tokens, 1, self.limits.max_new_tokens)
        check_range("temperature", request.temperature, 0, 2)
        check_range("top_k", request.top_k, 1, MAX_TOP_K)
        check_range("top_p", request.top_p, 0, 1, low_open=True)
        check_range(
            "num_return_sequences", request.num_return_sequences, 1,
            self.limits.max_return_sequences,
        )
        if request.seed is not None:
            check_range("seed", request.seed, 0, 2**63 - 1)
        return GenerateRequest(
            prompt=prompt,
            max_new_tokens=int(request.max_new_tokens),
            temperature=float(request.temperature),
            top_k=int(request.top_k),
            top_p=float(request.top_p),
            num_return_sequences=int(request.num_return_sequences),
            seed=None if request.seed is None else int(request.seed),
            greedy=bool(request.greedy),
            step_scores=bool(request.step_scores),
        )

    def preprocess(self, model: LoadedModel, request: GenerateRequest) -> _Prompt:
        ids = model.tokenizer(request.prompt)["input_ids"]
        if error := too_long(model, len(ids), what=lazy("The prompt"),
                             reserve=request.max_new_tokens,
                             advice=lazy("Shorten the prompt or ask for fewer new tokens.")):
            raise error
        # An unseeded request still gets a seed, reported back, so a student can repeat a
        # sample they liked; 31 bits fit the slash command's `seed` option.
        seed = request.seed if request.seed is not None else secrets.randbits(31)
        return _Prompt(request, ids, seed, torch.Generator().manual_seed(seed))

    def forward(self, model: LoadedModel, inputs: Sequence[_Prompt],
                wanted: Callable[[int], bool],
                progress: Progress | None = None) -> Iterator[tuple[int, list[_Row]]]:
        """Each prompt's rows (one per return sequence) as soon as all of them have stopped;
        meanwhile, the text so far to each prompt whose reader asks (`progress`)."""
        rows = [_Row(j, prompt.ids, prompt.generator, prompt.seed)
                for j, prompt in enumerate(inputs)
                for _ in range(prompt.request.num_return_sequences)]
        return _decode(model, [prompt.request for prompt in inputs], rows, wanted, progress)

    def postprocess(self, model: LoadedModel, request: GenerateRequest, prepared: _Prompt,
                    output: list[_Row]) -> GenerateResult:
        return _result(model, request, output)


@dataclass(frozen=True)
class _Prompt:
    """A request ready to decode: its prompt's ids and its seeded generator (shared by its
    return sequences, so a seed gives the same texts whatever the batch)."""

    request: GenerateRequest
    ids: list[int]
    seed: int
    generator: torch.Generator


@dataclass
class _Row:
    """One sequence being generated (a request with n return sequences has n rows)."""

    request: int
    prompt_ids: list[int]
    generator: torch.Generator
    seed: int
    new_ids: list[int] = field(default_factory=list)
    stop: str = ""
    #: (probability, rank, entropy in bits) per new token, when its request asked.
    scores: list[tuple[float, int, float]] = field(default_factory=list)


def _decode(model: LoadedModel, requests: Sequence[GenerateRequest], rows: list[_Row],
            wanted: Callable[[int], bool],
            progress: Progress | None = None) -> Iterator[tuple[int, list[_Row]]]:
    """Decode every row together; yield a request's rows when its last one stops (or its
    caller went away). After each step, a request whose reader asked (`progress`) is offered
    its text so far: read-only, so streaming changes no token."""
    tokenizer = model.tokenizer
    lm = model.module(Head.CAUSAL_LM)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    width = max(len(r.prompt_ids) for r in rows)
    # Left padding: every row's last real token sits in the last column, so one step's logits
    # are `[:, -1]` for all rows. Position ids skip the padding, as `generate` does.
    # Built on the model's device; each step's logits come back to the CPU, where every row's
    # seeded generator samples (so a seed gives the same text on any device).
    device = model.device
    input_ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in rows],
                             device=device)
    mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in rows],
                        device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    remaining = {i: sum(1 for r in rows if r.request == i) for i in {r.request for r in rows}}
    active = list(range(len(rows)))
    cache = DynamicCache(config=lm.config)
    while True:
        # The cache goes second, positionally: transformers renamed that argument in 5.x.
        # Only the last position's vocabulary projection is ever used: `logits_to_keep` as an
        # index, not `1`. transformers slices `hidden[:, -1:]` for an int, a strided view that
        # matmul cannot fold into one product in bfloat16: it copied the vocabulary matrix per
        # row, and the first step of a batch of 16 took longer than the other 29 together.
        # Indexing gathers the rows into a contiguous tensor instead.
        out = lm(input_ids, cache, attention_mask=mask, position_ids=positions,
                 use_cache=True,
                 logits_to_keep=torch.tensor([input_ids.shape[1] - 1], device=device))
        logits = out.logits[:, -1, :].float().cpu()
        next_ids = _choose([requests[rows[a].request] for a in active],
                           [rows[a].generator for a in active], logits)
        scored = [j for j, a in enumerate(active) if requests[rows[a].request].step_scores]
        scores = step_scores(logits[scored], next_ids[scored]) if scored else []
        keep = []
        for j, a in enumerate(active):
            row, token = rows[a], int(next_ids[j])
            request = requests[row.request]
            if token == eos:
                row.stop = "eos"
            else:
                row.new_ids.append(token)
                if request.step_scores:
                    row.scores.append(scores[scored.index(j)])
                if len(row.new_ids) >= request.max_new_tokens:
                    row.stop = "length"
            if not row.stop and wanted(row.request):
                keep.append(j)
                continue
            remaining[row.request] -= 1
            if remaining[row.request] == 0:
                yield row.request, [r for r in rows if r.request == row.request]
        if not keep:
            return
        if progress is not None:
            for index in {rows[active[j]].request for j in keep}:
                offer = progress(index)
                if offer is not None:
                    offer(_partial(tokenizer, [r for r in rows if r.request == index]))
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            mask, positions, next_ids = mask[index], positions[index], next_ids[index.cpu()]
            active = [active[j] for j in keep]
        input_ids = next_ids[:, None].to(device)
        mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=-1)
        positions = positions[:, -1:] + 1


def step_scores(logits: torch.Tensor, chosen: torch.Tensor) -> list[tuple[float, int, float]]:
    """Per row: the chosen token's probability and rank under the model (temperature 1), and
    the step's entropy in bits. Only for requests that ask: it reads the whole vocabulary."""
    log_probs = logits.log_softmax(dim=-1)
    mine = log_probs.gather(1, chosen[:, None])
    ranks = (log_probs > mine).sum(dim=-1) + 1
    entropy = -(log_probs.exp() * log_probs).nan_to_num().sum(dim=-1) / math.log(2)
    return [(float(p), int(r), float(h))
            for p, r, h in zip(mine[:, 0].exp(), ranks, entropy, strict=True)]


def _choose(requests: list[GenerateRequest], generators: list[torch.Generator],
            logits: torch.Tensor) -> torch.Tensor:
    """Next token per row: argmax for greedy rows, else temperature -> top-k -> top-p -> sample."""
    sampled = [j for j, r in enumerate(requests) if not r.is_greedy]
    if not sampled:
        return logits.argmax(dim=-1)
    # The argmax over the vocabulary only for the greedy rows: a sampled row never reads it.
    chosen = torch.zeros(len(requests), dtype=torch.long)
    greedy = [j for j, r in enumerate(requests) if r.is_greedy]
    if greedy:
        chosen[greedy] = logits[greedy].argmax(dim=-1)
    probs, ids = sampling_candidates(
        logits[torch.tensor(sampled)],
        [requests[j].temperature for j in sampled],
        [requests[j].top_k for j in sampled],
        [requests[j].top_p for j in sampled],
    )
    for n, j in enumerate(sampled):
        # Sample from this row's own top_k only: how many random numbers multinomial draws
        # depends on the vector's length, so the batch-wide k would make a seed's text depend
        # on which other requests shared the batch.
        pick = torch.multinomial(probs[n, : requests[j].top_k], 1, generator=generators[j])
        chosen[j] = ids[n, pick]
    return chosen


#: Smallest temperature used in the arithmetic (see `sampling_candidates`).
MIN_TEMPERATURE = 1e-4


def sampling_candidates(
    logits: torch.Tensor, temperatures: Sequence[float], top_ks: Sequence[int],
    top_ps: Sequence[float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's sampling candidates after temperature -> top-k -> top-p, best first.

    The one definition of the knobs: `/generate` samples from it and `/nexttoken` draws it, so
    what students see is what sampling does. Returns `(weights, ids)`, both `[rows, max top_k]`:
    a softmax over the row's top-k, with candidates beyond its own top_k or dropped by top-p set
    to 0, not renormalised (`torch.multinomial` does not need it).
    """
    k = min(max(top_ks), logits.shape[-1])
    # A temperature of 5e-239 is allowed (it is > 0) but logits / 5e-239 overflow to inf and the
    # softmax to NaN: below MIN_TEMPERATURE the distribution is already one-hot (greedy) in
    # float32, so clamping changes no answer and keeps the arithmetic finite.
    temperature = torch.tensor(temperatures).clamp(min=MIN_TEMPERATURE)[:, None]
    values, ids = (logits / temperature).topk(k, dim=-1)  # sorted, best first
    row_k = torch.tensor(top_ks)[:, None]
    values = values.masked_fill(torch.arange(k)[None, :] >= row_k, float("-inf"))
    probs = values.softmax(dim=-1)
    # Drop a candidate once the better ones already cover top_p, i.e. once it and the worse ones
    # together hold at most 1 - top_p (the best always stays). The tail is summed from the
    # worst upwards, as transformers' TopPLogitsWarper does: summing the best first rounds to
    # 1.0 while tiny tokens remain, and top_p=1.0 then dropped them (tests/test_sampling_warpers).
    tail = probs.flip(-1).cumsum(dim=-1).flip(-1)
    dropped = tail <= torch.tensor([1.0 - p for p in top_ps])[:, None]
    dropped[:, 0] = False
    probs = probs.masked_fill(dropped, 0.0)
    return probs, ids


def _continuations(tokenizer: Any, mine: list[_Row]) -> tuple[str, ...]:
    """Each row's new text: the one decoding both the partial and the final results use."""
    prompt_text = tokenizer.decode(mine[0].prompt_ids, skip_special_tokens=True)
    continuations = []
    for row in mine:
        # Decode prompt + new tokens together: a character split across the boundary (byte-level
        # BPE) only decodes correctly in one piece.
        full = tokenizer.decode(row.prompt_ids + row.new_ids, skip_special_tokens=True)
        continuations.append(
            full[len(prompt_text):] if full.startswith(prompt_text)
            else tokenizer.decode(row.new_ids, skip_special_tokens=True)
        )
    return tuple(continuations)


def _partial(tokenizer: Any, mine: list[_Row]) -> GeneratePartial:
    return GeneratePartial(_continuations(tokenizer, mine), tuple(len(r.new_ids) for r in mine),
                           tuple(bool(r.stop) for r in mine))


def _result(model: LoadedModel, request: GenerateRequest, mine: list[_Row]) -> GenerateResult:
    return GenerateResult(
        model_id=str(model.spec),
        prompt=request.prompt,
        continuations=_continuations(model.tokenizer, mine),
        new_tokens=tuple(len(r.new_ids) for r in mine),
        stop_reasons=tuple(r.stop or "cancelled" for r in mine),
        greedy=request.is_greedy,
        seed=None if request.is_greedy else mine[0].seed,
        temperature=request.temperature,
        top_k=request.top_k,
        top_p=request.top_p,
        steps=tuple(tuple(StepScore(model.tokenizer.decode([token]), *score)
                          for token, score in zip(row.new_ids, row.scores, strict=True))
                    for row in mine) if request.step_scores else (),
    )
