"""The one path from an interaction to its reply and its log row.

Every interaction — a student's slash command, a staff command, a refusal by a rule, a bad
option, a crash — ends in `conclude`, which (1) sends the one reply (the answer, or an ephemeral
explanation) and (2) writes the one query-log row. `core.outcomes` decides what an error means;
the row is a `QueryRecord` whose free-text options are named here, from the command's own
declaration (every string option without fixed choices is the member's own words), so
`log_inputs` applies to them exactly as to the input text. No other module writes rows.

A student command's life (`answer`): build the request from the slash options -> admit it to the
core *before* showing anything (a full queue or a bad input gets an ephemeral reply with no
public "thinking…" flashing up) -> defer within Discord's 3 s -> say so if the model is still
loading -> await -> render -> `conclude`.

Discord rules encoded here: a deferred reply's first follow-up *replaces* the "thinking…"
message and inherits its visibility, so an error after a public defer deletes that message and
sends an ephemeral follow-up. An interaction token lives 15 minutes; if it expired the answer
goes to the channel instead of being dropped (status "expired").

Every interaction kind lands here: a slash command, a right-click (message context menu), a
button click and a modal submit. Slash commands and context menus pass the tree's
`interaction_check`; buttons and modal submits are not commands to discord.py, so their
callbacks call `gate` themselves — the same check (direct messages, moderator rules, pause,
cooldown) under the student command they run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from cogs.command_names import actor_of_member, parent_channel_id
from cogs.registry import COMMANDS, StudentCommand
from cogs.render import Reply, error_reply, safe
from core.errors import CoreError
from core.inference.models import LoadState
from core.outcomes import Outcome, Status, outcome_of_error
from core.policy import Decision
from core.storage.querylog import QueryRecord

if TYPE_CHECKING:
    from bot.client import TLMBot

log = logging.getLogger(__name__)

#: Outcomes of attempts the core never admitted: they do not use up a cooldown.
NOT_ADMITTED = frozenset({Status.USER_ERROR, Status.OVERLOADED, Status.UNAVAILABLE})

_STARTED = "tlm_started"
_COOLDOWN_CHARGE = "tlm_cooldown_charge"


class Refused(app_commands.CheckFailure):
    """A moderator rule, the pause switch or a cooldown said no."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


async def gate(bot: TLMBot, interaction: discord.Interaction, command: str,
               kind: str = "student") -> None:
    """The one check before any interaction runs: raises `Refused`, or returns having counted
    a use against the cooldown (given back by `conclude` if the core never admits the work).

    `command` is the name rules are written against: a student command family (`mask`, also
    for the buttons and right-clicks that run it) or a staff command's full name.
    """
    mark_started(interaction)
    if interaction.guild_id is None and not bot.config.discord.allow_dms:
        # Discord hides the commands in DMs (allowed_contexts); a raw payload still lands.
        raise Refused(Decision(False, "tlm-bot only answers in a server, not in direct "
                                      "messages."))
    if kind in ("owner", "self"):
        # owner: checked by the command against the application's owner; self: a member's own
        # data must stay reachable even where moderators turned commands off.
        return
    decision = await bot.policy.check(
        interaction.guild_id, interaction.channel_id, actor_of_member(interaction.user),
        command, kind, parent_channel_id=parent_channel_id(interaction.channel),
    )
    if not decision.allowed:
        raise Refused(decision)
    if kind in ("student", "activity"):  # the kinds with cooldowns (core.policy)
        charge_cooldown(interaction, command)


def release_cooldown(bot: TLMBot, interaction: discord.Interaction) -> None:
    """Give back the use `gate` counted when the interaction only opened a form (a modal):
    its submit is gated and counted on its own."""
    charge = interaction.extras.pop(_COOLDOWN_CHARGE, None)
    if charge is not None:
        bot.policy.refund(*charge)


def outcome_of_interaction_error(error: BaseException) -> Outcome:
    """discord.py's errors and `Refused`, in the outcome vocabulary; the core's own via
    `outcome_of_error`."""
    if isinstance(error, Refused):
        return Outcome(Status(error.decision.status), error.decision.reason,
                       error.decision.status)
    if isinstance(error, app_commands.TransformerError):
        if isinstance(error.__cause__, CoreError):  # our own transformer's explanation
            return outcome_of_error(error.__cause__)
        return Outcome(Status.USER_ERROR,
                       "That value doesn't fit this option: " + safe(str(error.value), 100),
                       "bad_option")
    if isinstance(error, app_commands.CheckFailure):
        return Outcome(Status.REFUSED, "You can't use this command here.", "check_failure")
    return outcome_of_error(getattr(error, "original", error))


