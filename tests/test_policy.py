"""Moderator settings (real SQLite) and the policy's precedence, pause, roles and cooldowns."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InvalidInput
from core.policy import Actor, Decision, Policy, decide
from core.storage.database import Database
from core.storage.guild_settings import Cooldown, GuildSettings, Rule, SettingsStore

G, CH, OTHER_CH = 10, 100, 101
STUDENTS, HELPERS, MUTED, TEACHERS = 201, 202, 203, 299


class FakeClock:
    """Time that moves only when the test says so, for exact cooldown arithmetic."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def db(tmp_path: Path):
    database = await Database.open(tmp_path / "bot.db")
    yield database
    await database.aclose()


@pytest.fixture
def store(db: Database) -> SettingsStore:
    return SettingsStore(db, default_retention_days=30)


def student(*roles: int, user: int = 1) -> Actor:
    return Actor(user_id=user, role_ids=frozenset(roles))


def settings(*rules: Rule, **kw: object) -> GuildSettings:
    return GuildSettings(guild_id=G, rules=rules, **kw)  # type: ignore[arg-type]


def chan(cmd: str, allow: bool, channel: int = CH) -> Rule:
    return Rule("channel", channel, cmd, allow)


def role(role_id: int, cmd: str, allow: bool) -> Rule:
    return Rule("role", role_id, cmd, allow)


def guild(cmd: str, allow: bool) -> Rule:
    return Rule("guild", G, cmd, allow)


# ------------------------------------------------------------------ settings store


async def test_settings_defaults_and_round_trip(tmp_path: Path, store: SettingsStore) -> None:
    empty = await store.get(G)
    assert empty == GuildSettings(guild_id=G, retention_days=30)

    await store.set_rule(G, "channel", CH, "/generate", False)  # leading slash is tolerated
    await store.set_rule(G, "role", STUDENTS, "*", True)
    await store.set_rule(G, "guild", G, "qa", False)
    await store.set_instructor_role(G, TEACHERS)
    await store.set_paused(G, True)
    await store.set_retention(G, 14)
    await store.set_cooldown(G, "generate", 3, 60)
    expected = GuildSettings(
        guild_id=G,
        rules=(chan("generate", False), guild("qa", False), role(STUDENTS, "*", True)),
        instructor_role_id=TEACHERS,
        paused=True,
        retention_days=14,
        cooldowns=(Cooldown("generate", 3, 60.0),),
    )
    assert await store.get(G) == expected
    assert await store.get(G + 1) == GuildSettings(guild_id=G + 1, retention_days=30)

    # A fresh store on a reopened file reads the same thing back.
    async with await Database.open(tmp_path / "bot.db") as db2:
        assert await SettingsStore(db2, default_retention_days=30).get(G) == expected


async def test_writes_take_effect_immediately_despite_cache(store: SettingsStore) -> None:
    assert (await store.get(G)).paused is False  # now cached
    await store.set_paused(G, True)
    assert (await store.get(G)).paused is True
    await store.set_rule(G, "channel", CH, "mask", False)
    assert (await store.get(G)).rule("channel", CH, "mask") == chan("mask", False)
    await store.set_rule(G, "channel", CH, "mask", True)  # replaces, does not duplicate
    assert (await store.get(G)).rules == (chan("mask", True),)
    await store.set_rule(G, "channel", CH, "mask", None)  # removes
    assert (await store.get(G)).rules == ()
    await store.set_cooldown(G, "mask", 2, 10)
    await store.set_cooldown(G, "mask", None)
    assert (await store.get(G)).cooldowns == ()
    await store.set_retention(G, None)
    assert (await store.get(G)).retention_days == 30


async def test_settings_validation(store: SettingsStore) -> None:
    with pytest.raises(InvalidInput):
        await store.set_retention(G, 0)
    with pytest.raises(InvalidInput):
        await store.set_cooldown(G, "mask", 0, 10)
    with pytest.raises(InvalidInput):
        await store.set_cooldown(G, "mask", 1, 0)
    with pytest.raises(ValueError):
        await store.set_rule(G, "user", 5, "mask", True)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await store.set_rule(G, "guild", G + 1, "mask", True)
    assert await store.get(G) == GuildSettings(guild_id=G, retention_days=30)


