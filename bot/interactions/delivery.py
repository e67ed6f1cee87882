"""Sending a reply, whatever state the interaction is in: the first response, a follow-up
after a defer, an edit of the clicked message, or the channel when the token is gone.

Discord rules encoded here: a deferred reply's first follow-up *replaces* the "thinking…"
message and inherits its visibility, so an error after a public defer deletes that message and
sends an ephemeral follow-up. An interaction token lives 15 minutes; if it expired the answer
goes to the channel instead of being dropped (status "expired"). Only `Turn.conclude` calls
these: the one place an outcome is replied.
"""

from __future__ import annotations

import logging

import discord

from bot.interactions.render import Reply, error_reply, safe
from core.i18n import tr
from core.outcomes import Status

log = logging.getLogger(__name__)


async def send_error(interaction: discord.Interaction, message: str) -> None:
    """An ephemeral error, whatever state the interaction is in."""
    reply = error_reply(message)
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(embeds=reply.embeds, ephemeral=True)
            return
        if interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
            # The public "thinking…" placeholder would otherwise become the error, visibly.
            try:
                await interaction.delete_original_response()
            except discord.HTTPException:
                pass
        await interaction.followup.send(embeds=reply.embeds, ephemeral=True)
    except Exception:  # e.g. the HTTP session closing at shutdown: never a second failure
        log.warning("could not send an error to %s", interaction.user.id, exc_info=True)


async def deliver(interaction: discord.Interaction, reply: Reply, *, ephemeral: bool,
                   update_message: bool = False) -> Status:
    """Send a successful answer; OK, or EXPIRED when it had to go elsewhere (or nowhere)."""
    view = {"view": reply.view} if reply.view is not None else {}
    # A layout message (Components V2) carries neither content nor embeds, not even empty.
    layout = isinstance(reply.view, discord.ui.LayoutView)
    words: dict = {} if layout else {"content": reply.content, "embeds": reply.embeds}
    if not interaction.is_expired():  # a token past 15 min would only earn a 401
        try:
            if update_message and not interaction.response.is_done():
                await interaction.response.edit_message(
                    attachments=reply.discord_files(), **words, **view)
            elif not interaction.response.is_done():
                await interaction.response.send_message(
                    files=reply.discord_files(), ephemeral=ephemeral, **words, **view)
            elif ephemeral and not update_message:  # after an ephemeral defer: replaces it
                if not layout:
                    words["content"] = reply.content or None
                await interaction.followup.send(
                    files=reply.discord_files(), ephemeral=True, **words, **view)
            else:  # the deferred reply, or the clicked message after a deferred update
                await interaction.edit_original_response(
                    attachments=reply.discord_files(), **words, **view)
            return Status.OK
        except discord.HTTPException as exc:
            if not token_gone(exc):
                raise
    if ephemeral:  # never post a private answer publicly
        return Status.EXPIRED
    # Token expired (15 min) or the placeholder was deleted: post in the channel instead.
    channel = interaction.channel
    if isinstance(channel, discord.abc.Messageable):
        try:
            if not layout:
                words = {"content": tr("Answer for {name}:",
                                         name=safe(interaction.user.display_name, 100)),
                         "embeds": reply.embeds}
            await channel.send(files=reply.discord_files(), **words, **view)
        except discord.HTTPException:
            log.warning("answer for %s lost: token expired and channel refused",
                        interaction.user.id, exc_info=True)
    return Status.EXPIRED


def token_gone(exc: discord.HTTPException) -> bool:
    """Discord answers an expired interaction token with 401 Invalid Webhook Token (50027),
    not 404, and a deleted placeholder with 404 Unknown Message."""
    return isinstance(exc, discord.NotFound) or exc.status == 401 or exc.code == 50027
