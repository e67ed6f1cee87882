"""A picture answer as one Components V2 message: the picture, its words and its controls.

Discord's layout messages (flag `IS_COMPONENTS_V2`, discord.py's `ui.LayoutView`) hold text
displays, a media gallery and action rows in one container, so the controls sit beside the
picture they turn. Such a message carries no `content` and no embeds, at most 40 components
and 4,000 characters of text: the answer's embed (drawn by `render`, which `tlm-bot ask` also
prints) is poured into text displays here, cut to fit.

The student's own text is shown in text displays of its own (`INPUT_ID` + n), bold, as the
follow-up buttons read it from an embed: a control reads it back from the message it is on
(`input_texts`), so the bot stores no student text for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import discord

from bot.interactions.render import COLOUR, Reply, bold_input, clip, input_of

#: Every text display together may hold this many characters (Discord's limit).
LAYOUT_TEXT_LIMIT = 4000
#: The component id of the text display that shows input option n (0-based).
INPUT_ID = 100


def picture_layout(reply: Reply, inputs: Sequence[str], controls: Sequence[discord.ui.Item],
                   below: Sequence[discord.ui.Item] = (), note: str = "") -> Reply:
    """`reply` (an embed with its picture attached) as a layout message: the title, the
    student's inputs, the picture, the embed's text, `note`, its footer, then each control in
    a row of its own; `below` (the 👍/👎 buttons) in one row under the container."""
    embed = reply.embeds[0]
    shown = [bold_input(text) for text in inputs]
    title = f"### {embed.title}" if embed.title else ""
    footer = f"-# {embed.footer.text}" if embed.footer and embed.footer.text else ""
    body = "\n\n".join(part for part in [embed.description or ""] + [
        f"**{field.name}**\n{field.value}" for field in embed.fields] + [note] if part)
    used = sum(len(part) for part in [title, footer, *shown])
    body = clip(body, max(1, LAYOUT_TEXT_LIMIT - used))
    container: discord.ui.Container = discord.ui.Container(accent_colour=COLOUR)
    if title:
        container.add_item(discord.ui.TextDisplay(title))
    for n, text in enumerate(shown):
        container.add_item(discord.ui.TextDisplay(text, id=INPUT_ID + n))
    for name, _ in reply.files:
        container.add_item(discord.ui.MediaGallery(discord.MediaGalleryItem(
            f"attachment://{name}", description=reply.alt_text.get(name) or None)))
    if body.strip():
        container.add_item(discord.ui.TextDisplay(body))
    if footer:
        container.add_item(discord.ui.TextDisplay(footer))
    for control in controls:
        container.add_item(discord.ui.ActionRow(control))
    view = discord.ui.LayoutView(timeout=None)
    view.add_item(container)
    if below:
        view.add_item(discord.ui.ActionRow(*below))
    return Reply(files=list(reply.files), summary=reply.summary, alt_text=dict(reply.alt_text),
                 view=view)


def is_layout(reply: Reply) -> bool:
    """A layout message: sent without content or embeds (Discord refuses them beside it)."""
    return isinstance(reply.view, discord.ui.LayoutView)


def input_texts(message: discord.Message | None, count: int) -> list[str] | None:
    """The `count` student inputs a layout answer shows, as they were asked; None when the
    message does not carry them whole."""
    found: dict[int, str | None] = {}
    for component in _walk(message.components if message is not None else []):
        ident = getattr(component, "id", None)
        if isinstance(component, discord.TextDisplay) and ident is not None:
            found[ident] = input_of(component.content)
    texts = [found.get(INPUT_ID + n) for n in range(count)]
    return None if any(text is None for text in texts) else [t for t in texts if t is not None]


def greyed(message: discord.Message) -> discord.ui.LayoutView:
    """The layout of `message` with every control disabled (the picture and words kept)."""
    view = discord.ui.LayoutView.from_message(message, timeout=None)
    for item in view.walk_children():
        if isinstance(item, (discord.ui.Select, discord.ui.Button)):
            item.disabled = True
    return view


def _walk(components: Sequence[Any]) -> Iterator[Any]:
    for component in components:
        yield component
        yield from _walk(getattr(component, "children", None) or [])
        accessory = getattr(component, "accessory", None)
        if accessory is not None:
            yield accessory