# ------------------------------------------------------------------ precedence table

PRECEDENCE = [
    # (rules, actor roles, channel, expected allowed, why)
    ((), (), CH, True, "no rules: default allow"),
    ((guild("mask", False),), (), CH, False, "guild deny"),
    ((guild("*", False),), (), CH, False, "guild deny all"),
    ((guild("*", False), guild("mask", True)), (), CH, True, "exact beats * (guild)"),
    ((guild("mask", False), chan("mask", True)), (), CH, True, "channel beats guild"),
    ((guild("mask", False), chan("mask", True)), (), OTHER_CH, False, "other channel: guild"),
    ((guild("mask", True), chan("*", False)), (), CH, False, "channel * beats guild exact"),
    ((chan("*", False), chan("mask", True)), (), CH, True, "exact beats * (channel)"),
    ((chan("*", True), chan("mask", False)), (), CH, False, "exact deny beats * allow"),
    ((role(STUDENTS, "mask", False),), (STUDENTS,), CH, False, "role deny"),
    ((role(STUDENTS, "mask", False),), (HELPERS,), CH, True, "role rule for another role"),
    ((role(STUDENTS, "mask", False), role(HELPERS, "mask", True)), (STUDENTS, HELPERS), CH,
     True, "an allowing role wins over a denying one"),
    ((role(STUDENTS, "*", False), role(HELPERS, "mask", True)), (STUDENTS, HELPERS), CH,
     True, "exact role rule beats * role rule"),
    ((role(STUDENTS, "*", True), role(MUTED, "mask", False)), (STUDENTS, MUTED), CH,
     False, "exact role deny beats * role allow"),
    ((guild("mask", False), role(STUDENTS, "mask", True)), (STUDENTS,), CH, True,
     "role beats guild"),
    ((guild("mask", True), role(MUTED, "*", False)), (MUTED,), CH, False,
     "role * beats guild exact"),
    ((chan("mask", False), role(STUDENTS, "mask", True)), (STUDENTS,), CH, False,
     "channel beats role"),
    ((chan("mask", True), role(MUTED, "*", False)), (MUTED,), CH, True,
     "channel allow beats role deny"),
    ((guild("qa", False), chan("generate", False)), (), CH, True, "rules for other commands"),
]


@pytest.mark.parametrize(("rules", "roles", "channel", "allowed", "why"), PRECEDENCE,
                         ids=[row[-1] for row in PRECEDENCE])
def test_precedence_table(rules, roles, channel, allowed, why) -> None:
    decision = decide(settings(*rules), student(*roles), "mask", channel, kind="student")
    assert decision.allowed is allowed, (why, decision.steps)
    assert decision.steps[-1].startswith("allowed" if allowed else "refused")


def test_refusal_reasons_name_the_place() -> None:
    d = decide(settings(chan("generate", False)), student(), "generate", CH, kind="student")
    assert d.reason == f"/generate is turned off in <#{CH}> by the moderators."
    d = decide(settings(role(MUTED, "*", False)), student(MUTED), "qa", CH, kind="student")
    assert d.reason == "/qa is turned off for your roles by the moderators."
    d = decide(settings(guild("qa", False)), student(), "qa", CH, kind="student")
    assert d.reason == "/qa is turned off in this server by the moderators."


def test_rules_apply_to_staff_too() -> None:
    mod = Actor(user_id=9, is_moderator=True)
    assert not decide(settings(chan("*", False)), mod, "mask", CH, kind="student").allowed


def test_staff_commands() -> None:
    s = settings(instructor_role_id=TEACHERS)
    mod = Actor(user_id=9, is_moderator=True)
    teacher = student(TEACHERS)
    for actor, kind, allowed in [
        (mod, "moderator", True),
        (teacher, "moderator", False),
        (student(), "moderator", False),
        (mod, "instructor", True),
        (teacher, "instructor", True),
        (student(STUDENTS), "instructor", False),
    ]:
        decision = decide(s, actor, "logs", CH, kind=kind)  # type: ignore[arg-type]
        assert decision.allowed is allowed, (actor, kind)
    refused = decide(s, student(), "config", CH, kind="moderator")
    assert refused.reason == "Only moderators (Manage Server) can use /config."
    assert f"<@&{TEACHERS}>" in decide(s, student(), "logs", CH, kind="instructor").reason
    # No instructor role configured: only moderators.
    assert not decide(settings(), teacher, "logs", CH, kind="instructor").allowed
    assert decide(settings(), mod, "logs", CH, kind="instructor").allowed
    # Student-command rules do not touch staff commands.
    assert decide(settings(chan("*", False)), mod, "config", CH, kind="moderator").allowed


