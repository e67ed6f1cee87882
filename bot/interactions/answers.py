"""A student command's answer: running a registry command through the front door, and the
buttons under its reply.

`student(name, values)` is the body every way of asking shares - the slash command, a
right-click menu, a follow-up button, a form's submit: build the request from the options ->
admit it to the core *before* showing anything (a full queue or a bad input gets an ephemeral
reply with no public "thinking…" flashing up) -> defer within Discord's 3 s -> say so if the
model is still loading, and the place in line after a second -> await -> render -> the buttons.
The front door (`bot.interactions.turn`) gates before it and concludes after it.

The buttons survive a restart and need no stored state: each is a `discord.ui.DynamicItem`
whose custom_id carries what the click needs, and discord.py routes a click on any message
(sent before or after a restart) to the class whose template matches:

- the interaction the answer replied to (`asked`): its snowflake dates the button (clicks
  after `[discord] button_max_age_hours`, or dated in the future, say it has expired) and
  names the query-log row that feedback is stored on (`queries.interaction_id`);
- the answer's knobs (temperature, top_k, seed...) in a few characters;
- never the student's text: a follow-up reads it back from the answer it is under
  (`render.input_of`), so buttons store nothing that `log_inputs` would have to govern.
  A button is offered only when that read-back gives exactly the text that was asked.

A `tlm:` custom_id that no template reads (hand-made, or from an older version) is answered by
`BrokenButton` ("this button is broken") and logged, like any click.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import discord

from bot.interactions.forms import OneTextModal
from bot.interactions.host import Host
from bot.interactions.layouts import greyed, input_texts, picture_layout
from bot.interactions.names import parent_channel_id, policy_name
from bot.interactions.registry import COMMANDS, StudentCommand
from bot.interactions.render import Reply, input_of, printable, qa_inputs_of, safe
from bot.interactions.streaming import show_as_written
from bot.interactions.turn import (
    FORM_OPENED,
    Action,
    Answer,
    Turn,
    declared_command,
    enter,
    options_of,
    with_defaults,
)
from core.errors import CoreError, InvalidInput
from core.i18n import SOURCE, Localised, current_language, lazy, number, tr
from core.inference.models import LoadState
from core.outcomes import Status
from core.pictures.charts import visible_token
from core.storage.guild_settings import Cooldown

# ------------------------------------------------------------------ the student answer


def student(name: str, values: Mapping[str, Any] | None = None):
    """The body that answers student command `name` with `values` (its slash options,
    defaults filled in: `with_defaults`); None: the slash command's own namespace."""

    async def body(turn: Turn) -> Answer:
        return await _answer(turn, COMMANDS[name], values)

    return body


async def answer(interaction: discord.Interaction) -> None:
    """A student slash command's whole body (one line in its cog): the tree already gated it;
    this runs, replies and logs it through the front door."""
    name = Turn.of(interaction).command
    await enter(interaction, Action(name, student(name), options=options_of(interaction)))


