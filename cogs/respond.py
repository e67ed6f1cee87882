"""The one place that talks back to Discord for a command: defer, answer, fail, log.

Every student command has the same life: validate (instantly, so a typo gets an ephemeral hint
without a "thinking…" flash) -> defer within Discord's 3 s -> say so if the model is still
loading -> await the core -> render -> deliver -> one query-log row. Keeping that here means a
cog is a few lines, and every command answers, fails and logs the same way.

Discord rules this module encodes: a deferred reply's first follow-up *replaces* the public
"thinking…" message and inherits its visibility, so an error after a public defer deletes that
message first and then sends an ephemeral follow-up. An interaction token lives 15 minutes;
if it expired the answer goes to the channel instead of being dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import discord

from cogs.render import Reply, error_reply, safe
from core.errors import CoreError
from core.outcomes import APOLOGY, outcome_of_error
from core.models import LoadState
from core.querylog import QueryRecord

if TYPE_CHECKING:
    from bot.client import TLMBot

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


async def deliver(interaction: discord.Interaction, reply: Reply) -> str:
    """Send a successful answer; returns the log status ("ok" or "expired")."""
    if not interaction.is_expired():  # a token past 15 min would only earn a 401
        try:
            if interaction.response.is_done():
                await interaction.edit_original_response(
                    content=reply.content, embeds=reply.embeds, attachments=reply.discord_files()
                )
            else:
                await interaction.response.send_message(
                    content=reply.content, embeds=reply.embeds, files=reply.discord_files()
                )
            return "ok"
        except discord.HTTPException as exc:
            if not token_gone(exc):
                raise
    # Token expired (15 min) or the placeholder was deleted: post in the channel instead.
    channel = interaction.channel
    if isinstance(channel, discord.abc.Messageable):
        try:
            await channel.send(
                content=f"Answer for {safe(interaction.user.display_name, 100)}:",
                embeds=reply.embeds, files=reply.discord_files(),
            )
        except discord.HTTPException:
            log.warning("answer for %s lost: token expired and channel refused",
                        interaction.user.id, exc_info=True)
    return "expired"


def token_gone(exc: discord.HTTPException) -> bool:
    """Discord answers an expired interaction token with 401 Invalid Webhook Token (50027),
    not 404, and a deleted placeholder with 404 Unknown Message."""
    return isinstance(exc, discord.NotFound) or exc.status == 401 or exc.code == 50027


async def answer_request(
    bot: TLMBot,
    interaction: discord.Interaction,
    command: str,
    request: Any,
    render: Callable[[Any], Reply],
    input_text: str,
    options: Mapping[str, Any],
) -> None:
    """`answer` for the common case: one request to the inference engine."""
    engine = bot.engine

    def state() -> tuple[str, LoadState]:
        status = engine.status(request)
        return status.model_id, status.state

    await answer(
        bot, interaction, command=command, options=options, input_text=input_text,
        validate=lambda: engine.validate(request), model_state=state,
        run=lambda: engine.submit(request), render=render,
    )


async def answer(
    bot: TLMBot,
    interaction: discord.Interaction,
    *,
    command: str,
    options: Mapping[str, Any],
    input_text: str,
    run: Callable[[], Awaitable[Any]],
    render: Callable[[Any], Reply],
    validate: Callable[[], object] | None = None,
    model_state: Callable[[], tuple[str, LoadState]] | None = None,
) -> None:
    """Run one student command end to end (see the module docstring).

    The bot counts it as in flight, so a shutdown delivers it before closing the connection.
    """
    with bot.handling():
        started = time.perf_counter()
        row: dict[str, Any] = dict(status="ok")
        result: Any = None
        pending: asyncio.Future | None = None
        try:
            if validate is not None:
                validate()
            # Queue first: a full queue answers "busy" at once, ephemerally, with no public
            # "thinking…" placeholder flashing up and vanishing.
            pending = asyncio.ensure_future(run())
            await asyncio.sleep(0)
            if pending.done():
                pending.result()
            await interaction.response.defer(thinking=True)
            if model_state is not None:
                model_id, state = model_state()
                if state in (LoadState.PENDING, LoadState.LOADING):
                    await interaction.edit_original_response(
                        content=f"⏳ The model `{model_id}` is still loading. "
                                "Your answer will appear here as soon as it is ready."
                    )
            result = await pending
            reply = render(result)
            row["output_summary"] = reply.summary
            row["status"] = await deliver(interaction, reply)
        except Exception as exc:  # a bug: log it, apologise, never show str(exc)
            if not isinstance(exc, CoreError):
                log.exception("/%s failed", command)
            outcome = outcome_of_error(exc)
            row.update(status=outcome.status.value, error=outcome.error_code)
            await send_error(interaction, outcome.message)
        finally:
            if pending is not None and not pending.done():
                pending.cancel()  # the command itself was cancelled: free the queue slot
            elif pending is not None and not pending.cancelled():
                pending.exception()  # seen, even when delivery failed before we awaited it
            timings = getattr(result, "timings", None)
            await bot.record_query(QueryRecord(
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id,
                user_id=interaction.user.id,
                command=command,
                options=dict(options),
                input_text=input_text,
                model_id=getattr(result, "model_id", ""),
                queue_ms=timings.queued_ms if timings else None,
                inference_ms=timings.inference_ms if timings else None,
                total_ms=(time.perf_counter() - started) * 1000,
                **row,
            ))


async def staff_reply(
    bot: TLMBot,
    interaction: discord.Interaction,
    reply: Reply,
    *,
    command: str,
    options: Mapping[str, Any],
) -> None:
    """An ephemeral answer to a moderator, instructor or privacy command, plus its log row.

    These answers hold rules and other students' queries: they are never public.
    """
    started = time.perf_counter()
    status = "ok"
    try:
        if interaction.response.is_done():
            await interaction.followup.send(
                content=reply.content or None, embeds=reply.embeds, files=reply.discord_files(),
                ephemeral=True,
            )
        else:
            await interaction.response.send_message(
                content=reply.content, embeds=reply.embeds, files=reply.discord_files(),
                ephemeral=True,
            )
    except discord.NotFound:
        status = "expired"
    await bot.record_query(QueryRecord(
        guild_id=interaction.guild_id, channel_id=interaction.channel_id,
        user_id=interaction.user.id, command=command, options=dict(options), input_text="",
        status=status, output_summary=reply.summary,
        total_ms=(time.perf_counter() - started) * 1000,
    ))
