"""Forms (Discord modals) with one text field.

Opening a form is an answer of its own (the body returns `turn.FORM_OPENED`: no row, the use
given back); its submit is a new interaction that goes through the front door like any other,
gated and counted under the command it runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import discord


class OneTextModal(discord.ui.Modal):
    """A form with one text field; `submitted(interaction, text)` does the rest (through
    `bot.interactions.turn.enter`).

    Lives in memory (discord.py has no restart-safe modals): a form open while the bot
    restarts gets Discord's "interaction failed" on submit, and the student sends it again.
    """

    def __init__(self, title: str, label: str,
                 submitted: Callable[[discord.Interaction, str], Awaitable[Any]], *,
                 placeholder: str = "", max_length: int = 1000, paragraph: bool = False,
                 default: str | None = None) -> None:
        super().__init__(title=title[:45], timeout=900)
        self.submitted = submitted
        self.text: discord.ui.TextInput = discord.ui.TextInput(
            custom_id="text", label=label[:45], placeholder=placeholder[:100] or None,
            default=default, max_length=min(max_length, 4000),
            style=discord.TextStyle.paragraph if paragraph else discord.TextStyle.short)
        self.add_item(self.text)

    async def on_submit(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        await self.submitted(interaction, self.text.value)