def test_activities_are_for_instructors_unless_a_rule_opens_them() -> None:
    """/quiz: instructors and moderators always; others only where a moderator allowed it."""
    s = settings(instructor_role_id=TEACHERS)
    mod, teacher = Actor(user_id=9, is_moderator=True), student(TEACHERS)
    assert decide(s, mod, "quiz", CH, kind="activity").allowed
    assert decide(s, teacher, "quiz", CH, kind="activity").allowed
    refused = decide(s, student(STUDENTS), "quiz", CH, kind="activity")
    assert not refused.allowed and "/config allow command:quiz" in refused.reason
    # A rule for the students' role (or their channel, or the server) opens it to them.
    opened = settings(role(STUDENTS, "quiz", True), instructor_role_id=TEACHERS)
    assert decide(opened, student(STUDENTS), "quiz", CH, kind="activity").allowed
    assert not decide(opened, student(HELPERS), "quiz", CH, kind="activity").allowed
    assert decide(settings(chan("quiz", True)), student(), "quiz", CH, kind="activity").allowed
    assert not decide(settings(chan("quiz", True)), student(), "quiz", OTHER_CH,
                      kind="activity").allowed
    # The pause stops the students it was opened to, not the instructors.
    paused = settings(guild("quiz", True), paused=True, instructor_role_id=TEACHERS)
    assert decide(paused, student(), "quiz", CH, kind="activity").status == "paused"
    assert decide(paused, teacher, "quiz", CH, kind="activity").allowed
    # A deny keeps its meaning for the students' part (a guess is a student use of /quiz).
    denied = settings(role(STUDENTS, "quiz", False))
    assert not decide(denied, student(STUDENTS), "quiz", CH, kind="student").allowed
    assert decide(settings(), student(STUDENTS), "quiz", CH, kind="student").allowed


def test_pause() -> None:
    s = settings(paused=True, instructor_role_id=TEACHERS)
    refused = decide(s, student(STUDENTS), "mask", CH, kind="student")
    assert not refused.allowed and "paused" in refused.reason
    assert decide(s, student(TEACHERS), "mask", CH, kind="student").allowed
    assert decide(s, Actor(9, is_moderator=True), "mask", CH, kind="student").allowed
    # Pause does not lift the rules for staff.
    s2 = settings(chan("mask", False), paused=True, instructor_role_id=TEACHERS)
    assert not decide(s2, student(TEACHERS), "mask", CH, kind="student").allowed


def test_direct_messages_use_defaults_only() -> None:
    dm = GuildSettings(guild_id=None)
    assert decide(dm, student(), "mask", 555, kind="student").allowed
    assert not decide(dm, Actor(1, is_moderator=True), "config", 555, kind="moderator").allowed
    assert not decide(dm, student(), "logs", 555, kind="instructor").allowed


# ------------------------------------------------------------------ Policy: store + cooldowns


async def test_policy_reads_store_and_changes_apply_immediately(store: SettingsStore) -> None:
    policy = Policy(store)
    assert (await policy.check(G, CH, student(), "mask", "student")).allowed
    await store.set_rule(G, "channel", CH, "mask", False)
    assert not (await policy.check(G, CH, student(), "mask", "student")).allowed
    assert (await policy.check(None, CH, student(), "mask", "student")).allowed  # DM


async def test_cooldown_sliding_window(store: SettingsStore) -> None:
    clock = FakeClock()
    policy = Policy(store, clock=clock)
    await store.set_cooldown(G, "generate", 2, 10)

    assert (await policy.check(G, CH, student(), "generate", "student")).allowed
    clock.now += 4
    assert (await policy.check(G, CH, student(), "generate", "student")).allowed
    clock.now += 1
    refused = await policy.check(G, CH, student(), "generate", "student")
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(5.0)  # the first use leaves the window at +10
    assert "Try again in 5 s" in refused.reason
    # A refusal does not consume; other users, other commands and other guilds are separate.
    assert (await policy.check(G, CH, student(user=2), "generate", "student")).allowed
    assert (await policy.check(G, CH, student(), "mask", "student")).allowed
    assert (await policy.check(G + 1, CH, student(), "generate", "student")).allowed

    clock.now += 5  # first use slides out
    assert (await policy.check(G, CH, student(), "generate", "student")).allowed
    again = await policy.check(G, CH, student(), "generate", "student")
    assert not again.allowed and again.retry_after == pytest.approx(4.0)


