"""Buttons under answers: follow-ups ("New sample", "Attention", ...) and 👍/👎 feedback.

They survive a restart and need no stored state: each is a `discord.ui.DynamicItem` whose
custom_id carries what the click needs, and discord.py routes a click on any message (sent
before or after a restart) to the class whose template matches:

- the interaction the answer replied to (`asked`): its snowflake dates the button (clicks
  after `[discord] button_max_age_hours` say it has expired) and names the query-log row that
  feedback is stored on (`queries.interaction_id`);
- the answer's knobs (temperature, top_k, seed...) in a few characters;
- never the student's text: a follow-up reads it back from the answer it is under
  (`cogs.render.input_of`), so buttons store nothing that `log_inputs` would have to govern.
  A button is offered only when that read-back gives exactly the text that was asked.

A click is an interaction like any other: `gate` checks the member's rules, the pause and the
cooldown of the command it runs, and `cogs.outcome` answers and logs it (option `via` says
which button). Follow-ups that need one more text ("Compare with…") open a modal first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import discord

from cogs.outcome import (
    answer,
    conclude,
    gate,
    outcome_of_interaction_error,
    release_cooldown,
    with_defaults,
)
from cogs.registry import COMMANDS
from cogs.render import Reply, input_of, printable
from core.errors import InvalidInput
from core.outcomes import Outcome, Status

if TYPE_CHECKING:
    from bot.client import TLMBot

Knobs = Mapping[str, float | int]

#: What each knob letter holds, and its type, in a custom_id ("t0.7,k50,s123").
_KNOB_TYPES: dict[str, type] = {"t": float, "k": int, "p": float, "s": int, "n": int, "r": int}


def encode_knobs(knobs: Knobs) -> str:
    return ",".join(f"{key}{value:g}" if isinstance(value, float) else f"{key}{value}"
                    for key, value in knobs.items() if value is not None)


def decode_knobs(text: str) -> dict[str, float | int]:
    knobs: dict[str, float | int] = {}
    for part in filter(None, (text or "").split(",")):
        kind = _KNOB_TYPES.get(part[:1])
        if kind is not None:
            knobs[part[:1]] = kind(float(part[1:])) if kind is int else kind(part[1:])
    return knobs


@dataclass(frozen=True)
class FollowUp:
    """A button under one command's answers that runs a student command on the same text."""

    action: str
    label: str
    emoji: str
    #: The student command the click runs: its rules, cooldown and log row apply.
    runs: str
    #: (the answer's text, its knobs[, the modal's text]) -> the options of `runs`.
    options: Callable[..., dict[str, Any]]
    #: A modal field label when the click first asks for one more text.
    asks: str | None = None
    asks_placeholder: str = ""


def _generate(text: str, k: Knobs, **changes: Any) -> dict[str, Any]:
    return {"prompt": text, "max_new_tokens": k["n"], "temperature": k["t"], "top_k": k["k"],
            "top_p": k["p"], "num_return_sequences": k["r"], "seed": k.get("s"), **changes}


#: Source command -> its follow-up buttons, in the order shown.
FOLLOW_UPS: dict[str, tuple[FollowUp, ...]] = {
    "generate": (
        FollowUp("new", "New sample", "🎲", "generate",
                 lambda text, k: _generate(text, k, seed=None)),
        FollowUp("same", "Same seed again", "🔁", "generate", _generate),
        FollowUp("greedy", "Greedy", "🎯", "generate",
                 lambda text, k: _generate(text, k, temperature=0.0, seed=None)),
        FollowUp("odds", "Next-token odds", "📊", "nexttoken",
                 lambda text, k: {"prompt": text, "temperature": k["t"], "top_k": k["k"],
                                  "top_p": k["p"]}),
    ),
    "mask": (
        FollowUp("attn", "Attention", "🔍", "attention", lambda text, k: {"text": text}),
        FollowUp("pair", "Compare with…", "⚖️", "maskpair",
                 lambda text, k, other: {"sentence_a": text, "sentence_b": other,
                                         "top_k": k["k"]},
                 asks="A second sentence with [MASK]",
                 asks_placeholder="The nurse said that [MASK] would be late."),
    ),
}

#: Source command -> the knobs its follow-ups repeat, from the slash options and the result.
KNOBS: dict[str, Callable[[Mapping[str, Any], Any], dict[str, Any]]] = {
    "generate": lambda values, result: {
        "t": float(result.temperature), "k": result.top_k, "p": float(result.top_p),
        "s": result.seed, "n": values["max_new_tokens"], "r": values["num_return_sequences"]},
    "mask": lambda values, result: {"k": values["top_k"]},
}


def _find(action: str) -> FollowUp | None:
    return next((f for fs in FOLLOW_UPS.values() for f in fs if f.action == action), None)


def answer_view(bot: TLMBot, interaction: discord.Interaction, name: str,
                values: Mapping[str, Any], result: Any, reply: Reply) -> discord.ui.View:
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
    for vote in ("up", "down"):
        view.add_item(FeedbackButton(vote, interaction.id))
    return view


