"""`/tokens`: how a text is cut into pieces, the first lesson of the course.

WordPiece (DistilBERT) marks word continuations with `##` and adds [CLS]/[SEP]; byte-level BPE
(GPT-2) marks a leading space with `Ġ` and adds nothing. Showing both side by side is the point,
so pieces are reported exactly as the tokenizer has them, plus flags a renderer can colour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from core.errors import InvalidInput
from core.i18n import lazy
from core.inference.models import Head, LoadedModel
from core.inference.tasks.base import Role, Task, Timings, clean_text

#: "multilingual": `[models] multilingual`'s tokenizer, when the config names one.
TokenizerChoice = Literal["wordpiece", "bpe", "multilingual"]
_ROLES: dict[str, Role] = {"wordpiece": "mask", "bpe": "generate",
                           "multilingual": "multilingual"}


@dataclass(frozen=True)
class TokensRequest:
    text: str
    tokenizer: TokenizerChoice = "wordpiece"


@dataclass(frozen=True)
class Token:
    id: int
    piece: str
    special: bool
    #: WordPiece `##` continuation, or a BPE piece that does not start a word.
    continuation: bool
    unknown: bool
    #: Character span in the input; None for special tokens.
    start: int | None
    end: int | None


@dataclass(frozen=True)
class TokensResult:
    model_id: str
    algorithm: str
    text: str
    tokens: tuple[Token, ...]
    #: The most tokens the model reads; a longer text would be cut (or refused) by it.
    max_length: int | None = None
    timings: Timings | None = None


class TokensTask(Task[TokensRequest, TokensResult]):
    name = "tokens"
    needs = {"mask": frozenset({Head.TOKENIZER}), "generate": frozenset({Head.TOKENIZER}),
             "multilingual": frozenset({Head.TOKENIZER})}
    request_type = TokensRequest
    #: A tokenizer call is so light that queueing behind forwards would cost it far more than
    #: its own time (benchmarks/RESULTS.md, "Figures behind the code").
    own_lane = True
    tokenizer_only = True

    def role(self, request: TokensRequest) -> Role:
        return _ROLES[request.tokenizer]

    def validate(self, request: TokensRequest) -> TokensRequest:
        if request.tokenizer not in _ROLES:
            raise InvalidInput(lazy(
                "Choose the tokenizer `wordpiece` (DistilBERT) or `bpe` (GPT-2)."))
        text = clean_text(request.text, what=lazy("text"), max_chars=self.limits.max_text_chars)
        return TokensRequest(text, request.tokenizer)

    # No length check in `preprocess`: cutting text into pieces needs no model window, and
    # seeing that a text is longer than the model reads is itself a lesson (`max_length`).

    def forward(self, model: LoadedModel, inputs: Sequence[TokensRequest],
                wanted: Callable[[int], bool]) -> Iterable[tuple[int, Any]]:
        encodings = model.tokenizer(
            [r.text for r in inputs], return_offsets_mapping=True,
            return_special_tokens_mask=True, verbose=False,  # long is fine here, see above
        )
        return enumerate(zip(encodings["input_ids"], encodings["special_tokens_mask"],
                             encodings["offset_mapping"]))

    def postprocess(self, model: LoadedModel, request: TokensRequest, prepared: TokensRequest,
                    output: tuple[list[int], list[int], list[tuple[int, int]]]) -> TokensResult:
        tokenizer = model.tokenizer
        ids, specials, offsets = output
        algorithm = _algorithm(tokenizer)
        pieces = tokenizer.convert_ids_to_tokens(ids)
        tokens = tuple(
            _token(tokenizer, algorithm, token_id, piece, bool(special), span)
            for token_id, piece, special, span in zip(ids, pieces, specials, offsets)
        )
        return TokensResult(str(model.spec), algorithm, request.text, tokens,
                            max_length=model.max_length)


def _algorithm(tokenizer) -> str:
    model_type = type(tokenizer.backend_tokenizer.model).__name__
    known = {"WordPiece": "WordPiece", "BPE": "BPE", "Unigram": "Unigram"}
    return known.get(model_type, model_type)


def _token(tokenizer, algorithm: str, token_id: int, piece: str, special: bool, span) -> Token:
    if algorithm == "WordPiece":
        continuation = piece.startswith("##")
    elif algorithm == "BPE":
        # Byte-level BPE marks a word start with "Ġ" (a space); anything else continues a word.
        continuation = not special and not piece.startswith("Ġ") and span[0] > 0
    else:
        continuation = not piece.startswith("▁")
    start, end = (None, None) if special else (int(span[0]), int(span[1]))
    return Token(
        id=int(token_id),
        piece=piece,
        special=special,
        continuation=continuation,
        unknown=token_id == tokenizer.unk_token_id and not special,
        start=start,
        end=end,
    )
