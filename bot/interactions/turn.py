"""The front door: every interaction is one `Turn`, gated once, concluded once.

A `Turn` is the per-interaction object (after discord.py's `CommandTree._call` and RoboDanny's
per-invocation `Context`). Whatever kind the interaction is - a slash command, a right-click
menu, a button, a select, a form submit, a page turn, a quiz action - it goes through:

1. `Turn.gate`: direct messages (off unless `[discord] allow_dms`), then the moderator rules
   (with the thread's parent channel), the pause and the cooldown (`core.policy`), under the
   name the rules are written against. Once per interaction: a slash command is gated by the
   tree's `interaction_check`, so the body it runs does not count a second use.
2. the body: what the interaction kind declares it runs (`Action.body`); it returns an
   `Answer`, or `FORM_OPENED` when it only opened a form (whose submit is a turn of its own).
3. `Turn.conclude`: the one reply (the answer, or an ephemeral explanation), the cooldown use
   given back when the core never admitted the work, and ONE query-log row whose free-text
   options go through `log_inputs`. No other function replies to an outcome or writes a row.

Slash and context-menu commands run 1 -> 2 -> 3 inside discord.py's tree (`bot.client.TLMTree`:
`interaction_check` gates, the command is the body, `on_error` concludes a failure). Every
other kind calls `enter(interaction, Action(...))`, which runs the same three steps in that
order, so a new interaction kind declares what it runs and copies nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import discord
from discord import app_commands

from bot.interactions.delivery import deliver, send_error
from bot.interactions.host import Host
from bot.interactions.language import private_language, server_language
from bot.interactions.names import actor_of_member, parent_channel_id
from bot.interactions.render import Reply, safe
from core import i18n
from core.errors import CoreError
from core.outcomes import Outcome, Status, outcome_of_error
from core.policy import Decision
from core.storage.guild_settings import Cooldown
from core.storage.querylog import QueryRecord

log = logging.getLogger(__name__)

#: Outcomes of attempts the core never admitted: they do not use up a cooldown.
NOT_ADMITTED = frozenset({Status.USER_ERROR, Status.OVERLOADED, Status.UNAVAILABLE})

#: How an interaction is gated: a student command (rules + cooldown), a class activity, a
#: staff command (moderator/instructor rules), the owner's, or the member's own (their data,
#: their vote: reachable even where moderators turned commands off).
Kind = Literal["student", "activity", "moderator", "instructor", "owner", "self"]

_TURN = "tlm_turn"


class Refused(app_commands.CheckFailure):
    """A moderator rule, the pause switch or a cooldown said no."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


@dataclass
class Answer:
    """What a body hands back to be replied: a successful `reply`, or an `outcome` that is
    not an error (e.g. "only the student who asked can rate this") with its message."""

    reply: Reply | None = None
    ephemeral: bool = False
    #: Replace the message the clicked component sits on (a page turn) instead of answering.
    update_message: bool = False
    #: The core's result: the row takes its model and timings from it.
    result: Any = None
    outcome: Outcome = field(default_factory=lambda: Outcome(Status.OK))


class _FormOpened:
    """The body answered by opening a form: no row (the form's submit writes it), and the use
    the gate counted is given back (the submit is gated and counted on its own)."""


FORM_OPENED = _FormOpened()

Body = Callable[["Turn"], Awaitable["Answer | _FormOpened"]]


@dataclass(frozen=True)
class Action:
    """What one interaction runs, declared by the kind that receives it."""

    #: The row's command: the student command a button or menu runs, or a staff command.
    command: str
    body: Body
    #: The rule name the gate checks (default: `command`).
    policy: str | None = None
    kind: Kind = "student"
    #: Logged with the options: which button, menu or form it came through ("button:same").
    via: str = ""
    #: The row's options (besides what the body adds); None: the slash command's namespace.
    options: Mapping[str, Any] | None = None
    #: The student's own words: the row's input text, and the options that hold it (kept out
    #: of the options column). Declared here, not in the body, so a refusal logs them under
    #: `log_inputs` too.
    input_text: str = ""
    input_options: tuple[str, ...] = ()
    #: The input is one word a student picked (a quiz guess): see
    #: `QueryRecord.dictionary_words` ("hashed" keeps no digest of it).
    dictionary_words: bool = False
    #: Checked before the gate, for what is wrong whoever clicks (an expired or broken
    #: button): raise a `CoreError` to conclude with its outcome, charging nothing.
    precheck: Callable[[Turn], None] | None = None
    #: A fixed rate for a `self` interaction no moderator rule governs (feedback votes).
    rate: Cooldown | None = None


