"""Registering the command tree with Discord only when it changed (`tlm-bot run`), or on demand
(`tlm-bot sync`, `/sync`).

The change test hashes the very JSON `CommandTree.sync` would send (`command.to_dict(tree)` for
every slash command and context menu of the scope), so anything Discord would see counts: a new
command, a reworded description, an option bound that follows `[limits]`
(`bot.client.apply_option_limits`). The digest of the last successful sync per scope is kept in
the database (`core.storage.sync_state`). A forced sync records its digest too, so the next start
does
not repeat it.

The scope is `[discord] dev_guild` when set (guild commands update instantly: the global
commands are copied into that server, as `CommandTree.copy_global_to` does), else global.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any

import aiohttp
import discord
from discord import app_commands

from core.storage.sync_state import SyncState, scope_key, tree_digest

log = logging.getLogger(__name__)

#: What a sync that Discord refused or could not receive raises.
SYNC_ERRORS = (discord.HTTPException, aiohttp.ClientError, asyncio.TimeoutError)


def describe_scope(guild_id: int | None) -> str:
    return f"guild {guild_id}" if guild_id else "all guilds (global)"


async def tree_payload(tree: app_commands.CommandTree,
                       guild: discord.abc.Snowflake | None) -> list[dict[str, Any]]:
    """The JSON `tree.sync(guild=guild)` sends, built the same way."""
    commands = tree.get_commands(guild=guild)
    translator = tree.translator
    if translator is not None:
        return [await command.get_translated_payload(tree, translator) for command in commands]
    return [command.to_dict(tree) for command in commands]


async def sync_tree(tree: app_commands.CommandTree, state: SyncState, application_id: int,
                    guild_id: int | None, *, force: bool
                    ) -> list[app_commands.AppCommand] | None:
    """Sync `guild_id`'s commands (None: the global ones) if they changed since the last sync
    recorded in `state`, or always with `force`. Returns what Discord stored, or None when
    nothing was sent. Raises what `CommandTree.sync` raises (`SYNC_ERRORS`)."""
    guild = discord.Object(id=guild_id) if guild_id else None
    if guild is not None:
        tree.copy_global_to(guild=guild)
    scope = scope_key(guild_id)
    digest = tree_digest(application_id, await tree_payload(tree, guild))
    if not force and await state.last_digest(scope) == digest:
        log.info("commands unchanged since the last sync to %s: not syncing "
                 "(`tlm-bot sync` forces it)", describe_scope(guild_id))
        return None
    synced = await tree.sync(guild=guild)
    try:
        await state.remember(scope, digest)
    except sqlite3.Error as exc:
        log.warning("synced the commands to %s but could not record it (%s); the next start "
                    "syncs again", describe_scope(guild_id), exc)
    log.info("synced %d commands to %s", len(synced), describe_scope(guild_id))
    return synced
