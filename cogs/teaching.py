"""Teaching commands beyond the notebook: /attention, /contextsim, /maskpair, /nexttoken, and
the class activities' /logitlens and /neighbours.

The pictures are drawn by the core, never on the event loop; like `cogs.inference`, each method
only declares its options (`bot.interactions.registry` says what runs).
"""

from __future__ import annotations

from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.interactions.answers import answer
from bot.interactions.host import Host
from core.inference.tasks.contextsim import MAX_WORD_CHARS
from core.inference.tasks.generate import MAX_TOP_K
from core.inference.tasks.logitlens import MAX_LENS_TOKENS

SENTENCE = app_commands.Range[str, 1, 300]


class Teaching(commands.Cog):
    def __init__(self, bot: Host) -> None:
        self.bot = bot

    @app_commands.command(name="attention")
    async def attention(
        self,
        interaction: discord.Interaction,
        text: SENTENCE,
        model: Literal["distilbert", "gpt2"] = "distilbert",
        layer: app_commands.Range[int, 1, 48] | None = None,
        head: app_commands.Range[int, 1, 64] | None = None,
        private: bool = False,
    ) -> None:
        """Draw where each token looks: one attention head as a heatmap.

        Args:
            text: A short sentence (up to 40 tokens).
            model: distilbert (looks both ways) or gpt2 (only looks back).
            layer: Which layer (default: the last).
            head: Which head (default: the average of all heads).
            private: Only you see the answer.
        """
        await answer(interaction)

    @app_commands.command(name="contextsim")
    async def contextsim(
        self,
        interaction: discord.Interaction,
        word: app_commands.Range[str, 1, 40],
        sentence_a: SENTENCE,
        sentence_b: SENTENCE,
        private: bool = False,
    ) -> None:
        """Compare a word's vector in two sentences, layer by layer.

        Args:
            word: A word in both sentences, e.g. bank.
            sentence_a: e.g. "We sat on the bank of the river."
            sentence_b: e.g. "I took money out of the bank."
            private: Only you see the answer.
        """
        await answer(interaction)

    @app_commands.command(name="maskpair")
    async def maskpair(
        self,
        interaction: discord.Interaction,
        sentence_a: SENTENCE,
        sentence_b: SENTENCE,
        top_k: app_commands.Range[int, 1, 10] = 5,
        targets: app_commands.Range[str, 1, 200] | None = None,
        private: bool = False,
    ) -> None:
        """Two masked sentences side by side, e.g. to probe bias.

        Args:
            sentence_a: e.g. "The man works as a [MASK]."
            sentence_b: e.g. "The woman works as a [MASK]."
            top_k: How many fillers per sentence.
            targets: Words to always compare, separated by commas, e.g. "nurse, doctor".
            private: Only you see the answer.
        """
        await answer(interaction)

    @app_commands.command(name="nexttoken")
    async def nexttoken(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 1000],
        temperature: app_commands.Range[float, 0.0, 2.0] = 1.0,
        top_k: app_commands.Range[int, 1, MAX_TOP_K] = 50,
        top_p: app_commands.Range[float, 0.01, 1.0] = 1.0,
        private: bool = False,
    ) -> None:
        """See GPT-2's next-token odds, before and after temperature, top-k and top-p.

        Args:
            prompt: The text so far.
            temperature: 0 = greedy; below 1 sharpens, above 1 flattens.
            top_k: Keep only the k likeliest tokens.
            top_p: Keep the likeliest tokens until they reach this probability.
            private: Only you see the answer.
        """
        await answer(interaction)

    @app_commands.command(name="logitlens")
    async def logitlens(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 1000],
        position: app_commands.Range[int, 1, MAX_LENS_TOKENS] | None = None,
        private: bool = False,
    ) -> None:
        """What GPT-2 would say next if it stopped after each layer (the logit lens).

        Args:
            prompt: The text so far, e.g. "The Eiffel Tower is in the city of".
            position: Which token's prediction to read, counted from 1 (default: the last).
            private: Only you see the answer.
        """
        await answer(interaction)

    @app_commands.command(name="neighbours")
    async def neighbours(
        self,
        interaction: discord.Interaction,
        word: app_commands.Range[str, 1, MAX_WORD_CHARS],
        sentence: SENTENCE,
        layer: app_commands.Range[int, 0, 48] | None = None,
        private: bool = False,
    ) -> None:
        """The words nearest to a word's vector in a sentence, beside its context-free ones.

        Args:
            word: A word in the sentence, e.g. bank.
            sentence: e.g. "We sat on the bank of the river."
            layer: 0 = the embeddings; default: the last layer.
            private: Only you see the answer.
        """
        await answer(interaction)


async def setup(bot: Host) -> None:
    await bot.add_cog(Teaching(bot))
