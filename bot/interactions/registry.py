"""Every student command, declared once: how its options become a core request, how the
request runs, how the result is drawn, which options are the student's text, and which slash
limits follow the config.

The slash command itself (its typed, documented options) is declared once too, in its cog; the
cog method is one line that hands the interaction to `bot.interactions.turn.answer`. Everything
else reads
this table: the outcome path (what to run and log), `tlm-bot ask` (its sub-commands and options
are generated from the same slash commands), `/config`'s command names (from the live tree) and
the bot's start-up (option limits from `[limits]`).

Adding a student command = its core task + one `StudentCommand` here + its cog method.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bot.interactions import render
from bot.interactions.render import Reply
from core.config import LimitsConfig
from core.errors import InvalidInput
from core.i18n import lazy
from core.inference.engine import InferenceEngine
from core.inference.models import LoadState
from core.inference.tasks.attention import AttentionRequest
from core.inference.tasks.contextsim import ContextSimRequest
from core.inference.tasks.explain import (
    ExplainMaskRequest,
    ExplainNextRequest,
    ExplainQARequest,
)
from core.inference.tasks.fill_mask import FillMaskRequest
from core.inference.tasks.generate import GenerateRequest
from core.inference.tasks.logitlens import LogitLensRequest
from core.inference.tasks.maskpair import MaskPairRequest
from core.inference.tasks.neighbours import NeighboursRequest
from core.inference.tasks.nexttoken import NextTokenRequest
from core.inference.tasks.qa import QARequest
from core.inference.tasks.tokens import TokensRequest
from core.pictures.explain_charts import StepScoresPicture, step_scores_picture
from core.sentiment.service import SentimentService

Options = Mapping[str, Any]


class Services(Protocol):
    """What running a command needs: the bot has these, and so does `tlm-bot ask`."""

    engine: InferenceEngine
    sentiment: SentimentService


class Runner(Protocol):
    """How a request is run. `admit` checks and queues *now* (raising `UserError`,
    `Overloaded`... before anything is shown) and returns what to await for the result."""

    def admit(self, services: Services, request: Any) -> Awaitable[Any]: ...

    def model_status(self, services: Services, request: Any) -> tuple[str, LoadState] | None: ...


@dataclass(frozen=True)
class IfServed:
    """A request of a tuple that runs only when the engine has its model (an optional model
    of the config: `/tokens model:compare`'s multilingual tokenizer)."""

    request: Any


class EngineRunner:
    """One request, or a tuple of requests answered together (`/tokens model:compare`)."""

    def admit(self, services: Services, request: Any) -> Awaitable[Any]:
        if not isinstance(request, tuple):
            return services.engine.admit(request)
        admitted: list[asyncio.Future] = []
        try:
            for one in request:
                if isinstance(one, IfServed):
                    if not services.engine.serves(one.request):
                        continue
                    one = one.request
                admitted.append(services.engine.admit(one))
        except BaseException:
            for future in admitted:  # all or nothing: free the slots already taken
                future.cancel()
            raise
        return _gather_tuple(admitted)

    def model_status(self, services: Services, request: Any) -> tuple[str, LoadState] | None:
        first = request[0] if isinstance(request, tuple) else request
        status = services.engine.status(first)
        return status.model_id, status.state


async def _gather_tuple(futures: list[asyncio.Future]) -> tuple:
    try:
        return tuple(await asyncio.gather(*futures))
    finally:
        for future in futures:
            future.cancel()  # no-op when done; frees the other slot if one failed


class SentimentRunner:
    def admit(self, services: Services, request: Any) -> Awaitable[Any]:
        return services.sentiment.admit(request)

    def model_status(self, services: Services, request: Any) -> tuple[str, LoadState] | None:
        spec = services.engine.config.models.features
        return str(spec), services.engine.registry.state(spec)


class ExplainSentimentRunner(SentimentRunner):
    """`/explain sentiment`: the live classifier's weights go with the request."""

    def admit(self, services: Services, request: Any) -> Awaitable[Any]:
        return services.sentiment.admit_explain(request)


class GenerateRunner(EngineRunner):
    """`/generate`; with `picture:True` (a tuple: the run asked for, and its greedy twin when it
    samples), both with step scores, and their picture drawn by the drawing stage (its place
    taken at admission, so a full stage says "busy" before any forward runs)."""

    def admit(self, services: Services, request: Any) -> Awaitable[Any]:
        if not isinstance(request, tuple):
            return super().admit(services, request)
        pictures = services.engine.pictures
        ticket = pictures.reserve()
        try:
            runs = super().admit(services, request)
        except BaseException:
            ticket.release()
            raise
        return _drawn(services, runs, ticket)


async def _drawn(services: Services, runs: Awaitable[tuple], ticket: Any) -> StepScoresPicture:
    try:
        results = await runs
    except BaseException:
        ticket.release()
        raise
    return await services.engine.pictures.finish(
        step_scores_picture(results, results[0].prompt), ticket)


def _generate(o: Options) -> Any:
    asked = GenerateRequest(
        o["prompt"], max_new_tokens=o["max_new_tokens"], temperature=o["temperature"],
        top_k=o["top_k"], top_p=o["top_p"], num_return_sequences=o["num_return_sequences"],
        seed=o["seed"], step_scores=bool(o.get("picture")),
    )
    if not o.get("picture"):
        return asked
    if asked.is_greedy:
        return (asked,)
    return (asked, GenerateRequest(o["prompt"], max_new_tokens=o["max_new_tokens"],
                                   temperature=0.0, step_scores=True))


def _render_generate(result: Any) -> Reply:
    if isinstance(result, StepScoresPicture):
        return render.render_generate_steps(result)
    return render.render_generate(result)


ENGINE = EngineRunner()
GENERATE = GenerateRunner()
SENTIMENT = SentimentRunner()
EXPLAIN_SENTIMENT = ExplainSentimentRunner()


@dataclass(frozen=True)
class OptionLimit:
    """A slash option's upper bound (a number's value, a text's length) that follows
    `[limits]` in the config file."""

    option: str
    of: Callable[[LimitsConfig], int]


@dataclass(frozen=True)
class StudentCommand:
    name: str
    #: The slash options (defaults filled in) -> the core request.
    build: Callable[[Options], Any]
    render: Callable[[Any], Reply]
    #: The options that make up the stored input text (under `log_inputs`), in order.
    input_options: tuple[str, ...]
    runner: Runner = ENGINE
    limits: tuple[OptionLimit, ...] = ()
    #: Replies carry a picture (so `tlm-bot ask` writes a file).
    picture: bool = False
    #: Between the input options in the stored text (a question and its context: "---").
    input_separator: str = "\n"
    #: (request, partial result) -> the answer so far: the command is written into its
    #: message as it runs (`InferenceEngine.stream`, `bot.interactions.streaming`).
    render_partial: Callable[[Any, Any], Reply] | None = None

    def input_text(self, options: Options) -> str:
        return self.input_separator.join(str(options[name]) for name in self.input_options
                                         if options.get(name) is not None)


def _text_limit(option: str) -> OptionLimit:
    return OptionLimit(option, lambda limits: limits.max_text_chars)


def _tokens(o: Options) -> Any:
    if o["model"] == "compare":
        return (TokensRequest(o["text"], "wordpiece"), TokensRequest(o["text"], "bpe"),
                IfServed(TokensRequest(o["text"], "multilingual")))
    return TokensRequest(o["text"], o["model"])


def _render_tokens(result: Any) -> Reply:
    if isinstance(result, tuple):
        return render.render_tokens_compare(*result)
    return render.render_tokens(result)


def _required(options: Options, name: str) -> Any:
    """An option the slash command may leave out (it opens a form instead) but the request
    needs: a raw API call or `tlm-bot ask` without it gets a user error, not a crash."""
    if options.get(name) is None:
        raise InvalidInput(lazy("Give the {name}: the text that contains the answer.",
                                name=name))
    return options[name]


_TOP_K = OptionLimit("top_k", lambda limits: limits.max_mask_top_k)

COMMANDS: dict[str, StudentCommand] = {c.name: c for c in (
    StudentCommand(
        "mask", lambda o: FillMaskRequest(o["text"], o["top_k"]), render.render_fill_mask,
        ("text",), limits=(_text_limit("text"), _TOP_K),
    ),
    StudentCommand(
        "qa", lambda o: QARequest(o["question"], _required(o, "context")), render.render_qa,
        ("question", "context"), input_separator="\n---\n",
        limits=(OptionLimit("question", lambda lim: lim.max_question_chars),
                OptionLimit("context", lambda lim: lim.max_context_chars)),
    ),
    StudentCommand(
        "generate", _generate, _render_generate, ("prompt",), runner=GENERATE,
        render_partial=render.render_generate_partial,
        limits=(_text_limit("prompt"),
                OptionLimit("max_new_tokens", lambda lim: lim.max_new_tokens),
                OptionLimit("num_return_sequences", lambda lim: lim.max_return_sequences)),
    ),
    StudentCommand("tokens", _tokens, _render_tokens, ("text",), limits=(_text_limit("text"),)),
    StudentCommand(
        "sentiment", lambda o: o["text"], render.render_sentiment, ("text",),
        runner=SENTIMENT, limits=(_text_limit("text"),),
    ),
    StudentCommand(
        "attention",
        lambda o: AttentionRequest(o["text"], "mask" if o["model"] == "distilbert" else "generate",
                                   o["layer"], o["head"]),
        render.render_attention, ("text",), picture=True,
    ),
    StudentCommand(
        "contextsim", lambda o: ContextSimRequest(o["word"], o["sentence_a"], o["sentence_b"]),
        render.render_contextsim, ("word", "sentence_a", "sentence_b"), picture=True,
    ),
    StudentCommand(
        "maskpair",
        lambda o: MaskPairRequest(o["sentence_a"], o["sentence_b"], o["top_k"],
                                  o["targets"] or ()),
        render.render_maskpair, ("sentence_a", "sentence_b"), picture=True, limits=(_TOP_K,),
    ),
    StudentCommand(
        "nexttoken",
        lambda o: NextTokenRequest(o["prompt"], o["temperature"], o["top_k"], o["top_p"]),
        render.render_nexttoken, ("prompt",), picture=True, limits=(_text_limit("prompt"),),
    ),
    StudentCommand(
        "logitlens", lambda o: LogitLensRequest(o["prompt"], o["position"]),
        render.render_logitlens, ("prompt",), picture=True,
        limits=(_text_limit("prompt"),),
    ),
    # `/explain ...`: one group, a command per family (rules apply to `explain` as a whole).
    StudentCommand(
        "explain sentiment", lambda o: o["text"], render.render_explain, ("text",),
        runner=EXPLAIN_SENTIMENT, picture=True, limits=(_text_limit("text"),),
    ),
    StudentCommand(
        "explain mask", lambda o: ExplainMaskRequest(o["text"], o["target"], o["versus"]),
        render.render_explain, ("text",), picture=True, limits=(_text_limit("text"),),
    ),
    StudentCommand(
        "explain qa", lambda o: ExplainQARequest(o["question"], o["context"]),
        render.render_explain, ("question", "context"), input_separator="\n---\n",
        picture=True,
        limits=(OptionLimit("question", lambda lim: lim.max_question_chars),
                OptionLimit("context", lambda lim: lim.max_context_chars)),
    ),
    StudentCommand(
        "explain next", lambda o: ExplainNextRequest(o["prompt"], o["target"], o["versus"]),
        render.render_explain, ("prompt",), picture=True, limits=(_text_limit("prompt"),),
    ),
    StudentCommand(
        "neighbours", lambda o: NeighboursRequest(o["word"], o["sentence"], o["layer"]),
        render.render_neighbours, ("word", "sentence"), picture=True,
        limits=(_text_limit("sentence"),),
    ),
)}