async def test_cooldown_exemptions_and_wildcard(store: SettingsStore) -> None:
    clock = FakeClock()
    policy = Policy(store, clock=clock)
    await store.set_cooldown(G, "*", 1, 30)
    await store.set_instructor_role(G, TEACHERS)
    for _ in range(3):
        assert (await policy.check(G, CH, student(TEACHERS), "qa", "student")).allowed
        assert (await policy.check(G, CH, Actor(9, is_moderator=True), "qa", "student")).allowed
    # "*" is counted per command.
    assert (await policy.check(G, CH, student(), "qa", "student")).allowed
    assert (await policy.check(G, CH, student(), "mask", "student")).allowed
    assert not (await policy.check(G, CH, student(), "qa", "student")).allowed
    # A command's own cooldown overrides "*".
    await store.set_cooldown(G, "mask", 3, 30)
    assert (await policy.check(G, CH, student(), "mask", "student")).allowed


async def test_explain_does_not_consume_and_lists_steps(store: SettingsStore) -> None:
    clock = FakeClock()
    policy = Policy(store, clock=clock)
    await store.set_cooldown(G, "generate", 1, 60)
    await store.set_rule(G, "guild", G, "*", False)
    await store.set_rule(G, "role", STUDENTS, "generate", True)

    for _ in range(3):
        explained = await policy.explain(G, CH, student(STUDENTS), "generate", "student")
        assert explained.allowed
    assert explained.steps == (
        "/generate is a student command",
        f"no channel rule in <#{CH}>",
        f"role rules for /generate: <@&{STUDENTS}> allows (an allowing role wins)",
        "cooldown for /generate: 1 per 60 s, 0 used",
        "allowed: /generate is allowed for one of your roles",
    )
    assert (await policy.check(G, CH, student(STUDENTS), "generate", "student")).allowed
    after = await policy.explain(G, CH, student(STUDENTS), "generate", "student")
    assert not after.allowed and after.retry_after == pytest.approx(60.0)
    assert after.steps[-2] == "cooldown for /generate: 1 per 60 s, all used"

    denied = await policy.explain(G, CH, student(), "mask", "student")
    assert not denied.allowed
    assert denied.steps[-2:] == (
        "server-wide rule for all commands (*): denies",
        "refused: /mask is turned off in this server by the moderators.",
    )


# ----------------------------------------------- what a student and /config why see


