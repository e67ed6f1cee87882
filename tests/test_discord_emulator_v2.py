"""The emulator's Components V2 layouts, selects on them, update-message answers and the
per-channel edit limit, against the real discord.py client (`ui.LayoutView`, 2.7.1).

These pin what the bot's picture answers and streamed /generate rely on: a layout Discord
would refuse is refused here too, a pick re-draws the message it is on, and edits beyond a
channel's limit get a 429 that discord.py waits out.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.discord_emulator import (
    IS_COMPONENTS_V2,
    DiscordEmulator,
    media_urls,
    text_displays,
    validate_message,
)

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    from discord.ext import commands

PNG = b"\x89PNG\r\n\x1a\n"


def layout(picture: str, colour: str, *, disabled: bool = False) -> discord.ui.LayoutView:
    """A picture, its caption and a select to change the colour, as the bot's answers are."""
    view = discord.ui.LayoutView(timeout=None)
    menu: discord.ui.Select[Any] = discord.ui.Select(
        custom_id="colour", disabled=disabled,
        options=[discord.SelectOption(label=c, value=c, default=c == colour)
                 for c in ("red", "green", "blue")])

    async def picked(interaction: discord.Interaction) -> None:
        chosen = menu.values[0]
        await interaction.response.edit_message(
            view=layout(f"{chosen}.png", chosen),
            attachments=[discord.File(io.BytesIO(PNG + chosen.encode()), f"{chosen}.png")])

    menu.callback = picked  # type: ignore[method-assign]
    view.add_item(discord.ui.Container(
        discord.ui.TextDisplay(f"**Colour:** {colour}"),
        discord.ui.MediaGallery(discord.MediaGalleryItem(f"attachment://{picture}")),
        discord.ui.ActionRow(menu),
    ))
    return view