def mark_started(interaction: discord.Interaction) -> None:
    interaction.extras.setdefault(_STARTED, time.perf_counter())


def charge_cooldown(interaction: discord.Interaction, policy_name: str) -> None:
    """Remember that the policy counted a use, so `conclude` can give it back if needed."""
    interaction.extras[_COOLDOWN_CHARGE] = (interaction.guild_id, interaction.user.id,
                                            policy_name)


def command_name(interaction: discord.Interaction) -> str:
    """The row's command: a slash command's full name; for a right-click menu, the student
    command it runs (its rules and its statistics)."""
    command = interaction.command
    if isinstance(command, app_commands.ContextMenu):
        return command.extras.get("runs") or command.name
    return command.qualified_name if command else "?"


def options_of(interaction: discord.Interaction) -> dict[str, Any]:
    """The command's options as plain values (ids for members, roles, channels; defaults
    filled in), from discord.py's parsed namespace rather than a hand parser."""
    command = interaction.command
    if isinstance(command, app_commands.ContextMenu):
        return {"via": f"menu:{command.name}"}
    parameters = getattr(command, "parameters", None) or []
    values: dict[str, Any] = {}
    for parameter in parameters:
        value = getattr(interaction.namespace, parameter.name, None)
        if value is None and not parameter.required:
            default = parameter.default
            value = None if default is discord.utils.MISSING else default
        values[parameter.name] = _plain(value)
    return values


def declared_command(bot: TLMBot, name: str) -> app_commands.Command | None:
    """The slash command `name` ("logs recent" for a subcommand) as the tree declares it."""
    for command in bot.tree.walk_commands():
        if command.qualified_name == name and isinstance(command, app_commands.Command):
            return command
    return None


