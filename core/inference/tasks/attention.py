"""`/attention`: where one head (or the average of a layer's heads) looks, as a heatmap.

The models are loaded with PyTorch's SDPA attention, which never materialises the attention
weights, so `output_attentions=True` alone returns nothing (transformers only logs a warning).
Reloading an eager copy would double the memory, so the shared module is switched to the eager
implementation for this forward only and switched back in `finally`. That is safe because the
engine runs one batch per model at a time (the lane), so no `/mask` or `/generate` forward can
see the switch; the lock only keeps two attention batches from interleaving their restores.
Switching is cheap: it sets a config attribute on each submodule.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from core.errors import InvalidInput
from core.i18n import Localised, join, lazy, number
from core.inference.models import Head, LoadedModel
from core.inference.tasks.base import Role, Task, Timings, clean_text, too_long
from core.pictures import charts
from core.pictures.stage import PictureResult

log = logging.getLogger(__name__)

#: "mask": the masked LM's encoder (DistilBERT, sees both sides); "generate": the causal LM
#: (GPT-2, sees only the left). The names are the config keys of the two models.
ModelChoice = Literal["mask", "generate"]
MODEL_CHOICES: tuple[str, ...] = ("mask", "generate")
#: What a task with that choice needs: the encoder inside each model's head module.
MODEL_CHOICE_NEEDS = {"mask": frozenset({Head.MASKED_LM}), "generate": frozenset({Head.CAUSAL_LM})}

#: More tokens than this make an unreadable heatmap on a phone.
MAX_ATTENTION_TOKENS = 40
#: How many attended-to tokens each token's line lists.
TOP_ATTENDED = 3

_SWITCH_LOCK = threading.Lock()


@dataclass(frozen=True)
class AttentionRequest:
    text: str
    model: ModelChoice = "mask"
    #: 1-based; None means the last layer.
    layer: int | None = None
    #: 1-based; None means the average over the layer's heads.
    head: int | None = None


@dataclass(frozen=True)
class AttentionResult(PictureResult):
    model_id: str
    text: str
    #: Readable token labels, one per row and column of `weights`.
    tokens: tuple[str, ...]
    #: 1-based layer and head actually shown; head None = average over heads.
    layer: int
    head: int | None
    num_layers: int
    num_heads: int
    #: True for GPT-2: every weight above the diagonal is exactly 0.
    causal: bool
    #: [n, n]; row i is how token i spreads its attention over the tokens; each row sums to 1.
    weights: np.ndarray = field(compare=False, repr=False)
    #: Per token, the `TOP_ATTENDED` (key index, weight) it attends to most, best first.
    top: tuple[tuple[tuple[int, float], ...], ...] = ()
    timings: Timings | None = None


class AttentionTask(Task[AttentionRequest, AttentionResult]):
    name = "attention"
    needs = MODEL_CHOICE_NEEDS
    draws = True
    request_type = AttentionRequest

    def role(self, request: AttentionRequest) -> Role:
        return request.model

    def validate(self, request: AttentionRequest) -> AttentionRequest:
        text = clean_text(request.text, what=lazy("text"), max_chars=self.limits.max_text_chars)
        check_model_choice(request.model)
        for name, value in (("layer", request.layer), ("head", request.head)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InvalidInput(lazy(
                    "`{name}` counts from 1; got {value}.",
                    name=name, value=value))
        return AttentionRequest(text, request.model, request.layer, request.head)

    def batch_key(self, request: AttentionRequest) -> tuple[str, str]:
        return self.name, request.model

    def preprocess(self, model: LoadedModel, request: AttentionRequest) -> _Input:
        config = encoder_of(model, request.model).config
        num_layers, num_heads = config.num_hidden_layers, config.num_attention_heads
        ids = model.tokenizer(request.text)["input_ids"]
        if error := too_long(
            model, len(ids), cap=MAX_ATTENTION_TOKENS, advice=lazy("Try a shorter sentence."),
            cap_reason=lazy("the attention picture stays readable up to {n}",
                            n=MAX_ATTENTION_TOKENS),
        ):
            raise error
        layer = request.layer or num_layers
        if layer > num_layers:
            raise InvalidInput(
                lazy(
                    "`{spec}` has {num_layers} layers: pick a layer from 1 to {num_layers}.",
                    spec=model.spec, num_layers=num_layers)
            )
        if request.head is not None and request.head > num_heads:
            raise InvalidInput(
                lazy(
                    "`{spec}` has {num_heads} heads per layer: pick a head from 1 to "
                    "{num_heads}, or leave it out for the average.",
                    spec=model.spec, num_heads=num_heads)
            )
        return _Input(request.model, ids, layer, request.head)

    def forward(self, model: LoadedModel, inputs: Sequence[_Input],
                wanted: Callable[[int], bool]) -> Iterator[tuple[int, np.ndarray]]:
        """One unpadded forward per request: these are rare teaching requests, and unpadded
        inputs keep every weight exact (no padding columns to strip, GPT-2 positions need no
        care). The batch's model is switched to eager attention once."""
        import torch

        base = encoder_of(model, inputs[0].choice)  # one choice per batch (`batch_key`)
        with eager_attention(base):
            for j, item in enumerate(inputs):
                if not wanted(j):
                    continue
                input_ids = torch.tensor([item.ids], device=model.device)
                out = base(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                           output_attentions=True)
                layer_weights = out.attentions[item.layer - 1][0].float()  # [heads, n, n]
                chosen = (layer_weights.mean(dim=0) if item.head is None
                          else layer_weights[item.head - 1])
                yield j, chosen.cpu().numpy()


    def postprocess(self, model: LoadedModel, request: AttentionRequest, prepared: _Input,
                    output: np.ndarray) -> AttentionResult:
        weights = output
        weights.setflags(write=False)
        config = encoder_of(model, request.model).config
        num_layers, num_heads = config.num_hidden_layers, config.num_attention_heads
        causal = request.model == "generate"
        labels = token_labels(model.tokenizer, prepared.ids)
        top = _top_attended(weights)
        which = (lazy("average of all heads") if prepared.head is None
                 else lazy("head {head} of {heads}", head=prepared.head, heads=num_heads))
        title = lazy("{model}: layer {layer} of {layers}, {which}", model=model.spec.short_name,
                     layer=prepared.layer, layers=num_layers, which=which)
        return AttentionResult(
            model_id=str(model.spec),
            text=request.text,
            tokens=labels,
            layer=prepared.layer,
            head=prepared.head,
            num_layers=num_layers,
            num_heads=num_heads,
            causal=causal,
            weights=weights,
            top=top,
            drawing=charts.drawing(charts.attention_heatmap, labels, weights, title=title,
                                  causal=causal),
            alt_text=_alt_text(title, labels, top, causal),
        )