#: Each branch of `decide`, with the whole decision: the reason is what the member reads, the
#: steps are what /config why shows a moderator.
DECISIONS = [
    ("a staff command in a DM", GuildSettings(guild_id=None), Actor(1, is_moderator=True),
     "logs", "instructor", None,
     (False, "/logs only works in a server.",
      ("/logs is a instructor command and this is a direct message",
       "refused: /logs only works in a server."), "refused")),
    ("a moderator command by a moderator", settings(), Actor(1, is_moderator=True),
     "config", "moderator", None,
     (True, "you have the Manage Server permission",
      ("/config is a moderator command", "allowed: you have the Manage Server permission"),
      "refused")),
    ("an instructor command by a moderator", settings(), Actor(1, is_moderator=True),
     "logs", "instructor", None,
     (True, "moderators count as instructors",
      ("/logs is an instructor command", "allowed: moderators count as instructors"),
      "refused")),
    ("an instructor command with no instructor role set", settings(), student(), "logs",
     "instructor", None,
     (False, "Only moderators can use /logs until a moderator sets an instructor role.",
      ("/logs is an instructor command", "refused: Only moderators can use /logs until a "
       "moderator sets an instructor role."), "refused")),
    ("an activity by an instructor", settings(instructor_role_id=TEACHERS), student(TEACHERS),
     "quiz", "activity", None,
     (True, "instructors and moderators run activities",
      ("/quiz is an activity command (instructors, or whom a moderator allows)",
       "allowed: instructors and moderators run activities"), "refused")),
    ("a student while paused", settings(paused=True), student(), "mask", "student", None,
     (False, "The moderators have paused the bot for now; try again later.",
      ("/mask is a student command", "the bot is paused in this server",
       "refused: The moderators have paused the bot for now; try again later."), "paused")),
    ("an instructor while paused", settings(paused=True, instructor_role_id=TEACHERS),
     student(TEACHERS), "mask", "student", None,
     (True, "no rule restricts it (default: allowed)",
      ("/mask is a student command",
       "the bot is paused, but instructors and moderators are exempt",
       f"no channel rule in <#{CH}>", "no role rule for your roles", "no server-wide rule",
       "allowed: no rule restricts it (default: allowed)"), "refused")),
    ("a thread under a channel with a rule", settings(chan("mask", False, OTHER_CH)),
     student(), "mask", "student", OTHER_CH,
     (False, f"/mask is turned off in <#{OTHER_CH}> by the moderators.",
      ("/mask is a student command", f"no channel rule in <#{CH}>",
       f"channel rule in <#{OTHER_CH}> for /mask: denies",
       f"refused: /mask is turned off in <#{OTHER_CH}> by the moderators."), "refused")),
    ("two roles deny", settings(role(STUDENTS, "*", False), role(MUTED, "*", False)),
     student(STUDENTS, MUTED), "mask", "student", None,
     (False, "/mask is turned off for your roles by the moderators.",
      ("/mask is a student command", f"no channel rule in <#{CH}>",
       f"role rules for all commands (*): <@&{STUDENTS}> denies, <@&{MUTED}> denies "
       "(an allowing role wins)",
       "refused: /mask is turned off for your roles by the moderators."), "refused")),
    ("an instructor command by the instructor role", settings(instructor_role_id=TEACHERS),
     student(TEACHERS), "logs", "instructor", None,
     (True, f"you have the instructor role <@&{TEACHERS}>",
      ("/logs is an instructor command", f"allowed: you have the instructor role <@&{TEACHERS}>"),
      "refused")),
    ("an instructor command by a student", settings(instructor_role_id=TEACHERS),
     student(STUDENTS), "logs", "instructor", None,
     (False, f"Only instructors (<@&{TEACHERS}>) can use /logs.",
      ("/logs is an instructor command",
       f"refused: Only instructors (<@&{TEACHERS}>) can use /logs."), "refused")),
    ("a channel rule allows", settings(chan("mask", True), guild("*", False)), student(),
     "mask", "student", None,
     (True, f"/mask is allowed in <#{CH}>",
      ("/mask is a student command", f"channel rule in <#{CH}> for /mask: allows",
       f"allowed: /mask is allowed in <#{CH}>"), "refused")),
    ("a server-wide rule allows", settings(guild("mask", True)), student(), "mask", "student",
     None,
     (True, "/mask is allowed in this server",
      ("/mask is a student command", f"no channel rule in <#{CH}>",
       "no role rule for your roles", "server-wide rule for /mask: allows",
       "allowed: /mask is allowed in this server"), "refused")),
    ("an activity by a student, no rule", settings(), student(STUDENTS), "quiz", "activity",
     None,
     (False, "Only instructors can start /quiz, unless a moderator allows it "
      "(`/config allow command:quiz`).",
      ("/quiz is an activity command (instructors, or whom a moderator allows)",
       f"no channel rule in <#{CH}>", "no role rule for your roles", "no server-wide rule",
       "refused: Only instructors can start /quiz, unless a moderator allows it "
       "(`/config allow command:quiz`)."), "refused")),
]


@pytest.mark.parametrize("case", DECISIONS, ids=[c[0] for c in DECISIONS])
def test_each_decision_reads_as_shown(case) -> None:
    _, where, actor, command, kind, parent, (allowed, reason, steps, status) = case
    decision = decide(where, actor, command, CH, kind=kind, parent_channel_id=parent)
    assert (decision.allowed, decision.reason, decision.steps, decision.status) == (
        allowed, reason, steps, status)


def test_an_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown command kind 'teacher'"):
        decide(settings(), student(), "mask", CH, kind="teacher")  # type: ignore[arg-type]


