"""A small Discord (REST + gateway) emulated on 127.0.0.1 for end-to-end bot tests.

The real, unmodified discord.py client connects to it, so tests exercise what the library really
sends (payload shapes, rate-limit retries, reconnects) instead of our guesses about it. It keeps
the Discord rules a bot most often breaks (3 s first-response deadline, double acknowledgement,
message and command limits), answers with Discord's error codes, and records every request so a
test can assert on exactly what a user would have seen. See shared/docs/DISCORD_TESTING.md.

    async with DiscordEmulator() as emu:
        with emu.patch_discord():          # or env=emu.env() for a subprocess bot
            await bot.login(emu.token)
            task = asyncio.create_task(bot.connect())
            await emu.wait_ready()
            await bot.tree.sync(guild=discord.Object(emu.guild_id))
            record = await emu.invoke("mask", {"text": "Paris is the [MASK]."})
            await record.wait_done()
            assert "capital" in record.text and emu.violations == []
            await bot.close()              # before the emulator, or the bot keeps reconnecting
            await task

One idea per module, so a change to Discord's rules or to the gateway protocol touches one file:

    rules.py         Discord's documented payload limits and the checks for them
    schema.py        validation against Discord's OpenAPI spec, when it is present
    world.py         guilds, channels, roles, members; interaction records; snowflake ids
    gateway.py       websocket sessions: HELLO, IDENTIFY/READY, dispatch, RESUME, faults
    rest.py          the REST API and CDN: recording, rate limits, delays, the routes
    interactions.py  a user running a slash command (INTERACTION_CREATE)
    emulator.py      DiscordEmulator, which holds the state and wires the parts together

Tests import from this package only; the names below are its public surface.
"""

from __future__ import annotations

from .emulator import SITE_DIR, DiscordEmulator
from .gateway import GatewayMixin
from .interactions import InteractionsMixin
from .rest import API_PREFIX, Handler, RecordedRequest, RestMixin
from .rules import (
    ADMINISTRATOR,
    ATTACHMENT_SIZE_LIMIT,
    BOT_PERMISSIONS,
    COMMAND_NAME_RE,
    EPHEMERAL,
    EVERYONE_PERMISSIONS,
    LOADING,
    MANAGE_GUILD,
    message_is_empty,
    validate_command_json,
    validate_message,
)
from .schema import SPEC_PATH
from .world import DISCORD_EPOCH_MS, Guild, InteractionRecord, snowflake

__all__ = [
    "ADMINISTRATOR",
    "API_PREFIX",
    "ATTACHMENT_SIZE_LIMIT",
    "BOT_PERMISSIONS",
    "COMMAND_NAME_RE",
    "DISCORD_EPOCH_MS",
    "EPHEMERAL",
    "EVERYONE_PERMISSIONS",
    "LOADING",
    "MANAGE_GUILD",
    "SITE_DIR",
    "SPEC_PATH",
    "DiscordEmulator",
    "GatewayMixin",
    "Guild",
    "Handler",
    "InteractionRecord",
    "InteractionsMixin",
    "RecordedRequest",
    "RestMixin",
    "message_is_empty",
    "snowflake",
    "validate_command_json",
    "validate_message",
]