class Turn:
    """One interaction's passage through the front door. Holds what its row will say, the
    cooldown use it was charged, and when it started; `Turn.of` finds it again."""

    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction
        self.host = cast(Host, interaction.client)
        self.started = time.perf_counter()
        #: The row: its command, options, and the student's text under `log_inputs`.
        self.command = command_name(interaction)
        self.options: dict[str, Any] | None = None
        self.input_text = ""
        self.input_options: tuple[str, ...] = ()
        self.dictionary_words = False
        self._gated_as: str | None = None
        self._charge: tuple[int | None, int, str] | None = None
        self._concluded = False
        #: The language of what only this member reads (errors, ephemeral answers); the body
        #: switches to the server's for a public reply (`speak`). Set for this task, so every
        #: `core.i18n._` the body calls writes in it.
        self.private_language = private_language(interaction)
        self.language = self.private_language
        i18n.set_language(self.language)

    @classmethod
    def of(cls, interaction: discord.Interaction) -> Turn:
        turn = interaction.extras.get(_TURN)
        if turn is None:
            turn = interaction.extras[_TURN] = cls(interaction)
        return turn

    # ------------------------------------------------------------------------- language

    async def speak(self, *, public: bool) -> str:
        """Decide the language of the reply being built - THE place it is decided: a public
        message follows the server's language (`/config language`, else its Discord
        language, else English), a private one the member's own Discord language - and make
        it the current one for the rest of this interaction. Returns it."""
        interaction = self.interaction
        if public:
            self.language = await server_language(self.host.settings, interaction.guild_id,
                                                  interaction.guild_locale)
        else:
            self.language = self.private_language
        i18n.set_language(self.language)
        return self.language

    # -------------------------------------------------------------------------- 1. gate

    async def gate(self, policy_name: str, kind: Kind, *,
                   rate: Cooldown | None = None) -> None:
        """Raise `Refused`, or return having counted a use against the cooldown (given back
        by `conclude` if the core never admits the work). Once per interaction."""
        if self._gated_as is not None:
            return
        interaction, host = self.interaction, self.host
        if interaction.guild_id is None and not host.config.discord.allow_dms:
            # Discord hides the commands in DMs (allowed_contexts); a raw payload still lands.
            raise Refused(Decision(False, i18n.lazy("tlm-bot only answers in a server, not "
                                                    "in direct messages.")))
        self._gated_as = policy_name
        if kind == "owner":  # checked by the command against the application's owner
            return
        if kind == "self":
            if rate is not None:
                decision = host.policy.throttle(interaction.guild_id, interaction.user.id,
                                                policy_name, rate)
                if not decision.allowed:
                    raise Refused(decision)
                self._charge = (interaction.guild_id, interaction.user.id, policy_name)
            return
        decision = await host.policy.check(
            interaction.guild_id, interaction.channel_id, actor_of_member(interaction.user),
            policy_name, kind, parent_channel_id=parent_channel_id(interaction.channel),
        )
        if not decision.allowed:
            raise Refused(decision)
        if kind in ("student", "activity"):  # the kinds with cooldowns (core.policy)
            self._charge = (interaction.guild_id, interaction.user.id, policy_name)

    def refund(self) -> None:
        """Give back the use the gate counted (an attempt the core never admitted, or a
        form that only opened)."""
        charge, self._charge = self._charge, None
        if charge is not None:
            self.host.policy.refund(*charge)

    # ------------------------------------------------------------------------ 3. conclude

    def describe(self, command: str | None = None, *, options: Mapping[str, Any] | None = None,
                 input_text: str | None = None, input_options: tuple[str, ...] | None = None,
                 via: str = "", dictionary_words: bool | None = None) -> None:
        """Say what the row will hold, before the body runs, so a failure logs it too."""
        if command is not None:
            self.command = command
        if options is not None:
            self.options = dict(options)
        if via:
            self.options = {**(self.options or {}), "via": via}
        if input_text is not None:
            self.input_text = input_text
        if input_options is not None:
            self.input_options = input_options
        if dictionary_words is not None:
            self.dictionary_words = dictionary_words

    async def conclude(self, outcome: Outcome | Answer, *, error: BaseException | None = None,
                       record: bool = True) -> Status:
        """Send the one reply for the outcome and write the one row; returns the final
        status. `record=False` is for `/mydata delete` only: a row about the member who just
        asked to be forgotten would defeat the point."""
        answer = outcome if isinstance(outcome, Answer) else Answer(outcome=outcome)
        if self._concluded:  # a second conclusion would be a second reply and a second row
            log.error("/%s concluded twice; the second (%s) is dropped", self.command,
                      answer.outcome.status.value)
            return answer.outcome.status
        self._concluded = True
        with self.host.handling():  # a shutdown (and a test) waits until the row is written
            return await self._conclude(answer, error, record)

    async def _conclude(self, answer: Answer, error: BaseException | None,
                        record: bool) -> Status:
        interaction, outcome = self.interaction, answer.outcome
        status = outcome.status
        replied_in = self.language
        if status is Status.FAILED and error is not None:
            log.error("/%s failed", self.command, exc_info=error)
        if outcome.ok and answer.reply is not None:
            try:
                status = await deliver(interaction, answer.reply, ephemeral=answer.ephemeral,
                                       update_message=answer.update_message)
            except Exception as exc:  # Discord refused the answer itself (e.g. a 5xx)
                log.error("/%s: the answer could not be sent", self.command, exc_info=exc)
                outcome = outcome_of_error(exc)
                status = outcome.status
                replied_in = self.private_language
                await send_error(interaction, i18n.render(outcome.message, replied_in))
        else:
            replied_in = self.private_language  # an error is ephemeral: the member's language
            await send_error(interaction, i18n.render(outcome.message, replied_in))
        if status in NOT_ADMITTED:
            self.refund()
        if record:
            await self.host.record_query(self._row(status, outcome, answer, replied_in))
        return status

    def _row(self, status: Status, outcome: Outcome, answer: Answer,
             language: str) -> QueryRecord:
        interaction = self.interaction
        options = dict(self.options if self.options is not None else options_of(interaction))
        result = answer.result
        if isinstance(result, tuple) and result:  # several results for one answer
            result = result[0]
        timings = getattr(result, "timings", None)
        user = interaction.user
        declared = (interaction.command if isinstance(interaction.command, app_commands.Command)
                    else declared_command(self.host, self.command))
        return QueryRecord(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=user.id,
            user_name=getattr(user, "display_name", "") or "",
            command=self.command,
            options={k: v for k, v in options.items() if k not in self.input_options},
            free_text_options=free_text_options(declared),
            interaction_id=interaction.id,
            input_text=self.input_text,
            status=status.value,
            output_summary=(answer.reply.summary if answer.reply is not None and outcome.ok
                            else ""),
            error=outcome.error_code,
            model_id=str(getattr(result, "model_id", "") or ""),
            queue_ms=timings.queued_ms if timings else None,
            inference_ms=timings.inference_ms if timings else None,
            total_ms=(time.perf_counter() - self.started) * 1000,
            dictionary_words=self.dictionary_words,
            locale=language,
        )


