"""`/logitlens`: what GPT-2 would predict next if it stopped after each layer.

The logit lens (nostalgebraist, 2020) applies the model's own final layer norm and LM head to
the residual stream after every layer. Students see the answer form: early layers guess
something generic, later ones settle on the final token, and the probability of that final
answer climbs layer by layer.

The residual stream is read with forward hooks on the blocks rather than from
`output_hidden_states`, because transformers replaces the last of those with the *normed*
final state (applying `ln_f` to it again would be wrong, and special-casing the last layer
would hide exactly the bug the numeric test is there to catch: the lens at the last layer must
equal the model's own next-token distribution). One unpadded forward per request, like
`/attention`: these are rare teaching requests and exactness matters more than batching.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from core.errors import InputTooLong, InvalidInput
from core.i18n import lazy
from core.inference.models import Head, LoadedModel
from core.inference.tasks.attention import token_labels
from core.inference.tasks.base import Task, Timings, clean_text
from core.pictures import charts
from core.pictures.stage import PictureResult

log = logging.getLogger(__name__)

#: Guesses listed per layer (the picture shows the first; text answers may list them all).
TOP_PER_LAYER = 3
#: More tokens than this make the position option meaningless to count by hand.
MAX_LENS_TOKENS = 64


@dataclass(frozen=True)
class LogitLensRequest:
    prompt: str
    #: 1-based token position whose next-token prediction is read; None means the last token.
    position: int | None = None


@dataclass(frozen=True)
class LensGuess:
    token_id: int
    #: Decoded as GPT-2 writes it, leading space included (" Paris").
    token: str
    prob: float


@dataclass(frozen=True)
class LensLayer:
    #: 0 is the embedding layer's output (token + position), i the residual stream after block i.
    layer: int
    #: The `TOP_PER_LAYER` most probable next tokens if the model stopped here, best first.
    top: tuple[LensGuess, ...]
    #: Probability this layer gives to the model's final answer (`LogitLensResult.answer`).
    answer_prob: float
    #: 1-based rank of the final answer among this layer's predictions.
    answer_rank: int


@dataclass(frozen=True)
class LogitLensResult(PictureResult):
    """The picture is `core.pictures.charts.logit_lens_chart` of this result."""

    model_id: str
    prompt: str
    #: Readable token labels of the prompt.
    tokens: tuple[str, ...]
    #: 1-based position read; its token is `tokens[position - 1]`.
    position: int
    #: The model's own top-1 next token there (the last layer's top guess).
    answer: LensGuess
    #: One entry per layer, embeddings first; `layers[-1]` is the model's own output.
    layers: tuple[LensLayer, ...]
    num_layers: int
    timings: Timings | None = None


class LogitLensTask(Task[LogitLensRequest, LogitLensResult]):
    name = "logitlens"
    draws = True
    needs = {"generate": frozenset({Head.CAUSAL_LM})}
    request_type = LogitLensRequest

    def validate(self, request: LogitLensRequest) -> LogitLensRequest:
        prompt = clean_text(request.prompt, what=lazy("prompt"),
                            max_chars=self.limits.max_text_chars)
        position = request.position
        if position is not None and (isinstance(position, bool) or not isinstance(position, int)
                                     or position < 1):
            raise InvalidInput(
                lazy(
                    "`position` counts tokens from 1 (the first token of the prompt); got "
                    "{position}.",
                    position=position)
            )
        return LogitLensRequest(prompt, position)

    def preprocess(self, model: LoadedModel, request: LogitLensRequest) -> tuple[list[int], int]:
        """The prompt's ids and the 1-based position read."""
        ids = model.tokenizer(request.prompt)["input_ids"]
        limit = min(MAX_LENS_TOKENS, model.max_length)
        if len(ids) > limit:
            raise InputTooLong(
                lazy(
                    "The prompt is {count} tokens; the logit lens reads at most {limit}. Try "
                    "a shorter prompt.",
                    count=len(ids), limit=limit)
            )
        position = request.position or len(ids)
        if position > len(ids):
            raise InvalidInput(
                lazy(
                    "The prompt has {count} tokens, so `position` goes from 1 to {count}; got"
                    " {position}. Leave it out to read the last token.",
                    count=len(ids), position=position)
            )
        return ids, position

    def forward_one(self, model: LoadedModel, prepared: tuple[list[int], int]) -> torch.Tensor:
        ids, position = prepared
        return lens_distributions(model.module(Head.CAUSAL_LM), ids, position - 1)

    def postprocess(self, model: LoadedModel, request: LogitLensRequest,
                    prepared: tuple[list[int], int], output: torch.Tensor) -> LogitLensResult:
        ids, position = prepared
        return _result(model, request.prompt, ids, position, output)


def lens_distributions(lm: Any, ids: Sequence[int], index: int) -> torch.Tensor:
    """[layers + 1, vocab]: the next-token distribution at `index` if the model stopped after
    each layer (row 0: the embeddings), through the model's own final norm and LM head."""
    base = lm.base_model
    blocks, final_norm = _blocks_and_norm(base)
    streams: list[torch.Tensor] = []

    def before_first(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        streams.append(hidden[0, index])

    def after(_module: Any, _args: Any, output: Any) -> None:
        hidden = output[0] if isinstance(output, tuple) else output
        streams.append(hidden[0, index])

    handles = [blocks[0].register_forward_pre_hook(before_first, with_kwargs=True)]
    handles += [block.register_forward_hook(after) for block in blocks]
    try:
        input_ids = torch.tensor([list(ids)])
        base(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
    finally:
        for handle in handles:
            handle.remove()
    if len(streams) != len(blocks) + 1:
        raise RuntimeError(f"expected {len(blocks) + 1} residual streams, got {len(streams)}")
    logits = lm.get_output_embeddings()(final_norm(torch.stack(streams)))
    return logits.float().softmax(dim=-1)


def _blocks_and_norm(base: Any) -> tuple[Any, Any]:
    """The blocks and the final norm: GPT-2's `h` and `ln_f`, Llama-style `layers` and `norm`."""
    for blocks_name, norm_name in (("h", "ln_f"), ("layers", "norm")):
        if hasattr(base, blocks_name) and hasattr(base, norm_name):
            return getattr(base, blocks_name), getattr(base, norm_name)
    raise TypeError(f"no known block list and final norm on {type(base).__name__}")


def _result(model: LoadedModel, prompt: str, ids: Sequence[int], position: int,
            probs: torch.Tensor) -> LogitLensResult:
    tokenizer = model.tokenizer

    def guess(token_id: int, prob: float) -> LensGuess:
        return LensGuess(token_id, tokenizer.decode([token_id]), prob)

    answer_id = int(probs[-1].argmax())
    layers = []
    for layer, row in enumerate(probs):
        values, top_ids = row.topk(min(TOP_PER_LAYER, row.shape[-1]))
        answer_prob = float(row[answer_id])
        layers.append(LensLayer(
            layer=layer,
            top=tuple(guess(t, p) for t, p in zip(top_ids.tolist(), values.tolist())),
            answer_prob=answer_prob,
            answer_rank=int((row > row[answer_id]).sum()) + 1,
        ))
    result = LogitLensResult(
        model_id=str(model.spec),
        prompt=prompt,
        tokens=token_labels(tokenizer, ids),
        position=position,
        answer=guess(answer_id, float(probs[-1, answer_id])),
        layers=tuple(layers),
        num_layers=len(layers) - 1,
    )
    return replace(result, drawing=functools.partial(charts.logit_lens_chart, result),
                   alt_text=charts.logit_lens_alt_text(result))
