"""`/contextsim`: one word in two sentences, how alike its vectors are at every layer.

The lesson is that the input embedding of a word is the same wherever it appears (similarity
1 when both sentences use the same pieces) while the hidden states drift apart as layers mix
in the context ("bank" of a river vs "bank" for money).

The word is located by characters (whole word, case-insensitive, first occurrence) and then
mapped to the tokens whose offsets lie inside it, so a word the tokenizer cuts into several
pieces is averaged over them, and a word that is only part of a piece is refused clearly.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import InvalidInput
from core.i18n import Localised, join, lazy, number
from core.inference.models import LoadedModel
from core.inference.tasks.attention import (
    MODEL_CHOICE_NEEDS,
    ModelChoice,
    check_model_choice,
    encoder_of,
    token_labels,
)
from core.inference.tasks.base import Role, Task, Timings, clean_text, too_long
from core.pictures import charts
from core.pictures.stage import PictureResult

log = logging.getLogger(__name__)

MAX_WORD_CHARS = 50


@dataclass(frozen=True)
class ContextSimRequest:
    word: str
    sentence_a: str
    sentence_b: str
    model: ModelChoice = "mask"


@dataclass(frozen=True)
class ContextSimResult(PictureResult):
    model_id: str
    word: str
    sentence_a: str
    sentence_b: str
    #: The word's pieces in each sentence (readable labels; several pieces are averaged).
    pieces_a: tuple[str, ...]
    pieces_b: tuple[str, ...]
    #: Cosine similarity per layer: [0] is the embedding layer's output (token + position),
    #: [i] the hidden state after layer i.
    layer_similarities: tuple[float, ...]
    #: Cosine similarity of the static input (token) embeddings, before any context.
    static_similarity: float
    timings: Timings | None = None


class ContextSimTask(Task[ContextSimRequest, ContextSimResult]):
    name = "contextsim"
    needs = MODEL_CHOICE_NEEDS
    draws = True
    request_type = ContextSimRequest

    def batch_key(self, request: ContextSimRequest) -> tuple[str, str]:
        return self.name, request.model

    def role(self, request: ContextSimRequest) -> Role:
        return request.model

    def validate(self, request: ContextSimRequest) -> ContextSimRequest:
        word = clean_text(request.word, what=lazy("word"), max_chars=MAX_WORD_CHARS)
        if any(ch.isspace() for ch in word):
            raise InvalidInput(
                lazy("Give one word, without spaces (got `{word}`), e.g. `bank`.", word=word)
            )
        limit = self.limits.max_text_chars
        a = clean_text(request.sentence_a, what=lazy("first sentence"), max_chars=limit)
        b = clean_text(request.sentence_b, what=lazy("second sentence"), max_chars=limit)
        check_model_choice(request.model)
        return ContextSimRequest(word, a, b, request.model)

    def preprocess(self, model: LoadedModel, request: ContextSimRequest) -> _Input:
        found = [locate_word(model, request.word, sentence, which)
                 for sentence, which in ((request.sentence_a, "A"), (request.sentence_b, "B"))]
        return _Input(request.model, found)

    def forward_one(self, model: LoadedModel, prepared: _Input) -> tuple[tuple[float, ...], float]:
        """The word's similarity per layer, and of its static embeddings."""
        import torch

        base = encoder_of(model, prepared.choice)
        embeddings = base.get_input_embeddings()
        layers, static = [], []
        for ids, positions in prepared.found:
            input_ids = torch.tensor([ids], device=model.device)
            out = base(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                       output_hidden_states=True)
            layers.append(torch.stack([h[0, positions].float().mean(dim=0)
                                       for h in out.hidden_states]).cpu())
            static.append(embeddings(input_ids[0, positions]).float().mean(dim=0).cpu())
        per_layer = torch.nn.functional.cosine_similarity(layers[0], layers[1], dim=-1)
        static_sim = torch.nn.functional.cosine_similarity(static[0], static[1], dim=0)
        return tuple(float(v) for v in per_layer.clamp(-1, 1)), float(static_sim.clamp(-1, 1))

    def postprocess(self, model: LoadedModel, request: ContextSimRequest, prepared: _Input,
                    output: tuple[tuple[float, ...], float]) -> ContextSimResult:
        similarities, static_similarity = output
        pieces = [tuple(token_labels(model.tokenizer, [ids[p] for p in positions]))
                  for ids, positions in prepared.found]
        title = lazy("'{word}' in two sentences ({model})", word=request.word,
                     model=model.spec.short_name)
        return ContextSimResult(
            model_id=str(model.spec),
            word=request.word,
            sentence_a=request.sentence_a,
            sentence_b=request.sentence_b,
            pieces_a=pieces[0],
            pieces_b=pieces[1],
            layer_similarities=similarities,
            static_similarity=static_similarity,
            drawing=charts.drawing(charts.similarity_by_layer, similarities, static_similarity,
                                  title=title),
            alt_text=_alt_text(request.word, similarities, static_similarity),
        )


@dataclass(frozen=True)
class _Input:
    """Both sentences located: per sentence, its token ids and the word's positions in them."""

    choice: ModelChoice
    found: list[tuple[list[int], list[int]]]


def locate_word(model: LoadedModel, word: str, sentence: str,
                which: str) -> tuple[list[int], list[int]]:
    """The sentence's token ids and the positions of the word's pieces in them (`which` names
    the sentence in messages, e.g. "A"). Raises a `UserError` a student can act on."""
    encoding = model.tokenizer(sentence, return_offsets_mapping=True,
                               return_special_tokens_mask=True)
    ids = encoding["input_ids"]
    error = too_long(model, len(ids), what=lazy("Sentence {which}", which=which))
    if error:
        raise error
    match = re.search(rf"(?<!\w){re.escape(word)}(?!\w)", sentence, flags=re.IGNORECASE)
    if match is None:
        raise InvalidInput(
            lazy(
                "`{word}` is not a word of sentence {which}. Use a word that appears in both "
                "sentences, spelled the same way (upper/lower case does not matter).",
                word=word, which=which)
        )
    start, end = match.span()
    positions: list[int] = []
    for position, ((s, e), special) in enumerate(
        zip(encoding["offset_mapping"], encoding["special_tokens_mask"])
    ):
        if special or e <= s:
            continue
        s += len(sentence[s:e]) - len(sentence[s:e].lstrip())  # BPE pieces may carry a space
        if e <= start or s >= end:
            continue
        if s < start or e > end:
            raise InvalidInput(
                lazy(
                    "In sentence {which} the tokenizer does not cut `{word}` off on its own "
                    "(a piece spans `{sentence}`), so it has no vector of its own. Try "
                    "another word.",
                    which=which, word=word, sentence=sentence[s:e])
            )
        positions.append(position)
    if not positions:
        raise InvalidInput(lazy(
            "`{word}` has no tokens of its own in sentence {which}.",
            word=word, which=which))
    return ids, positions


def _alt_text(word: str, similarities: Sequence[float], static: float) -> Localised:
    values = join(", ", (
        join(" ", (lazy("embeddings") if i == 0 else lazy("layer {layer}", layer=i),
                   number(v, "0.00")))
        for i, v in enumerate(similarities)))
    return charts.alt_text(lazy(
        "Line chart of the cosine similarity of '{word}' between the two sentences at "
        "each layer: {values}. The dashed line is the static input embedding's "
        "similarity, {static}.", word=word, values=values,
        static=number(static, "0.00")))
