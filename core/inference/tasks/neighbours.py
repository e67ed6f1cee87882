"""`/neighbours`: the vocabulary items nearest to a word's vector, in context and out of it.

The exBERT view: "bank" by a river and "bank" for money share one static input embedding, so
their nearest vocabulary items are the same list; the contextual vector at a layer moves with
the sentence, and so do its neighbours. Both lists are searched in the same space, the rows of
the input embedding matrix, by cosine similarity, so they can be compared side by side.

The word is located with `/contextsim`'s rules (whole word, first occurrence, pieces that lie
inside it); a word cut into several pieces is represented by the mean of its pieces, and the
result says so. Special tokens ([CLS], [PAD], ...) are never listed: they are not words.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from core.errors import InputTooLong, InvalidInput
from core.i18n import lazy
from core.inference.models import Head, LoadedModel
from core.inference.tasks.attention import encoder_of, token_labels
from core.inference.tasks.base import Task, Timings, check_range, clean_text
from core.inference.tasks.contextsim import MAX_WORD_CHARS, locate_word
from core.pictures import charts
from core.pictures.stage import PictureResult

log = logging.getLogger(__name__)

DEFAULT_NEIGHBOURS = 10
MAX_NEIGHBOURS = 25


@dataclass(frozen=True)
class NeighboursRequest:
    word: str
    sentence: str
    #: 0 is the embedding layer's output (token + position), i the hidden state after layer i;
    #: None means the last layer.
    layer: int | None = None
    top_k: int = DEFAULT_NEIGHBOURS


@dataclass(frozen=True)
class Neighbour:
    token_id: int
    #: As the tokenizer writes the piece (`##ing` stays: it is the lesson).
    token: str
    similarity: float


@dataclass(frozen=True)
class NeighboursResult(PictureResult):
    """The picture is `core.pictures.charts.neighbours_chart` of this result."""

    model_id: str
    word: str
    sentence: str
    #: The word's pieces in the sentence; several pieces are averaged (`averaged` is then True).
    pieces: tuple[str, ...]
    layer: int
    num_layers: int
    #: Nearest vocabulary items to the word's hidden state at `layer`, best first.
    contextual: tuple[Neighbour, ...]
    #: Nearest vocabulary items to the word's static input embedding, best first.
    static: tuple[Neighbour, ...]
    timings: Timings | None = None

    @property
    def averaged(self) -> bool:
        return len(self.pieces) > 1


class NeighboursTask(Task[NeighboursRequest, NeighboursResult]):
    name = "neighbours"
    draws = True
    needs = {"mask": frozenset({Head.MASKED_LM})}
    request_type = NeighboursRequest

    def validate(self, request: NeighboursRequest) -> NeighboursRequest:
        word = clean_text(request.word, what=lazy("word"), max_chars=MAX_WORD_CHARS)
        if any(ch.isspace() for ch in word):
            raise InvalidInput(lazy(
                "Give one word, without spaces (got `{word}`), e.g. `bank`.",
                word=word))
        sentence = clean_text(request.sentence, what=lazy("sentence"),
                              max_chars=self.limits.max_text_chars)
        layer = request.layer
        if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int)
                                  or layer < 0):
            raise InvalidInput(
                lazy(
                    "`layer` is 0 (the embeddings) or a layer number from 1; got {layer}.",
                    layer=layer)
            )
        check_range("top_k", request.top_k, 1, MAX_NEIGHBOURS)
        return NeighboursRequest(word, sentence, layer, int(request.top_k))

    def preprocess(self, model: LoadedModel, request: NeighboursRequest) -> _Input:
        num_layers = encoder_of(model, "mask").config.num_hidden_layers
        layer = num_layers if request.layer is None else request.layer
        if layer > num_layers:
            raise InvalidInput(
                lazy(
                    "`{spec}` has {num_layers} layers: pick a layer from 0 (the embeddings) "
                    "to {num_layers}.",
                    spec=model.spec, num_layers=num_layers)
            )
        try:
            ids, positions = locate_word(model, request.word, request.sentence, "")
        except (InvalidInput, InputTooLong) as exc:
            raise _one_sentence(exc) from None
        return _Input(ids, positions, layer, request.top_k)

    def forward(self, model: LoadedModel, inputs: Sequence[_Input],
                wanted: Callable[[int], bool]) -> Iterator[tuple[int, Any]]:
        """Per request, one unpadded forward: the nearest items to the word's contextual
        vector and to its static embedding, searched in the input embedding rows."""
        base = encoder_of(model, "mask")
        vocabulary = _unit_rows(base.get_input_embeddings().weight.float())
        never = torch.tensor(sorted(set(model.tokenizer.all_special_ids)), dtype=torch.long)
        for j, item in enumerate(inputs):
            if not wanted(j):
                continue
            input_ids = torch.tensor([item.ids])
            out = base(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                       output_hidden_states=True)
            contextual = out.hidden_states[item.layer][0, item.positions].float().mean(dim=0)
            static = base.get_input_embeddings()(input_ids[0, item.positions]).float().mean(dim=0)
            yield j, (nearest(model.tokenizer, vocabulary, contextual, item.top_k, never),
                      nearest(model.tokenizer, vocabulary, static, item.top_k, never))

    def postprocess(self, model: LoadedModel, request: NeighboursRequest, prepared: _Input,
                    output: tuple[tuple[Neighbour, ...], tuple[Neighbour, ...]]
                    ) -> NeighboursResult:
        contextual, static = output
        return _with_picture(NeighboursResult(
            model_id=str(model.spec),
            word=request.word,
            sentence=request.sentence,
            pieces=token_labels(model.tokenizer, [prepared.ids[p] for p in prepared.positions]),
            layer=prepared.layer,
            num_layers=encoder_of(model, "mask").config.num_hidden_layers,
            contextual=contextual,
            static=static,
        ))


@dataclass(frozen=True)
class _Input:
    """The word located in the sentence, and the layer and neighbour count asked for."""

    ids: list[int]
    positions: list[int]
    layer: int
    top_k: int


def _with_picture(result: NeighboursResult) -> NeighboursResult:
    return replace(result, drawing=functools.partial(charts.neighbours_chart, result),
                   alt_text=charts.neighbours_alt_text(result))


def nearest(tokenizer: Any, unit_vocabulary: torch.Tensor, vector: torch.Tensor, k: int,
            excluded: torch.Tensor) -> tuple[Neighbour, ...]:
    """The `k` rows of `unit_vocabulary` (unit length) most cosine-similar to `vector`."""
    similarities = unit_vocabulary @ (vector / vector.norm().clamp_min(1e-12))
    similarities[excluded] = -float("inf")
    values, ids = similarities.topk(min(k, similarities.shape[0] - len(excluded)))
    pieces = tokenizer.convert_ids_to_tokens(ids.tolist())
    return tuple(
        Neighbour(int(t), piece, float(min(1.0, max(-1.0, v))))
        for t, piece, v in zip(ids.tolist(), pieces, values.tolist())
    )


def _unit_rows(matrix: torch.Tensor) -> torch.Tensor:
    return matrix / matrix.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _one_sentence(exc: InvalidInput | InputTooLong) -> InvalidInput | InputTooLong:
    """`locate_word` names "sentence A/B" for `/contextsim`; here there is only one sentence."""
    message = (exc.message.replace("Sentence  is", "The sentence is")
               .replace("sentence  ", "the sentence ").replace("sentence .", "the sentence.")
               .replace("appears in both sentences", "appears in the sentence"))
    return type(exc)(message)
