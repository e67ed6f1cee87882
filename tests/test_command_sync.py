"""One-command start: the bot syncs its command tree at start only when the tree's JSON changed
since the last sync (a digest per scope in the database), and a failed sync does not stop it.

Real TLMBot, real SQLite, the loopback Discord recording every PUT of the commands. Each test
restarts the bot on the same emulator and database, as an operator restarting `tlm-bot run`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from core.config import Config, load_config
from tests.bot_harness import bot_config, running_bot
from tests.conftest import write_tiny_config
from tests.discord_emulator import DiscordEmulator

ENTRY_POINT = Path(sys.executable).with_name("tlm-bot")

QUIET = {"default_cooldown_uses": 0}


def puts(emu: DiscordEmulator, guild_id: int | None) -> list[Any]:
    scope = f"/guilds/{guild_id}/commands$" if guild_id else r"/applications/\d+/commands$"
    return emu.find_requests("PUT", scope)


def option(put_json: list[dict[str, Any]], command: str, name: str) -> dict[str, Any]:
    found = next(c for c in put_json if c["name"] == command)
    return next(o for o in found["options"] if o["name"] == name)


def config_for(tiny_config: Config, tmp_path, dev_guild: int | None, **limits: int) -> Config:
    return bot_config(tiny_config, tmp_path, discord={**QUIET, "dev_guild": dev_guild},
                      limits={**{"max_text_chars": 1000}, **limits})


@pytest.mark.parametrize("scope", ["dev_guild", "global"])
async def test_start_syncs_only_when_the_tree_changed(tiny_config, tmp_path, caplog, scope):
    async with DiscordEmulator() as emu:
        guild_id = emu.guild_id if scope == "dev_guild" else None
        other = None if guild_id else emu.guild_id
        config = config_for(tiny_config, tmp_path, guild_id)

        async with running_bot(config, caplog, emulator=emu, sync=False):
            pass
        assert len(puts(emu, guild_id)) == 1, "the first start registers the commands"
        assert option(puts(emu, guild_id)[0].json, "mask", "text")["max_length"] == 1000

        caplog.clear()
        async with running_bot(config, caplog, emulator=emu, sync=False) as h:
            record = await h.run("tokens", {"text": "still here"})  # the commands still work
        assert "WordPiece" in record.visible_messages[0]["embeds"][0]["title"]
        assert len(puts(emu, guild_id)) == 1, "same tree: no second sync"
        assert any("commands unchanged since the last sync" in r.getMessage()
                   for r in caplog.records)

        # A limit in [limits] changes what Discord must enforce: the next start syncs it.
        changed = config_for(tiny_config, tmp_path, guild_id, max_text_chars=600)
        async with running_bot(changed, caplog, emulator=emu, sync=False):
            pass
        assert len(puts(emu, guild_id)) == 2
        assert option(puts(emu, guild_id)[-1].json, "mask", "text")["max_length"] == 600
        assert puts(emu, other) == [], "only the configured scope is synced"


async def test_a_forced_sync_is_remembered(tiny_config, tmp_path, caplog):
    """`/sync` (like `tlm-bot sync`) always syncs, and the next start does not repeat it."""
    async with DiscordEmulator() as emu:
        config = config_for(tiny_config, tmp_path, None)
        async with running_bot(config, caplog, emulator=emu) as h:
            assert len(puts(emu, None)) == 1
            await h.bot.sync_commands(None, force=True)
            assert len(puts(emu, None)) == 2
            assert await h.bot.sync_commands(None, force=False) is None
            assert len(puts(emu, None)) == 2
        async with running_bot(config, caplog, emulator=emu):
            pass
        assert len(puts(emu, None)) == 2


async def test_a_failed_sync_is_one_log_line_and_the_bot_serves(tiny_config, tmp_path, caplog):
    async with DiscordEmulator() as emu:
        # A server the bot is not in: Discord refuses the PUT (404 Unknown Guild).
        config = config_for(tiny_config, tmp_path, 1234567890123456789)
        async with running_bot(config, caplog, emulator=emu, check_clean=False) as h:
            record = await h.run("tokens", {"text": "still served"})
        assert "WordPiece" in record.visible_messages[0]["embeds"][0]["title"]
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        message = errors[0].getMessage()
        assert "command sync to guild 1234567890123456789 failed" in message
        assert "NotFound" in message and "\n" not in message and errors[0].exc_info is None
        assert emu.unhandled == [] and emu.violations == []
        # Nothing recorded: the next start tries again.
        with sqlite3.connect(tmp_path / "tlm.db") as db:
            assert db.execute("SELECT COUNT(*) FROM command_sync").fetchone()[0] == 0


def test_the_digest_ignores_order_and_covers_the_application():
    from core.storage.sync_state import tree_digest

    a = {"name": "mask", "type": 1, "options": [{"name": "text", "max_length": 1000}]}
    b = {"type": 3, "name": "Tokenize"}
    assert tree_digest(1, [a, b]) == tree_digest(1, [b, a])
    assert tree_digest(1, [a, b]) != tree_digest(2, [a, b])  # another application's token
    longer = {**a, "options": [{"name": "text", "max_length": 600}]}
    assert tree_digest(1, [a, b]) != tree_digest(1, [longer, b])


@pytest.mark.slow
@pytest.mark.skipif(not ENTRY_POINT.exists(), reason="tlm-bot is not installed in this venv")
async def test_tlm_bot_sync_forces_a_sync_and_records_it(tiny_models, tmp_path, caplog):
    """The CLI's forced sync is remembered: a `tlm-bot run` on the same database then sends
    nothing for that scope (shown here by the bot's own start-up check)."""
    async with DiscordEmulator() as emu:
        config_path = write_tiny_config(tmp_path / "config.toml", tiny_models,
                                        discord={"dev_guild": emu.guild_id})
        env = {**os.environ, **emu.env(), "DISCORD_TOKEN": emu.token, "HF_HUB_OFFLINE": "1"}
        env.pop("TLM_CONFIG", None)
        for _ in range(2):  # forced: the second one syncs again
            proc = await asyncio.create_subprocess_exec(
                str(ENTRY_POINT), "--config", str(config_path), "sync", "--guild",
                str(emu.guild_id), env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, err.decode()
            assert f"synced {len(emu.synced_commands[emu.guild_id])} commands to guild" in \
                out.decode()
        assert len(puts(emu, emu.guild_id)) == 2
        config = load_config(config_path)
        async with running_bot(config, caplog, emulator=emu, sync=False):
            pass
        assert len(puts(emu, emu.guild_id)) == 2, "run found the tree already synced"
