"""/explain sentiment|mask|qa|next: which words the student typed pushed a prediction.

One group, four student commands; each method only declares its options
(`bot.interactions.registry` says what runs). Rules are written against `explain` as a whole
(`/config deny explain`), as for any group; the query log names each sub-command.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.interactions.answers import answer
from bot.interactions.host import Host

TEXT = app_commands.Range[str, 1, 1000]
WORD = app_commands.Range[str, 1, 40]


class Explain(commands.Cog):
    def __init__(self, bot: Host) -> None:
        self.bot = bot

    explain = app_commands.Group(
        name="explain",
        description=app_commands.locale_str("Which of your words pushed the model's answer?"))

    @explain.command(name="sentiment")
    async def sentiment(self, interaction: discord.Interaction, text: TEXT,
                        private: bool = False) -> None:
        """Which words made the sentiment classifier say positive or negative?

        Args:
            text: A sentence or a short review.
            private: Only you see the answer.
        """
        await answer(interaction)

    @explain.command(name="mask")
    async def mask(self, interaction: discord.Interaction, text: TEXT,
                   target: WORD | None = None, versus: WORD | None = None,
                   private: bool = False) -> None:
        """Which words made the model fill [MASK] the way it did?

        Args:
            text: A sentence with one [MASK], e.g. "The nurse said [MASK] would be late."
            target: Explain this filler instead of the top one, e.g. she.
            versus: Explain the target rather than this word, e.g. he.
            private: Only you see the answer.
        """
        await answer(interaction)

    @explain.command(name="qa")
    async def qa(self, interaction: discord.Interaction,
                 question: app_commands.Range[str, 1, 300],
                 context: app_commands.Range[str, 1, 4000], private: bool = False) -> None:
        """Which words of the question and the context picked the answer?

        Args:
            question: e.g. Where do penguins live?
            context: The text that contains the answer.
            private: Only you see the answer.
        """
        await answer(interaction)

    @explain.command(name="next")
    async def next(self, interaction: discord.Interaction, prompt: TEXT,
                   target: WORD | None = None, versus: WORD | None = None,
                   private: bool = False) -> None:
        """Which words made GPT-2 choose its next token?

        Args:
            prompt: The text so far.
            target: Explain this next word instead of the likeliest, e.g. Paris.
            versus: Explain the target rather than this word, e.g. London.
            private: Only you see the answer.
        """
        await answer(interaction)


async def setup(bot: Host) -> None:
    await bot.add_cog(Explain(bot))
