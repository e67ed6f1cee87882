"""Whether a signed grant still holds: the guild's session epoch, a link's single use, and the
instructor's rights in Discord, asked on every dashboard request.

A signature proves who was given a link and when; it cannot know that the instructor lost the
role since, left the server, or that a moderator ended every session. So the pages ask:

- `Sessions` (the bot's database, migration V9): each guild's epoch, which `/logs end-sessions`
  moves on (links and sessions of an older epoch are refused), and the links already exchanged
  (a link opens one session).
- `Authorize`, a callback the bot gives the dashboard: ``await authorize(guild_id, user_id)`` is
  True while that user may read that guild's log, False once not; it raises `RightsUnknown`
  when Discord cannot be asked (the page then answers 503, never the data).
  `bot.dashboard.rights.DiscordRights` is the implementation for a running discord.Client.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from core.storage.database import Database

#: ``authorize(guild_id, user_id) -> Awaitable[bool]``; may raise `RightsUnknown`.
Authorize = Callable[[int, int], Awaitable[bool]]


class RightsUnknown(Exception):
    """The instructor's rights cannot be checked now (Discord unreachable, bot not ready)."""


async def no_discord(guild_id: int, user_id: int) -> bool:
    """The `Authorize` of a dashboard that has no Discord to ask (yet): nobody is let in."""
    raise RightsUnknown("the bot is not connected to Discord")


class Sessions:
    """Session epochs per guild and the links already used, in the bot's database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def epoch(self, guild_id: int) -> int:
        rows = await self._db.fetchall(
            "SELECT epoch FROM dashboard_epochs WHERE guild_id = ?", (guild_id,))
        return int(rows[0]["epoch"]) if rows else 0

    async def end_all(self, guild_id: int) -> int:
        """End every session and unused link of this guild; the new epoch."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO dashboard_epochs (guild_id, epoch) VALUES (?, 1) "
                "ON CONFLICT (guild_id) DO UPDATE SET epoch = epoch + 1", (guild_id,))
        return await self.epoch(guild_id)

    async def use_link(self, link_id: str, expires_at: int) -> bool:
        """Record that a link was exchanged: True the first time, False ever after (until it
        expires, when it is refused anyway and its row is dropped)."""
        async with self._db.transaction() as conn:
            await conn.execute("DELETE FROM dashboard_links_used WHERE expires_at < ?",
                               (int(time.time()),))
            cursor = await conn.execute(
                "INSERT OR IGNORE INTO dashboard_links_used (link_id, expires_at) VALUES (?, ?)",
                (link_id, expires_at))
            return cursor.rowcount == 1
