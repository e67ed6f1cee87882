"""The front door (`bot.interactions.turn`): every interaction kind the code declares ends in
exactly one reply and one row, and is gated.

The kinds are enumerated from the code - every `discord.ui.DynamicItem` subclass the bot's
modules define - not from a hand list: a new kind without an example below fails
`test_every_component_kind_is_known`, so it cannot skip these checks. Each click is forged on a
copy of a real answer (as a raw API client could), through the real bot and the emulator.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import discord
import pytest

from bot.interactions.answers import (
    BrokenButton,
    FeedbackButton,
    FollowUpButton,
    PickSelect,
    WhyButton,
)
from cogs.quiz import GuessButton, RevealButton
from tests.bot_harness import Harness, bot_config, running_bot
from tests.discord_emulator import DiscordEmulator

NO_COOLDOWN = {"default_cooldown_uses": 0}


def component_kinds() -> set[str]:
    """Every dynamic item class of this bot's own modules (loaded by the imports above and by
    the extensions the harness loads)."""
    found, todo = set(), list(discord.ui.DynamicItem.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] in ("bot", "cogs"):
            found.add(_name(cls))
    return found


def _name(cls: type) -> str:
    """By name: discord.py loads an extension as a fresh module, with fresh classes."""
    return f"{cls.__module__}.{cls.__qualname__}"


#: A well-formed custom_id per kind ({asked}: a real answer's interaction id; {student}: the
#: student who asked it).
EXAMPLES: dict[str, tuple[str, str]] = {_name(kind): example for kind, example in {
    FollowUpButton: ("tlm:do:same:{asked}:t0.7,k50,p1,s1,n5,r1", "generate"),
    FeedbackButton: ("tlm:fb:up:{asked}", "feedback"),
    WhyButton: ("tlm:why:mask:{asked}", "explain mask"),
    BrokenButton: ("tlm:nothing:here", "button"),
    PickSelect: ("tlm:pick:attention:h:{asked}:{student}:m0,l1,h0,o0", "attention"),
    GuessButton: ("tlm:quiz:guess:999", "quiz guess"),
    RevealButton: ("tlm:quiz:reveal:999", "quiz reveal"),
}.items()}
SELF_SERVED = {_name(FeedbackButton), _name(BrokenButton)}


def test_every_component_kind_is_known():
    import bot.client  # noqa: F401  (the layer and the extensions it names)
    import cogs.buttons  # noqa: F401
    assert component_kinds() == set(EXAMPLES)


def forged(message: dict[str, Any], custom_id: str, *, channel_id: int | None = None
           ) -> dict[str, Any]:
    """A copy of a bot message whose only component is a button with `custom_id`."""
    forged = copy.deepcopy(message)
    forged["components"] = [{"type": 1, "components": [
        {"type": 2, "style": 2, "label": "x", "custom_id": custom_id}]}]
    if channel_id is not None:
        forged["channel_id"] = str(channel_id)
    return forged


async def click_forged(h: Harness, message: dict[str, Any], custom_id: str, *,
                       user_id: int | None = None, channel_id: int | None = None):
    record = await h.emu._dispatch_component(
        forged(message, custom_id, channel_id=channel_id), user_id or h.emu.student_id,
        {"custom_id": custom_id, "component_type": 2})
    await record.wait_done(timeout=30)
    return record


async def rows_added(h: Harness, before: int) -> list[Any]:
    await asyncio.sleep(0.05)
    return (await h.rows())[before:]


def snowflake(when: datetime) -> int:
    return discord.utils.time_snowflake(when)


async def test_every_kind_is_gated_and_ends_in_one_reply_and_one_row(tiny_config, tmp_path,
                                                                     caplog):
    """Paused server: each gated kind is refused by the pause; the member's own (feedback,
    a broken button) answer for themselves. One reply, one row each."""
    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN)
    async with running_bot(config, caplog) as h:
        asked = await h.run("mask", {"text": "Paris is the [MASK]."})
        message = asked.message
        await h.run("config", {"paused": True}, subcommand="pause", user_id=h.emu.moderator_id)
        for kind in sorted(component_kinds()):
            template, command = EXAMPLES[kind]
            before = len(await h.rows())
            record = await click_forged(h, message, template.format(
                asked=asked.id, student=h.emu.student_id))
            assert record.first_response is not None and not record.followups, kind
            assert record.ephemeral, kind
            added = await rows_added(h, before)
            assert [r["command"] for r in added] == [command], (kind, added)
            status = added[0]["status"]
            if kind in SELF_SERVED:  # the member's own: not paused
                assert status in ("ok", "user_error"), (kind, status)
            else:
                assert status == "paused", (kind, status, record.text)


@pytest.mark.parametrize("custom_id, status, says", [
    ("tlm:do:same:{asked}:", "user_error", "broken"),           # no knobs at all
    ("tlm:do:same:{asked}:kinf,n5", "user_error", "broken"),    # a knob that is no number
    ("tlm:do:same:{asked}:t1e999,k5,p1,n5,r1", "user_error", "broken"),  # overflow
    ("tlm:do:nope:{asked}:k5", "user_error", "broken"),          # no such follow-up
    ("tlm:do:attn:{future}:k5", "expired", "expired"),           # dated in the future
    ("tlm:quiz:guess:abc", "user_error", "broken"),              # matches no template
])
async def test_malformed_button_ids_are_answered_and_logged(tiny_config, tmp_path, caplog,
                                                            custom_id, status, says):
    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN)
    future = snowflake(datetime.now(timezone.utc) + timedelta(days=2))
    async with running_bot(config, caplog) as h:
        asked = await h.run("mask", {"text": "Paris is the [MASK]."})
        before = len(await h.rows())
        record = await click_forged(h, asked.message, custom_id.format(
            asked=asked.id, future=future))
        assert record.first_response is not None and not record.followups
        assert record.ephemeral
        assert says in record.text.lower(), record.text
        added = await rows_added(h, before)
        assert [r["status"] for r in added] == [status]


async def test_quiz_actions_from_another_server_or_channel_are_refused(tiny_config, tmp_path,
                                                                      caplog):
    """A custom_id is the client's to forge: server B's member must not guess in, or reveal,
    server A's quiz (v0.2 stored the guess and closed the quiz)."""
    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN)
    async with DiscordEmulator() as emu:
        other = emu.add_guild("Other class")
        other_channel = other.add_channel("general")
        other.add_member("student", roles=[], user_id=emu.student_id)  # in both servers
        async with running_bot(config, caplog, emulator=emu) as h:
            posted = len(emu.channel_messages)
            started = await h.run("quiz", {"sentence": "The [MASK] barked."}, subcommand="mask",
                                  user_id=emu.moderator_id)
            assert started.ephemeral and "started" in started.text, started.text
            [card] = emu.channel_messages[posted:]
            card = emu.message(card["id"])
            quiz_id = card["components"][0]["components"][0]["custom_id"].rsplit(":", 1)[1]
            before = len(await h.rows())
            for channel in (other_channel, emu.guild.add_channel("elsewhere")):
                for action in ("guess", "reveal"):
                    record = await click_forged(h, card, f"tlm:quiz:{action}:{quiz_id}",
                                                channel_id=channel)
                    assert record.ephemeral and "another channel" in record.text, record.text
            added = await rows_added(h, before)
            assert {r["status"] for r in added} == {"refused"}
            quiz = await h.services.quizzes.get(int(quiz_id))
            assert quiz is not None and quiz.is_open  # nobody closed it from elsewhere
