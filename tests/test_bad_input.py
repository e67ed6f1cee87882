"""Whatever a class types into an option: an answer or a clear ephemeral error, never a crash.

Property-based with hypothesis: every string option of every command gets arbitrary unicode,
blank and zero-width text, control characters, text at the length limit, mentions, markdown,
code fences and zero to several [MASK]s; numeric options get their whole allowed range. One bot
serves the whole module (a module-scoped loop); hypothesis runs in a worker thread and hands
each example to that loop, so the bot keeps serving while examples are generated.

What every example must show (see `check_interaction`): no "Sorry, something went wrong"
(that means an exception reached the generic handler), no ERROR log, no request Discord would
reject, no message that could ping (`allowed_mentions` empty on every message the bot sends),
and no broken code block. The pure renderers get their own properties at the bottom.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.interactions.render import clip, code, safe
from core.config import parse_config
from core.sentiment import LabelledData
from tests.bot_harness import Harness, bot_config, running_bot
from tests.conftest import tiny_config_dict
from tests.discord_emulator import EPHEMERAL

EXAMPLES = 30
APOLOGY_START = "Sorry, something went wrong"
FENCE = "```"

PIECES = [
    "[MASK]", "[mask]", "[MASK][MASK]", "@everyone", "@here", "<@&123456789012345678>",
    "<@123456789012345678>", "<#123456789012345678>", FENCE, "```py\n", "`", "``", "**", "__",
    "||", "~~", "> ", "# ", "-# ", "[link](https://example.com)", "\\", "\u200b", "\u200d",
    "\ufeff", "\u2060", "\u202e", "\u2066", "\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\n",
    "\r\n", "\t", " ", "😀", "👩\u200d👩\u200d👧", "é", "e\u0301", "中文", "ﷺ", "\U0001d54f",
    "\U000e0041", "word", "Paris", "the", "x" * 300, "a " * 200,
]


def text_option(max_len: int) -> st.SearchStrategy[str]:
    """Strings Discord would accept for an option of at most `max_len` characters."""
    mixed = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=30)),
                     min_size=1, max_size=12).map("".join)
    edge = st.sampled_from([" ", "\u200b", "\u200b\u200b\u200b", "\x00", " \n \t ", "[MASK]",
                            "[MASK] [MASK] [MASK]", "x" * max_len, "@everyone" * 200,
                            FENCE * 400, "`" * max_len, "0" * 50 + "`" * max_len,
                            ("[MASK] " + "ab " * max_len)])
    markup = st.text(alphabet="`*_~|>#@ \n[MASK]", min_size=1, max_size=max_len)
    return st.one_of(st.text(min_size=1, max_size=max_len), mixed, edge, markup).map(
        lambda s: s[:max_len]).filter(lambda s: len(s) >= 1)


class LogCapture(logging.Handler):
    """`caplog` for a module-scoped bot (pytest's caplog is per test)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._old_level: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def set_level(self, level: int) -> None:
        root = logging.getLogger()
        self._old_level = root.level
        root.setLevel(level)
        root.addHandler(self)

    def detach(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        if self._old_level is not None:
            root.setLevel(self._old_level)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def harness(tiny_models, tmp_path_factory) -> AsyncIterator[Harness]:
    tmp_path = tmp_path_factory.mktemp("bad-input")
    config = bot_config(parse_config(tiny_config_dict(tiny_models), base_dir=tmp_path), tmp_path,
                        discord={"default_cooldown_uses": 0})
    capture = LogCapture()
    try:
        # On exit running_bot asserts: no unhandled request, no violation, no ERROR log.
        async with running_bot(config, capture) as h:
            registry = h.services.engine.registry
            await asyncio.gather(*(registry.get(spec) for spec in registry.specs))
            texts = [f"good great lovely fine {i}" for i in range(10)] + [
                f"bad awful terrible poor {i}" for i in range(10)]
            await h.services.sentiment.train(LabelledData(tuple(texts), (1,) * 10 + (0,) * 10))
            yield h
            rows = await h.rows()
            assert rows and not [dict(r) for r in rows if r["status"] == "failed"]
    finally:
        capture.detach()


def check_interaction(h: Harness, record: Any, first_request: int) -> None:
    """What every answer to untrusted input must satisfy."""
    assert record.errors == [], record.errors  # Discord refused nothing
    text = record.text
    assert APOLOGY_START not in text, text
    messages = record.visible_messages
    assert messages
    first = messages[0]
    if record.ephemeral and not first["attachments"]:  # an error (or a staff view) that says so
        assert first["content"].strip() or first["embeds"][0]["description"].strip()
    else:
        assert first["content"] or first["embeds"] or first["attachments"]
    for message in messages:
        pieces = [message.get("content") or ""]
        for embed in message.get("embeds") or []:
            pieces += [embed.get("title") or "", embed.get("description") or ""]
            pieces += [f.get("value") or "" for f in embed.get("fields") or []]
        for piece in pieces:
            assert piece.count(FENCE) % 2 == 0, piece  # every code block is closed
            assert len(piece) <= 4096
    sent = [r for r in h.emu.requests[first_request:]
            if r.method in ("POST", "PATCH") and isinstance(r.json, dict)]
    for request in sent:
        body = request.json.get("data", request.json)  # callbacks nest the message in "data"
        if body.get("content") or body.get("embeds"):
            mentions = body.get("allowed_mentions")
            assert mentions is not None and mentions.get("parse") == [], request
            assert not mentions.get("users") and not mentions.get("roles"), request
    assert h.emu.violations == [] and h.emu.unhandled == []


async def fuzz(h: Harness, name: str, options: st.SearchStrategy[dict[str, Any]],
               *, examples: tuple[dict[str, Any], ...] = (), **invoke: Any) -> int:
    """Run `options` examples (plus the explicit `examples`) against /name; returns how many
    inputs were tried."""
    loop = asyncio.get_running_loop()
    tried = 0

    async def exercise(values: dict[str, Any]) -> None:
        first_request = len(h.emu.requests)
        record = await h.emu.invoke(name, values, **invoke)
        await record.wait_done(30)
        check_interaction(h, record, first_request)

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(values=options)
    def property_holds(values: dict[str, Any]) -> None:
        nonlocal tried
        tried += 1
        asyncio.run_coroutine_threadsafe(exercise(values), loop).result(60)

    for values in examples:
        property_holds = example(values=values)(property_holds)
    await asyncio.to_thread(property_holds)
    return tried


def optional(**strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict with any subset of these optional options."""
    return st.fixed_dictionaries({}, optional=strategies)


MODULE = pytest.mark.asyncio(loop_scope="module")


@MODULE
async def test_mask_any_text(harness: Harness) -> None:
    options = st.fixed_dictionaries({"text": text_option(1000)}).flatmap(
        lambda req: optional(top_k=st.integers(1, 10)).map(lambda opt: {**req, **opt}))
    assert await fuzz(harness, "mask", options) == EXAMPLES


@MODULE
async def test_qa_any_question_and_context(harness: Harness) -> None:
    options = st.fixed_dictionaries({"question": text_option(300), "context": text_option(4000)})
    # An answer made of backticks once opened a code span in the embed title.
    fences = ({"question": "`````", "context": "0" * 50 + "`" * 400},
              {"question": "`````", "context": "a ` b `` c ``` d ```` e ````` f"},
              {"question": "@everyone", "context": "`" * 10 + "@everyone " * 30 + "`" * 10})
    assert await fuzz(harness, "qa", options, examples=fences) == EXAMPLES + len(fences)


@MODULE
async def test_generate_any_prompt_and_sampling(harness: Harness) -> None:
    options = st.fixed_dictionaries({"prompt": text_option(1000)}).flatmap(
        lambda req: optional(
            max_new_tokens=st.integers(1, 100),
            temperature=st.floats(0.0, 2.0),
            top_k=st.integers(1, 100),
            top_p=st.floats(0.01, 1.0),
            num_return_sequences=st.integers(1, 5),
            seed=st.integers(0, 2**31 - 1),
        ).map(lambda opt: {**req, **opt}))
    assert await fuzz(harness, "generate", options) == EXAMPLES


@MODULE
async def test_tokens_any_text(harness: Harness) -> None:
    options = st.fixed_dictionaries({"text": text_option(1000)}).flatmap(
        lambda req: optional(model=st.sampled_from(["wordpiece", "bpe"])).map(
            lambda opt: {**req, **opt}))
    fences = ({"text": "`````"}, {"text": "```py\n@everyone\n```", "model": "bpe"})
    assert await fuzz(harness, "tokens", options, examples=fences) == EXAMPLES + len(fences)


@MODULE
async def test_sentiment_any_text(harness: Harness) -> None:
    options = st.fixed_dictionaries({"text": text_option(1000)})
    assert await fuzz(harness, "sentiment", options) == EXAMPLES


@MODULE
async def test_logs_filters_any_text(harness: Harness) -> None:
    # Rows with hostile inputs exist by now; /logs must show them defused.
    options = optional(command=text_option(32),
                       since=st.sampled_from(["1h", "24h", "7d", "30d", "all"]),
                       status=st.sampled_from(["ok", "user_error", "refused", "overloaded",
                                               "failed", "expired"]))
    for sub in ("recent", "export"):
        assert await fuzz(harness, "logs", options, subcommand=sub,
                          user_id=harness.emu.moderator_id) == EXAMPLES


@MODULE
async def test_staff_views_of_hostile_rows_stay_within_limits(harness: Harness) -> None:
    """/logs stats and /mydata show render stored hostile text; one look each suffices."""
    h = harness
    await h.run("mask", {"text": "@everyone ``` [MASK] <@&123456789012345678>" + "`" * 900})
    for name, sub, user in (("logs", "stats", h.emu.moderator_id),
                            ("logs", "recent", h.emu.moderator_id),
                            ("mydata", "show", h.emu.student_id)):
        first_request = len(h.emu.requests)
        record = await h.run(name, {}, subcommand=sub, user_id=user)
        check_interaction(h, record, first_request)
        assert record.visible_messages[0]["flags"] & EPHEMERAL


# ------------------------------------------------------------------------- pure renderers

UNESCAPED_MENTION = re.compile(r"@(everyone|here)|<@[!&]?\d+>")
any_text = st.one_of(st.text(), st.lists(st.sampled_from(PIECES), max_size=30).map("".join),
                     st.text(alphabet="`@&<>#!\u200b\\ \neveryonehr0123456789"))


@settings(max_examples=300, deadline=None, database=None)
@given(text=any_text, limit=st.integers(1, 5000))
def test_clip_never_exceeds_its_limit(text: str, limit: int) -> None:
    clipped = clip(text, limit)
    assert len(clipped) <= limit
    assert clipped == text or clipped.endswith("…")


@settings(max_examples=300, deadline=None, database=None)
@given(text=any_text, limit=st.integers(1, 5000))
def test_safe_defuses_mentions_within_its_limit(text: str, limit: int) -> None:
    out = safe(text, limit)
    assert len(out) <= limit
    assert UNESCAPED_MENTION.search(out) is None, out
    assert UNESCAPED_MENTION.search(safe(text)) is None


@settings(max_examples=300, deadline=None, database=None)
@given(text=any_text, limit=st.integers(20, 5000), lang=st.sampled_from(["", "py", "text"]))
def test_code_is_one_closed_block_within_its_limit(text: str, limit: int, lang: str) -> None:
    out = code(text, limit, lang)
    assert len(out) <= limit
    assert out.startswith(FENCE + lang + "\n") and out.endswith("\n" + FENCE)
    assert out.count(FENCE) == 2, out  # exactly one opening and one closing fence
    assert UNESCAPED_MENTION.search(out) is None, out