# ------------------------------------------------------------------ Policy: refunds, DMs, threads


async def test_a_refund_gives_back_the_last_use_only(store: SettingsStore) -> None:
    clock = FakeClock()
    policy = Policy(store, clock=clock)
    await store.set_cooldown(G, "mask", 2, 60)
    policy.refund(G, 1, "mask")  # nothing counted yet: nothing to give back, no error
    for _ in range(2):
        assert (await policy.check(G, CH, student(), "mask", "student")).allowed
    assert not (await policy.check(G, CH, student(), "mask", "student")).allowed
    policy.refund(G, 1, "mask")
    policy.refund(G, 2, "mask")  # another student's refund does not touch this one's window
    assert (await policy.check(G, CH, student(), "mask", "student")).allowed
    refused = await policy.check(G, CH, student(), "mask", "student")
    assert refused.allowed is False and refused.status == "cooldown"


async def test_direct_messages_get_the_default_cooldown(store: SettingsStore) -> None:
    clock = FakeClock()
    policy = Policy(store, clock=clock, default_cooldown=Cooldown("*", 1, 60.0))
    assert (await policy.check(None, CH, student(), "mask", "student")).allowed
    refused = await policy.check(None, CH, student(), "mask", "student")
    assert (refused.allowed, refused.status) == (False, "cooldown")
    # A guild without a cooldown of its own gets the default as well.
    assert (await policy.check(G, CH, student(), "mask", "student")).allowed
    assert not (await policy.check(G, CH, student(), "mask", "student")).allowed


async def test_an_allowed_activity_has_a_cooldown(store: SettingsStore) -> None:
    policy = Policy(store, clock=FakeClock())
    await store.set_rule(G, "guild", G, "quiz", True)
    await store.set_cooldown(G, "quiz", 1, 60)
    assert (await policy.check(G, CH, student(), "quiz", "activity")).allowed
    assert not (await policy.check(G, CH, student(), "quiz", "activity")).allowed


async def test_a_thread_follows_its_parent_channel_through_the_policy(store: SettingsStore
                                                                      ) -> None:
    policy = Policy(store)
    await store.set_rule(G, "channel", OTHER_CH, "mask", False)
    for ask in (policy.check, policy.explain):
        refused = await ask(G, CH, student(), "mask", "student", parent_channel_id=OTHER_CH)
        assert not refused.allowed and f"<#{OTHER_CH}>" in refused.reason


async def test_cooldown_steps_and_a_wait_under_a_second(store: SettingsStore) -> None:
    clock = FakeClock()
    policy = Policy(store, clock=clock)
    await store.set_cooldown(G, "mask", 1, 10)
    await store.set_instructor_role(G, TEACHERS)
    teacher = await policy.check(G, CH, student(TEACHERS), "mask", "student")
    assert teacher.steps[-2:] == ("instructors and moderators have no cooldowns",
                                  "allowed: no rule restricts it (default: allowed)")
    uncapped = await policy.check(G, CH, student(), "qa", "student")
    assert uncapped.steps[-2:] == ("no cooldown for /qa",
                                   "allowed: no rule restricts it (default: allowed)")
    first = await policy.check(G, CH, student(), "mask", "student")
    assert first.steps[-2:] == ("cooldown for /mask: 1 per 10 s, 0 used",
                                "allowed: no rule restricts it (default: allowed)")
    clock.now += 9.5
    refused = await policy.check(G, CH, student(), "mask", "student")
    reason = "You're using /mask too fast (1 per 10 s). Try again in 1 s."
    assert (refused.allowed, refused.reason, refused.status) == (False, reason, "cooldown")
    assert refused.retry_after == pytest.approx(0.5)
    assert refused.steps == (
        "/mask is a student command", f"no channel rule in <#{CH}>",
        "no role rule for your roles", "no server-wide rule",
        "cooldown for /mask: 1 per 10 s, all used", "refused: " + reason)


