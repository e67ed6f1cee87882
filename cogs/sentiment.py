"""/sentiment text: the notebook's [CLS] features + LogisticRegression, for everyone.

One top-level command, as the course writes it (`/sentiment text:...`); the instructor actions
on the classifier behind it are `/classifier info|train` (`cogs.classifier`).
"""

from __future__ import annotations

import asyncio

import discord
from discord import app_commands
from discord.ext import commands

from bot.interactions.answers import answer
from bot.interactions.host import Host


class Sentiment(commands.Cog):
    def __init__(self, bot: Host) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        await asyncio.to_thread(self.bot.sentiment.load)

    @app_commands.command(name="sentiment")
    async def sentiment(self, interaction: discord.Interaction,
                        text: app_commands.Range[str, 1, 1000],
                        private: bool = False) -> None:
        """Is this text positive or negative?

        Args:
            text: A sentence or a short review.
            private: Only you see the answer.
        """
        await answer(interaction)


async def setup(bot: Host) -> None:
    await bot.add_cog(Sentiment(bot))
