"""The gate and `enter` (bot/interactions/turn.py), through the real bot, tiny models and
SQLite against the loopback Discord - the cases the gate's mutation run found untested:

- a row said only on the `Action` (a quiz guess's submit: its body describes nothing) keeps
  its options, the guess out of them, the typed word under `log_inputs`, and no digest of a
  one-word guess under "hashed";
- a body that fails unexpectedly leaves its traceback in the log, not only a "failed" row;
- a member's own rated action (👍/👎, `Policy.throttle`) has its own rate per server and per
  action, and a try the core never admitted gives its use back;
- so does a class activity's start a moderator opened to students (its cooldown);
- the owner's command (`/sync`) is the owner's wherever they are: past the pause and a channel
  rule; anyone else is refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
from typing import Any

import discord
import pytest

from bot.interactions.render import Reply
from bot.interactions.turn import Action, Answer, Turn, enter
from core.errors import InvalidInput
from core.i18n import lazy
from core.storage.guild_settings import Cooldown
from tests.bot_harness import Harness, bot_config, running_bot
from tests.discord_emulator import DiscordEmulator
from tests.test_front_door import click_forged
from tests.test_interactions import answered, click
from tests.test_quiz_discord import _guess as guess
from tests.test_quiz_discord import _start as start_quiz
from tests.test_reliability import models_ready

NO_COOLDOWN = {"default_cooldown_uses": 0}
SENTENCE = "The [MASK] sat here ."


async def rows_of(h: Harness, command: str) -> list[Any]:
    return [r for r in await h.rows() if r["command"] == command]


@pytest.mark.parametrize("log_inputs, kept", [("full", "dog"), ("hashed", "")])
async def test_a_guess_s_row_is_what_its_action_declares(tiny_config, tmp_path, caplog,
                                                         log_inputs, kept):
    """The guess's submit declares its row on its `Action` only (options, the word as input
    text kept out of the options, a dictionary word): the row says the quiz, keeps the word
    under "full" and nothing of it under "hashed" (a digest of one word is reversed by hashing
    a word list)."""
    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN,
                        database={"log_inputs": log_inputs})
    async with running_bot(config, caplog) as h:
        await models_ready(h)
        card = await start_quiz(h, "mask", {"sentence": SENTENCE}, h.emu.moderator_id)
        assert "Your guess is in" in await guess(h, card, h.emu.student_id, "dog")
        [start] = await rows_of(h, "quiz mask")
        [row] = await rows_of(h, "quiz guess")
    quiz_id = int(re.search(r"tlm:quiz:guess:(\d+)", json.dumps(card["components"]))[1])
    assert (row["status"], row["user_id"]) == ("ok", h.emu.student_id)
    assert json.loads(row["options"]) == {"quiz": quiz_id}
    assert row["input_text"] == kept
    # The quiz's start declares its prompt the same way: kept under log_inputs, not an option.
    assert "sentence" not in json.loads(start["options"])
    if log_inputs == "full":
        assert start["input_text"] == SENTENCE
    else:  # a sentence is no dictionary word: its salted digest
        assert re.fullmatch("[0-9a-f]{64}", start["input_text"]), start["input_text"]


async def test_a_body_that_fails_leaves_its_traceback_in_the_log(tiny_config, tmp_path, caplog,
                                                                 monkeypatch):
    """A vote whose storage breaks: the member gets the apology, the row says "failed", and
    the operator's log has the failure with its traceback (what a bug report needs)."""
    broken = sqlite3.OperationalError("disk I/O error")

    async def set_feedback(*_: Any) -> bool:
        raise broken

    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN)
    async with running_bot(config, caplog, check_clean=False) as h:
        await models_ready(h)
        asked = await answered(await h.emu.invoke("mask", {"text": "Paris is the [MASK]."}))
        monkeypatch.setattr(h.services.querylog, "set_feedback", set_feedback)
        vote = await click(h, asked, "👍")
        assert vote.ephemeral and "saved" not in vote.text
        [row] = await rows_of(h, "feedback")
    assert (row["status"], row["error"]) == ("failed", "OperationalError")
    failures = [r for r in caplog.records
                if r.levelno >= logging.ERROR and r.getMessage() == "/feedback failed"]
    assert [r.exc_info[1] for r in failures if r.exc_info] == [broken]
    assert h.emu.unhandled == [] and h.emu.violations == []


async def test_a_member_votes_in_two_servers_at_once(tiny_config, tmp_path, caplog):
    """The feedback rate is per server too: the same member voting at the same moment on their
    answers in two servers is saved in both."""
    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN)
    async with DiscordEmulator() as emu:
        other = emu.add_guild("Other class")
        other.add_channel("general")
        other.add_member("student", user_id=emu.student_id)  # the same student in both
        async with running_bot(config, caplog, emulator=emu) as h:
            await models_ready(h)
            h.bot.tree.copy_global_to(guild=discord.Object(other.id))
            await h.bot.tree.sync(guild=discord.Object(other.id))
            asked = [await answered(await emu.invoke(
                "mask", {"text": "Paris is the [MASK]."}, guild_id=g))
                for g in (emu.guild_id, other.id)]
            votes = await asyncio.gather(*(click(h, record, "👍") for record in asked))
            assert all("saved" in v.text for v in votes), [v.text for v in votes]
            rows = await h.rows()
    assert [(r["guild_id"], r["feedback"]) for r in rows if r["command"] == "mask"] == [
        (h.emu.guild_id, 1), (other.id, 1)]
    assert sorted((r["guild_id"], r["status"]) for r in rows if r["command"] == "feedback") == (
        sorted([(h.emu.guild_id, "ok"), (other.id, "ok")]))


