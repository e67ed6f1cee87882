"""Right-click a message -> Apps: run a student command on a text someone already posted.

Discord allows five message commands per app. These four are the commands that read one text
as it stands, which is what a posted message is: "Tokenize" and "Sentiment" run on it as is;
"Ask a question about this" (the message is the context) and "Mask a word" (which word to
hide) ask for the one missing piece in a modal. The picture commands need a second sentence or
a layer and stay slash commands; the fifth slot is kept free for a class activity.

Each menu belongs to the student command it runs (`extras["runs"]`): that command's moderator
rules, pause and cooldown apply, and its row is logged under that command with `via`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import discord
from discord import app_commands
from discord.ext import commands

from bot.interactions.answers import run_form_submit, student
from bot.interactions.forms import OneTextModal
from bot.interactions.host import Host
from bot.interactions.turn import FORM_OPENED, Action, Answer, Turn, enter, with_defaults
from core.errors import InvalidInput
from core.i18n import lazy, tr


def message_text(message: discord.Message) -> str:
    """What a right-clicked message says: its text, else its first embed's (a bot answer)."""
    text = message.content or next((e.description for e in message.embeds if e.description), "")
    if not text.strip():
        raise InvalidInput(lazy("That message has no text to read (only pictures or files)."))
    return text


def mask_word(text: str, word: str) -> str:
    """`text` with the first whole-word occurrence of `word` (any case) hidden as [MASK]."""
    word = word.strip()
    if not word:
        raise InvalidInput(lazy("Type the word to hide."))
    pattern = re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)
    if pattern.search(text) is None:
        raise InvalidInput(lazy("“{word}” is not a word of that message.", word=word[:40]))
    return pattern.sub("[MASK]", text, count=1)


class ContextMenus(commands.Cog):
    def __init__(self, bot: Host) -> None:
        self.bot = bot
        self.menus = [
            app_commands.ContextMenu(name=name, callback=callback, extras={"runs": runs})
            # locale_str: the menus' names are labels, translated in the catalog (`make messages`)
            for name, runs, callback in (
                (app_commands.locale_str("Tokenize"), "tokens", self.tokenize),
                (app_commands.locale_str("Sentiment"), "sentiment", self.sentiment),
                (app_commands.locale_str("Ask a question about this"), "qa", self.ask),
                (app_commands.locale_str("Mask a word"), "mask", self.mask),
            )
        ]
        for menu in self.menus:
            bot.tree.add_command(menu)

    async def cog_unload(self) -> None:
        for menu in self.menus:
            self.bot.tree.remove_command(menu.name, type=menu.type)

    async def _run(self, interaction: discord.Interaction, runs: str,
                   options: Callable[[], dict]) -> None:
        async def body(turn: Turn) -> Answer:
            return await student(runs, with_defaults(self.bot, runs, options()))(turn)

        await enter(interaction, Action(runs, body, via=_via(interaction, runs)))

    async def tokenize(self, interaction: discord.Interaction, message: discord.Message) -> None:
        await self._run(interaction, "tokens", lambda: {"text": message_text(message)})

    async def sentiment(self, interaction: discord.Interaction, message: discord.Message) -> None:
        await self._run(interaction, "sentiment", lambda: {"text": message_text(message)})

    async def ask(self, interaction: discord.Interaction, message: discord.Message) -> None:
        await self._ask_then(
            interaction, "qa", message,
            {"title": tr("Ask a question about this"), "label": tr("Your question"),
             "placeholder": tr("Who is mentioned first?"),
             "max_length": self.bot.config.limits.max_question_chars},
            lambda text, question: {"question": question, "context": text})

    async def mask(self, interaction: discord.Interaction, message: discord.Message) -> None:
        await self._ask_then(
            interaction, "mask", message,
            {"title": tr("Mask a word"), "label": tr("Which word should the model guess?"),
             "placeholder": tr("capital"), "max_length": 100},
            lambda text, word: {"text": mask_word(text, word)})

    async def _ask_then(self, interaction: discord.Interaction, runs: str,
                        message: discord.Message, modal: dict,
                        options: Callable[[str, str], dict]) -> None:
        """Open a modal for the missing piece; its submit runs `runs` (gated on its own)."""
        via = _via(interaction, runs)

        async def open_form(turn: Turn) -> object:
            text = message_text(message)
            await interaction.response.send_modal(OneTextModal(
                submitted=lambda submit, value: run_form_submit(
                    submit, runs, lambda: options(text, value), via),
                **modal))
            return FORM_OPENED

        await enter(interaction, Action(runs, open_form, via=via))


def _via(interaction: discord.Interaction, runs: str) -> str:
    return f"menu:{interaction.command.name if interaction.command else runs}"


async def setup(bot: Host) -> None:
    await bot.add_cog(ContextMenus(bot))
