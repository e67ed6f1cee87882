"""The dashboard's `Authorize` answered by a running discord.py client: is this user still a
member of the guild, with the instructor role or Manage Server (`core.policy.Actor`, the very
rule `/logs` is gated by)?

Why a REST fetch and not the member cache: the bot runs without the members intent, so Discord
sends it no member updates; a cached member's roles are whatever they were when last seen.
`Guild.fetch_member` asks Discord itself (404 once the user left). Each answer is trusted for
`recheck_s` seconds, so reading page after page costs one request a minute, and a lost role
ends the session within that time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import aiohttp
import discord

from bot.dashboard.access import RightsUnknown
from core.policy import Actor
from core.storage.guild_settings import SettingsStore

#: Verdicts remembered at most (instructors with an open dashboard; oldest forgotten first).
MAX_REMEMBERED = 4096


class DiscordRights:
    """``await rights(guild_id, user_id)``: the `bot.dashboard.access.Authorize` of `client`."""

    def __init__(self, client: discord.Client, settings: SettingsStore, *,
                 recheck_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._settings = settings
        self.recheck_s = recheck_s
        self._clock = clock
        self._verdicts: OrderedDict[tuple[int, int], tuple[float, bool]] = OrderedDict()

    async def __call__(self, guild_id: int, user_id: int) -> bool:
        key = (guild_id, user_id)
        known = self._verdicts.get(key)
        if known is not None and self._clock() - known[0] < self.recheck_s:
            return known[1]
        verdict = await self._ask(guild_id, user_id)  # RightsUnknown is not remembered
        self._verdicts[key] = (self._clock(), verdict)
        self._verdicts.move_to_end(key)
        while len(self._verdicts) > MAX_REMEMBERED:
            self._verdicts.popitem(last=False)
        return verdict

    async def _ask(self, guild_id: int, user_id: int) -> bool:
        if not self._client.is_ready():
            raise RightsUnknown("the bot is not connected to Discord yet")
        guild = self._client.get_guild(guild_id)
        if guild is None:
            return False  # the bot is no longer in that server
        try:
            member = await guild.fetch_member(user_id)
        except discord.NotFound:
            return False  # left, or was removed from, the server
        except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise RightsUnknown(f"Discord did not answer ({type(exc).__name__})") from exc
        settings = await self._settings.get(guild_id)
        actor = Actor(user_id=user_id,
                      role_ids=frozenset(role.id for role in member.roles) | {guild.id},
                      is_moderator=member.guild_permissions.manage_guild)
        return actor.is_instructor(settings)
