"""The real bot (real cogs, real core, tiny models, real SQLite) against the loopback Discord.

`running_bot` is what an end-to-end test starts from: it opens the same services `tlm-bot run`
opens, logs the bot in to the emulator, waits for READY, syncs the commands to the test guild,
and on exit closes everything and asserts that the bot left no unhandled request, no Discord
rule violation and no error in its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import discord
import pytest

from bot.client import EXTENSIONS, TLMBot
from bot.compose import RUN, Services, make_bot, open_services
from bot.logging_policy import apply as apply_logging_policy
from core.config import Config
from tests.discord_emulator import DiscordEmulator


@dataclass
class Harness:
    bot: TLMBot
    services: Services
    emu: DiscordEmulator

    async def run(self, name: str, options: dict[str, Any] | None = None, *,
                  timeout: float = 30, **kwargs: Any):
        """Invoke a command like a student would and wait for the visible answer; `name` may
        be a group's sub-command by its full name ("explain mask")."""
        if " " in name:
            name, kwargs["subcommand"] = name.split(" ", 1)
        record = await self.emu.invoke(name, options, **kwargs)
        await record.wait_done(timeout=timeout)
        return record

    async def rows(self) -> list:
        """Every query-log row (flushed first), oldest first."""
        await asyncio.sleep(0)  # let a conclude that follows the visible reply begin
        await self.bot.idle()
        await self.services.querylog.flush()
        db = self.services.db
        return await db.fetchall("SELECT * FROM queries ORDER BY id")


def bot_config(config: Config, tmp_path, **sections: dict[str, Any]) -> Config:
    """The tiny-model config with its database in tmp_path and some sections overridden."""
    config = dataclasses.replace(
        config,
        database=dataclasses.replace(config.database, path=str(tmp_path / "tlm.db")),
        sentiment=dataclasses.replace(config.sentiment,
                                      classifier_dir=str(tmp_path / "classifier")),
    )
    for section, values in sections.items():
        config = dataclasses.replace(
            config, **{section: dataclasses.replace(getattr(config, section), **values)}
        )
    return config


@contextlib.asynccontextmanager
async def running_bot(
    config: Config,
    caplog: pytest.LogCaptureFixture,
    *,
    emulator: DiscordEmulator | None = None,
    extensions: Sequence[str] = EXTENSIONS,
    check_clean: bool = True,
    log_level: int = logging.INFO,
    sync: bool = True,
    wait_for_models: bool = True,
) -> AsyncIterator[Harness]:
    """`sync=False` leaves the commands to the bot's own start-up sync (`bot.command_sync`).
    `wait_for_models=False` yields while the `load_at_start` models may still be loading, as
    a student meets a bot that just started; by default the test starts once they loaded (or
    failed), so it measures what it tests, not a cold start."""
    caplog.set_level(log_level)
    apply_logging_policy(debug_discord=False)  # as `tlm-bot run` does at start (bot.cli)
    async with contextlib.AsyncExitStack() as stack:
        emu = emulator or await stack.enter_async_context(DiscordEmulator())
        stack.enter_context(emu.patch_discord())
        # The same assembly `tlm-bot run` uses (bot.compose.RUN): the engine starts after login.
        services = await stack.enter_async_context(open_services(config, RUN))
        # discord.py waits guild_ready_timeout after the last GUILD_CREATE before READY; the
        # emulator sends them all at once, so the default 2 s would only slow every test.
        bot = make_bot(services, extensions, guild_ready_timeout=0.05)
        await stack.enter_async_context(bot)
        await bot.login(emu.token)
        await services.start_engine()
        if wait_for_models and config.models.load_at_start:
            registry = services.engine.registry
            await asyncio.wait_for(asyncio.gather(
                *(registry.get(spec) for spec in registry.specs), return_exceptions=True), 60)
        runner = asyncio.create_task(bot.connect())
        try:
            await emu.wait_ready()
            await asyncio.wait_for(bot.wait_until_ready(), 10)
            if sync:
                guild = discord.Object(emu.guild_id)
                bot.tree.copy_global_to(guild=guild)
                await bot.tree.sync(guild=guild)
            yield Harness(bot, services, emu)
        finally:
            await bot.close()
            await asyncio.wait_for(runner, 10)
    if check_clean:
        assert emu.unhandled == []
        assert emu.violations == []
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == []
