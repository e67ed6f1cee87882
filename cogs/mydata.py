"""/mydata: a student sees, and erases, what the bot keeps about them in this server: every
store of student data (`core.storage.student_data`), whatever stores there are."""

from __future__ import annotations

from datetime import datetime, timezone

import discord
from discord import app_commands
from discord.ext import commands

from bot.interactions.host import Host
from bot.interactions.paging import Page, first_page
from bot.interactions.render import COLOUR, Reply, clip, safe
from bot.interactions.turn import Answer, Turn, reply_staff
from core.errors import InvalidInput
from core.i18n import lazy, tr

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
        """Show what the bot keeps about you in this server, newest first."""
        until = datetime.now(timezone.utc)  # pinned: new items do not shift the later pages
        days = (await self.bot.settings.get(interaction.guild_id)).retention_days
        data = self.bot.student_data

        async def page(index: int) -> Page:
            held = await data.show(interaction.guild_id, interaction.user.id, index=index,
                                   size=MYDATA_PAGE_SIZE, until=until)
            lines = [
                f"<t:{int(item.at.timestamp())}:f> `{safe(item.what, 80)}`: "
                f"{safe(item.text.replace(chr(10), ' '), 100) or '—'}"
                for item in held.items
            ]
            embed = discord.Embed(
                title=tr("Your data"), colour=COLOUR,
                description=clip("\n".join(lines) or tr("Nothing is stored about you here."),
                                 3900),
            )
            kept = data.describe(held.by_store, zeros=False)
            embed.set_footer(text=tr("Page {page} of {pages} · {kept} · kept {days} days. "
                                     "/mydata delete erases them now.", page=held.index + 1,
                                     pages=held.count, kept=kept, days=days))
            summary = f"page {held.index + 1} of {held.count}: {len(held.items)} of {held.total}"
            return Page(Reply(embeds=[embed], summary=summary), held.index, held.count)

        await reply_staff(interaction,
                          await first_page(interaction, page, kind="self"))

    @app_commands.command(name="delete")
    async def delete(self, interaction: discord.Interaction, confirm: bool) -> None:
        """Erase everything the bot keeps about you in this server (rows, votes, quiz guesses).

        Args:
            confirm: Must be True: this cannot be undone.
        """
        if not confirm:
            raise InvalidInput(lazy("Nothing deleted. Run it with `confirm: True` to erase your "
                                    "rows."))
        if interaction.guild_id is None:  # Discord never sends this; a raw payload might
            raise InvalidInput(lazy("/mydata only works in a server."))
        data = self.bot.student_data
        deleted = await data.delete_for_user(interaction.guild_id, interaction.user.id)
        # No log row for this one: it would be a fresh record about the user who just asked
        # for theirs to be erased.
        await Turn.of(interaction).conclude(Answer(
            Reply(content=tr("Deleted {items} about you in this server.",
                             items=data.describe(deleted))),
            ephemeral=True), record=False)


async def setup(bot: Host) -> None:
    await bot.add_cog(MyData(bot))