def with_defaults(bot: TLMBot, name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Options for running slash command `name` from a button or a right-click: what the
    click supplies, the slash command's own defaults for the rest (declared once, there)."""
    command = declared_command(bot, name)
    values: dict[str, Any] = {}
    for parameter in command.parameters if command is not None else ():
        default = parameter.default
        values[parameter.name] = None if default is discord.utils.MISSING else default
    values.update(given)
    return values


def free_text_options(command: Any) -> frozenset[str]:
    """The options that carry a member's own words: every string option without fixed
    choices (an autocompleted option still accepts any text the member types)."""
    return frozenset(
        p.name for p in (getattr(command, "parameters", None) or [])
        if p.type is discord.AppCommandOptionType.string and not p.choices
    )


def _plain(value: Any) -> Any:
    if isinstance(value, (discord.abc.Snowflake, app_commands.AppCommandChannel,
                          app_commands.AppCommandThread)):
        return value.id
    if isinstance(value, discord.Attachment):
        return value.filename
    if isinstance(value, app_commands.Choice):
        return value.value
    return value


# ------------------------------------------------------------------------------ the outcome


async def conclude(
    bot: TLMBot,
    interaction: discord.Interaction,
    outcome: Outcome,
    *,
    reply: Reply | None = None,
    result: Any = None,
    ephemeral: bool = False,
    options: Mapping[str, Any] | None = None,
    input_text: str = "",
    input_options: tuple[str, ...] = (),
    error: BaseException | None = None,
    record: bool = True,
    command: str | None = None,
    update_message: bool = False,
) -> Status:
    """Send the one reply for `outcome` and write the one log row; returns the final status.

    `reply` is sent for successful outcomes (public unless `ephemeral`); failures send
    `outcome.message` ephemerally. `record=False` is for `/mydata delete` only: a row about the
    member who just asked to be forgotten would defeat the point. `command` names the row's
    command when the interaction is not that slash command (a button, a modal, a right-click);
    `update_message` replaces the message a clicked component is on instead of answering anew.
    """
    with bot.handling():  # a shutdown (and a test) waits until the row is written
        return await _conclude(bot, interaction, outcome, reply=reply, result=result,
                               ephemeral=ephemeral, options=options, input_text=input_text,
                               input_options=input_options, error=error, record=record,
                               command=command or command_name(interaction),
                               update_message=update_message)


async def _conclude(
    bot: TLMBot, interaction: discord.Interaction, outcome: Outcome, *, reply: Reply | None,
    result: Any, ephemeral: bool, options: Mapping[str, Any] | None, input_text: str,
    input_options: tuple[str, ...], error: BaseException | None, record: bool, command: str,
    update_message: bool,
) -> Status:
    status = outcome.status
    if status is Status.FAILED and error is not None:
        log.error("/%s failed", command, exc_info=error)
    if outcome.ok and reply is not None:
        try:
            status = await _deliver(interaction, reply, ephemeral=ephemeral,
                                    update_message=update_message)
        except Exception as exc:  # Discord refused the answer itself (e.g. a 5xx)
            log.error("/%s: the answer could not be sent", command, exc_info=exc)
            outcome = outcome_of_error(exc)
            status = outcome.status
            await send_error(interaction, outcome.message)
    else:
        await send_error(interaction, outcome.message)
    if status in NOT_ADMITTED:
        charge = interaction.extras.pop(_COOLDOWN_CHARGE, None)
        if charge is not None:
            bot.policy.refund(*charge)
    if record:
        all_options = dict(options if options is not None else options_of(interaction))
        if isinstance(result, tuple) and result:  # several results for one answer
            result = result[0]
        timings = getattr(result, "timings", None)
        started = interaction.extras.get(_STARTED)
        user = interaction.user
        declared = (interaction.command if isinstance(interaction.command, app_commands.Command)
                    else declared_command(bot, command))
        await bot.record_query(QueryRecord(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=user.id,
            user_name=getattr(user, "display_name", "") or "",
            command=command,
            options={k: v for k, v in all_options.items() if k not in input_options},
            free_text_options=free_text_options(declared),
            interaction_id=interaction.id,
            input_text=input_text,
            status=status.value,
            output_summary=reply.summary if reply is not None and outcome.ok else "",
            error=outcome.error_code,
            model_id=str(getattr(result, "model_id", "") or ""),
            queue_ms=timings.queued_ms if timings else None,
            inference_ms=timings.inference_ms if timings else None,
            total_ms=(time.perf_counter() - started) * 1000 if started else None,
        ))
    return status


async def answer(bot: TLMBot, interaction: discord.Interaction,
                 name: str | None = None, options: Mapping[str, Any] | None = None, *,
                 via: str = "") -> None:
    """Run a student command end to end (see the module docstring).

    `name` and `options` (defaults filled in: `with_defaults`) are for interactions that are
    not the slash command itself; `via` says which ("button:new_sample", "menu:Tokenize",
    "modal") and is logged with the options. The bot counts it as in flight, so a shutdown
    delivers it before closing the connection.
    """
    from cogs.buttons import answer_view  # buttons run answers: imported late, not a cycle

    name = name or command_name(interaction)
    command: StudentCommand = COMMANDS[name]
    values = dict(options if options is not None else options_of(interaction))
    mark_started(interaction)
    private = bool(values.pop("private", False))
    with bot.handling():
        outcome, reply, result, failure = Outcome(Status.OK), None, None, None
        pending: Any = None
        try:
            # A moderator's setting may override the student's choice (a storage fault here
            # is an outcome like any other, not an escaped exception).
            private = await _answers_private(bot, interaction, private)
            # Admission first: "busy" and bad input are answered ephemerally, at once.
            request = command.build(values)
            pending = asyncio.ensure_future(command.runner.admit(bot, request))
            await interaction.response.defer(thinking=True, ephemeral=private)
            state = command.runner.model_status(bot, request)
            if state is not None and state[1] in (LoadState.PENDING, LoadState.LOADING):
                await interaction.edit_original_response(
                    content=f"⏳ The model `{state[0]}` is still loading. "
                            "Your answer will appear here as soon as it is ready."
                )
            result = await _wait_in_line(bot, interaction, pending)
            reply = command.render(result)
            reply.view = answer_view(bot, interaction, name, values, result, reply)
        except Exception as exc:
            outcome, failure = outcome_of_error(exc), exc
        finally:
            if pending is not None and not pending.done():
                pending.cancel()  # the command itself was cancelled: free the queue slot
            elif pending is not None and not pending.cancelled():
                pending.exception()  # seen, even when delivery failed before we awaited it
        logged = {**values, "private": private} if private else dict(values)
        if via:
            logged["via"] = via
        await conclude(bot, interaction, outcome, reply=reply, result=result, options=logged,
                       input_text=command.input_text(values), ephemeral=private,
                       input_options=command.input_options, error=failure, command=name)


async def _answers_private(bot: TLMBot, interaction: discord.Interaction, asked: bool) -> bool:
    """The student's `private` option, unless a moderator forced answers private or public
    in this channel (or its parent, or the server: `/config answers`)."""
    settings = await bot.settings.get(interaction.guild_id)
    forced = settings.visibility_in(interaction.channel_id,
                                    parent_channel_id(interaction.channel))
    return asked if forced is None else forced == "private"


#: A wait shorter than this shows no place in line; after it, the place is edited at most this
#: often (each edit is a Discord API call, under its rate limits).
PLACE_AFTER_S = 1.0
PLACE_EVERY_S = 2.0


async def _wait_in_line(bot: TLMBot, interaction: discord.Interaction,
                        pending: asyncio.Future) -> Any:
    """The result; meanwhile, after a second of waiting, "⏳ 12th in line (about 3 s)" in the
    placeholder, edited only when the place changes."""
    shown = None
    delay = PLACE_AFTER_S
    while True:
        done, _ = await asyncio.wait({pending}, timeout=delay)
        if done:
            return pending.result()
        delay = PLACE_EVERY_S
        where = bot.engine.queue_place(pending)
        if where is None or where.place == shown:
            continue
        shown = where.place
        about = max(1, round(where.about_s))
        try:
            await interaction.edit_original_response(
                content=f"⏳ {ordinal(where.place)} in line (about {about} s)")
        except discord.HTTPException:
            pass  # only a progress note: the answer still comes


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


async def reply_staff(bot: TLMBot, interaction: discord.Interaction, reply: Reply) -> None:
    """An ephemeral answer to a moderator, instructor or privacy command, plus its row.

    These answers hold rules and other students' queries: they are never public.
    """
    mark_started(interaction)
    await conclude(bot, interaction, Outcome(Status.OK), reply=reply, ephemeral=True)


# ------------------------------------------------------------------------------ delivery


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


async def _deliver(interaction: discord.Interaction, reply: Reply, *, ephemeral: bool,
                   update_message: bool = False) -> Status:
    """Send a successful answer; OK, or EXPIRED when it had to go elsewhere (or nowhere)."""
    view = {"view": reply.view} if reply.view is not None else {}
    if not interaction.is_expired():  # a token past 15 min would only earn a 401
        try:
            if update_message and not interaction.response.is_done():
                await interaction.response.edit_message(
                    content=reply.content, embeds=reply.embeds,
                    attachments=reply.discord_files(), **view,
                )
            elif not interaction.response.is_done():
                await interaction.response.send_message(
                    content=reply.content, embeds=reply.embeds, files=reply.discord_files(),
                    ephemeral=ephemeral, **view,
                )
            elif ephemeral:  # after an ephemeral defer: replaces its "thinking…"
                await interaction.followup.send(
                    content=reply.content or None, embeds=reply.embeds,
                    files=reply.discord_files(), ephemeral=True, **view,
                )
            else:
                await interaction.edit_original_response(
                    content=reply.content, embeds=reply.embeds,
                    attachments=reply.discord_files(), **view,
                )
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
            await channel.send(
                content=f"Answer for {safe(interaction.user.display_name, 100)}:",
                embeds=reply.embeds, files=reply.discord_files(), **view,
            )
        except discord.HTTPException:
            log.warning("answer for %s lost: token expired and channel refused",
                        interaction.user.id, exc_info=True)
    return Status.EXPIRED


def token_gone(exc: discord.HTTPException) -> bool:
    """Discord answers an expired interaction token with 401 Invalid Webhook Token (50027),
    not 404, and a deleted placeholder with 404 Unknown Message."""
    return isinstance(exc, discord.NotFound) or exc.status == 401 or exc.code == 50027
