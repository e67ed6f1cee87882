"""/sentiment: the notebook's [CLS] features + LogisticRegression, and its retraining.

`/sentiment text` (everyone), `/sentiment train file` and `/sentiment info` (instructors). The
classifier itself lives in `core.sentiment_service`; training runs in the background and posts
its report when done, because it takes longer than anyone should stare at "thinking…".
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from cogs.render import COLOUR, code, render_sentiment
from cogs.respond import answer, send_error
from core.errors import CoreError, InvalidInput
from core.querylog import QueryRecord
from core.sentiment import parse_labelled_bytes
from core.tasks.features import FeaturesRequest

if TYPE_CHECKING:
    from bot.client import TLMBot

log = logging.getLogger(__name__)


class Sentiment(commands.GroupCog, group_name="sentiment"):
    """Sentiment of a text, the way the course notebook does it."""

    def __init__(self, bot: TLMBot) -> None:
        self.bot = bot
        self._background: set[asyncio.Task] = set()
        super().__init__()

    async def cog_load(self) -> None:
        await asyncio.to_thread(self.bot.sentiment.load)

    async def cog_unload(self) -> None:
        for task in self._background:
            task.cancel()

    @app_commands.command(name="text")
    async def text(self, interaction: discord.Interaction,
                   text: app_commands.Range[str, 1, 1000]) -> None:
        """Is this text positive or negative?

        Parameters
        ----------
        text: A sentence or a short review.
        """
        service = self.bot.sentiment

        def state():
            status = self.bot.engine.status(FeaturesRequest(text, service.encoder.pooling))
            return status.model_id, status.state

        await answer(
            self.bot, interaction, command="sentiment", options={}, input_text=text,
            validate=service.require, model_state=state,
            run=lambda: service.predict(text), render=render_sentiment,
        )

    @app_commands.command(name="info", extras={"kind": "instructor"})
    async def info(self, interaction: discord.Interaction) -> None:
        """Show which classifier answers /sentiment and how well it did."""
        classifier = self.bot.sentiment.classifier
        if classifier is None:
            await send_error(interaction, self.bot.sentiment.problem)
            return
        report = classifier.report
        body = report.to_text() if report is not None else "(no training report saved)"
        embed = discord.Embed(title="Sentiment classifier", colour=COLOUR,
                              description=code(body, 3900))
        if self.bot.sentiment.training:
            embed.set_footer(text="A new classifier is training right now.")
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="train", extras={"kind": "instructor"})
    async def train(self, interaction: discord.Interaction, data: discord.Attachment) -> None:
        """Train a new classifier from a CSV or TSV with text and label columns.

        Parameters
        ----------
        data: A .csv/.tsv file: a header with `text` and `label` (0/1 or two names).
        """
        limits = self.bot.config.sentiment
        try:
            if data.size > limits.max_upload_bytes:
                raise InvalidInput(
                    f"That file is {data.size:,} bytes; the limit is {limits.max_upload_bytes:,}."
                )
            if self.bot.sentiment.training:
                raise InvalidInput("A classifier is already training. Wait for its report first.")
            await interaction.response.defer(ephemeral=True, thinking=True)
            parsed = parse_labelled_bytes(
                await data.read(), data.filename, max_rows=limits.max_upload_rows
            )
        except CoreError as exc:
            await send_error(interaction, exc.message)
            await self._log(interaction, data.filename, "user_error", exc.code)
            return
        await interaction.followup.send(
            f"Training on {len(parsed.texts)} examples. The report will be posted here.",
            ephemeral=True,
        )
        task = asyncio.create_task(self._train(interaction, parsed, data.filename))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _train(self, interaction: discord.Interaction, parsed, filename: str) -> None:
        try:
            report = await self.bot.sentiment.train(parsed)
        except CoreError as exc:
            await send_error(interaction, f"Training failed: {exc.message} "
                                          "The previous classifier is still in use.")
            await self._log(interaction, filename, "user_error", exc.code)
            return
        except Exception as exc:
            log.exception("sentiment training failed")
            await send_error(interaction, "Training failed because of a bug; it has been logged. "
                                          "The previous classifier is still in use.")
            await self._log(interaction, filename, "failed", type(exc).__name__)
            return
        embed = discord.Embed(title="New sentiment classifier is live", colour=COLOUR,
                              description=code(report.to_text(), 3900))
        try:
            await interaction.followup.send(embed=embed, ephemeral=True)
        except discord.HTTPException:
            log.warning("could not post the training report", exc_info=True)
        await self._log(interaction, filename, "ok", "", summary=f"accuracy {report.accuracy:.3f}")

    async def _log(self, interaction: discord.Interaction, filename: str, status: str, error: str,
                   summary: str = "") -> None:
        await self.bot.record_query(QueryRecord(
            guild_id=interaction.guild_id, channel_id=interaction.channel_id,
            user_id=interaction.user.id, command="sentiment train", options={"file": filename},
            input_text="", status=status, error=error, output_summary=summary,
        ))


async def setup(bot: TLMBot) -> None:
    await bot.add_cog(Sentiment(bot))