@dataclass(frozen=True)
class _Input:
    """A request ready for its forward: the model chosen, its ids, the layer and head shown."""

    choice: ModelChoice
    ids: list[int]
    layer: int
    head: int | None


@contextlib.contextmanager
def eager_attention(module: Any) -> Iterator[None]:
    """Make `module` return attention weights for the duration (see the module docstring)."""
    with _SWITCH_LOCK:
        previous = module.config._attn_implementation
        if previous == "eager":
            yield
            return
        module.set_attn_implementation("eager")
        try:
            yield
        finally:
            module.set_attn_implementation(previous)


def check_model_choice(choice: str) -> None:
    if choice not in MODEL_CHOICES:
        raise InvalidInput(
            lazy(
                "`model` must be `mask` (DistilBERT, reads both ways) or `generate` (GPT-2, "
                "reads left to right); got `{choice}`.",
                choice=choice)
        )


def encoder_of(model: LoadedModel, choice: str) -> Any:
    """The bare transformer of the shared head module: no vocabulary projection is needed."""
    head = Head.MASKED_LM if choice == "mask" else Head.CAUSAL_LM
    return model.module(head).base_model


def token_labels(tokenizer: Any, ids: Sequence[int]) -> tuple[str, ...]:
    """Pieces as a student would read them: `##iz` stays (it is the lesson), `Ġcat` is `␣cat`
    (a space shown as everywhere else, `charts.visible_token`)."""
    labels = []
    for piece in tokenizer.convert_ids_to_tokens(list(ids)):
        text = piece if piece.startswith("##") else tokenizer.convert_tokens_to_string([piece])
        labels.append(charts.visible_token(text.rstrip()) if text.strip() else piece)
    return tuple(labels)


def _top_attended(weights: np.ndarray) -> tuple[tuple[tuple[int, float], ...], ...]:
    rows = []
    for row in weights:
        order = np.argsort(-row, kind="stable")[:TOP_ATTENDED]
        rows.append(tuple((int(j), float(row[j])) for j in order if row[j] > 0))
    return tuple(rows)


def _alt_text(title: Localised, labels: Sequence[str],
              top: Sequence[Sequence[tuple[int, float]]], causal: bool) -> Localised:
    strongest = join("; ", (join("", (label, " -> ", labels[best[0][0]], " (",
                                      number(best[0][1], "0.00"), ")"))
                            for label, best in zip(labels, top) if best))
    return charts.alt_text(lazy(
        "Attention heatmap, {title}, {n} tokens. Rows are tokens, columns the tokens "
        "they attend to; brighter means more attention, on a fixed scale from 0 to 1."
        "{causal} Strongest: {strongest}", title=title, n=len(labels),
        causal=(lazy(" The upper triangle is empty: GPT-2 cannot look ahead.") if causal
                else ""), strongest=strongest))

