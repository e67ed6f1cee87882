"""/help and /about through the real bot and the loopback Discord.

/help is read from the live tree and asks the policy what the tree's gate would decide, without
counting a cooldown use; staff commands show only to staff. /about says what is stored and for
how long, from the config and the server's settings.
"""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from discord import app_commands

from bot.interactions.names import student_command_names
from cogs.help import package_version
from core.inference.tasks.fill_mask import FillMaskRequest
from tests.bot_harness import Harness, bot_config, running_bot


def embed_text(record) -> str:
    embed = record.visible_messages[0]["embeds"][0]
    parts = [embed.get("title", ""), embed.get("description", "")]
    parts += [f"{f['name']}\n{f['value']}" for f in embed.get("fields", [])]
    return "\n".join(parts)


async def ask(h: Harness, name: str, options: dict[str, Any] | None = None, **kw: Any):
    record = await h.run(name, options, **kw)
    assert record.ephemeral, f"/{name} must answer privately"
    return record


def line_of(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if label in line)


async def test_help_lists_what_this_member_may_run_here_and_why_not(tiny_config, tmp_path,
                                                                   caplog):
    config = bot_config(tiny_config, tmp_path,
                        discord={"default_cooldown_uses": 0}, limits={"max_text_chars": 700})
    async with running_bot(config, caplog) as h:
        emu, settings = h.emu, h.services.settings
        await settings.set_rule(emu.guild_id, "channel", emu.channel_id, "generate", False)
        await settings.set_cooldown(emu.guild_id, "tokens", 1, 600)

        # A command added to the tree later shows up without touching /help.
        @app_commands.command(name="later", description="Added after /help was written.")
        async def later(interaction: discord.Interaction) -> None:
            raise AssertionError("never run")

        h.bot.tree.add_command(later)
        student = embed_text(await ask(h, "help"))
        # /help counted no use of the 1-per-10-minutes /tokens: it still runs.
        tokens = await h.run("tokens", {"text": "cooldown untouched"})
        assert "WordPiece" in tokens.visible_messages[0]["embeds"][0]["title"]
        after = embed_text(await ask(h, "help"))
        staff = embed_text(await ask(h, "help", user_id=emu.moderator_id))
        rows = await h.rows()

    for name in student_command_names(h.bot.tree):
        assert f"`/{name}" in student, name
    assert "✅ `/later`: Added after /help was written." in student
    assert line_of(student, "`/mask`").startswith("✅")
    # Right-click menus follow the command they run.
    assert line_of(student, "Apps ▸ **Mask a word**").startswith("✅")
    generate = line_of(student, "`/generate`")
    assert generate.startswith("⛔") and f"turned off in <#{emu.channel_id}>" in generate
    assert line_of(student, "`/tokens`").startswith("✅")
    # An activity (/quiz) is the instructors' unless a moderator allows it: refused, with why.
    assert line_of(student, "`/quiz").startswith("⛔")
    assert line_of(staff, "`/quiz").startswith("✅")
    tokens_after = line_of(after, "`/tokens`")  # now the cooldown is used up
    assert tokens_after.startswith("⛔") and "too fast (1 per 600 s)" in tokens_after
    # Staff commands only for staff; the member's own data for everyone.
    for text in (student, staff):
        assert "`/mydata show`" in text and "`/about`" in text
    assert "Your staff commands" not in student and "Your staff commands" in staff
    assert "`/logs`" not in student and "`/config`" not in student and "/sync" not in student
    logs = line_of(staff, "`/logs`")
    assert "recent" in logs and "export" in logs and "allow · deny" in line_of(staff, "`/config`")
    assert "/sync" not in staff  # the application's owner only
    # Models with revisions, the limits from [limits], the queue.
    assert "@ `main`" in student and "**mask**" in student and "**generate**" in student
    assert "`max_text_chars` 700" in student
    assert "waiting" in student and "batches running" in student
    helps = [r for r in rows if r["command"] == "help"]
    assert len(helps) == 3 and {r["status"] for r in helps} == {"ok"}


async def test_help_and_about_answer_where_student_commands_are_off(tiny_config, tmp_path,
                                                                    caplog):
    config = bot_config(tiny_config, tmp_path, database={"log_inputs": "hashed"})
    async with running_bot(config, caplog) as h:
        emu, settings = h.emu, h.services.settings
        await settings.set_rule(emu.guild_id, "guild", emu.guild_id, "*", False)
        await settings.set_paused(emu.guild_id, True)
        await settings.set_retention(emu.guild_id, 30)
        help_text = embed_text(await ask(h, "help"))
        about = await ask(h, "about")
        refused = await h.run("mask", {"text": "Paris is the [MASK]."})
    assert refused.ephemeral and "paused" in refused.text
    assert "✅" not in line_of(help_text, "`/mask`")
    assert "paused" in line_of(help_text, "`/mask`")
    assert line_of(help_text, "Apps ▸ **Tokenize**").startswith("⛔")
    text = embed_text(about)
    assert f"tlm-bot {package_version()}" in text
    assert "salted hash of your text" in text and "**30 days**" in text
    assert "/mydata show" in text and "/mydata delete" in text
    assert "@ `main`" in text


async def test_help_shows_what_is_queued(tiny_config, tmp_path, caplog):
    """The queue field reads the engine's lanes: requests waiting for company are counted."""
    # The first request of a batch waits up to max_wait_ms for others: a window to look in.
    config = bot_config(tiny_config, tmp_path, discord={"default_cooldown_uses": 0},
                        engine={"max_wait_ms": 3000.0})
    async with running_bot(config, caplog) as h:
        engine = h.services.engine
        await asyncio.gather(*(engine.registry.get(s) for s in engine.registry.specs))
        futures = [engine.admit(FillMaskRequest(f"Paris is the [MASK] {i}.", 3))
                   for i in range(3)]
        text = embed_text(await ask(h, "help"))
        assert sum(engine.queue_state().waiting.values()) == 3  # still waiting after /help
        await asyncio.gather(*futures)
        idle = embed_text(await ask(h, "help"))
    queue = text[text.index("Queue right now"):]
    assert "**3** waiting" in queue and "masked_lm`: 3 of 128" in queue
    assert "**0** waiting" in idle[idle.index("Queue right now"):]
