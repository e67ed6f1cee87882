"""The course's commands: /mask, /qa, /generate, /tokens.

Each method only declares its slash options (Discord shows the docstring's parameter lines);
`bot.interactions.registry` says what the command runs and `bot.interactions.turn.answer` does the
rest. Option types
(`Range`, choices, `max_length`) make Discord itself reject nonsense; the core validates again
because a raw API call can send anything. Text limits follow `[limits]`
(`bot.interactions.registry`).
"""

from __future__ import annotations

from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.interactions.answers import answer, run_form_submit
from bot.interactions.forms import OneTextModal
from bot.interactions.host import Host
from bot.interactions.turn import FORM_OPENED, Action, Turn, enter
from core.i18n import tr
from core.inference.tasks.generate import MAX_TOP_K

TEXT = app_commands.Range[str, 1, 1000]


class Inference(commands.Cog):
    def __init__(self, bot: Host) -> None:
        self.bot = bot

    @app_commands.command(name="mask")
    async def mask(self, interaction: discord.Interaction, text: TEXT,
                   top_k: app_commands.Range[int, 1, 10] = 5,
                   private: bool = False) -> None:
        """Ask DistilBERT which words fit a [MASK].

        Args:
            text: A sentence with one [MASK], e.g. "Paris is the [MASK] of France."
            top_k: How many candidate words to show.
            private: Only you see the answer.
        """
        await answer(interaction)

    @app_commands.command(name="qa")
    async def qa(self, interaction: discord.Interaction, question: app_commands.Range[str, 1, 300],
                 context: app_commands.Range[str, 1, 4000] | None = None,
                 private: bool = False) -> None:
        """Find the answer to a question inside a text you give.

        Args:
            question: What you want to know, e.g. "What is the capital of France?"
            context: The text that contains the answer. Leave it out to paste a long text
                with line breaks in a form.
            private: Only you see the answer.
        """
        if context is not None:
            await answer(interaction)
            return
        # A slash option has no line breaks: the text comes from a form's paragraph field.

        async def open_form(turn: Turn) -> object:
            await interaction.response.send_modal(OneTextModal(
                tr("Context for your question"), tr("The text that contains the answer"),
                lambda submit, text: run_form_submit(submit, "qa", lambda: {
                    "question": question, "context": text, "private": private}, "modal"),
                max_length=self.bot.config.limits.max_context_chars, paragraph=True,
                placeholder=tr("Paste a paragraph (line breaks are kept).")))
            return FORM_OPENED

        await enter(interaction, Action("qa", open_form))

    @app_commands.command(name="generate")
    async def generate(
        self,
        interaction: discord.Interaction,
        prompt: TEXT,
        max_new_tokens: app_commands.Range[int, 1, 100] = 30,
        temperature: app_commands.Range[float, 0.0, 2.0] = 1.0,
        top_k: app_commands.Range[int, 1, MAX_TOP_K] = 50,
        top_p: app_commands.Range[float, 0.01, 1.0] = 1.0,
        num_return_sequences: app_commands.Range[int, 1, 5] = 1,
        seed: app_commands.Range[int, 0, 2**31 - 1] | None = None,
        picture: bool = False,
        private: bool = False,
    ) -> None:
        """Let GPT-2 continue your text.

        Args:
            prompt: The beginning of a text for GPT-2 to continue.
            max_new_tokens: How many tokens to add.
            temperature: 0 = always the likeliest token; higher = more surprising (up to 2).
            top_k: Sample only among the k likeliest tokens.
            top_p: Sample only among the likeliest tokens that together reach this probability.
            num_return_sequences: How many different continuations.
            seed: Set a number to get the same text again.
            picture: Also draw how sure GPT-2 was of each new token, beside a greedy run.
            private: Only you see the answer.
        """
        await answer(interaction)

    @app_commands.command(name="tokens")
    async def tokens(self, interaction: discord.Interaction, text: TEXT,
                     model: Literal["wordpiece", "bpe", "compare"] = "wordpiece",
                     private: bool = False) -> None:
        """See how a model cuts text into tokens.

        Args:
            text: Any text, e.g. "Tokenization is unbelievable!"
            model: wordpiece = DistilBERT (## sub-words); bpe = GPT-2 (␣ = space); compare = all.
            private: Only you see the answer.
        """
        await answer(interaction)


async def setup(bot: Host) -> None:
    await bot.add_cog(Inference(bot))
