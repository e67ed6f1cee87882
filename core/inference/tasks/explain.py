"""`/explain`: which of the words a student typed pushed a prediction, and how hard.

Integrated gradients, by captum's `LayerIntegratedGradients` on the token-embedding layer's
output: the path from a *baseline* input (every typed token replaced by the model's padding
token; special tokens and the mask kept) to the real input is cut into `[limits] explain_steps`
points, the gradient of the explained score is taken at each, and each token gets its
embedding difference times the averaged gradient. Sub-word scores are summed to the words the
student typed (split at whitespace), so "tokenization." gets one score, not four. The method's
own completeness check, captum's convergence delta (the attributions' sum minus the score's
change from baseline to input), is reported with every answer; more steps shrink it.

What is explained, per family (one task each, all sharing this loop):

- `sentiment`: the course classifier's log-odds for the label it predicts, through the encoder,
  the pooling it was trained with and its logistic regression;
- `mask`: the logit of the top filler (or `target`) at the mask, or `target` rather than
  `versus` (the difference of their logits: the bias probe's "why he rather than she");
- `qa`: the start logit of the answer span plus its end logit, over question and context;
- `next`: GPT-2's logit for its likeliest next token (or `target`, or `target` vs `versus`).

Why a private layer, and not the model's embedding module: captum's layer methods put a hook
on the layer they attribute to, and the embedding module is shared by every task on that model;
`/mask` batches run at the same time in the model's main lane, and a hook there would swap their
embeddings for this explanation's interpolated ones. So the forward here looks the embeddings
up itself, passes them through `tap` (an identity module made for this call alone, which captum
hooks) and runs the model from `inputs_embeds`. That is the attribution to the embedding
layer's output, what `LayerIntegratedGradients(f, model.get_input_embeddings())` computes
(tests/test_explain.py checks both agree), while the shared model is never changed: its
parameters keep `requires_grad=False` (set at load), its mode stays `eval`, and gradients are
taken with respect to the tap's output only. The worker runs batches under
`torch.inference_mode()`; the attribution leaves it, for its own thread only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from core.config import EngineConfig
from core.errors import InvalidInput, ModelUnavailable
from core.i18n import Localised, join, lazy, number, percent
from core.inference.models import Head, LoadedModel
from core.inference.tasks.base import Task, Timings, clean_text, too_long
from core.inference.tasks.fill_mask import MASK_SPELLINGS, mlm_head, with_mask_token
from core.inference.tasks.qa import best_spans
from core.pictures import charts, explain_charts
from core.pictures.stage import PictureResult

Family = Literal["sentiment", "mask", "qa", "next"]
FAMILIES: tuple[Family, ...] = ("sentiment", "mask", "qa", "next")

#: Explanations per batch: each costs `explain_steps` forward and backward rows, so a batch of
#: four is already a large forward; more would only make the first caller wait.
MAX_EXPLAIN_BATCH = 4
#: Tokens per forward-and-backward chunk of the integrated-gradient steps: what bounds the
#: memory an explanation holds for its backward (a long QA context times 32 steps would
#: otherwise keep every layer's activations of tens of thousands of tokens at once).
TOKENS_PER_CHUNK = 8192

#: Under the picture and the answer: a lazy message, written in the reader's language.
HOW_TO_READ = lazy(
    "Blue words pushed the model toward this prediction and orange words against it, compared "
    "with a baseline where every word is blank. It shows what the model's score leaned on, not "
    "what causes what; another baseline gives other numbers."
)
#: A score with three significant digits and its sign, the language's decimal sign (a CLDR
#: pattern: "+0.0123", "-1,23").
SIGNED = "+@@@;-@@@"

_WORD = re.compile(r"\S+")


# ---------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class ExplainSentimentRequest:
    text: str
    #: The live classifier, as plain numbers: weights over the pooled features, intercept,
    #: its two label names (index 1 = positive log-odds), the pooling it was trained with.
    coef: tuple[float, ...]
    intercept: float
    label_names: tuple[str, str]
    pooling: Literal["cls", "mean"] = "cls"


@dataclass(frozen=True)
class ExplainMaskRequest:
    text: str
    target: str | None = None
    versus: str | None = None


@dataclass(frozen=True)
class ExplainQARequest:
    question: str
    context: str


@dataclass(frozen=True)
class ExplainNextRequest:
    prompt: str
    target: str | None = None
    versus: str | None = None


# ---------------------------------------------------------------------------- result


@dataclass(frozen=True)
class WordScore:
    """One word as the student typed it (characters `start`..`end` of its passage)."""

    word: str
    start: int
    end: int
    #: Its tokens' attributions summed: positive pushed toward the prediction.
    score: float


@dataclass(frozen=True)
class Passage:
    """One text the student typed (QA has two: the question and the context)."""

    #: The passage's name in the picture and the answer ("question"), a lazy message; "" when
    #: there is one passage.
    label: str | Localised
    text: str
    words: tuple[WordScore, ...]
    #: Tokens of this text beyond the model's window: not read, so they have no score.
    unread_tokens: int = 0


@dataclass(frozen=True)
class ExplainResult(PictureResult):
    model_id: str
    family: Family
    passages: tuple[Passage, ...]
    #: What was explained, for the title: "positive (87%)", "“Paris” at [MASK]"... (a message
    #: of the catalog, written in the reader's language when shown).
    prediction: str | Localised
    #: What the numbers are contributions to: "log-odds of positive", "logit of “Paris”".
    score_name: str | Localised
    #: The explained score on the input and on the baseline.
    score: float
    baseline_score: float
    #: captum's convergence delta: sum of the attributions - (score - baseline_score).
    delta: float
    steps: int
    #: The baseline in words ("every word replaced by [PAD]").
    baseline: str | Localised
    timings: Timings | None = None

    @property
    def words(self) -> tuple[WordScore, ...]:
        return tuple(w for p in self.passages for w in p.words)

    @property
    def relative_delta(self) -> float:
        """The delta as a share of the change it should account for (0 = exact)."""
        change = abs(self.score - self.baseline_score)
        return abs(self.delta) / change if change > 0 else float("inf") if self.delta else 0.0

    def top_words(self, count: int = 5) -> list[WordScore]:
        return sorted(self.words, key=lambda w: -abs(w.score))[:count]


# ---------------------------------------------------------------------------- encoding


@dataclass
class Encoded:
    """One request's model input and what each token belongs to."""

    ids: list[int]
    baseline_ids: list[int]
    #: Per token: (passage index, word index) it is summed into, or None (special tokens).
    owners: list[tuple[int, int] | None]
    passages: list[Passage]
    #: What the family needs after the first forward (target ids...).
    extra: dict[str, Any] = field(default_factory=dict)