#: A member's own action with a rate of its own, declared by this test: production has one
#: rated action (the votes), so this second one tells the rates apart by name and exercises
#: the refund of a rated try the core never admitted (a vote has no such outcome).
TRY_RATE = Cooldown("try", 1, 3600.0)


class TryButton(discord.ui.DynamicItem[discord.ui.Button],
                template=r"gate-test:try:(?P<good>[01])"):
    def __init__(self, good: bool) -> None:
        self.good = good
        super().__init__(discord.ui.Button(label="try", custom_id=f"gate-test:try:{int(good)}"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str], /) -> TryButton:
        return cls(match["good"] == "1")

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        async def body(turn: Turn) -> Answer:
            if not self.good:
                raise InvalidInput(lazy("Not like that."))
            return Answer(Reply(content="Done.", summary="done"), ephemeral=True)

        await enter(interaction, Action("try", body, kind="self", rate=TRY_RATE))


async def test_each_rated_action_has_its_own_rate_and_a_refused_try_gives_it_back(
        tiny_config, tmp_path, caplog):
    """A vote does not use up another rated action's rate (the rate's name keys it); a try
    refused as a bad input gives its use back, so the next good try is served; that one uses
    it."""
    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN)
    async with running_bot(config, caplog) as h:
        await models_ready(h)
        h.bot.add_dynamic_items(TryButton)
        asked = await answered(await h.emu.invoke("mask", {"text": "Paris is the [MASK]."}))
        assert "saved" in (await click(h, asked, "👍")).text
        message = h.emu.add_message(content="tries")
        tries = [await click_forged(h, message, f"gate-test:try:{good}") for good in (0, 1, 1)]
        assert [t.ephemeral for t in tries] == [True] * 3
        assert "Not like that." in tries[0].text
        assert tries[1].text == "Done."
        assert "too fast" in tries[2].text
        rows = await rows_of(h, "try")
    assert [r["status"] for r in rows] == ["user_error", "ok", "cooldown"]


async def test_the_owner_syncs_past_the_pause_and_a_channel_rule(tiny_config, tmp_path, caplog):
    """`/sync` is the owner's (checked against the application's owner), not a rule's: in a
    paused server, with /sync turned off in the channel, the owner is served; a moderator is
    refused as not the owner."""
    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN)
    async with running_bot(config, caplog) as h:
        emu = h.emu
        emu.guild.add_member("owner", user_id=emu.owner_id)
        channel = next(iter(emu.guild.channels))
        await h.services.settings.set_paused(emu.guild_id, True)
        await h.services.settings.set_rule(emu.guild_id, "channel", channel, "sync", False)
        syncs = len(emu.find_requests("PUT", "/commands$"))
        refused = await h.run("sync", {}, user_id=emu.moderator_id, timeout=10)
        assert refused.ephemeral and "Only the bot's owner" in refused.text, refused.text
        assert len(emu.find_requests("PUT", "/commands$")) == syncs
        served = await h.run("sync", {}, user_id=emu.owner_id, timeout=10)
        assert served.ephemeral and served.text.startswith("Synced "), served.text
        assert len(emu.find_requests("PUT", "/commands$")) == syncs + 1
        rows = await rows_of(h, "sync")
    assert [(r["user_id"], r["status"]) for r in rows] == [
        (emu.moderator_id, "user_error"), (emu.owner_id, "ok")]


async def test_an_activity_s_refused_start_gives_its_use_back(tiny_config, tmp_path, caplog):
    """A class activity a moderator opened to students has the student cooldown too: a quiz
    start refused as a bad prompt gives its use back (the next good start is served), the
    served one uses it."""
    one_use = {"default_cooldown_uses": 1, "default_cooldown_seconds": 3600.0}
    async with running_bot(bot_config(tiny_config, tmp_path, discord=one_use), caplog) as h:
        await models_ready(h)
        emu = h.emu
        await h.services.settings.set_rule(emu.guild_id, "guild", emu.guild_id, "quiz", True)
        starts = [await h.run("quiz", {"sentence": sentence}, subcommand="mask")
                  for sentence in ("No blank in this one.", SENTENCE, SENTENCE)]
        assert [s.ephemeral for s in starts] == [True] * 3
        assert "[MASK]" in starts[0].text, starts[0].text
        assert "started" in starts[1].text, starts[1].text
        assert "too fast" in starts[2].text, starts[2].text
        rows = await rows_of(h, "quiz mask")
    assert [(r["user_id"], r["status"]) for r in rows] == [
        (emu.student_id, "user_error"), (emu.student_id, "ok"), (emu.student_id, "cooldown")]