async def _answer(turn: Turn, command: StudentCommand,
                  given: Mapping[str, Any] | None, *, redraw: Knobs | None = None) -> Answer:
    """Run `command` and answer: a new reply, or with `redraw` (a control's knobs) the
    message the control is on, re-drawn in place."""
    interaction, host = turn.interaction, turn.host
    values = dict(given if given is not None else options_of(interaction))
    private = bool(values.pop("private", False))
    via = (turn.options or {}).get("via", "")
    turn.describe(options={**values, **({"via": via} if via else {})},
                  input_text=command.input_text(values), input_options=command.input_options)
    pending: Any = None
    try:
        if redraw is None:
            # A moderator's setting may override the student's choice.
            private = await _answers_private(host, interaction, private)
            if private:
                turn.describe(options={**(turn.options or {}), "private": True})
        # The reply's language: the server's when the channel reads it, the member's when
        # only they do (a re-drawn message keeps the visibility it was sent with).
        await turn.speak(public=not private)
        # Admission first: "busy" and bad input are answered ephemerally, at once.
        request = command.build(values)
        stream = None
        # A private answer is not streamed: its final reply is a follow-up that replaces the
        # "thinking…" placeholder, which an edited placeholder no longer is.
        # Nor is an answer of several requests (`/generate picture:True`: its picture comes
        # when both runs are done).
        if (redraw is None and not private and command.render_partial is not None
                and not isinstance(request, tuple) and host.config.discord.stream_generate):
            stream = host.engine.stream(request)
            pending = stream.future
        else:
            pending = asyncio.ensure_future(command.runner.admit(host, request))
        if redraw is not None:
            result = await _redraw_in_time(interaction, pending)
        elif stream is not None and command.render_partial is not None:
            await interaction.response.defer(thinking=True, ephemeral=private)
            draw = command.render_partial
            result = await show_as_written(
                interaction, stream, lambda partial: draw(request, partial), host.edit_pacing,
                host.config.discord.stream_edit_interval_s)
        else:
            await interaction.response.defer(thinking=True, ephemeral=private)
            state = command.runner.model_status(host, request)
            if state is not None and state[1] in (LoadState.PENDING, LoadState.LOADING):
                await interaction.edit_original_response(
                    content="⏳ " + tr("The model `{model}` is still loading. Your answer "
                                      "will appear here as soon as it is ready.",
                                      model=state[0])
                )
            result = await _wait_in_line(host, interaction, pending)
        reply = command.render(result)
        explorable = EXPLORE.get(command.name)
        if explorable is not None and reply.files and reply.embeds:
            knobs = dict(redraw) if redraw is not None else explorable.knobs(values, result)
            reply = explore_layout(interaction.id, interaction.user.id, command, values,
                                   result, reply, knobs)
        else:
            reply.view = answer_view(interaction, command.name, values, result, reply)
        return Answer(reply, ephemeral=private, result=result,
                      update_message=redraw is not None)
    finally:
        if pending is not None and not pending.done():
            pending.cancel()  # the command itself was cancelled: free the queue slot
        elif pending is not None and not pending.cancelled():
            pending.exception()  # seen, even when delivery failed before we awaited it


async def _answers_private(host: Host, interaction: discord.Interaction, asked: bool) -> bool:
    """The student's `private` option, unless a moderator forced answers private or public
    in this channel (or its parent, or the server: `/config answers`)."""
    settings = await host.settings.get(interaction.guild_id)
    forced = settings.visibility_in(interaction.channel_id,
                                    parent_channel_id(interaction.channel))
    return asked if forced is None else forced == "private"


#: A wait shorter than this shows no place in line; after it, the place is edited at most this
#: often (each edit is a Discord API call, under its rate limits).
PLACE_AFTER_S = 1.0
PLACE_EVERY_S = 2.0