def button_expired(bot: TLMBot, asked: int) -> bool:
    age = datetime.now(timezone.utc) - discord.utils.snowflake_time(asked)
    return age > timedelta(hours=bot.config.discord.button_max_age_hours)


EXPIRED = Outcome(Status.EXPIRED, "This button has expired. Run the command again to get "
                                  "fresh buttons.", "button_expired")


class FollowUpButton(discord.ui.DynamicItem[discord.ui.Button],
                     template=r"tlm:do:(?P<action>[a-z]+):(?P<asked>[0-9]{1,20})"
                              r":(?P<knobs>[0-9a-z.,+-]{0,60})"):
    def __init__(self, follow_up: FollowUp, asked: int, knobs: str) -> None:
        self.follow_up, self.asked, self.knobs = follow_up, asked, knobs
        super().__init__(discord.ui.Button(
            label=follow_up.label, emoji=follow_up.emoji, row=0,
            style=discord.ButtonStyle.secondary,
            custom_id=f"tlm:do:{follow_up.action}:{asked}:{knobs}"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str], /) -> FollowUpButton:
        follow_up = _find(match["action"])
        if follow_up is None:
            raise ValueError(f"unknown follow-up {match['action']!r}")
        return cls(follow_up, int(match["asked"]), match["knobs"])

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        bot: TLMBot = interaction.client  # type: ignore[assignment]
        follow_up, via = self.follow_up, f"button:{self.follow_up.action}"
        try:
            if button_expired(bot, self.asked):
                await conclude(bot, interaction, EXPIRED, command=follow_up.runs,
                               options={"via": via})
                return
            await gate(bot, interaction, follow_up.runs)
            text = input_of(interaction.message.embeds[0].description
                            if interaction.message and interaction.message.embeds else None)
            if text is None:
                raise InvalidInput("This answer no longer shows its text whole, so its "
                                   "buttons cannot run it again.")
            knobs = decode_knobs(self.knobs)
        except Exception as exc:
            await conclude(bot, interaction, outcome_of_interaction_error(exc),
                           command=follow_up.runs, options={"via": via}, error=exc)
            return
        if follow_up.asks is None:
            options = with_defaults(bot, follow_up.runs, follow_up.options(text, knobs))
            await answer(bot, interaction, follow_up.runs, options, via=via)
            return
        release_cooldown(bot, interaction)  # the modal's submit is counted, not the click

        async def submitted(submit: discord.Interaction, value: str) -> None:
            await run_submitted(bot, submit, follow_up.runs,
                                lambda: follow_up.options(text, knobs, value), via)

        await interaction.response.send_modal(OneTextModal(
            follow_up.label, follow_up.asks, submitted, placeholder=follow_up.asks_placeholder,
            max_length=bot.config.limits.max_text_chars))


class FeedbackButton(discord.ui.DynamicItem[discord.ui.Button],
                     template=r"tlm:fb:(?P<vote>up|down):(?P<asked>[0-9]{1,20})"):
    """👍/👎 on an answer, stored on its row; only the student who asked can vote (their
    answer, their opinion), and may change their mind."""

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
        bot: TLMBot = interaction.client  # type: ignore[assignment]
        options = {"vote": self.vote, "answer": self.asked}
        emoji = "👍" if self.vote == "up" else "👎"
        try:
            if button_expired(bot, self.asked):
                outcome, reply = EXPIRED, None
            else:
                await gate(bot, interaction, "feedback", kind="self")
                stored = await bot.querylog.set_feedback(
                    self.asked, interaction.user.id, 1 if self.vote == "up" else -1)
                outcome = Outcome(Status.OK) if stored else Outcome(
                    Status.REFUSED, "Only the student who asked can rate this answer.",
                    "not_yours")
                reply = Reply(content=f"Thanks: your {emoji} is saved with that answer.",
                              summary=self.vote)
        except Exception as exc:
            await conclude(bot, interaction, outcome_of_interaction_error(exc),
                           command="feedback", options=options, error=exc)
            return
        await conclude(bot, interaction, outcome, reply=reply, ephemeral=True,
                       command="feedback", options=options)


class OneTextModal(discord.ui.Modal):
    """A form with one text field; `submitted(interaction, text)` does the rest.

    Lives in memory (discord.py has no restart-safe modals): a form open while the bot
    restarts gets Discord's "interaction failed" on submit, and the student sends it again.
    """

    def __init__(self, title: str, label: str,
                 submitted: Callable[[discord.Interaction, str], Any], *,
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


async def run_submitted(bot: TLMBot, interaction: discord.Interaction, runs: str,
                        options: Callable[[], dict[str, Any]], via: str) -> None:
    """A modal's submit: gated like the command it runs (a modal is not a command to
    discord.py), then answered like it; `options()` may refuse the text (a user error)."""
    try:
        await gate(bot, interaction, runs)
        values = with_defaults(bot, runs, options())
    except Exception as exc:
        await conclude(bot, interaction, outcome_of_interaction_error(exc),
                       command=runs, options={"via": via}, error=exc)
        return
    await answer(bot, interaction, runs, values, via=via)


async def setup(bot: TLMBot) -> None:
    bot.add_dynamic_items(FollowUpButton, FeedbackButton)
