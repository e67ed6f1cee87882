"""Every interaction kind beyond the slash command, end to end: buttons under answers (also
after a restart, and expired), 👍/👎 feedback, right-click menus, modals, private answers and
the place in line. The real bot, tiny models and SQLite against the loopback Discord; each
click and each modal submit is a gated, logged interaction like a slash command."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import discord
import pytest

from core.storage.guild_settings import Cooldown
from tests.bot_harness import Harness, bot_config, running_bot
from tests.discord_emulator import (
    EPHEMERAL,
    IS_COMPONENTS_V2,
    DiscordEmulator,
    InteractionRecord,
    text_displays,
)
from tests.test_reliability import models_ready, slow_fill_mask

GENERATE = {"prompt": "Once upon a time", "max_new_tokens": 8, "seed": 1234}


def config_for(tiny_config, tmp_path, **discord: Any):
    return bot_config(tiny_config, tmp_path, discord={"default_cooldown_uses": 0, **discord})


async def answered(record: InteractionRecord, timeout: float = 30) -> InteractionRecord:
    """Wait past "⏳ in line" / "still loading" notes to the answer (or an error) itself."""
    deadline = time.monotonic() + timeout
    while True:
        shown = record.visible_messages
        if shown and any(m.get("embeds") or m["flags"] & IS_COMPONENTS_V2
                         for m in (shown[0], shown[-1])):
            return record
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer: {shown}")
        await asyncio.sleep(0.02)


def button(record_or_message: InteractionRecord | dict, label: str) -> str:
    """The custom_id of the button labelled `label` (or with that emoji)."""
    message = (record_or_message.message if isinstance(record_or_message, InteractionRecord)
               else record_or_message)
    from tests.discord_emulator.world import flatten_components

    for component in flatten_components(message["components"]):
        if label in (component.get("label"), (component.get("emoji") or {}).get("name")):
            return component["custom_id"]
    raise AssertionError(f"no button {label!r} in {message['components']}")


def labels(record: InteractionRecord) -> list[str]:
    return [c.get("label") or c["emoji"]["name"] for c in record.components]


def embed(record: InteractionRecord) -> dict:
    return record.visible_messages[0]["embeds"][0]


async def click(h: Harness, record: InteractionRecord, label: str, **kw: Any) -> InteractionRecord:
    clicked = await h.emu.click(record.message, button(record, label), **kw)
    await clicked.wait_done()
    return clicked


async def test_generate_buttons_rerun_with_the_knobs_and_say_them(tiny_config, tmp_path, caplog):
    async with running_bot(config_for(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        first = await answered(await h.emu.invoke("generate", GENERATE))
        assert labels(first) == ["New sample", "Same seed again", "Greedy", "Next-token odds",
                                 "👍", "👎"]
        assert "temperature 1 · top_k 50 · top_p 1 · seed 1234" in embed(first)["footer"]["text"]

        same = await answered(await click(h, first, "Same seed again"))
        assert embed(same)["description"] == embed(first)["description"]  # determinism
        assert "seed 1234" in embed(same)["footer"]["text"]
        greedy = await answered(await click(h, first, "Greedy"))
        assert "greedy" in embed(greedy)["footer"]["text"]
        new = await answered(await click(h, first, "New sample"))
        assert "seed 1234" not in embed(new)["footer"]["text"]
        assert embed(new)["description"].startswith("**Once upon a time**")
        odds = await answered(await click(h, first, "Next-token odds"))
        assert embed(odds)["title"] == "What could GPT-2 say next?"
        assert odds.visible_messages[0]["attachments"]  # the picture
        # Every click is acknowledged at once and is an answer of its own, with its buttons.
        assert all(r.ack_latency < 1.0 for r in (first, same, greedy, new, odds))
        assert "Same seed again" in labels(same)

        rows = await h.rows()
    assert [(r["command"], json.loads(r["options"]).get("via")) for r in rows] == [
        ("generate", None), ("generate", "button:same"), ("generate", "button:greedy"),
        ("generate", "button:new"), ("nexttoken", "button:odds")]
    assert all(r["status"] == "ok" and r["input_text"] == "Once upon a time" for r in rows)
    assert json.loads(rows[2]["options"])["temperature"] == 0.0


async def test_mask_buttons_attention_and_compare_modal(tiny_config, tmp_path, caplog):
    async with running_bot(config_for(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        first = await answered(await h.emu.invoke("mask", {"text": "Paris is the [MASK]."}))
        assert labels(first) == ["Attention", "Compare with…", "Why?", "👍", "👎"]
        attention = await answered(await click(h, first, "Attention"))
        # A picture answer: one layout message (Components V2) with its controls.
        layout = attention.visible_messages[0]
        assert text_displays(layout["components"])[0].startswith("### Attention · layer")

        opened = await h.emu.click(first.message, button(first, "Compare with…"))
        await opened.wait_first_response()
        assert opened.modal is not None and opened.modal["title"] == "Compare with…"
        submit = await h.emu.submit_modal(opened, {"text": "Rome is the [MASK]."})
        pair = await answered(submit)
        assert embed(pair)["title"] == "Two sentences, one [MASK]"
        assert "Paris is the [MASK]." in embed(pair)["description"]
        assert "Rome is the [MASK]." in embed(pair)["description"]
        rows = await h.rows()
    assert [(r["command"], r["input_text"]) for r in rows] == [
        ("mask", "Paris is the [MASK]."), ("attention", "Paris is the [MASK]."),
        ("maskpair", "Paris is the [MASK].\nRome is the [MASK].")]


async def test_feedback_is_the_askers_stored_on_the_row_and_in_stats(tiny_config, tmp_path,
                                                                      caplog, monkeypatch):
    monkeypatch.setattr("bot.interactions.answers.FEEDBACK_RATE", Cooldown("feedback", 1, 0.5))
    async with running_bot(config_for(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        other = h.emu.guild.add_member("classmate", roles=["Student"])
        asked = await answered(await h.emu.invoke("mask", {"text": "Paris is the [MASK]."}))
        thumbs = await click(h, asked, "👍")
        assert thumbs.ephemeral and "saved" in thumbs.text
        refused = await click(h, asked, "👎", user_id=other)
        assert refused.ephemeral and "Only the student who asked" in refused.text
        await asyncio.sleep(0.6)  # past the vote rate
        changed = await click(h, asked, "👎")  # a change of mind replaces the vote
        assert changed.ephemeral
        rows = await h.rows()
        answer = next(r for r in rows if r["command"] == "mask")
        assert answer["feedback"] == -1
        votes = [(r["user_id"], r["status"], json.loads(r["options"])["vote"]) for r in rows
                 if r["command"] == "feedback"]
        assert votes == [(h.emu.student_id, "ok", "up"), (other, "refused", "down"),
                         (h.emu.student_id, "ok", "down")]
        stats = await h.run("logs", {}, subcommand="stats", user_id=h.emu.moderator_id)
        assert "`/mask` 👍 0 · 👎 1" in stats.text


async def test_a_flood_of_votes_changes_the_vote_once(tiny_config, tmp_path, caplog):
    """150 clicks in a burst once stored 150 votes: one vote change per `FEEDBACK_RATE`."""
    async with running_bot(config_for(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        asked = await answered(await h.emu.invoke("mask", {"text": "Paris is the [MASK]."}))
        votes = ["👎" if i % 2 else "👍" for i in range(20)]
        clicks = await asyncio.gather(*(click(h, asked, vote) for vote in votes))
        assert all(c.ephemeral for c in clicks)
        saved = [vote for vote, c in zip(votes, clicks) if "saved" in c.text]
        assert len(saved) == 1
        assert sum("too fast" in c.text for c in clicks) == 19
        rows = await h.rows()
        answer = next(r for r in rows if r["command"] == "mask")
        assert answer["feedback"] == (1 if saved[0] == "👍" else -1)
        assert sorted(r["status"] for r in rows if r["command"] == "feedback") == (
            ["cooldown"] * 19 + ["ok"])


async def test_each_member_s_votes_have_their_own_rate(tiny_config, tmp_path, caplog):
    """The feedback rate is per member: two members voting at the same moment on their own
    answers are both saved (a rate shared by the class would refuse one of them)."""
    async with running_bot(config_for(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        members = (h.emu.student_id, h.emu.moderator_id)
        asked = [await answered(await h.emu.invoke(
            "mask", {"text": "Paris is the [MASK]."}, user_id=m)) for m in members]
        clicks = await asyncio.gather(*(
            click(h, record, "👍", user_id=m) for record, m in zip(asked, members)))
        assert all("saved" in c.text for c in clicks), [c.text for c in clicks]
        rows = await h.rows()
        assert [r["feedback"] for r in rows if r["command"] == "mask"] == [1, 1]


async def test_buttons_work_after_a_restart_and_expire(tiny_config, tmp_path, caplog):
    async with DiscordEmulator() as emu:
        config = config_for(tiny_config, tmp_path)
        async with running_bot(config, caplog, emulator=emu) as h:
            await models_ready(h)
            first = await answered(await h.emu.invoke("generate", GENERATE))
        # A new process over the same database: no view was re-registered by hand.
        async with running_bot(config, caplog, emulator=emu) as h:
            await models_ready(h)
            again = await answered(await click(h, first, "Same seed again"))
            assert embed(again)["description"] == embed(first)["description"]
            thumbs = await click(h, first, "👍")
            assert "saved" in thumbs.text
        # Buttons older than button_max_age_hours (here 3.6 s) only say so.
        short = config_for(tiny_config, tmp_path, button_max_age_hours=0.001)
        while time.time() - discord.utils.snowflake_time(first.id).timestamp() < 3.7:
            await asyncio.sleep(0.1)
        async with running_bot(short, caplog, emulator=emu) as h:
            expired = await click(h, first, "New sample")
            assert expired.ephemeral and "expired" in expired.text
            rows = await h.rows()
    assert [(r["command"], r["status"]) for r in rows] == [
        ("generate", "ok"), ("generate", "ok"), ("feedback", "ok"), ("generate", "expired")]
    assert rows[0]["feedback"] == 1


async def test_a_click_follows_the_rules_of_the_command_it_runs(tiny_config, tmp_path, caplog):
    async with running_bot(config_for(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        first = await answered(await h.emu.invoke("generate", GENERATE))
        # A moderator turns /nexttoken off after the answer was posted.
        await h.services.settings.set_rule(h.emu.guild_id, "guild", h.emu.guild_id,
                                           "nexttoken", False)
        denied = await click(h, first, "Next-token odds")
        assert denied.ephemeral and "nexttoken" in denied.text
        await h.services.settings.set_paused(h.emu.guild_id, True)
        paused = await click(h, first, "New sample")
        assert paused.ephemeral and "paused" in paused.text.lower()
        rows = await h.rows()
    assert [(r["command"], r["status"], json.loads(r["options"]).get("via")) for r in rows] == [
        ("generate", "ok", None), ("nexttoken", "refused", "button:odds"),
        ("generate", "paused", "button:new")]


async def test_right_click_menus_answer_about_the_message(tiny_config, tmp_path, caplog):
    async with running_bot(config_for(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        posted = h.emu.add_message(content="The Eiffel Tower is in Paris.",
                                   author_id=h.emu.moderator_id)
        tokens = await answered(await h.emu.invoke_message_command("Tokenize", posted))
        assert embed(tokens)["title"] == "WordPiece tokens" and tokens.ack_latency < 1.0

        ask = await h.emu.invoke_message_command("Ask a question about this", posted)
        await ask.wait_first_response()
        assert ask.modal["title"] == "Ask a question about this"
        qa = await answered(await h.emu.submit_modal(ask, {"text": "Where is the tower?"}))
        assert "**Q:** Where is the tower?" in embed(qa)["description"]

        mask = await h.emu.invoke_message_command("Mask a word", posted)
        await mask.wait_first_response()
        filled = await answered(await h.emu.submit_modal(mask, {"text": "paris"}))
        assert embed(filled)["description"].startswith("**The Eiffel Tower is in [MASK].**")

        missing = await h.emu.invoke_message_command("Mask a word", posted)
        await missing.wait_first_response()
        wrong = await h.emu.submit_modal(missing, {"text": "London"})
        await wrong.wait_done()
        assert wrong.ephemeral and "is not a word of that message" in wrong.text
        rows = await h.rows()
    assert [(r["command"], r["status"], json.loads(r["options"]).get("via")) for r in rows] == [
        ("tokens", "ok", "menu:Tokenize"), ("qa", "ok", "menu:Ask a question about this"),
        ("mask", "ok", "menu:Mask a word"), ("mask", "user_error", "menu:Mask a word")]
    assert rows[1]["input_text"] == "Where is the tower?\n---\nThe Eiffel Tower is in Paris."


async def test_a_denied_right_click_is_refused_and_logged(tiny_config, tmp_path, caplog):
    async with running_bot(config_for(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        await h.services.settings.set_rule(h.emu.guild_id, "guild", h.emu.guild_id,
                                           "tokens", False)
        posted = h.emu.add_message(content="Hello there")
        record = await h.emu.invoke_message_command("Tokenize", posted)
        await record.wait_done()
        assert record.ephemeral and "tokens" in record.text
        rows = await h.rows()
    assert [(r["command"], r["status"]) for r in rows] == [("tokens", "refused")]


async def test_qa_without_context_opens_a_form_that_keeps_line_breaks(tiny_config, tmp_path,
                                                                      caplog):
    async with running_bot(config_for(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        opened = await h.emu.invoke("qa", {"question": "Where is the tower?"})
        await opened.wait_first_response()
        field = opened.modal["components"][0]
        field = field.get("component") or field["components"][0]
        assert field["style"] == 2 and field["max_length"] == h.bot.config.limits.max_context_chars
        context = "First line.\n\nThe Eiffel Tower is in Paris.\nLast line."
        qa = await answered(await h.emu.submit_modal(opened, {"text": context}))
        assert embed(qa)["title"].startswith("Answer: ")
        rows = await h.rows()
    assert [(r["command"], r["status"]) for r in rows] == [("qa", "ok")]
    assert rows[0]["input_text"] == f"Where is the tower?\n---\n{context}"


async def test_private_answers_and_the_moderators_override(tiny_config, tmp_path, caplog):
    async with running_bot(config_for(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        mine = await answered(await h.emu.invoke("mask", {"text": "Paris is the [MASK].",
                                                          "private": True}))
        assert mine.ephemeral and "Attention" in labels(mine)
        forced = await h.run("config", {"mode": "public"}, subcommand="answers",
                             user_id=h.emu.moderator_id)
        assert "always **public**" in forced.text
        public = await answered(await h.emu.invoke("mask", {"text": "Paris is the [MASK].",
                                                            "private": True}))
        assert not public.ephemeral
        await h.run("config", {"mode": "private", "channel": h.emu.channel_id},
                    subcommand="answers", user_id=h.emu.moderator_id)
        channel_private = await answered(await h.emu.invoke("mask", {"text": "Paris [MASK]."}))
        assert channel_private.visible_messages[0]["flags"] & EPHEMERAL
        rows = await h.rows()
    masks = [json.loads(r["options"]).get("private") for r in rows if r["command"] == "mask"]
    assert masks == [True, None, True]


async def test_a_long_wait_shows_the_place_in_line(tiny_config, tmp_path, caplog, monkeypatch):
    slow_fill_mask(monkeypatch, 1.5, when=lambda requests: "Student" in requests[0].text)
    config = bot_config(tiny_config, tmp_path, engine={"max_batch_size": 1},
                        discord={"default_cooldown_uses": 0})
    async with running_bot(config, caplog) as h:
        await models_ready(h)
        earlier = await answered(await h.emu.invoke("mask", {"text": "Paris is the [MASK]."}))
        records = [await h.emu.invoke("mask", {"text": f"Student {i} is the [MASK]."})
                   for i in range(3)]
        # While the core is busy, every kind of interaction is still acknowledged at once.
        clicks = [await h.emu.click(earlier.message, button(earlier, label))
                  for label in ("Attention", "👍")]
        await asyncio.gather(*(answered(r, 60) for r in records), clicks[1].wait_done(),
                             answered(clicks[0], 60))
        assert all(r.ack_latency < 1.0 for r in records + clicks)
        notes = [e.get("content") for e in records[2].edits if e.get("content")]
        assert notes and notes[0].startswith("⏳ ") and " in line (about " in notes[0], notes
        assert not any(e.get("content") for e in earlier.edits)  # no note for a short wait
        assert embed(records[2])["title"] == "Fillers for [MASK]"


@pytest.mark.parametrize("text", ["Paris is the [MASK].", "a **b** \\ c_d @everyone `x`",
                                  "# head\n- item\n> quote [MASK]", "[l](http://u) ~~s~~ ||x||"])
def test_an_answer_gives_back_its_text_exactly(text):
    from bot.interactions.render import bold_input, input_of, printable

    assert input_of(bold_input(text) + "\n\nmore **bold** text") == printable(text)


def test_an_answer_that_cannot_give_back_its_text_offers_no_follow_ups():
    from bot.interactions.render import bold_input, input_of

    # A URL is left unescaped by discord.py, so the read-back differs: no button then.
    assert input_of(bold_input("see http://x.com/a*b")) != "see http://x.com/a*b"
