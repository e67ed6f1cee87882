"""End to end: the five student commands through the real discord.py client and the emulator.

Real TLMBot, real cogs, real core with the tiny models, real SQLite. Every test reads what a
student would see (the emulator's record of the bot's requests) and the query-log row it left,
and every command must be acknowledged in under a second, measured at the emulator. Discord's
message limits are enforced by the emulator and `running_bot` fails a test that broke one.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

import core.inference.models
from core.config import Config
from core.sentiment import LabelledData
from tests.bot_harness import Harness, bot_config, running_bot
from tests.discord_emulator import (
    EPHEMERAL,
    NO_SPEC,
    SPEC_PATH,
    DiscordEmulator,
    InteractionRecord,
    validate_command_json,
)

#: Every acknowledgement measured in this module (seconds), for the summary at the end.
ACK_LATENCIES: list[float] = []
ACK_LIMIT_S = 1.0
LOADING_TEXT = "still loading"
#: A sub-word-heavy text: within the tiny WordPiece model's 128 tokens, but a table too long for
#: one embed ("a" then "##ations" over and over), so /tokens must attach it.
LONG_TOKENS_TEXT = " ".join(["a" + "ations" * 16] * 7 + ["a" + "ations" * 5])
MENTION = re.compile(r"@(everyone|here)|<@[!&]?\d+>")
NO_COOLDOWN = {"default_cooldown_uses": 0}


@pytest.fixture(scope="module", autouse=True)
def _ack_summary() -> Any:
    yield
    if ACK_LATENCIES:
        print(f"\nack latency over {len(ACK_LATENCIES)} interactions: "
              f"median {statistics.median(ACK_LATENCIES) * 1000:.0f} ms, "
              f"max {max(ACK_LATENCIES) * 1000:.0f} ms")


# ------------------------------------------------------------------------------------ helpers


@asynccontextmanager
async def bot(tiny_config: Config, tmp_path, caplog, *, wait_models: bool = True,
              check_clean: bool = True, **sections: dict[str, Any]) -> AsyncIterator[Harness]:
    """A running bot with cooldowns off (unless a test sets them) and, usually, models loaded."""
    sections["discord"] = {**NO_COOLDOWN, **sections.get("discord", {})}
    config = bot_config(tiny_config, tmp_path, **sections)
    async with running_bot(config, caplog, check_clean=check_clean) as h:
        if wait_models:
            registry = h.services.engine.registry
            await asyncio.gather(*(registry.get(spec) for spec in registry.specs))
        yield h


async def acked(record: InteractionRecord) -> InteractionRecord:
    await record.wait_first_response(timeout=5)
    latency = record.ack_latency
    assert latency is not None
    ACK_LATENCIES.append(latency)
    assert latency < ACK_LIMIT_S, f"/{record.payload['data']['name']} acked in {latency:.3f}s"
    return record


async def settled(record: InteractionRecord, timeout: float = 30) -> InteractionRecord:
    """Wait for what the student ends up with: past the "still loading" notice, if any."""
    await acked(record)
    deadline = time.monotonic() + timeout
    while True:
        shown = record.visible_messages
        if shown and not any(LOADING_TEXT in (m.get("content") or "") for m in shown):
            return record
        if time.monotonic() > deadline:
            raise TimeoutError(f"no final answer; messages: {shown}, errors: {record.errors}")
        await asyncio.sleep(0.01)


async def ask(h: Harness, name: str, options: dict[str, Any] | None = None,
              **kwargs: Any) -> InteractionRecord:
    return await settled(await h.emu.invoke(name, options, **kwargs))


async def ask_raw(h: Harness, name: str, options: dict[str, Any], raw: dict[str, Any],
                  **kwargs: Any) -> InteractionRecord:
    """Invoke with `options`, then overwrite values in the payload before it goes out.

    The emulator refuses out-of-range values like the Discord app does; a raw API client (or
    a stale command definition) can still send them, and the bot must cope.
    """
    emu = h.emu
    send = emu.dispatch

    async def tampered(event: str, data: dict[str, Any]) -> None:
        options = data["data"]["options"]
        while options and options[0]["type"] in (1, 2):
            options = options[0]["options"]
        for option in options:
            if option["name"] in raw:
                option["value"] = raw[option["name"]]
        await send(event, data)

    emu.dispatch = tampered  # type: ignore[method-assign]
    try:
        record = await emu.invoke(name, options, **kwargs)
    finally:
        del emu.dispatch
    return await settled(record)


def shown_texts(record: InteractionRecord) -> list[str]:
    """Every string a student can read in the visible messages (titles and footers too)."""
    texts = []
    for message in record.visible_messages:
        texts.append(message.get("content") or "")
        for embed in message.get("embeds") or []:
            texts += [embed.get("title") or "", embed.get("description") or "",
                      (embed.get("footer") or {}).get("text") or ""]
            for f in embed.get("fields") or []:
                texts += [f.get("name") or "", f.get("value") or ""]
    return [t for t in texts if t]


def message_payloads(emu: DiscordEmulator) -> list[dict[str, Any]]:
    """The message bodies the bot sent: initial responses, follow-ups, edits, channel posts."""
    bodies = []
    for rec in emu.requests:
        if not isinstance(rec.json, dict):
            continue
        if rec.method == "POST" and rec.path.endswith("/callback"):
            body = rec.json.get("data") or {}
        elif re.match(r"/webhooks/|/channels/\d+/messages$", rec.path) and rec.method != "GET":
            body = rec.json
        else:
            continue
        if "content" in body or "embeds" in body:
            bodies.append(body)
    return bodies


def assert_ephemeral_error(record: InteractionRecord, *phrases: str) -> None:
    assert record.ephemeral, record.visible_messages
    assert all(m["flags"] & EPHEMERAL for m in record.visible_messages)
    for phrase in phrases:
        assert phrase in record.text, record.text


def description(record: InteractionRecord) -> str:
    return record.visible_messages[0]["embeds"][0]["description"]


# ------------------------------------------------------------------------------ the commands


async def test_synced_commands_fit_discord_limits(tiny_config, tmp_path, caplog):
    async with bot(tiny_config, tmp_path, caplog, wait_models=False) as h:
        put = h.emu.find_requests("PUT", rf"/guilds/{h.emu.guild_id}/commands$")[-1]
        limits = h.bot.config.limits
    commands = {c["name"]: c for c in put.json if c.get("type", 1) == 1}
    assert {"mask", "qa", "generate", "tokens", "sentiment"} <= set(commands)
    menus = [c for c in put.json if c.get("type") == 3]
    # Discord allows 5 message commands; their names may have capitals and spaces.
    assert {c["name"] for c in menus} == {"Tokenize", "Sentiment", "Ask a question about this",
                                          "Mask a word"}
    assert all(1 <= len(c["name"]) <= 32 and not c.get("options") and not c.get("description")
               for c in menus)
    for command in put.json:
        assert validate_command_json(command) == [], command["name"]
        if command.get("type", 1) == 1:
            _check_documented_limits(command, command["name"])

    def option(command: str, name: str, sub: str | None = None) -> dict[str, Any]:
        options = commands[command]["options"]
        if sub is not None:
            options = next(o for o in options if o["name"] == sub)["options"]
        return next(o for o in options if o["name"] == name)

    # What Discord lets a student type matches what the core accepts.
    assert option("mask", "text")["max_length"] == limits.max_text_chars
    assert option("mask", "top_k")["max_value"] == limits.max_mask_top_k
    assert option("qa", "context")["max_length"] == limits.max_context_chars
    assert option("qa", "question")["max_length"] == limits.max_question_chars
    assert option("generate", "prompt")["max_length"] == limits.max_text_chars
    assert option("generate", "max_new_tokens")["max_value"] == limits.max_new_tokens
    assert option("generate", "num_return_sequences")["max_value"] == limits.max_return_sequences
    assert option("generate", "seed")["required"] is False
    assert {"wordpiece", "bpe"} <= {c["value"] for c in option("tokens", "model")["choices"]}
    assert option("sentiment", "text")["max_length"] == limits.max_text_chars


def _check_documented_limits(obj: dict[str, Any], where: str, depth: int = 0) -> None:
    """Discord's documented rules, checked independently of the emulator's validator."""
    assert re.fullmatch(r"[-_\w]{1,32}", obj["name"]) and obj["name"] == obj["name"].lower(), where
    assert 1 <= len(obj["description"]) <= 100, where
    options = obj.get("options") or []
    assert len(options) <= 25, where
    required = [bool(o.get("required")) for o in options if o["type"] not in (1, 2)]
    assert required == sorted(required, reverse=True), f"{where}: required after optional"
    for o in options:
        assert len(o.get("choices") or []) <= 25, where
        if o["type"] == 3:
            assert 0 <= o.get("min_length", 0) <= o.get("max_length", 6000) <= 6000, where
        _check_documented_limits(o, f"{where} {o['name']}", depth + 1)
    if depth == 0:
        def chars(x: dict[str, Any]) -> int:
            return (len(x["name"]) + len(x.get("description", ""))
                    + sum(len(str(c["name"])) + len(str(c["value"])) for c in x.get("choices", []))
                    + sum(chars(o) for o in x.get("options", [])))
        assert chars(obj) <= 4000, where


@pytest.mark.skipif(not SPEC_PATH.is_file(), reason=NO_SPEC)
async def test_synced_commands_match_discords_openapi_spec(tiny_config, tmp_path, caplog):
    spec = json.loads(SPEC_PATH.read_text())
    schema = spec["components"]["schemas"]["ApplicationCommandCreateRequest"]
    async with bot(tiny_config, tmp_path, caplog, wait_models=False) as h:
        put = h.emu.find_requests("PUT", rf"/guilds/{h.emu.guild_id}/commands$")[-1]
    for command in put.json:
        assert set(schema["required"]) <= set(command), command["name"]
        assert [p for p in validate_command_json(command) if "spec:" in p] == []
    # The schema check is not vacuous: a wrongly typed field is caught by the spec alone.
    broken = {**put.json[0], "contexts": "guild"}
    assert any("spec:" in p for p in validate_command_json(broken))


async def test_mask_answers_publicly_and_logs_one_row(tiny_config, tmp_path, caplog):
    async with bot(tiny_config, tmp_path, caplog) as h:
        record = await ask(h, "mask", {"text": "Paris is the [MASK] of France.", "top_k": 3})
        rows = await h.rows()
    assert record.first_response["type"] == 5  # deferred: "thinking…"
    assert not record.ephemeral
    embed = record.visible_messages[0]["embeds"][0]
    assert embed["title"] == "Fillers for [MASK]"
    assert len(re.findall(r"^` *\d+` ", embed["description"], re.M)) == 3
    assert embed["fields"][0]["name"] == "Best sentence"
    assert embed["footer"]["text"].startswith("model: ")
    [row] = rows
    assert (row["command"], row["status"], row["error"]) == ("mask", "ok", "")
    assert json.loads(row["options"]) == {"top_k": 3}
    assert row["input_text"] == "Paris is the [MASK] of France."
    assert row["output_summary"].startswith("top: ") and row["inference_ms"] is not None


async def test_qa_highlights_the_answer_in_its_context(tiny_config, tmp_path, caplog):
    context = "The Eiffel Tower is in Paris. It was finished in 1889 for a world fair."
    async with bot(tiny_config, tmp_path, caplog) as h:
        record = await ask(h, "qa", {"question": "Where is the Eiffel Tower?",
                                     "context": context})
        [row] = await h.rows()
    embed = record.visible_messages[0]["embeds"][0]
    answer = embed["title"].removeprefix("Answer: ").replace("\\", "")  # markdown escapes
    assert embed["title"].startswith("Answer: ") and answer in context
    # The answer is underlined and bold exactly where it sits in the context.
    highlighted = re.search(r"__\*\*(.*?)\*\*__", embed["description"], re.S)
    assert highlighted is not None and highlighted.group(1).replace("\\", "") == answer
    start, end = map(int, re.findall(r"\d+", embed["fields"][1]["value"]))
    assert context[start:end] == answer
    assert {f["name"] for f in embed["fields"]} >= {"Score", "Position"}
    assert (row["command"], row["status"]) == ("qa", "ok")
    assert row["input_text"] == f"Where is the Eiffel Tower?\n---\n{context}"


async def test_generate_with_a_seed_is_reproducible_through_discord(tiny_config, tmp_path, caplog):
    options = {"prompt": "Once upon a time", "max_new_tokens": 12, "temperature": 1.0,
               "seed": 1234}
    async with bot(tiny_config, tmp_path, caplog) as h:
        first = await ask(h, "generate", options)
        again = await ask(h, "generate", options)
        other = await ask(h, "generate", {**options, "seed": 99})
        rows = await h.rows()
    assert description(first) == description(again)
    assert description(first) != description(other)
    assert description(first).startswith("**Once upon a time**")
    footer = first.visible_messages[0]["embeds"][0]["footer"]["text"]
    assert "temperature 1 · top_k 50 · top_p 1 · seed 1234" in footer  # the knobs, stated
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert json.loads(rows[0]["options"])["seed"] == 1234


async def test_longest_answers_stay_within_discord_limits(tiny_config, tmp_path, caplog):
    # The longest context Discord lets through: read in several windows, shown trimmed.
    context = ("The Eiffel Tower is in Paris. " * 140)[:4000]
    async with bot(tiny_config, tmp_path, caplog) as h:
        record = await ask(h, "generate", {"prompt": "The capital of France is",
                                           "max_new_tokens": 100, "num_return_sequences": 5})
        qa = await ask(h, "qa", {"question": "Where is the tower?", "context": context})
        rows = await h.rows()
    text = description(record)
    assert all(f"**{i}.** **The capital of France is**" in text for i in range(1, 6))
    # (With 128-position tiny models five continuations stay under the embed limit, so the
    # generated.txt fallback is not reachable here; /tokens covers the attachment path.)
    embed = qa.visible_messages[0]["embeds"][0]
    assert "Windows" in {f["name"] for f in embed["fields"]}
    assert len(embed["description"]) < 2000 and "…" in embed["description"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    # The emulator rejects an oversized message; running_bot fails the test on any violation.


async def test_tokens_short_text_in_an_embed_and_long_text_as_a_file(tiny_config, tmp_path,
                                                                      caplog):
    async with bot(tiny_config, tmp_path, caplog) as h:
        short = await ask(h, "tokens", {"text": "Tokenization is unbelievable!"})
        bpe = await ask(h, "tokens", {"text": "Tokenization is unbelievable!", "model": "bpe"})
        long = await ask(h, "tokens", {"text": LONG_TOKENS_TEXT})
        rows = await h.rows()
    embed = short.visible_messages[0]["embeds"][0]
    assert embed["title"] == "WordPiece tokens"
    assert "[CLS]" in embed["description"] and "##iz" in embed["description"]
    assert short.files == []
    assert bpe.visible_messages[0]["embeds"][0]["title"] == "BPE tokens"
    [attachment] = long.visible_messages[0]["attachments"]
    assert attachment["filename"] == "tokens.txt"
    [(name, data)] = long.files
    table = data.decode()
    assert name == "tokens.txt" and table.count("##ations") == 7 * 16 + 5
    assert "Full table attached." in description(long)
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert json.loads(rows[1]["options"]) == {"model": "bpe"}


async def test_sentiment_says_it_is_untrained_then_answers_once_trained(tiny_config, tmp_path,
                                                                          caplog):
    good = ["I loved this movie", "a wonderful film", "great acting and a great plot",
            "what an amazing story", "the best book this year", "happy and beautiful music",
            "awesome game", "a nice and funny show", "I really enjoyed it", "good friends"]
    bad = ["I hated this movie", "a terrible film", "boring acting and a bad plot",
           "what an awful story", "the worst book this year", "sad and ugly music",
           "boring game", "a poor and serious show", "I really hated it", "bad friends"]
    async with bot(tiny_config, tmp_path, caplog) as h:
        before = await ask(h, "sentiment", {"text": "I loved it"})
        report = await h.services.sentiment.train(
            LabelledData(tuple(good + bad), (1,) * len(good) + (0,) * len(bad))
        )
        after = await ask(h, "sentiment", {"text": "I loved it"})
        rows = await h.rows()
    assert before.first_response["type"] == 4  # refused before any "thinking…"
    assert_ephemeral_error(before, "No sentiment classifier has been trained yet",
                           "/classifier train")
    embed = after.visible_messages[0]["embeds"][0]
    assert not after.ephemeral
    assert re.fullmatch(r"(negative|positive) \(\d+%\)", embed["title"]), embed["title"]
    assert f"held-out accuracy {report.accuracy:.1%}" in embed["footer"]["text"]
    assert [(r["command"], r["status"], r["error"]) for r in rows] == [
        ("sentiment", "unavailable", "not_ready"), ("sentiment", "ok", "")]


# ------------------------------------------------------------------------------- bad input


async def test_bad_input_gets_an_ephemeral_hint_and_one_user_error_row(tiny_config, tmp_path,
                                                                        caplog):
    async with bot(tiny_config, tmp_path, caplog) as h:
        no_mask = await ask(h, "mask", {"text": "Paris is the capital of France."})
        blank = await ask(h, "qa", {"question": "Where?", "context": "   "})
        # Values the Discord app would refuse, sent anyway through the raw payload.
        empty = await ask_raw(h, "qa", {"question": "Where?", "context": "x"}, {"context": ""})
        top_k = await ask_raw(h, "mask", {"text": "A [MASK].", "top_k": 3}, {"top_k": 50})
        hot = await ask_raw(h, "generate", {"prompt": "Hi", "temperature": 1.0},
                            {"temperature": 5.0})
        many = await ask_raw(h, "generate", {"prompt": "Hi", "max_new_tokens": 5},
                             {"max_new_tokens": 10_000})
        rows = await h.rows()
    assert_ephemeral_error(no_mask, "no [MASK]", "exactly one `[MASK]`")
    assert_ephemeral_error(blank, "context is empty")
    assert_ephemeral_error(empty, "context is empty")
    assert_ephemeral_error(top_k, "top_k", "50")
    assert_ephemeral_error(hot, "temperature", "5.0")
    assert_ephemeral_error(many, "max_new_tokens", "10000")
    for record in (no_mask, blank, empty, top_k, hot, many):
        # Validation runs before the defer: no public "thinking…" flashes for a typo.
        assert record.first_response["type"] == 4
        assert record.first_response["data"]["flags"] & EPHEMERAL
    assert [(r["command"], r["status"], r["error"]) for r in rows] == [
        ("mask", "user_error", "invalid_input"), ("qa", "user_error", "invalid_input"),
        ("qa", "user_error", "invalid_input"), ("mask", "user_error", "invalid_input"),
        ("generate", "user_error", "invalid_input"), ("generate", "user_error", "invalid_input"),
    ]


async def test_tokens_refuses_a_tokenizer_that_is_not_a_choice(tiny_config, tmp_path, caplog):
    async with bot(tiny_config, tmp_path, caplog) as h:
        record = await ask_raw(h, "tokens", {"text": "hello", "model": "bpe"},
                               {"model": "sentencepiece"})
        [row] = await h.rows()
    assert_ephemeral_error(record)
    assert row["status"] == "user_error"


async def test_mentions_in_inputs_and_outputs_never_ping(tiny_config, tmp_path, caplog):
    async with bot(tiny_config, tmp_path, caplog) as h:
        role = f"<@&{h.emu.student_role_id}>"
        records = [
            await ask(h, "generate", {"prompt": "@everyone", "max_new_tokens": 5}),
            await ask(h, "qa", {"question": f"@everyone who is {role}?",
                                "context": f"@everyone {role} @here " * 40}),
            await ask(h, "tokens", {"text": f"@everyone {role}"}),
            await ask(h, "mask", {"text": f"@everyone is the [MASK] of {role}."}),
            await ask(h, "mask", {"text": "@everyone no mask here"}),  # an error echo
        ]
        payloads = message_payloads(h.emu)
    # The generate prompt is echoed in bold: the mention is there, defused.
    assert description(records[0]).startswith("**@\u200beveryone**")
    assert len(payloads) >= len(records)
    for body in payloads:
        assert body.get("allowed_mentions") == {"parse": []}, body
    for record in records:
        for text in shown_texts(record):
            assert MENTION.search(text) is None, text


async def test_model_still_loading_is_said_then_the_answer_replaces_it(tiny_config, tmp_path,
                                                                         caplog, monkeypatch):
    slow_load(monkeypatch, seconds=1.5)
    async with bot(tiny_config, tmp_path, caplog, wait_models=False,
                   models={"load_at_start": False}) as h:
        record = await acked(await h.emu.invoke("mask", {"text": "Paris is the [MASK]."}))
        await record.wait_done(timeout=5)  # the first thing the student sees...
        first_seen = record.text
        await settled(record)
        rows = await h.rows()
    assert LOADING_TEXT in first_seen and "masked_lm" in first_seen
    # ...is replaced in place by the answer: one public message, the notice gone.
    [message] = record.visible_messages
    assert not record.ephemeral and message["content"] == ""
    assert message["embeds"][0]["title"] == "Fillers for [MASK]"
    assert [r["status"] for r in rows] == ["ok"]


async def test_queue_full_gets_a_friendly_ephemeral_busy_message(tiny_config, tmp_path, caplog,
                                                                  monkeypatch):
    slow_load(monkeypatch, seconds=1.5)  # requests pile up behind the first load
    async with bot(tiny_config, tmp_path, caplog, wait_models=False,
                   models={"load_at_start": False},
                   engine={"queue_size": 1, "max_batch_size": 1}) as h:
        invoked = [await h.emu.invoke("generate", {"prompt": f"Story {i}", "max_new_tokens": 3})
                   for i in range(3)]
        records = await asyncio.gather(*(settled(r) for r in invoked))
        rows = await h.rows()
    busy = [r for r in records if "very busy" in r.text]
    answered = [r for r in records if "very busy" not in r.text]
    assert len(busy) == 2 and len(answered) == 1
    for record in busy:
        assert_ephemeral_error(record, "try again")
        # Refused before any "thinking…": no public placeholder ever appeared.
        assert record.first_response["type"] == 4 and not record.followups
    assert not answered[0].ephemeral and "**Story" in description(answered[0])
    assert sorted((r["status"], r["error"]) for r in rows) == [
        ("ok", ""), ("overloaded", "overloaded"), ("overloaded", "overloaded")]


async def test_cooldown_refusal_is_ephemeral_and_logged(tiny_config, tmp_path, caplog):
    async with bot(tiny_config, tmp_path, caplog,
                   discord={"default_cooldown_uses": 1, "default_cooldown_seconds": 60.0}) as h:
        first = await ask(h, "tokens", {"text": "hello world"})
        second = await ask(h, "tokens", {"text": "hello world"})
        rows = await h.rows()
    assert not first.ephemeral
    assert_ephemeral_error(second, "too fast", "Try again in")
    assert second.first_response["type"] == 4
    assert [(r["status"], r["error"]) for r in rows] == [("ok", ""), ("cooldown", "cooldown")]


def slow_load(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Make every model load take `seconds` longer (in the loading thread, like a real one)."""
    real = core.inference.models.load_model

    def load_model(*args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(core.inference.models, "load_model", load_model)
