"""Owner-only maintenance from inside Discord: registering the slash commands.

`tlm-bot run` syncs by itself when the tree changed since the last sync (`bot.command_sync`);
this command (like `tlm-bot sync`) forces one, e.g. after commands were removed by hand in
Discord's developer portal. Its digest is recorded, so the next start does not repeat it.
"""

from __future__ import annotations

from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.interactions.host import Host
from bot.interactions.render import Reply
from bot.interactions.turn import reply_staff
from core.errors import InvalidInput
from core.i18n import lazy, tr, translated


class Owner(commands.Cog):
    def __init__(self, bot: Host) -> None:
        self.bot = bot

    @app_commands.command(name="sync", extras={"kind": "owner"})
    @app_commands.default_permissions(administrator=True)
    async def sync(self, interaction: discord.Interaction,
                   scope: Literal["this server", "global"] = "this server") -> None:
        """Register the bot's slash commands (bot owner only).

        Args:
            scope: "this server" updates instantly; "global" reaches every server within an hour.
        """
        if not await self.bot.is_owner(interaction.user):
            raise InvalidInput(lazy("Only the bot's owner can sync its commands."))
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild_id = interaction.guild_id if scope == "this server" else None
        synced = await self.bot.sync_commands(guild_id, force=True) or []
        names = ", ".join(sorted(f"/{c.name}" for c in synced))
        await reply_staff(interaction, Reply(
            content=tr("Synced {n} commands ({scope}): {names}", n=len(synced),
                       scope=translated(scope), names=names)[:2000],
            summary=f"{len(synced)} commands"))


async def setup(bot: Host) -> None:
    await bot.add_cog(Owner(bot))