class LayoutBot(commands.Bot):
    def __init__(self) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.05)
        self.errors: list[discord.HTTPException] = []
        tree = self.tree

        @tree.command(name="paint", description="A picture with a select")
        async def paint(interaction: discord.Interaction) -> None:
            await interaction.response.send_message(
                view=layout("red.png", "red"), file=discord.File(io.BytesIO(PNG), "red.png"))

        @tree.command(name="typing", description="Edit the reply many times, fast")
        async def typing(interaction: discord.Interaction, edits: int) -> None:
            await interaction.response.defer()
            for n in range(1, edits + 1):
                await interaction.edit_original_response(content="word " * n)

        @tree.command(name="mixed", description="Content beside a layout")
        async def mixed(interaction: discord.Interaction) -> None:
            await interaction.response.send_message(view=layout("red.png", "red"),
                                                    file=discord.File(io.BytesIO(PNG), "red.png"))
            try:
                await interaction.edit_original_response(content="and some text")
            except discord.HTTPException as exc:
                self.errors.append(exc)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5 s pause before a re-IDENTIFY."""


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator() as emulator:
        with emulator.patch_discord():
            yield emulator


@pytest.fixture
async def bot(emu: DiscordEmulator, caplog: pytest.LogCaptureFixture) -> AsyncIterator[LayoutBot]:
    caplog.set_level(logging.INFO, logger="discord")
    async with emu.connected(LayoutBot()) as probe:
        yield probe
    assert emu.unhandled == []


def v2(components: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"flags": IS_COMPONENTS_V2, "components": components, **extra}


def text(content: str) -> dict[str, Any]:
    return {"type": 10, "content": content}


def test_v2_rules() -> None:
    ok = v2([{"type": 17, "components": [
        text("hello"),
        {"type": 12, "items": [{"media": {"url": "attachment://a.png"}}]},
        {"type": 1, "components": [{"type": 3, "custom_id": "s", "options": [
            {"label": "x", "value": "x"}]}]}]}])
    assert validate_message(ok, 1, file_names=["a.png"]) == []
    # No content or embeds beside the flag.
    assert any(p.startswith("content:") for p in validate_message({**ok, "content": "hi"}))
    assert any(p.startswith("embeds:") for p in validate_message(
        {**ok, "embeds": [{"description": "x"}]}))
    # At most 40 components, nested ones counted: one container holding 40 texts is 41.
    assert validate_message(v2([text(str(i)) for i in range(40)])) == []
    many = validate_message(v2([{"type": 17, "components": [text(str(i)) for i in range(40)]}]))
    assert any("40 or fewer" in p for p in many)
    # At most 4,000 characters of text displays, together.
    assert validate_message(v2([text("x" * 2000), text("y" * 2000)])) == []
    assert any("4000" in p for p in validate_message(v2([text("x" * 2000), text("y" * 2001)])))
    # A gallery shows the message's own attachments; a select holds 1-25 options.
    assert any("no attachment" in p for p in validate_message(ok, 1, file_names=["b.png"]))
    select = {"type": 1, "components": [{"type": 3, "custom_id": "s", "options": [
        {"label": str(i), "value": str(i)} for i in range(26)]}]}
    assert any("options" in p for p in validate_message(v2([select])))
    # A classic message still holds only action rows at its top level.
    assert validate_message({"components": [text("hi")]}) != []
    # A row inside a container keeps the row rules: one select fills it.
    crowded = v2([{"type": 17, "components": [{"type": 1, "components": [
        {"type": 3, "custom_id": "a", "options": [{"label": "x", "value": "x"}]},
        {"type": 2, "custom_id": "b", "label": "b", "style": 1}]}]}])
    assert any("fills its whole row" in p for p in validate_message(crowded))


async def test_layout_select_redraws_the_same_message(emu: DiscordEmulator,
                                                      bot: LayoutBot) -> None:
    record = await (await emu.invoke("paint", {})).wait_done()
    message = record.message
    assert message is not None and message["flags"] & IS_COMPONENTS_V2
    assert message["content"] == "" and text_displays(message["components"]) == ["**Colour:** red"]
    assert media_urls(message["components"]) == ["attachment://red.png"]
    assert "**Colour:** red" in record.text
    picked = await emu.select(message, "colour", ["blue"])
    await picked.wait_done()
    assert picked.first_response is not None and picked.first_response["type"] == 7
    now = emu.message(message["id"])  # the same message, re-drawn
    assert text_displays(now["components"]) == ["**Colour:** blue"]
    assert [a["filename"] for a in now["attachments"]] == ["blue.png"]
    assert now["flags"] & IS_COMPONENTS_V2
    with pytest.raises(ValueError, match="not distinct options"):
        await emu.select(message, "colour", ["purple"])
    assert emu.violations == []


async def test_content_cannot_join_a_v2_message(emu: DiscordEmulator, bot: LayoutBot) -> None:
    record = await (await emu.invoke("mixed", {})).wait_done()
    for _ in range(100):
        if bot.errors:
            break
        await asyncio.sleep(0.02)
    assert bot.errors and bot.errors[0].code == 50035
    assert "IS_COMPONENTS_V2" in str(bot.errors[0])
    assert record.message is not None and record.message["content"] == ""


async def test_channel_edit_limit_answers_429_and_discord_py_waits(
        emu: DiscordEmulator, bot: LayoutBot, caplog: pytest.LogCaptureFixture) -> None:
    emu.limit_channel_edits(3, per_s=0.5)
    started = time.monotonic()
    record = await emu.invoke("typing", {"edits": 7})
    for _ in range(400):
        if len(record.edits) == 7:
            break
        await asyncio.sleep(0.02)
    assert len(record.edits) == 7, "every edit arrives in the end"
    assert record.message is not None and record.message["content"] == "word " * 7
    assert emu.edit_rate_limited, "7 edits at once break a limit of 3 per 0.5 s"
    patches = [r for r in emu.find_requests("PATCH", "/messages/") if r.status == 200]
    # No more than 3 accepted edits in any 0.5 s window.
    for i in range(len(patches) - 3):
        assert patches[i + 3].time - patches[i].time >= 0.5 - 0.01
    assert time.monotonic() - started >= 0.5
    assert all(r.status == 429 for r in emu.edit_rate_limited)
    emu.limit_channel_edits(None)
