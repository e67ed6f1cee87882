"""Previous/Next buttons for a long private listing (`/logs recent`, `/mydata show`).

A `Pager` is a plain in-memory `discord.ui.View`, like RoboDanny's `RoboPages`. Paging need not
survive a restart: a listing is one command away, and a restart-safe `DynamicItem` would have to
carry every filter in its 100-character custom_id. So after a restart Discord says the click
failed, and after `PAGER_TIMEOUT_S` without a click the buttons are greyed out on the message
(the timeout is shorter than the 15 minutes the command's token may edit that message).

Who may turn the pages: only the member who ran the command (`interaction_check`). The listing
is ephemeral, so nobody else sees it, but a forged click is still refused, ephemerally, and
logged. Every page turn goes through the front door (`turn.enter`): the same gate as a command
(an instructor who lost the role since reads no further page), one logged row per turn under
the command's name with the `page` it showed, and the message replaced in place (type 7).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import discord

from bot.interactions.render import Reply
from bot.interactions.turn import Action, Answer, Kind, Turn, enter, options_of
from core.errors import CoreError
from core.i18n import tr
from core.storage.querylog import RowsPage

log = logging.getLogger(__name__)

NOT_YOURS = "Only the person who ran this can turn its pages."


class NotTheOwner(CoreError):
    code = "not_owner"
    status = "refused"
#: Inside the 15 minutes an interaction token lives, so the timeout can still grey the buttons.
PAGER_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Page:
    """One page of a listing: what to show, which page it is (0-based, clamped to the pages
    that exist now) and how many there are."""

    reply: Reply
    index: int
    count: int


#: Renders page `index` (0-based; the source clamps it to the pages that exist now).
PageSource = Callable[[int], Awaitable[Page]]


def rows_page_shown(found: RowsPage, embed: discord.Embed, footer: str) -> Page:
    """A page of query-log rows (`QueryLog.page`) shown as `embed`, its footer led by
    "Page i of n"."""
    embed.set_footer(text=tr("Page {page} of {pages} · {footer}", page=found.index + 1,
                             pages=found.count, footer=footer))
    return Page(Reply(embeds=[embed], summary=f"page {found.index + 1} of {found.count}: "
                                              f"{len(found.rows)} of {found.total} rows"),
                found.index, found.count)


async def first_page(interaction: discord.Interaction, source: PageSource, *,
                     kind: Kind) -> Reply:
    """Page 1 of a listing, with Previous/Next attached when there is more than one page.

    `kind` is the command's kind for the gate a page turn passes (`instructor`, `self`...).
    """
    page = await source(0)
    if page.count > 1:
        page.reply.view = Pager(interaction, source, page, kind=kind)
    return page.reply


class Pager(discord.ui.View):
    def __init__(self, origin: discord.Interaction, source: PageSource, page: Page, *,
                 kind: Kind) -> None:
        super().__init__(timeout=PAGER_TIMEOUT_S)
        self.origin = origin
        self.source = source
        self.kind = kind
        self.owner_id = origin.user.id
        #: The command's full name and options: every page turn's row is logged under them.
        self.command = origin.command.qualified_name if origin.command else "?"
        self.options: Mapping[str, Any] = options_of(origin)
        self.page = 0
        # In the language of the listing they turn (the turn that made this view).
        self.previous_page.label = tr("◀ Previous")
        self.next_page.label = tr("Next ▶")
        self._show(page)

    def _show(self, page: Page) -> None:
        self.page = page.index
        self.previous_page.disabled = page.index <= 0
        self.next_page.disabled = page.index >= page.count - 1

    def _row_options(self, index: int) -> dict[str, Any]:
        return {**self.options, "page": index + 1}

    @discord.ui.button(label="◀", style=discord.ButtonStyle.secondary)
    async def previous_page(self, interaction: discord.Interaction,
                            button: discord.ui.Button) -> None:
        await self._turn(interaction, self.page - 1)

    @discord.ui.button(label="▶", style=discord.ButtonStyle.secondary)
    async def next_page(self, interaction: discord.Interaction,
                        button: discord.ui.Button) -> None:
        await self._turn(interaction, self.page + 1)

    def _owner_only(self, turn: Turn) -> None:
        if turn.interaction.user.id != self.owner_id:
            raise NotTheOwner(NOT_YOURS)

    async def _turn(self, interaction: discord.Interaction, index: int) -> None:
        async def body(turn: Turn) -> Answer:
            page = await self.source(index)
            self._show(page)
            page.reply.view = self
            turn.describe(options=self._row_options(page.index))
            return Answer(page.reply, ephemeral=True, update_message=True)

        # Refused before the turn (another member, a rule): logged at the page it was on.
        await enter(interaction, Action(self.command, body, kind=self.kind,
                                        options=self._row_options(self.page),
                                        precheck=self._owner_only))

    async def on_timeout(self) -> None:
        for item in self.children:
            if isinstance(item, discord.ui.Button):
                item.disabled = True
        try:
            await self.origin.edit_original_response(view=self)
        except discord.HTTPException as exc:  # deleted by the member, or the token is gone
            log.debug("could not grey out the page buttons: %s", exc)