# ------------------------------------------------------------------------- the front door


async def enter(interaction: discord.Interaction, action: Action) -> Status | None:
    """Gate -> body -> one reply and one row, for every interaction that is not a command of
    the tree (a button, a select, a form submit, a page turn, a quiz action). The status
    concluded, or None when the body only opened a form."""
    turn = Turn.of(interaction)
    turn.describe(action.command, options=action.options, via=action.via,
                  input_text=action.input_text, input_options=action.input_options,
                  dictionary_words=action.dictionary_words)
    with turn.host.handling():
        try:
            if action.precheck is not None:
                action.precheck(turn)
            await turn.gate(action.policy or action.command, action.kind, rate=action.rate)
            answer = await action.body(turn)
        except Exception as exc:
            return await turn.conclude(outcome_of_interaction_error(exc), error=exc)
        if isinstance(answer, _FormOpened):
            turn.refund()
            return None
        return await turn.conclude(answer)


async def reply_staff(interaction: discord.Interaction, reply: Reply) -> None:
    """An ephemeral answer to a moderator, instructor or privacy command, plus its row.

    These answers hold rules and other students' queries: they are never public.
    """
    await Turn.of(interaction).conclude(Answer(reply, ephemeral=True))


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
                       i18n.lazy("That value doesn't fit this option: {value}",
                                 value=safe(str(error.value), 100)),
                       "bad_option")
    if isinstance(error, app_commands.CheckFailure):
        return Outcome(Status.REFUSED, i18n.lazy("You can't use this command here."),
                       "check_failure")
    return outcome_of_error(getattr(error, "original", error))


# ------------------------------------------------------------------- options and commands


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


def declared_command(host: Host, name: str) -> app_commands.Command | None:
    """The slash command `name` ("logs recent" for a subcommand) as the tree declares it."""
    for command in host.tree.walk_commands():
        if command.qualified_name == name and isinstance(command, app_commands.Command):
            return command
    return None


def with_defaults(host: Host, name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Options for running slash command `name` from a button or a right-click: what the
    click supplies, the slash command's own defaults for the rest (declared once, there)."""
    command = declared_command(host, name)
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