async def _wait_in_line(host: Host, interaction: discord.Interaction,
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
        where = host.engine.queue_place(pending)
        if where is None or where.place == shown:
            continue
        shown = where.place
        about = max(1, round(where.about_s))
        try:
            await interaction.edit_original_response(
                content="⏳ " + tr("{place} in line (about {seconds} s)",
                                  place=ordinal(where.place), seconds=about))
        except discord.HTTPException:
            pass  # only a progress note: the answer still comes


#: A re-drawn picture that comes within this answers the click itself (Discord's
#: update-message response); a slower one acknowledges first (a deferred update, inside
#: Discord's 3 s) and edits the message when it comes.
REDRAW_WITHIN_S = 2.0


async def _redraw_in_time(interaction: discord.Interaction, pending: asyncio.Future) -> Any:
    done, _ = await asyncio.wait({pending}, timeout=REDRAW_WITHIN_S)
    if not done:
        await interaction.response.defer()
    return await pending


def ordinal(n: int) -> str:
    """"12th" in English; "12º" in Italian (the catalog's own way, `ordinal {n}`)."""
    if current_language() != SOURCE:
        return tr("ordinal {n}", n=n)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def run_form_submit(submit: discord.Interaction, runs: str,
                    options: Callable[[], dict[str, Any]], via: str):
    """A form's submit that runs student command `runs`: gated like it (a form is not a
    command to discord.py), then answered like it; `options()` may refuse the text."""

    async def body(turn: Turn) -> Answer:
        return await _answer(turn, COMMANDS[runs], with_defaults(turn.host, runs, options()))

    return enter(submit, Action(runs, body, via=via))


# ------------------------------------------------------------------------------ buttons

Knobs = Mapping[str, float | int]

#: What each knob letter holds, and its type, in a custom_id ("t0.7,k50,s123"); the picture
#: controls' knobs: m(odel), l(ayer), h(ead, 0 = average), o (token, 0 = none), x (position).
KNOB_TYPES: dict[str, type] = {"t": float, "k": int, "p": float, "s": int, "n": int, "r": int,
                               "m": int, "l": int, "h": int, "o": int, "x": int}

BROKEN = lazy("This button is broken (it does not carry what it needs). Run the command again "
              "to get fresh buttons.")


class ButtonBroken(InvalidInput):
    """A custom_id that parses but cannot be run: its knobs are missing or unreadable."""

    code = "broken_button"


class ButtonExpired(CoreError):
    code = "button_expired"
    status = "expired"

    def __init__(self) -> None:
        super().__init__(lazy("This button has expired. Run the command again to get fresh "
                              "buttons."))


def encode_knobs(knobs: Knobs) -> str:
    return ",".join(f"{key}{value:g}" if isinstance(value, float) else f"{key}{value}"
                    for key, value in knobs.items() if value is not None)


def decode_knobs(text: str) -> dict[str, float | int]:
    """The knobs of a custom_id; `ButtonBroken` for anything unreadable ("kinf", "t1e999")."""
    knobs: dict[str, float | int] = {}
    for part in filter(None, (text or "").split(",")):
        kind = KNOB_TYPES.get(part[:1])
        if kind is None:
            continue
        try:
            number = float(part[1:])
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError(part)
            knobs[part[:1]] = int(number) if kind is int else number
        except (ValueError, OverflowError):
            raise ButtonBroken(BROKEN) from None
    return knobs


@dataclass(frozen=True)
class FollowUp:
    """A button under one command's answers that runs a student command on the same text."""

    action: str
    #: A `core.i18n.lazy` text: drawn in the language of the answer it sits under.
    label: Localised
    emoji: str
    #: The student command the click runs: its rules, cooldown and log row apply.
    runs: str
    #: (the answer's text, its knobs[, the modal's text]) -> the options of `runs`.
    options: Callable[..., dict[str, Any]]
    #: A modal field label when the click first asks for one more text.
    asks: Localised | None = None
    asks_placeholder: Localised | str = ""

    def options_for(self, *args: Any) -> dict[str, Any]:
        try:
            return self.options(*args)
        except KeyError:  # a knob the follow-up needs is not in the custom_id
            raise ButtonBroken(BROKEN) from None


def _generate(text: str, k: Knobs, **changes: Any) -> dict[str, Any]:
    return {"prompt": text, "max_new_tokens": k["n"], "temperature": k["t"], "top_k": k["k"],
            "top_p": k["p"], "num_return_sequences": k["r"], "seed": k.get("s"), **changes}


#: Source command -> its follow-up buttons, in the order shown.
FOLLOW_UPS: dict[str, tuple[FollowUp, ...]] = {
    "generate": (
        FollowUp("new", lazy("New sample"), "🎲", "generate",
                 lambda text, k: _generate(text, k, seed=None)),
        FollowUp("same", lazy("Same seed again"), "🔁", "generate", _generate),
        FollowUp("greedy", lazy("Greedy"), "🎯", "generate",
                 lambda text, k: _generate(text, k, temperature=0.0, seed=None)),
        FollowUp("odds", lazy("Next-token odds"), "📊", "nexttoken",
                 lambda text, k: {"prompt": text, "temperature": k["t"], "top_k": k["k"],
                                  "top_p": k["p"]}),
    ),
    "mask": (
        FollowUp("attn", lazy("Attention"), "🔍", "attention", lambda text, k: {"text": text}),
        FollowUp("pair", lazy("Compare with…"), "⚖️", "maskpair",
                 lambda text, k, other: {"sentence_a": text, "sentence_b": other,
                                         "top_k": k["k"]},
                 asks=lazy("A second sentence with [MASK]"),
                 asks_placeholder=lazy("The nurse said that [MASK] would be late.")),
    ),
}

#: Source command -> the knobs its follow-ups repeat, from the slash options and the result.
KNOBS: dict[str, Callable[[Mapping[str, Any], Any], dict[str, Any]]] = {
    "generate": lambda values, result: _generate_knobs(values, getattr(
        result, "results", (result,))[0]),  # with a picture: the run asked for
    "mask": lambda values, result: {"k": values["top_k"]},
}


@dataclass(frozen=True)
class Why:
    """The explanation a "Why?" button runs under one command's answers, and how the texts
    it explains are read back from the answer (None: the answer does not show them whole)."""

    #: The `/explain` command the click runs: its rules, cooldown and log row apply.
    runs: str
    read: Callable[[discord.Embed], dict[str, str] | None]


def _reads(option: str) -> Callable[[discord.Embed], dict[str, str] | None]:
    def read(embed: discord.Embed) -> dict[str, str] | None:
        text = input_of(embed.description)
        return None if text is None else {option: text}

    return read


#: Source command -> the explanation its "Why?" button runs on the same input.
WHY: dict[str, Why] = {
    "sentiment": Why("explain sentiment", _reads("text")),
    "mask": Why("explain mask", _reads("text")),
    "qa": Why("explain qa", lambda embed: qa_inputs_of(embed.description)),
    "nexttoken": Why("explain next", _reads("prompt")),
}


def _generate_knobs(values: Mapping[str, Any], result: Any) -> dict[str, Any]:
    return {"t": float(result.temperature), "k": result.top_k, "p": float(result.top_p),
            "s": result.seed, "n": values["max_new_tokens"], "r": values["num_return_sequences"]}


def _find(action: str) -> FollowUp | None:
    return next((f for fs in FOLLOW_UPS.values() for f in fs if f.action == action), None)


def answer_view(interaction: discord.Interaction, name: str, values: Mapping[str, Any],
                result: Any, reply: Reply) -> discord.ui.View:
    """The buttons under a student's answer: its follow-ups (when the answer carries its text
    whole) and 👍/👎."""
    view = discord.ui.View(timeout=None)
    follow_ups = FOLLOW_UPS.get(name, ())
    if follow_ups and reply.embeds:
        asked = values[COMMANDS[name].input_options[0]]
        if input_of(reply.embeds[0].description) == printable(str(asked)):
            knobs = encode_knobs(KNOBS[name](values, result))
            for follow_up in follow_ups:
                view.add_item(FollowUpButton(follow_up, interaction.id, knobs))
    why = WHY.get(name)
    if why is not None and reply.embeds:
        shown = why.read(reply.embeds[0])
        if shown is not None and shown == {k: printable(str(values.get(k))) for k in shown}:
            view.add_item(WhyButton(name, interaction.id))
    for vote in ("up", "down"):
        view.add_item(FeedbackButton(vote, interaction.id))
    return view


def check_age(host: Host, asked: int) -> None:
    """`ButtonExpired` past `[discord] button_max_age_hours`, or for a button dated in the
    future (a forged id: no real answer can be younger than now)."""
    age = datetime.now(timezone.utc) - discord.utils.snowflake_time(asked)
    if age > timedelta(hours=host.config.discord.button_max_age_hours) or age < timedelta(0):
        raise ButtonExpired()


class FollowUpButton(discord.ui.DynamicItem[discord.ui.Button],
                     template=r"tlm:do:(?P<action>"
                              + "|".join(f.action for fs in FOLLOW_UPS.values() for f in fs)
                              + r"):(?P<asked>[0-9]{1,20}):(?P<knobs>[0-9a-z.,+-]{0,60})"):
    def __init__(self, follow_up: FollowUp, asked: int, knobs: str) -> None:
        self.follow_up, self.asked, self.knobs = follow_up, asked, knobs
        super().__init__(discord.ui.Button(
            label=str(follow_up.label), emoji=follow_up.emoji, row=0,
            style=discord.ButtonStyle.secondary,
            custom_id=f"tlm:do:{follow_up.action}:{asked}:{knobs}"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str], /) -> FollowUpButton:
        follow_up = _find(match["action"])
        assert follow_up is not None  # the template names only known actions
        return cls(follow_up, int(match["asked"]), match["knobs"])

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        follow_up = self.follow_up
        await enter(interaction, Action(
            follow_up.runs, self.run, via=f"button:{follow_up.action}",
            precheck=lambda turn: check_age(turn.host, self.asked)))

    async def run(self, turn: Turn) -> Answer | object:
        interaction, follow_up = turn.interaction, self.follow_up
        text = input_of(interaction.message.embeds[0].description
                        if interaction.message and interaction.message.embeds else None)
        if text is None:
            raise InvalidInput(lazy("This answer no longer shows its text whole, so its "
                                    "buttons cannot run it again."))
        knobs = decode_knobs(self.knobs)
        if follow_up.asks is None:
            options = with_defaults(turn.host, follow_up.runs, follow_up.options_for(text, knobs))
            return await _answer(turn, COMMANDS[follow_up.runs], options)
        follow_up.options_for(text, knobs, "")  # a broken id is said now, not after the form

        def submitted(submit: discord.Interaction, value: str):
            return run_form_submit(submit, follow_up.runs,
                                   lambda: follow_up.options_for(text, knobs, value),
                                   f"button:{follow_up.action}")

        await interaction.response.send_modal(OneTextModal(
            str(follow_up.label), str(follow_up.asks), submitted,
            placeholder=str(follow_up.asks_placeholder),
            max_length=turn.host.config.limits.max_text_chars))
        return FORM_OPENED


class WhyButton(discord.ui.DynamicItem[discord.ui.Button],
                template=r"tlm:why:(?P<source>" + "|".join(WHY)
                         + r"):(?P<asked>[0-9]{1,20})"):
    """"Why?" under an answer: the matching `/explain` of the same input, read back from the
    answer (as a follow-up reads its text), gated, cooled down and logged as that command."""

    def __init__(self, source: str, asked: int) -> None:
        self.source, self.asked = source, asked
        super().__init__(discord.ui.Button(
            label=tr("Why?"), emoji="💡", row=0, style=discord.ButtonStyle.secondary,
            custom_id=f"tlm:why:{source}:{asked}"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str], /) -> WhyButton:
        return cls(match["source"], int(match["asked"]))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        runs = WHY[self.source].runs
        # Rules name the group (`/config deny explain`), as for the slash command itself.
        declared = declared_command(interaction.client, runs)  # type: ignore[arg-type]
        await enter(interaction, Action(
            runs, self.run, via="button:why",
            policy=policy_name(declared) if declared is not None else runs,
            precheck=lambda turn: check_age(turn.host, self.asked)))

    async def run(self, turn: Turn) -> Answer:
        why, message = WHY[self.source], turn.interaction.message
        shown = why.read(message.embeds[0]) if message and message.embeds else None
        if shown is None:
            raise InvalidInput(lazy("This answer no longer shows its text whole, so its "
                                    "buttons cannot run it again."))
        return await _answer(turn, COMMANDS[why.runs], with_defaults(turn.host, why.runs, shown))


#: One vote change per this many seconds per student: a vote is an opinion, not a clicker.
FEEDBACK_RATE = Cooldown("feedback", 1, 3.0)


class FeedbackButton(discord.ui.DynamicItem[discord.ui.Button],
                     template=r"tlm:fb:(?P<vote>up|down):(?P<asked>[0-9]{1,20})"):
    """👍/👎 on an answer, stored on its row (an update, not a row per vote); only the student
    who asked can vote (their answer, their opinion), and may change their mind, at most once
    per `FEEDBACK_RATE`."""

    def __init__(self, vote: str, asked: int) -> None:
        self.vote, self.asked = vote, asked
        super().__init__(discord.ui.Button(
            emoji="👍" if vote == "up" else "👎", row=1, style=discord.ButtonStyle.secondary,
            custom_id=f"tlm:fb:{vote}:{asked}"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str], /) -> FeedbackButton:
        return cls(match["vote"], int(match["asked"]))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        await enter(interaction, Action(
            "feedback", self.run, kind="self", rate=FEEDBACK_RATE,
            options={"vote": self.vote, "answer": self.asked},
            precheck=lambda turn: check_age(turn.host, self.asked)))

    async def run(self, turn: Turn) -> Answer:
        stored = await turn.host.querylog.set_feedback(
            self.asked, turn.interaction.user.id, 1 if self.vote == "up" else -1)
        if not stored:
            raise NotYourAnswer(lazy("Only the student who asked can rate this answer."))
        emoji = "👍" if self.vote == "up" else "👎"
        return Answer(Reply(content=tr("Thanks: your {emoji} is saved with that answer.",
                                       emoji=emoji),
                            summary=self.vote), ephemeral=True)


class NotYourAnswer(CoreError):
    code = "not_yours"
    status = "refused"


class BrokenButton(discord.ui.DynamicItem[discord.ui.Button], template=r"tlm:(?P<rest>.*)"):
    """Any `tlm:` custom_id no other template reads: answered and logged as broken, never
    left unanswered (Discord would show "interaction failed" and nothing would be logged).
    Registered last, so every well-formed id reaches its own class first."""

    def __init__(self, custom_id: str) -> None:
        super().__init__(discord.ui.Button(label="?", custom_id=custom_id[:100] or "tlm:"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str], /) -> BrokenButton:
        return cls(item.custom_id or "")

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        """discord.py dispatches a click to *every* template that matches: step aside when
        another one reads this id."""
        custom_id = self.item.custom_id or ""
        return not any(pattern.fullmatch(custom_id) for pattern in _other_templates())

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        async def broken(turn: Turn) -> Answer:
            raise ButtonBroken(BROKEN)

        await enter(interaction, Action("button", broken, kind="self", via="button:broken"))


def _other_templates() -> list[re.Pattern[str]]:
    """The compiled templates of every dynamic item but `BrokenButton` (discord.py keeps each
    on its class as `__discord_ui_compiled_template__`)."""
    found, todo = [], list(discord.ui.DynamicItem.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        pattern = getattr(cls, "__discord_ui_compiled_template__", None)
        if cls is not BrokenButton and pattern is not None:
            found.append(pattern)
    return found


# ------------------------------------------------------------------- picture controls


@dataclass(frozen=True)
class Pick:
    """A select beside a picture that re-draws it with one knob changed."""

    #: The knob's letter in the custom_id (`KNOB_TYPES`).
    knob: str
    #: A `core.i18n.lazy` text, like the choices' labels written in the answer's language.
    placeholder: str | Localised
    #: (result, knobs) -> the (label, value) choices, at most 25 (Discord's limit).
    choices: Callable[[Any, Knobs], list[tuple[str, str]]]


@dataclass(frozen=True)
class Explorable:
    """A picture command whose answer carries selects: its knobs and how a pick reruns it."""

    picks: tuple[Pick, ...]
    #: (the slash options, the result) -> every knob's current value.
    knobs: Callable[[Mapping[str, Any], Any], dict[str, int]]
    #: (the inputs read back from the message, the knobs) -> the command's options.
    options: Callable[[list[str], Knobs], dict[str, Any]]
    #: (result, knobs) -> words a knob adds that need no new picture (the token's line).
    note: Callable[[Any, Knobs], str] = lambda result, knobs: ""


def _label(text: str) -> str:
    """A select option's label: printable, 1-100 characters."""
    return (printable(text).strip() or "?")[:100]


def _attention_note(result: Any, knobs: Knobs) -> str:
    token = int(knobs.get("o", 0))
    if not 1 <= token <= len(result.top):
        return ""
    looks = " · ".join(f"{safe(result.tokens[j], 40)} {number(w, '0.00')}"
                       for j, w in result.top[token - 1])
    return tr("**{token}** (token {n}) looks most at: {looks}",
              token=safe(result.tokens[token - 1], 40), n=token, looks=looks)


def _contextsim_note(result: Any, knobs: Knobs) -> str:
    sims = result.layer_similarities
    layer = int(knobs.get("l", len(sims) - 1))
    if not 0 <= layer < len(sims):
        return ""
    where = tr("the embeddings") if layer == 0 else tr("layer {layer}", layer=layer)
    change = sims[layer] - result.static_similarity
    return tr("At {where}, the two vectors have similarity **{similarity}** ({change} from "
              "the static embedding's {static}).", where=where,
              similarity=number(sims[layer], "0.000"),
              change=number(change, "+0.000;-0.000"),
              static=number(result.static_similarity, "0.000"))


def _positions(result: Any, knobs: Knobs) -> list[tuple[str, str]]:
    tokens = list(enumerate(result.tokens, 1))[-25:]  # the last 25: where the answer is read
    return [(_label(f"{i} · {visible_token(t)}"), str(i)) for i, t in tokens]


#: Student command -> the controls beside its picture.
EXPLORE: dict[str, Explorable] = {
    "attention": Explorable(
        picks=(
            Pick("l", lazy("Layer"), lambda r, k: [
                (tr("Layer {n}", n=i), str(i)) for i in range(1, r.num_layers + 1)][:25]),
            Pick("h", lazy("Head"), lambda r, k: ([(tr("Average of all heads"), "0")] + [
                (tr("Head {n}", n=i), str(i)) for i in range(1, r.num_heads + 1)])[:25]),
            Pick("o", lazy("Token: what does it look at?"), lambda r, k: [
                (_label(f"{i} · {t}"), str(i)) for i, t in enumerate(r.tokens[:25], 1)]),
        ),
        knobs=lambda values, r: {"m": 0 if values["model"] == "distilbert" else 1,
                                 "l": r.layer, "h": r.head or 0, "o": 0},
        options=lambda inputs, k: {"text": inputs[0],
                                   "model": "distilbert" if k["m"] == 0 else "gpt2",
                                   "layer": k["l"], "head": k["h"] or None},
        note=_attention_note,
    ),
    "logitlens": Explorable(
        picks=(Pick("x", lazy("Position: whose next token?"), _positions),),
        knobs=lambda values, r: {"x": r.position},
        options=lambda inputs, k: {"prompt": inputs[0], "position": k["x"]},
    ),
    "contextsim": Explorable(
        picks=(Pick("l", lazy("Layer: how similar there?"), lambda r, k: [
            (tr("Embeddings") if i == 0 else tr("Layer {n}", n=i), str(i))
            for i in range(len(r.layer_similarities))][:25]),),
        knobs=lambda values, r: {"l": len(r.layer_similarities) - 1},
        options=lambda inputs, k: {"word": inputs[0], "sentence_a": inputs[1],
                                   "sentence_b": inputs[2]},
        note=_contextsim_note,
    ),
    "neighbours": Explorable(
        picks=(Pick("l", lazy("Layer"), lambda r, k: ([(tr("Embeddings (layer 0)"), "0")] + [
            (tr("Layer {n}", n=i), str(i)) for i in range(1, r.num_layers + 1)])[:25]),),
        knobs=lambda values, r: {"l": r.layer},
        options=lambda inputs, k: {"word": inputs[0], "sentence": inputs[1], "layer": k["l"]},
    ),
}


def explore_layout(asked: int, owner: int, command: StudentCommand,
                   values: Mapping[str, Any], result: Any, reply: Reply, knobs: Knobs) -> Reply:
    """A picture answer as a layout with its selects (each carrying the knobs, the answer's
    interaction `asked` and its asker `owner`) and 👍/👎 under it."""
    explorable = EXPLORE[command.name]
    encoded = encode_knobs(knobs)
    controls = []
    for pick in explorable.picks:
        current = str(knobs.get(pick.knob, ""))
        choices = pick.choices(result, knobs)
        if len(choices) < 2:  # nothing to choose between
            continue
        controls.append(PickSelect(command.name, pick.knob, asked, owner, encoded,
                                   choices=choices, current=current,
                                   placeholder=str(pick.placeholder)))
    inputs = [str(values[name]) for name in command.input_options]
    below = [FeedbackButton(vote, asked) for vote in ("up", "down")]
    return picture_layout(reply, inputs, controls, below, note=explorable.note(result, knobs))


_PICK_COMMANDS = "|".join(EXPLORE)


class PickSelect(discord.ui.DynamicItem[discord.ui.Select],
                 template=r"tlm:pick:(?P<command>" + _PICK_COMMANDS + r"):(?P<knob>[a-z])"
                          r":(?P<asked>[0-9]{1,20}):(?P<owner>[0-9]{1,20})"
                          r":(?P<knobs>[0-9a-z.,+-]{0,40})"):
    """A select beside a picture: picking re-draws the same message through the front door
    (gated, cooled down and logged as the command it runs, with its knobs). Its custom_id
    carries everything (the knobs, the answer's interaction for its age, the asker), so it
    works after a restart; only the asker may turn it, and it greys out once expired."""

    def __init__(self, command: str, knob: str, asked: int, owner: int, knobs: str, *,
                 choices: list[tuple[str, str]] = (), current: str = "",  # type: ignore[assignment]
                 placeholder: str = "") -> None:
        self.command, self.knob, self.asked, self.owner, self.knobs = (
            command, knob, asked, owner, knobs)
        super().__init__(discord.ui.Select(
            custom_id=f"tlm:pick:{command}:{knob}:{asked}:{owner}:{knobs}",
            placeholder=placeholder or None,
            options=[discord.SelectOption(label=label, value=value, default=value == current)
                     for label, value in choices] or [discord.SelectOption(label="?")]))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Select,
                             match: re.Match[str], /) -> PickSelect:
        return cls(match["command"], match["knob"], int(match["asked"]), int(match["owner"]),
                   match["knobs"])

    def precheck(self, turn: Turn) -> None:
        check_age(turn.host, self.asked)
        if turn.interaction.user.id != self.owner:
            raise NotYourAnswer(lazy("Only the student who asked can turn these controls. Run "
                                     "the command yourself to explore: `/{command}`.",
                                     command=self.command))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        status = await enter(interaction, Action(
            self.command, self.run, via=f"select:{self.knob}", precheck=self.precheck))
        if status is Status.EXPIRED and interaction.message is not None:
            try:  # grey the controls out, so nobody else tries them
                await interaction.message.edit(view=greyed(interaction.message))
            except discord.HTTPException:
                pass  # an ephemeral answer cannot be edited through the channel

    async def run(self, turn: Turn) -> Answer:
        command = COMMANDS[self.command]
        picked = getattr(self.item, "values", None) or []
        if len(picked) != 1 or not str(picked[0]).isdigit():
            raise ButtonBroken(BROKEN)
        knobs = {**decode_knobs(self.knobs), self.knob: int(picked[0])}
        inputs = input_texts(turn.interaction.message, len(command.input_options))
        if inputs is None:
            raise InvalidInput(lazy("This answer no longer shows its text whole, so its "
                                    "controls cannot run it again."))
        try:
            options = EXPLORE[self.command].options(inputs, knobs)
        except KeyError:  # a knob the command needs is not in the custom_id
            raise ButtonBroken(BROKEN) from None
        return await _answer(turn, command, with_defaults(turn.host, self.command, options),
                             redraw=knobs)
