"""Who may run what, where: the moderators' rules turned into one decision per interaction.

Precedence, first match wins:

1. Moderator commands (``kind="moderator"``, e.g. /config) need the Manage Server permission.
2. Instructor commands (``kind="instructor"``, e.g. /logs) need the guild's instructor role or
   Manage Server (moderators count as instructors).
3. Activity commands (``kind="activity"``, e.g. /quiz, which an instructor runs for the whole
   class): instructors and moderators may always; anyone else only where a moderator's rule
   allows it (the student ladder below, whose default is "refused" instead of "allowed"; the
   pause and cooldowns apply to them). The class's part in an activity (a quiz guess) is a
   student use of the same command name, so "deny /quiz" also stops guessing.
4. Student commands:

   a. Pause: while a guild is paused, students are refused; instructors and moderators are not.
   b. Channel rule for this channel: a rule for the exact command beats a "*" rule. A thread
      follows its parent channel's rules unless it has rules of its own.
   c. Role rules for the member's roles (exact command first, then "*"): if any of the member's
      roles allows the command, it is allowed; otherwise, if any denies it, it is denied.
      (Allow wins so that a moderator can say "deny @everyone, allow @Students".)
   d. Guild-wide rule (exact command, then "*").
   e. Otherwise allowed.

   A more specific level always beats a less specific one, even when it is a "*" rule:
   "everything off in #announcements" holds even if /mask is allowed guild-wide.
   Rules apply to everyone, staff included (they describe the channel, not the person);
   a moderator who is refused can change the rule.
5. Cooldowns apply to allowed student (and activity) commands, for students only (instructors
   and moderators are exempt): at most ``uses`` runs per ``per_seconds`` sliding window, per
   user and command.

Direct messages (guild None) are refused for every command unless the operator sets
``[discord] allow_dms = true`` (checked by the bot, before this policy). Where allowed, DMs have
no moderator rules and no pause, but the default cooldown applies; staff commands are refused
there (there is no guild whose staff you could be).

`decide` is pure and synchronous so the table above can be tested row by row; `Policy` adds the
settings lookup and the cooldown state. Reasons are written for students; they mention channels
and roles with Discord's ``<#id>`` / ``<@&id>`` syntax, which Discord renders as names.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from core.i18n import Localised, join, lazy, number
from core.storage.guild_settings import ALL_COMMANDS, Cooldown, GuildSettings, Rule, SettingsStore

log = logging.getLogger(__name__)

Kind = Literal["student", "activity", "instructor", "moderator"]


@dataclass(frozen=True)
class Actor:
    """The member running a command, reduced to what the policy needs."""

    user_id: int
    role_ids: frozenset[int] = frozenset()
    is_moderator: bool = False  # has Manage Server in this guild

    def is_instructor(self, settings: GuildSettings) -> bool:
        if settings.guild_id is None:
            return False
        if self.is_moderator:
            return True
        role = settings.instructor_role_id
        return role is not None and role in self.role_ids


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str | Localised  # safe to show the student (translated when shown)
    steps: tuple[str | Localised, ...] = ()  # how the decision was reached, for /config why
    retry_after: float | None = None  # seconds, when refused by a cooldown
    #: The query log's status when refused: "refused" (a rule), "paused" or "cooldown".
    status: str = "refused"


def decide(
    settings: GuildSettings,
    actor: Actor,
    command: str,
    channel_id: int | None,
    *,
    kind: Kind,
    parent_channel_id: int | None = None,
) -> Decision:
    """Apply the precedence in the module docstring (everything except cooldowns)."""
    name = f"/{command}"
    steps: list[str | Localised] = []

    def done(allowed: bool, reason: str | Localised) -> Decision:
        steps.append(lazy("allowed: {reason}", reason=reason) if allowed
                     else lazy("refused: {reason}", reason=reason))
        return Decision(allowed, reason, tuple(steps))

    in_dm = settings.guild_id is None
    if kind != "student" and in_dm:
        steps.append(lazy(
            "{name} is a {kind} command and this is a direct message",
            name=name, kind=kind))
        return done(False, lazy("{command} only works in a server.", command=name))
    if kind == "moderator":
        steps.append(lazy("{name} is a moderator command", name=name))
        if actor.is_moderator:
            return done(True, lazy("you have the Manage Server permission"))
        return done(False, lazy("Only moderators (Manage Server) can use {command}.",
                                command=name))
    if kind == "instructor":
        steps.append(lazy("{name} is an instructor command", name=name))
        if actor.is_moderator:
            return done(True, lazy("moderators count as instructors"))
        role = settings.instructor_role_id
        if role is None:
            return done(False, lazy("Only moderators can use {command} until a moderator sets "
                                    "an instructor role.", command=name))
        if role in actor.role_ids:
            return done(True, lazy("you have the instructor role <@&{role}>", role=role))
        return done(False, lazy("Only instructors (<@&{role}>) can use {command}.", role=role,
                                command=name))
    activity = kind == "activity"
    if activity:
        steps.append(lazy(
            "{name} is an activity command (instructors, or whom a moderator allows)",
            name=name))
        if actor.is_instructor(settings):
            return done(True, lazy("instructors and moderators run activities"))
    elif kind != "student":
        raise ValueError(f"unknown command kind {kind!r}")
    else:
        steps.append(lazy("{name} is a student command", name=name))
    if settings.paused:
        if actor.is_instructor(settings):
            steps.append(lazy("the bot is paused, but instructors and moderators are exempt"))
        else:
            steps.append(lazy("the bot is paused in this server"))
            return replace(done(False, lazy("The moderators have paused the bot for now; "
                                            "try again later.")), status="paused")

    # A thread follows its parent channel's rules unless it has rules of its own.
    for where in (channel_id, parent_channel_id):
        if where is None:
            continue
        for cmd in (command, ALL_COMMANDS):
            rule = settings.rule("channel", where, cmd)
            if rule is not None:
                steps.append(lazy(
                    "channel rule in <#{where}> for {label}: {verb}",
                    where=where, label=_label(cmd), verb=_verb(rule)))
                if rule.allow:
                    return done(True, lazy("{command} is allowed in <#{channel}>",
                                           command=name, channel=where))
                return done(False, lazy("{command} is turned off in <#{channel}> by the "
                                        "moderators.", command=name, channel=where))
        steps.append(lazy("no channel rule in <#{where}>", where=where))

    for cmd in (command, ALL_COMMANDS):
        matching = [
            r for r in settings.rules
            if r.scope == "role" and r.command == cmd and r.scope_id in actor.role_ids
        ]  # fmt: skip
        if matching:
            listed = join(", ", (join(" ", (f"<@&{r.scope_id}>", _verb(r))) for r in matching))
            steps.append(lazy(
                "role rules for {label}: {listed} (an allowing role wins)",
                label=_label(cmd), listed=listed))
            if any(r.allow for r in matching):
                return done(True, lazy("{command} is allowed for one of your roles",
                                       command=name))
            return done(False, lazy("{command} is turned off for your roles by the "
                                    "moderators.", command=name))
    steps.append(lazy("no role rule for your roles"))

    if settings.guild_id is not None:
        for cmd in (command, ALL_COMMANDS):
            rule = settings.rule("guild", settings.guild_id, cmd)
            if rule is not None:
                steps.append(lazy(
                    "server-wide rule for {label}: {verb}",
                    label=_label(cmd), verb=_verb(rule)))
                if rule.allow:
                    return done(True, lazy("{command} is allowed in this server", command=name))
                return done(False, lazy("{command} is turned off in this server by the "
                                        "moderators.", command=name))
        steps.append(lazy("no server-wide rule"))
    if activity:
        return done(False, lazy("Only instructors can start {command}, unless a moderator "
                                "allows it (`/config allow command:{name}`).", command=name,
                                name=command))
    return done(True, lazy("no rule restricts it (default: allowed)"))


def _label(command: str) -> str | Localised:
    return lazy("all commands (*)") if command == ALL_COMMANDS else f"/{command}"


def _verb(rule: Rule) -> Localised:
    return lazy("allows") if rule.allow else lazy("denies")


class Policy:
    """`decide` plus the guild's settings and per-user cooldown windows (in memory: a restart
    forgets them, which only ever errs in the student's favour)."""

    _SWEEP_EVERY = 1000

    def __init__(
        self,
        store: SettingsStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        default_cooldown: Cooldown | None = None,
    ):
        self._store = store
        self._clock = clock
        # Applies where a guild set no cooldown of its own, so one student cannot fill the queue.
        self._default_cooldown = default_cooldown
        # (guild, user, command) -> times of recent uses, and when the window empties.
        self._uses: dict[tuple[int | None, int, str], deque[float]] = {}
        self._expires: dict[tuple[int | None, int, str], float] = {}
        self._checks = 0

    async def check(
        self, guild_id: int | None, channel_id: int | None, actor: Actor, command: str,
        kind: Kind, *, parent_channel_id: int | None = None,
    ) -> Decision:
        """Decide, and if allowed, count one use against the cooldown."""
        return await self._evaluate(guild_id, channel_id, actor, command, kind, consume=True,
                                    parent_channel_id=parent_channel_id)

    async def explain(
        self, guild_id: int | None, channel_id: int | None, actor: Actor, command: str,
        kind: Kind, *, parent_channel_id: int | None = None,
    ) -> Decision:
        """The same decision as `check`, without using up a cooldown slot (/config why)."""
        return await self._evaluate(guild_id, channel_id, actor, command, kind, consume=False,
                                    parent_channel_id=parent_channel_id)

    async def _evaluate(
        self, guild_id: int | None, channel_id: int | None, actor: Actor, command: str,
        kind: Kind, *, consume: bool, parent_channel_id: int | None = None,
    ) -> Decision:
        settings = await self._store.get(guild_id)
        decision = decide(settings, actor, command, channel_id, kind=kind,
                          parent_channel_id=parent_channel_id)
        if not decision.allowed or kind not in ("student", "activity"):
            return decision
        steps = list(decision.steps)
        if actor.is_instructor(settings):
            steps.insert(-1, lazy("instructors and moderators have no cooldowns"))
            return replace(decision, steps=tuple(steps))
        cooldown = settings.cooldown_for(command)
        if cooldown is None:  # direct messages (when allowed) get the default too
            cooldown = self._default_cooldown
        if cooldown is None or cooldown.uses == 0:
            steps.insert(-1, lazy("no cooldown for /{command}", command=command))
            return replace(decision, steps=tuple(steps))

        now = self._clock()
        self._sweep(now)
        key = (guild_id, actor.user_id, command)
        window = self._uses.get(key, deque())
        while window and window[0] <= now - cooldown.per_seconds:
            window.popleft()
        while len(window) > cooldown.uses:  # the limit may have been lowered
            window.popleft()
        rate = lazy("{uses} per {seconds} s", uses=cooldown.uses,
                    seconds=number(cooldown.per_seconds))
        if len(window) >= cooldown.uses:
            retry_after = max(0.0, window[0] + cooldown.per_seconds - now)
            wait = max(1, math.ceil(retry_after))
            steps[-1:] = [lazy("cooldown for /{command}: {rate}, all used", command=command,
                               rate=rate)]
            reason = lazy("You're using /{command} too fast ({uses} per {seconds} s). Try "
                          "again in {wait} s.", command=command, uses=cooldown.uses,
                          seconds=number(cooldown.per_seconds, "0.##"), wait=wait)
            steps.append(lazy("refused: {reason}", reason=reason))
            return Decision(False, reason, tuple(steps), retry_after=retry_after,
                            status="cooldown")
        steps.insert(-1, lazy("cooldown for /{command}: {rate}, {used} used", command=command,
                              rate=rate, used=len(window)))
        if consume:
            window.append(now)
            self._uses[key] = window
            self._expires[key] = now + cooldown.per_seconds
        return replace(decision, steps=tuple(steps))

    def throttle(self, guild_id: int | None, user_id: int, command: str,
                 cooldown: Cooldown) -> Decision:
        """A fixed rate for what no moderator rule governs (a member's own feedback votes),
        in the same windows as the cooldowns: allowed and counted, or refused with when to
        try again. Instructors are not exempt: a vote flood is no teaching tool."""
        now = self._clock()
        self._sweep(now)
        key = (guild_id, user_id, command)
        window = self._uses.get(key, deque())
        while window and window[0] <= now - cooldown.per_seconds:
            window.popleft()
        if len(window) >= cooldown.uses:
            retry_after = max(0.0, window[0] + cooldown.per_seconds - now)
            reason = lazy("You're doing that too fast. Try again in {wait} s.",
                          wait=max(1, math.ceil(retry_after)))
            return Decision(False, reason, (lazy("refused: {reason}", reason=reason),),
                            retry_after=retry_after,
                            status="cooldown")
        window.append(now)
        self._uses[key] = window
        self._expires[key] = now + cooldown.per_seconds
        return Decision(True, lazy("within {uses} per {seconds} s", uses=cooldown.uses,
                                   seconds=number(cooldown.per_seconds)))

    def refund(self, guild_id: int | None, user_id: int, command: str) -> None:
        """Give back the use `check` counted, for an attempt the core never admitted (busy,
        a bad input): a cooldown limits work done, not tries."""
        window = self._uses.get((guild_id, user_id, command))
        if window:
            window.pop()

    def _sweep(self, now: float) -> None:
        """Forget windows that have emptied, so the dicts do not grow with every user ever."""
        self._checks += 1
        if self._checks % self._SWEEP_EVERY:
            return
        for key in [k for k, end in self._expires.items() if end <= now]:
            self._expires.pop(key, None)
            self._uses.pop(key, None)
