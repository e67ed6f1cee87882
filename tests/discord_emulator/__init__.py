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
    components.py    a user's messages, message context menus, button clicks and selects,
                     modal submits and autocomplete
    emulator.py      DiscordEmulator, which holds the state and wires the parts together

Tests import from this package only; the names below are its public surface. Beyond slash
commands (`invoke`) a test can:

    msg = emu.add_message(content="Paris is nice")             # a user's message
    record = await emu.invoke_message_command("Explain", msg)  # right-click -> Apps
    clicked = await emu.click(record.message, "vote:up")       # a button on the bot's answer
    emu.message(record.message["id"])                           # its current state, after edits
    await emu.select(record.message, "tlm:pick:…", ["3"])      # a select, v2 layouts included
    emu.limit_channel_edits(5, per_s=5.0)                       # Discord's per-channel edit limit
    form = await emu.click(record.message, "ask")               # the bot answers with a modal...
    submitted = await emu.submit_modal(form, {"question": "Why?"})  # ...the user fills it in
    choices = await emu.autocomplete("ask", {"model": "be"}, focused="model")
"""

from __future__ import annotations

from .components import ComponentsMixin
from .emulator import SITE_DIR, DiscordEmulator
from .gateway import GatewayMixin
from .interactions import InteractionsMixin
from .rest import API_PREFIX, Handler, RecordedRequest, RestMixin
from .rules import (
    ADMINISTRATOR,
    ATTACHMENT_SIZE_LIMIT,
    BOT_PERMISSIONS,
    COMMAND_NAME_RE,
    CONTEXT_MENUS_PER_TYPE,
    EPHEMERAL,
    EVERYONE_PERMISSIONS,
    IS_COMPONENTS_V2,
    LOADING,
    MANAGE_GUILD,
    message_is_empty,
    validate_autocomplete,
    validate_command_json,
    validate_components,
    validate_message,
    validate_modal,
)
from .schema import NO_SPEC, SPEC_PATH
from .world import (
    DISCORD_EPOCH_MS,
    Guild,
    InteractionRecord,
    flatten_components,
    media_urls,
    snowflake,
    text_displays,
)

__all__ = [
    "ADMINISTRATOR",
    "API_PREFIX",
    "ATTACHMENT_SIZE_LIMIT",
    "BOT_PERMISSIONS",
    "COMMAND_NAME_RE",
    "CONTEXT_MENUS_PER_TYPE",
    "DISCORD_EPOCH_MS",
    "EPHEMERAL",
    "EVERYONE_PERMISSIONS",
    "IS_COMPONENTS_V2",
    "LOADING",
    "MANAGE_GUILD",
    "SITE_DIR",
    "NO_SPEC",
    "SPEC_PATH",
    "ComponentsMixin",
    "DiscordEmulator",
    "GatewayMixin",
    "Guild",
    "Handler",
    "InteractionRecord",
    "InteractionsMixin",
    "RecordedRequest",
    "RestMixin",
    "flatten_components",
    "media_urls",
    "message_is_empty",
    "snowflake",
    "text_displays",
    "validate_autocomplete",
    "validate_command_json",
    "validate_components",
    "validate_message",
    "validate_modal",
]
