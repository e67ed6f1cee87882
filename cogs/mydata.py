"""/mydata: a student sees, and erases, what the bot logged about them in this server."""

from __future__ import annotations

from datetime import datetime, timezone

import discord
from discord import app_commands
from discord.ext import commands

from bot.interactions.turn import Answer, Turn, reply_staff
from bot.interactions.paging import Page, first_page, plural, rows_page
from bot.interactions.render import COLOUR, Reply, clip, safe
from bot.interactions.host import Host
from core.errors import InvalidInput
from core.storage.querylog import QueryFilter



#: Rows per page of /mydata show.
MYDATA_PAGE_SIZE = 10


@app_commands.guild_only()
class MyData(commands.GroupCog, group_name="mydata", group_extras={"kind": "self"}):
    """Your own data in tlm-bot's log."""

    def __init__(self, bot: Host) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="show")
    async def show(self, interaction: discord.Interaction) -> None:
        """Show what the bot logged about you in this server, newest first."""
        mine = QueryFilter(guild_id=interaction.guild_id, user_id=interaction.user.id,
                           until=datetime.now(timezone.utc), limit=MYDATA_PAGE_SIZE)
        days = (await self.bot.settings.get(interaction.guild_id)).retention_days

        async def page(index: int) -> Page:
            found = await rows_page(self.bot.querylog, mine, index, MYDATA_PAGE_SIZE)
            rows, total = found.rows, found.total
            lines = [
                f"<t:{int(r.created_at.timestamp())}:f> `/{r.command}` {r.status}: "
                f"{safe(r.input_text.replace(chr(10), ' '), 100) or '—'}"
                for r in rows
            ]
            embed = discord.Embed(
                title="Your data", colour=COLOUR,
                description=clip("\n".join(lines) or "Nothing is stored about you here.", 3900),
            )
            return found.page(embed, f"{plural(total, 'row', 'rows')} · kept {days} days. "
                                     "/mydata delete erases them now.")

        await reply_staff(interaction,
                          await first_page(interaction, page, kind="self"))

    @app_commands.command(name="delete")
    async def delete(self, interaction: discord.Interaction, confirm: bool) -> None:
        """Erase every row the bot logged about you in this server, and your quiz guesses.

        Args:
            confirm: Must be True: this cannot be undone.
        """
        if not confirm:
            raise InvalidInput("Nothing deleted. Run it with `confirm: True` to erase your rows.")
        if interaction.guild_id is None:  # Discord never sends this; a raw payload might
            raise InvalidInput("/mydata only works in a server.")
        removed = await self.bot.querylog.delete_user(interaction.guild_id, interaction.user.id)
        guesses = await self.bot.quizzes.delete_user(interaction.guild_id, interaction.user.id)
        # No log row for this one: it would be a fresh record about the user who just asked
        # for theirs to be erased.
        await Turn.of(interaction).conclude(Answer(
            Reply(content=f"Deleted {removed} rows about you from this server's log, and "
                          f"{guesses} quiz guesses."), ephemeral=True), record=False)


async def setup(bot: Host) -> None:
    await bot.add_cog(MyData(bot))
