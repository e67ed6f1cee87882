"""/classifier info|train: instructors look at and retrain the classifier behind /sentiment.

Training runs in the background and posts its report when done, because it takes longer than
anyone should stare at "thinking…". Its outcome (and its one log row) is concluded then.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bot.interactions.host import Host
from bot.interactions.render import COLOUR, Reply, code
from bot.interactions.turn import Answer, Turn, reply_staff
from core.errors import InvalidInput
from core.i18n import lazy, number, tr
from core.outcomes import Outcome, outcome_of_error
from core.sentiment import parse_labelled_bytes, read_capped

log = logging.getLogger(__name__)

_KEEPS_OLD = lazy("The previous classifier is still in use.")


@app_commands.guild_only()
class Classifier(commands.GroupCog, group_name="classifier",
                 group_extras={"kind": "instructor"}):
    """The /sentiment classifier (instructors)."""

    def __init__(self, bot: Host) -> None:
        self.bot = bot
        self._background: set[asyncio.Task] = set()
        super().__init__()

    async def cog_unload(self) -> None:
        for task in self._background:
            task.cancel()

    @app_commands.command(name="info")
    async def info(self, interaction: discord.Interaction) -> None:
        """Show which classifier answers /sentiment and how well it did."""
        classifier = self.bot.sentiment.require()
        report = classifier.report
        body = report.to_text() if report is not None else tr("(no training report saved)")
        embed = discord.Embed(title=tr("Sentiment classifier"), colour=COLOUR,
                              description=code(body, 3900))
        if self.bot.sentiment.training:
            embed.set_footer(text=tr("A new classifier is training right now."))
        summary = f"accuracy {report.accuracy:.3f}" if report is not None else "no report"
        await reply_staff(interaction, Reply(embeds=[embed], summary=summary))

    @app_commands.command(name="train")
    async def train(self, interaction: discord.Interaction, data: discord.Attachment) -> None:
        """Train a new classifier from a CSV or TSV with text and label columns.

        Args:
            data: A .csv/.tsv file: a header with `text` and `label` (0/1 or two names).
        """
        limits = self.bot.config.sentiment
        if data.size > limits.max_upload_bytes:
            raise InvalidInput(lazy(
                "That file is {size} bytes; the limit is {limit}.",
                size=number(data.size, "#,##0"), limit=number(limits.max_upload_bytes, "#,##0")))
        if self.bot.sentiment.training:
            raise InvalidInput(lazy("A classifier is already training. Wait for its report "
                                    "first."))
        await interaction.response.defer(ephemeral=True, thinking=True)
        parsed = parse_labelled_bytes(
            await _download(data, limits.max_upload_bytes), data.filename,
            max_rows=limits.max_upload_rows,
        )
        await interaction.followup.send(
            tr("Training on {n} examples. The report will be posted here.",
               n=len(parsed.texts)),
            ephemeral=True,
        )
        task = asyncio.create_task(self._train(interaction, parsed))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _train(self, interaction: discord.Interaction, parsed) -> None:
        """The command's conclusion, once training ends (its one reply and row)."""
        turn = Turn.of(interaction)
        try:
            report = await self.bot.sentiment.train(parsed)
        except Exception as exc:
            outcome = outcome_of_error(exc)
            await turn.conclude(Outcome(outcome.status, lazy(
                "Training failed: {error} {keeps_old}", error=outcome.message,
                keeps_old=_KEEPS_OLD), outcome.error_code), error=exc)
            return
        embed = discord.Embed(title=tr("New sentiment classifier is live"), colour=COLOUR,
                              description=code(report.to_text(), 3900))
        await turn.conclude(Answer(Reply(embeds=[embed],
                                         summary=f"accuracy {report.accuracy:.3f}"),
                                   ephemeral=True))


async def _download(attachment: discord.Attachment, limit: int) -> bytes:
    """The attachment's bytes, refused once more than `limit` arrived (its `size` is a claim)."""
    async with aiohttp.ClientSession() as session, session.get(attachment.url) as response:
        response.raise_for_status()
        return await read_capped(response.content.iter_chunked(1 << 16), limit,
                                 filename=attachment.filename)


async def setup(bot: Host) -> None:
    await bot.add_cog(Classifier(bot))