async def test_emptied_cooldown_windows_are_forgotten(store: SettingsStore,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The windows live in memory: a sweep every few checks drops the ones that emptied, so
    they do not grow with every student ever seen."""
    monkeypatch.setattr(Policy, "_SWEEP_EVERY", 4)
    clock = FakeClock()
    policy = Policy(store, clock=clock)
    await store.set_cooldown(G, "mask", 1, 10)
    assert (await policy.check(G, CH, student(user=1), "mask", "student")).allowed
    clock.now += 10  # user 1's window has just emptied (a use counts for exactly 10 s)
    for user in (2, 3):  # checks 2-3: no sweep yet
        assert (await policy.check(G, CH, student(user=user), "mask", "student")).allowed
        assert (G, 1, "mask") in policy._uses
    clock.now += 10  # every window has emptied
    assert (await policy.check(G, CH, student(user=4), "mask", "student")).allowed  # sweeps
    assert set(policy._uses) == set(policy._expires) == {(G, 4, "mask")}
    # Not swept: a window still in use.
    clock.now += 9.9
    for user in (5, 6, 7, 8):  # the 8th check sweeps again
        assert (await policy.check(G, CH, student(user=user), "mask", "student")).allowed
    assert len(policy._uses) == len(policy._expires) == 5
    assert not (await policy.check(G, CH, student(user=4), "mask", "student")).allowed


async def test_emptied_throttle_windows_are_forgotten_and_live_ones_kept(
        store: SettingsStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The votes' windows are swept like the cooldowns': kept while they still count (a vote
    a moment ago still refuses the next), forgotten once they emptied."""
    monkeypatch.setattr(Policy, "_SWEEP_EVERY", 4)
    clock = FakeClock()
    policy = Policy(store, clock=clock)
    rate = Cooldown("feedback", 1, 3.0)
    for user in (1, 2, 3):  # checks 1-3
        assert policy.throttle(G, user, "feedback", rate).allowed
    clock.now += 2.9
    assert policy.throttle(G, 4, "feedback", rate).allowed  # the 4th check sweeps: all live
    assert set(policy._uses) == set(policy._expires) == {(G, u, "feedback") for u in (1, 2, 3, 4)}
    assert not policy.throttle(G, 1, "feedback", rate).allowed  # check 5
    clock.now += 3.0  # every window has emptied
    for user in (5, 6, 7):  # checks 6-8: the 8th sweeps
        assert policy.throttle(G, user, "feedback", rate).allowed
    assert set(policy._uses) == set(policy._expires) == {(G, u, "feedback") for u in (5, 6, 7)}


async def test_a_cooldown_s_seconds_read_with_two_decimals_at_most(store: SettingsStore) -> None:
    """The refusal a student reads rounds the cooldown's seconds to two decimals."""
    clock = FakeClock()
    policy = Policy(store, clock=clock)
    await store.set_cooldown(G, "mask", 1, 2.125)
    assert (await policy.check(G, CH, student(), "mask", "student")).allowed
    refused = await policy.check(G, CH, student(), "mask", "student")
    assert refused.reason == "You're using /mask too fast (1 per 2.12 s). Try again in 3 s."


async def test_throttle_counts_a_fixed_rate_in_a_sliding_window(store: SettingsStore) -> None:
    """Feedback votes: a rate no moderator sets, the same for everyone (no exemptions)."""
    clock = FakeClock()
    policy = Policy(store, clock=clock)
    rate = Cooldown("feedback", 2, 10.0)
    teacher = Actor(9, is_moderator=True)
    assert policy.throttle(G, teacher.user_id, "feedback", rate) == Decision(
        True, "within 2 per 10 s")
    clock.now += 4
    assert policy.throttle(G, teacher.user_id, "feedback", rate).allowed
    clock.now += 5.5
    reason = "You're doing that too fast. Try again in 1 s."
    assert policy.throttle(G, teacher.user_id, "feedback", rate) == Decision(
        False, reason, ("refused: " + reason,), retry_after=pytest.approx(0.5),
        status="cooldown")
    assert policy.throttle(G, 2, "feedback", rate).allowed  # another member: own window
    assert policy.throttle(G + 1, teacher.user_id, "feedback", rate).allowed  # another guild
    clock.now += 0.5  # the first vote leaves the window exactly now
    assert policy.throttle(G, teacher.user_id, "feedback", rate).allowed
    later = policy.throttle(G, teacher.user_id, "feedback", rate)
    assert not later.allowed and later.retry_after == pytest.approx(4.0)
    assert "Try again in 4 s." in later.reason
