"""The course's commands: /mask, /qa, /generate, /tokens.

Each handler only maps options to a core request; `cogs.respond.answer` does the rest. Option
types (`Range`, choices, `max_length`) make Discord itself reject nonsense before it reaches us;
the core validates again because a raw API call can send anything.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from cogs.render import (
    render_fill_mask,
    render_generate,
    render_qa,
    render_tokens,
    render_tokens_compare,
)
from cogs.respond import answer, answer_request
from core.tasks.fill_mask import FillMaskRequest
from core.tasks.generate import MAX_TOP_K, GenerateRequest
from core.tasks.qa import QARequest
from core.tasks.tokens import TokensRequest

if TYPE_CHECKING:
    from bot.client import TLMBot

# Discord caps string options at 6000 characters; the core's limits are the real ones.
TEXT = app_commands.Range[str, 1, 1000]
CONTEXT = app_commands.Range[str, 1, 4000]
QUESTION = app_commands.Range[str, 1, 300]


class Inference(commands.Cog):
    def __init__(self, bot: TLMBot) -> None:
        self.bot = bot

    @app_commands.command(name="mask")
    async def mask(
        self,
        interaction: discord.Interaction,
        text: TEXT,
        top_k: app_commands.Range[int, 1, 10] = 5,
    ) -> None:
        """Ask DistilBERT which words fit a [MASK].

        Parameters
        ----------
        text: A sentence with one [MASK], e.g. "Paris is the [MASK] of France."
        top_k: How many candidate words to show (1-10).
        """
        await answer_request(
            self.bot,
            interaction,
            "mask",
            FillMaskRequest(text, top_k),
            render_fill_mask,
            text,
            {"top_k": top_k},
        )

    @app_commands.command(name="qa")
    async def qa(
        self, interaction: discord.Interaction, question: QUESTION, context: CONTEXT
    ) -> None:
        """Find the answer to a question inside a text you give.

        Parameters
        ----------
        question: What you want to know, e.g. "What is the capital of France?"
        context: The text that contains the answer.
        """
        await answer_request(
            self.bot,
            interaction,
            "qa",
            QARequest(question, context),
            render_qa,
            f"{question}\n---\n{context}",
            {},
        )

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
    ) -> None:
        """Let GPT-2 continue your text.

        Parameters
        ----------
        prompt: The beginning of a text for GPT-2 to continue.
        max_new_tokens: How many tokens to add (1-100).
        temperature: 0 = always the likeliest token; higher = more surprising (up to 2).
        top_k: Sample only among the k likeliest tokens.
        top_p: Sample only among the likeliest tokens that together reach this probability.
        num_return_sequences: How many different continuations (1-5).
        seed: Set a number to get the same text again.
        """
        request = GenerateRequest(
            prompt,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            num_return_sequences=num_return_sequences,
            seed=seed,
        )
        options = {
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "num_return_sequences": num_return_sequences,
            "seed": seed,
        }
        await answer_request(
            self.bot,
            interaction,
            "generate",
            request,
            render_generate,
            prompt,
            options,
        )

    @app_commands.command(name="tokens")
    async def tokens(
        self,
        interaction: discord.Interaction,
        text: TEXT,
        model: Literal["wordpiece", "bpe", "compare"] = "wordpiece",
    ) -> None:
        """See how a model cuts text into tokens.

        Parameters
        ----------
        text: Any text, e.g. "Tokenization is unbelievable!"
        model: wordpiece = DistilBERT (## sub-words, [CLS]/[SEP]); bpe = GPT-2 (Ġ = space).
        """
        if model != "compare":
            await answer_request(
                self.bot,
                interaction,
                "tokens",
                TokensRequest(text, model),
                render_tokens,
                text,
                {"model": model},
            )
            return
        engine = self.bot.engine
        wordpiece, bpe = TokensRequest(text, "wordpiece"), TokensRequest(text, "bpe")

        async def both():
            return await asyncio.gather(engine.submit(wordpiece), engine.submit(bpe))

        await answer(
            self.bot,
            interaction,
            command="tokens",
            options={"model": model},
            input_text=text,
            validate=lambda: engine.validate(wordpiece),
            run=both,
            render=lambda pair: render_tokens_compare(*pair),
        )


async def setup(bot: TLMBot) -> None:
    await bot.add_cog(Inference(bot))
