"""An answer written as it is computed: the placeholder edited with the text so far.

After llmcord (one message edited at most about once a second, marked when finished): the
reply shows the text while it grows, then `Turn.conclude` puts the final answer (its footer,
its buttons) in the same message, and writes the one row. Two limits apply to the edits:

- per answer, at most one edit per `[discord] stream_edit_interval_s`;
- per channel, all answers together (a whole class generating at once), at most
  `stream_channel_edits` per `stream_channel_window_s` (`EditPacing`, one per bot). Growing
  texts may use only half of a window; the final edits may use all of it, so a busy channel
  delays the partial texts, not the answers.

A partial edit that fails is skipped (the next one, or the final answer, replaces it); a 429 is
waited out by discord.py before the edit returns, which delays the next edit. The final text
is never lost: it is concluded like any answer.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

import discord

from bot.interactions.render import Reply
from core.config import DiscordConfig
from core.inference.streams import Stream

log = logging.getLogger(__name__)


class EditPacing:
    """How many edits of streamed answers each channel may take: a sliding window per
    channel, shared by every answer streaming there."""

    def __init__(self, edits: int, window_s: float) -> None:
        self.edits = max(1, edits)
        self.window_s = window_s
        self._times: dict[int | None, collections.deque[float]] = {}

    @classmethod
    def of(cls, config: DiscordConfig) -> EditPacing:
        return cls(config.stream_channel_edits, config.stream_channel_window_s)

    async def slot(self, channel_id: int | None, *, final: bool = False) -> None:
        """Wait until `channel_id` may take one more edit, and count it."""
        limit = self.edits if final else max(1, self.edits // 2)
        times = self._times.setdefault(channel_id, collections.deque())
        while True:
            now = time.monotonic()
            while times and now - times[0] >= self.window_s:
                times.popleft()
            if len(times) < limit:
                times.append(now)
                return
            await asyncio.sleep(times[len(times) - limit] + self.window_s - now)


async def show_as_written(interaction: discord.Interaction, stream: Stream[Any],
                          draw: Callable[[Any], Reply], pacing: EditPacing,
                          interval_s: float) -> Any:
    """Edit the deferred reply with `draw(partial)` as the stream grows, then return the
    final result (raising what the request raised), with the final edit's place taken."""
    channel = interaction.channel_id
    last = time.monotonic()  # the placeholder just appeared: the first text comes after it
    shown: str | None = None
    while not stream.future.done():
        wait = last + interval_s - time.monotonic()
        if wait > 0:
            await asyncio.wait({stream.future}, timeout=wait)
            if stream.future.done():
                break
        partial = await anext(stream, None)
        if partial is None:
            break
        await pacing.slot(channel)
        if stream.future.done():
            break
        reply = draw(partial)
        text = reply.embeds[0].description if reply.embeds else reply.content
        if text == shown:
            continue
        try:
            await interaction.edit_original_response(content=None, embeds=reply.embeds)
        except discord.HTTPException as exc:  # only a preview: the final answer still comes
            log.info("a streamed edit was refused (%s); the next one replaces it", exc.status)
        shown, last = text, time.monotonic()
    if not stream.future.cancelled() and stream.future.exception() is None:
        await pacing.slot(channel, final=True)
    return await stream