def words_of(text: str) -> list[tuple[str, int, int]]:
    """The words as typed: whitespace-separated, with their character spans."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def owner_of(words: Sequence[tuple[str, int, int]], start: int, end: int, text: str) -> int:
    """The word a token with characters `start`..`end` belongs to: the one holding its first
    non-space character (a byte-level piece carries its leading space); a piece of spaces
    alone goes with the word after it (or the last word)."""
    position = start
    while position < end and text[position].isspace():
        position += 1
    for index, (_, w_start, w_end) in enumerate(words):
        if w_start <= position < w_end or position < w_start:
            return index
    return len(words) - 1


def reference_id(tokenizer: Any) -> int:
    """The baseline's token: padding (what "no word here" means to the model), else unknown,
    else end-of-text (GPT-2 has no padding token)."""
    for name in ("pad_token_id", "unk_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    raise ModelUnavailable(lazy(
        "This model's tokenizer has no padding, unknown or end token to build an attribution "
        "baseline from."))


def single_token(tokenizer: Any, word: str, *, what: str, space: bool = False) -> int:
    """`word` as one vocabulary token (with GPT-2's leading space when `space`)."""
    text = (" " + word.strip()) if space else word.strip()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or ids[0] == getattr(tokenizer, "unk_token_id", None):
        pieces = " ".join(tokenizer.convert_ids_to_tokens(ids))
        raise InvalidInput(lazy(
            "The {what} `{strip}` is not a single token of the model's vocabulary (it becomes"
            " `{pieces}`). Try a more common word.",
            what=what, strip=word.strip()[:40], pieces=pieces))
    return int(ids[0])


def encode(tokenizer: Any, texts: Sequence[tuple[str | Localised, str]], *,
           keep: Iterable[int] = (), max_length: int | None = None) -> Encoded:
    """Tokenize one or two texts (label, text) as the model reads them, with a baseline and
    each token's word. Tokens past `max_length` (the second text's end first) are counted
    per passage, not read. Special tokens and ids in `keep` (the mask) stay in the baseline."""
    pair = [t for _, t in texts]
    enc = tokenizer(*pair, return_offsets_mapping=True, truncation=max_length is not None
                    and ("only_second" if len(pair) == 2 else True), max_length=max_length)
    full = tokenizer(*pair, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    reference = reference_id(tokenizer)
    kept = set(keep)
    special = set(tokenizer.all_special_ids)
    words = [words_of(text) for _, text in texts]
    sequence_ids = enc.sequence_ids()
    owners: list[tuple[int, int] | None] = []
    baseline: list[int] = []
    for token, (start, end), part in zip(ids, enc["offset_mapping"], sequence_ids):
        if part is None or token in special or token in kept or not words[part]:
            owners.append(None)
            baseline.append(token)
            continue
        owners.append((part, owner_of(words[part], start, end, texts[part][1])))
        baseline.append(reference)
    read = [sum(1 for s in sequence_ids if s == k) for k in range(len(texts))]
    whole = [sum(1 for s in full.sequence_ids() if s == k) for k in range(len(texts))]
    passages = [Passage(label, text, (), unread_tokens=whole[k] - read[k])
                for k, (label, text) in enumerate(texts)]
    return Encoded(ids, baseline, owners, passages)


# ---------------------------------------------------------------------------- the task


class ExplainTask(Task[Any, ExplainResult]):
    """What every explanation shares: encoding, one batched attribution, words, the picture.

    A family fills in `module` (which loaded head), `encode_request` (tokens, baseline, each
    token's word), `given` (per-row numbers known before the forward), `outputs` (the model
    from the embeddings), `choose` (after one plain forward: which output to explain) and
    `score` (the explained scalar per row). Its own lane: an explanation is tens of forwards
    and backwards, and `/mask` answers must not queue behind it.
    """

    own_lane = True
    draws = True
    family: ClassVar[Family]

    def max_batch_rows(self, engine: EngineConfig) -> int:
        return max(1, min(engine.max_batch_size, MAX_EXPLAIN_BATCH))

    # --------------------------------------------------------------- family steps

    def encode_request(self, model: LoadedModel, request: Any) -> Encoded:
        raise NotImplementedError

    def module(self, model: LoadedModel) -> Any:
        raise NotImplementedError

    def given(self, encoded: Encoded) -> list[float]:
        """Numbers a row's forward needs that are known before it runs (the mask's
        position, the classifier's weights); every row of a family has as many."""
        return []

    def outputs(self, module: Any, embeds: torch.Tensor, mask: torch.Tensor,
                given: torch.Tensor) -> Any:
        """What the model computes from the embeddings (only as much as `score` needs)."""
        raise NotImplementedError

    def choose(self, model: LoadedModel, encoded: Encoded, output: Any,
               row: int) -> tuple[list[int], Localised, Localised]:
        """From the plain forward's `output` (row `row`): the integers `score` reads for this
        row (which output to explain), the prediction in words and the score's name."""
        raise NotImplementedError

    def score(self, output: Any, given: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """The explained scalar per row."""
        raise NotImplementedError

    # --------------------------------------------------------------- the shared loop

    def preprocess(self, model: LoadedModel, request: Any) -> Encoded:
        return self.encode_request(model, request)

    def forward(self, model: LoadedModel, inputs: Sequence[Encoded],
                wanted: Callable[[int], bool]) -> Iterable[tuple[int, Any]]:
        spec = model.spec
        fast_path = spec.quantize != "none" or spec.backend != "torch"
        if fast_path and str(model.device).startswith("cpu"):  # on a GPU they are ignored
            raise ModelUnavailable(
                lazy(
                    "`{spec}` runs on a CPU fast path (int8 or ONNX Runtime), which has no "
                    "gradients: /explain needs it on plain torch (an operator can change "
                    "`quantize`/`backend` in the config).",
                    spec=spec))
        module = self.module(model)
        embedding = module.get_input_embeddings()
        with torch.inference_mode(False), torch.enable_grad():
            ids, baseline, mask = _padded(inputs, reference_id(model.tokenizer), model.device)
            given = torch.tensor([self.given(e) for e in inputs], dtype=torch.float64,
                                 device=ids.device).reshape(len(inputs), -1)
            with torch.no_grad():
                plain = self.outputs(module, embedding(ids), mask, given)
            chosen = [self.choose(model, enc, plain, row) for row, enc in enumerate(inputs)]
            choice = torch.tensor([c[0] for c in chosen], dtype=torch.long, device=ids.device)

            def explained(embeds: torch.Tensor, m: torch.Tensor, g: torch.Tensor,
                          c: torch.Tensor) -> torch.Tensor:
                return self.score(self.outputs(module, embeds, m, g), g, c)

            attributions, delta, score, base = attribute(
                explained, embedding, ids, baseline, (mask, given, choice),
                self.limits.explain_steps)
        for row in range(len(inputs)):
            yield row, (attributions[row], float(delta[row]), float(score[row]),
                        float(base[row]), chosen[row][1], chosen[row][2])

    def postprocess(self, model: LoadedModel, request: Any, prepared: Encoded,
                    output: tuple) -> ExplainResult:
        token_scores, delta, score, base, prediction, score_name = output
        sums = [np.zeros(len(words_of(p.text))) for p in prepared.passages]
        for position, owner in enumerate(prepared.owners):
            if owner is not None:
                sums[owner[0]][owner[1]] += float(token_scores[position])
        passages = tuple(
            Passage(p.label, p.text, tuple(
                WordScore(w, s, e, float(sums[k][i]))
                for i, (w, s, e) in enumerate(words_of(p.text))), p.unread_tokens)
            for k, p in enumerate(prepared.passages))
        reference = model.tokenizer.convert_ids_to_tokens(reference_id(model.tokenizer))
        result = ExplainResult(
            model_id=str(model.spec), family=self.family, passages=passages,
            prediction=prediction, score_name=score_name, score=score, baseline_score=base,
            delta=delta, steps=self.limits.explain_steps,
            baseline=lazy("every word replaced by {token}", token=reference),
        )
        return _with_picture(result)


def attribute(score: Callable[..., torch.Tensor], embedding: torch.nn.Module,
              ids: torch.Tensor, baseline: torch.Tensor, args: tuple, steps: int,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integrated gradients of `score(embeds, *args)` (one scalar per row) with respect to
    the embedding layer's output, through a private tap (see the module docstring).

    Returns per-token attributions (summed over the embedding's width), captum's convergence
    delta, and the score on the input and on the baseline. Autograd must be on."""
    from captum.attr import LayerIntegratedGradients

    tap = torch.nn.Identity()  # this call's own layer: captum's hooks go here, nowhere shared

    def forward(token_ids: torch.Tensor, *more: Any) -> torch.Tensor:
        return score(tap(embedding(token_ids)), *more)

    method = LayerIntegratedGradients(forward, tap)
    rows = ids.shape[0]
    # Whole steps of every row per chunk (captum's unit), at least one.
    chunk = rows * max(1, TOKENS_PER_CHUNK // (rows * ids.shape[1]))
    attributions, delta = method.attribute(
        ids, baselines=baseline, additional_forward_args=args, n_steps=steps,
        internal_batch_size=chunk, return_convergence_delta=True)
    with torch.no_grad():
        on_input, on_baseline = forward(ids, *args), forward(baseline, *args)
    return (attributions.sum(-1).detach().float().cpu(), delta.detach().float().cpu(),
            on_input.float().cpu(), on_baseline.float().cpu())


def _padded(inputs: Sequence[Encoded], pad: int, device: str
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ids, baseline ids and attention mask, right-padded (each row's positions then start at
    0 whatever its length, for GPT-2 too)."""
    width = max(len(e.ids) for e in inputs)
    ids = torch.full((len(inputs), width), pad, dtype=torch.long)
    baseline = torch.full((len(inputs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(inputs), width), dtype=torch.long)
    for row, enc in enumerate(inputs):
        n = len(enc.ids)
        ids[row, :n] = torch.tensor(enc.ids)
        baseline[row, :n] = torch.tensor(enc.baseline_ids)
        mask[row, :n] = 1
    return ids.to(device), baseline.to(device), mask.to(device)


def _quoted(token: str) -> str:
    return f"“{token.strip() or token}”"


# ---------------------------------------------------------------------------- families


class ExplainSentimentTask(ExplainTask):
    name = "explain-sentiment"
    family = "sentiment"
    needs = {"features": frozenset({Head.ENCODER})}
    request_type = ExplainSentimentRequest

    def validate(self, request: ExplainSentimentRequest) -> ExplainSentimentRequest:
        text = clean_text(request.text, what="text", max_chars=self.limits.max_text_chars)
        if request.pooling not in ("cls", "mean"):
            raise InvalidInput(lazy(
                "pooling must be 'cls' or 'mean', got {pooling}",
                pooling=repr(request.pooling)))
        return ExplainSentimentRequest(text, tuple(map(float, request.coef)),
                                       float(request.intercept), tuple(request.label_names),
                                       request.pooling)

    def module(self, model: LoadedModel) -> Any:
        return model.module(Head.ENCODER)

    def encode_request(self, model: LoadedModel, request: ExplainSentimentRequest) -> Encoded:
        # As `/sentiment` reads it: cut to the model's window (and said), never refused.
        encoded = encode(model.tokenizer, [("", request.text)], max_length=model.max_length)
        width = getattr(self.module(model).config, "hidden_size", None)
        if width is not None and width != len(request.coef):
            raise InvalidInput(lazy(
                "The sentiment classifier was trained on another encoder: train it again for "
                "this model."))
        encoded.extra["request"] = request
        return encoded

    def given(self, encoded: Encoded) -> list[float]:
        """The classifier: its weights, its intercept, then 1 for mean pooling (0: [CLS])."""
        request: ExplainSentimentRequest = encoded.extra["request"]
        return [*request.coef, request.intercept, float(request.pooling == "mean")]

    def outputs(self, module: Any, embeds: torch.Tensor, mask: torch.Tensor,
                given: torch.Tensor) -> Any:
        hidden = module(inputs_embeds=embeds, attention_mask=mask).last_hidden_state.float()
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        pooled = torch.where(given[:, -1:] > 0.5, mean, hidden[:, 0])
        # The classifier's decision function, in float64 as scikit-learn computes it.
        return (pooled.double() * given[:, :-2]).sum(-1) + given[:, -2]

    def choose(self, model: LoadedModel, encoded: Encoded, output: Any,
               row: int) -> tuple[list[int], Localised, Localised]:
        request: ExplainSentimentRequest = encoded.extra["request"]
        log_odds = float(output[row])
        label = 1 if log_odds > 0 else 0
        p = 1 / (1 + np.exp(-abs(log_odds)))
        name = request.label_names[label]
        # The label's name is the classifier's own (its training data's), shown as it is.
        return ([label], join("", (name, " (", percent(p), ")")),
                lazy("log-odds of {label}", label=name))

    def score(self, output: Any, given: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        # The log-odds of the label it predicts: label 0's are the negative of label 1's.
        return torch.where(choice[:, 0] == 1, output, -output)


class ExplainMaskTask(ExplainTask):
    name = "explain-mask"
    family = "mask"
    needs = {"mask": frozenset({Head.MASKED_LM})}
    request_type = ExplainMaskRequest

    def validate(self, request: ExplainMaskRequest) -> ExplainMaskRequest:
        text = clean_text(request.text, what="text", max_chars=self.limits.max_text_chars)
        if len(MASK_SPELLINGS.findall(text)) != 1:
            raise InvalidInput(lazy(
                "Put exactly one `[MASK]` in your text, where the missing word goes, e.g. "
                "`Paris is the [MASK] of France.`"))
        return ExplainMaskRequest(text, *_target_versus(request.target, request.versus))

    def module(self, model: LoadedModel) -> Any:
        return model.module(Head.MASKED_LM)

    def encode_request(self, model: LoadedModel, request: ExplainMaskRequest) -> Encoded:
        tokenizer = model.tokenizer
        text = with_mask_token(tokenizer, request.text)
        if error := too_long(model, len(tokenizer(text)["input_ids"])):
            raise error
        encoded = encode(tokenizer, [("", text)], keep=[tokenizer.mask_token_id])
        # Shown as typed ("[mask]"): a mask spelling holds no space, so the words (and which
        # token belongs to which) are the same as in the model's spelling.
        encoded.passages[0] = Passage("", request.text, ())
        encoded.extra["position"] = encoded.ids.index(tokenizer.mask_token_id)
        _targets(tokenizer, encoded, request.target, request.versus, space=False)
        return encoded

    def given(self, encoded: Encoded) -> list[float]:
        return [encoded.extra["position"]]

    def outputs(self, module: Any, embeds: torch.Tensor, mask: torch.Tensor,
                given: torch.Tensor) -> Any:
        rows = torch.arange(embeds.shape[0], device=embeds.device)
        positions = given[:, 0].long()
        head = mlm_head(module)
        if head is None:  # another family: its own forward (all positions), then the mask's
            return module(inputs_embeds=embeds, attention_mask=mask).logits[
                rows, positions].float()
        hidden = module.base_model(inputs_embeds=embeds, attention_mask=mask)[0]
        return head(hidden[rows, positions]).float()

    def choose(self, model: LoadedModel, encoded: Encoded, output: Any,
               row: int) -> tuple[list[int], Localised, Localised]:
        return _choose_token(model.tokenizer, encoded, output[row],
                             mask=model.tokenizer.mask_token)

    def score(self, output: Any, given: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        return _token_score(output, choice)


class ExplainNextTask(ExplainTask):
    name = "explain-next"
    family = "next"
    needs = {"generate": frozenset({Head.CAUSAL_LM})}
    request_type = ExplainNextRequest

    def validate(self, request: ExplainNextRequest) -> ExplainNextRequest:
        prompt = clean_text(request.prompt, what="prompt", max_chars=self.limits.max_text_chars)
        return ExplainNextRequest(prompt, *_target_versus(request.target, request.versus))

    def module(self, model: LoadedModel) -> Any:
        return model.module(Head.CAUSAL_LM)

    def encode_request(self, model: LoadedModel, request: ExplainNextRequest) -> Encoded:
        tokenizer = model.tokenizer
        if error := too_long(model, len(tokenizer(request.prompt)["input_ids"])):
            raise error
        encoded = encode(tokenizer, [("", request.prompt)])
        encoded.extra["position"] = len(encoded.ids) - 1
        # GPT-2 writes a word after a space with the space: " Paris", not "Paris".
        _targets(tokenizer, encoded, request.target, request.versus,
                 space=not request.prompt[-1:].isspace())
        return encoded

    def given(self, encoded: Encoded) -> list[float]:
        return [encoded.extra["position"]]

    def outputs(self, module: Any, embeds: torch.Tensor, mask: torch.Tensor,
                given: torch.Tensor) -> Any:
        rows = torch.arange(embeds.shape[0], device=embeds.device)
        hidden = module.base_model(inputs_embeds=embeds, attention_mask=mask)[0]
        # Only the last position's vocabulary row: a whole vocabulary per position per step
        # would cost far more memory than the rest of the explanation.
        return module.get_output_embeddings()(hidden[rows, given[:, 0].long()]).float()

    def choose(self, model: LoadedModel, encoded: Encoded, output: Any,
               row: int) -> tuple[list[int], Localised, Localised]:
        return _choose_token(model.tokenizer, encoded, output[row], mask=None)

    def score(self, output: Any, given: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        return _token_score(output, choice)


class ExplainQATask(ExplainTask):
    name = "explain-qa"
    family = "qa"
    needs = {"qa": frozenset({Head.QA})}
    request_type = ExplainQARequest

    def validate(self, request: ExplainQARequest) -> ExplainQARequest:
        question = clean_text(request.question, what="question",
                              max_chars=self.limits.max_question_chars)
        context = clean_text(request.context, what="context",
                             max_chars=self.limits.max_context_chars)
        return ExplainQARequest(question, context)

    def module(self, model: LoadedModel) -> Any:
        return model.module(Head.QA)

    def encode_request(self, model: LoadedModel, request: ExplainQARequest) -> Encoded:
        tokenizer = model.tokenizer
        cap = model.max_length // 2
        if error := too_long(model, len(tokenizer(request.question)["input_ids"]),
                             what="The question", cap=cap, advice="Try a shorter question."):
            raise error
        # One window: the question and as much of the context as fits; the rest is said.
        encoded = encode(tokenizer, [(lazy("question"), request.question),
                                     (lazy("context"), request.context)],
                         max_length=model.max_length)
        encoded.extra["in_context"] = [owner is not None and owner[0] == 1
                                       for owner in encoded.owners]
        return encoded

    def outputs(self, module: Any, embeds: torch.Tensor, mask: torch.Tensor,
                given: torch.Tensor) -> Any:
        out = module(inputs_embeds=embeds, attention_mask=mask)
        return out.start_logits.float(), out.end_logits.float()

    def choose(self, model: LoadedModel, encoded: Encoded, output: Any,
               row: int) -> tuple[list[int], Localised, Localised]:
        starts, ends = output
        n = len(encoded.ids)
        in_context = torch.tensor(encoded.extra["in_context"], dtype=torch.bool)
        spans = best_spans(starts[row, :n].cpu(), ends[row, :n].cpu(), in_context,
                           self.limits.max_answer_tokens, 1)
        if not spans:
            raise InvalidInput(lazy(
                "The model read none of the context. Try a shorter question."))
        _, s, e = spans[0]
        context = encoded.passages[1].text
        words = words_of(context)
        first, last = words[encoded.owners[s][1]], words[encoded.owners[e][1]]  # type: ignore
        return ([s, e], join("", ("“", context[first[1]:last[2]][:80], "”")),
                lazy("start + end logits of the answer"))

    def score(self, output: Any, given: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        starts, ends = output
        rows = torch.arange(starts.shape[0], device=starts.device)
        return starts[rows, choice[:, 0]] + ends[rows, choice[:, 1]]


def _target_versus(target: str | None, versus: str | None) -> tuple[str | None, str | None]:
    target, versus = _clean_word(target), _clean_word(versus)
    if versus is not None and target is None:
        raise InvalidInput(lazy(
            "Give a `target` too: `versus` asks why the target rather than that word."))
    return target, versus


def _targets(tokenizer: Any, encoded: Encoded, target: str | None, versus: str | None, *,
             space: bool) -> None:
    encoded.extra["target"] = (None if target is None else
                               single_token(tokenizer, target, what="target", space=space))
    encoded.extra["versus"] = (None if versus is None else
                               single_token(tokenizer, versus, what="versus word", space=space))


def _clean_word(word: str | None) -> str | None:
    if word is None or not word.strip():
        return None
    if len(word.strip()) > 40 or len(word.split()) > 1:
        raise InvalidInput(lazy(
            "A target is one word; `{strip}` is not.",
            strip=word.strip()[:40]))
    return word.strip()


def _choose_token(tokenizer: Any, encoded: Encoded, logits: torch.Tensor, *,
                  mask: str | None) -> tuple[list[int], Localised, Localised]:
    """[target, versus (-1: none)] and the words for them: the top token unless the student
    named a target; `mask` is the mask's spelling (`/explain mask`), None for the next token."""
    target = encoded.extra["target"]
    if target is None:
        target = int(logits.argmax())
    versus = encoded.extra["versus"]
    name = _quoted(tokenizer.decode([target]))
    if versus is None:
        p = percent(float(logits.softmax(-1)[target]))
        prediction = (lazy("{token} at {mask} ({p})", token=name, mask=mask, p=p)
                      if mask is not None else lazy("{token} next ({p})", token=name, p=p))
        return [target, -1], prediction, lazy("logit of {token}", token=name)
    other = _quoted(tokenizer.decode([versus]))
    prediction = (lazy("{token} rather than {other} at {mask}", token=name, other=other,
                       mask=mask) if mask is not None else
                  lazy("{token} rather than {other} next", token=name, other=other))
    return ([target, versus], prediction,
            lazy("logit of {token} - logit of {other}", token=name, other=other))


def _token_score(logits: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(logits.shape[0], device=logits.device)
    score = logits[rows, choice[:, 0]]
    versus = choice[:, 1]
    other = logits[rows, versus.clamp(min=0)]
    return score - torch.where(versus >= 0, other, torch.zeros_like(other))


def _with_picture(result: ExplainResult) -> ExplainResult:
    from dataclasses import replace

    passages = [(p.label, p.text, [(w.start, w.end, w.score) for w in p.words],
                 p.unread_tokens) for p in result.passages]
    # Lazy messages: the drawing process writes them in the request's language
    # (`core.pictures.stage.drawn_in`), the reply writes the alt text in its own.
    title = lazy("Why {prediction}?", prediction=result.prediction)
    footnote = lazy(
        "{score}: {value} (baseline {baseline}) · {steps} steps, delta {delta}",
        score=result.score_name, value=number(result.score, "@@@"),
        baseline=number(result.baseline_score, "@@@"), steps=result.steps,
        delta=number(result.delta, "+@@;-@@"))
    top = join(", ", (join(" ", (w.word, number(w.score, SIGNED)))
                      for w in result.top_words(8)))
    alt = lazy("The text with each word shaded by its contribution to {score}: blue toward, "
               "orange against. Largest: {top}.", score=result.score_name, top=top)
    return replace(result, drawing=charts.drawing(
        explain_charts.attribution_text, passages, title=title, footnote=footnote,
        note=HOW_TO_READ),
        alt_text=charts.alt_text(alt))


EXPLAIN_TASK_TYPES: tuple[type[ExplainTask], ...] = (
    ExplainSentimentTask, ExplainMaskTask, ExplainQATask, ExplainNextTask)
