"""Moderator settings per guild: command rules, instructor role, pause, retention, cooldowns.

They live in the same SQLite file as the query log. Reads are cached per guild because the
policy consults them on every interaction; every write drops that guild's cache entry, so a
moderator's change applies to the very next command. A generation counter stops a read that
raced with a write from putting stale settings back in the cache.

A write that fails because of the storage (disk full, read-only or damaged file) raises
`core.storage.database.StorageError`, whose message tells the moderator that nothing was saved and
why,
instead of the generic apology; the operator's version (path, what to do) goes to the log.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

import aiosqlite

from core.errors import InvalidInput
from core.i18n import lazy
from core.storage.database import Database, storage_error

log = logging.getLogger(__name__)

Scope = Literal["guild", "channel", "role"]
SCOPES: frozenset[str] = frozenset({"guild", "channel", "role"})
ALL_COMMANDS = "*"
MAX_RETENTION_DAYS = 3650


@dataclass(frozen=True)
class Rule:
    """Allow or deny `command` ("*" = every command) in a channel, for a role, or guild-wide.

    Guild-wide rules use the guild id as `scope_id`.
    """

    scope: Scope
    scope_id: int
    command: str
    allow: bool


@dataclass(frozen=True)
class Cooldown:
    """At most `uses` runs of `command` per user within any `per_seconds` window.

    A "*" cooldown applies to every command without its own cooldown, counted per command.
    """

    command: str
    uses: int
    per_seconds: float


@dataclass(frozen=True)
class GuildSettings:
    guild_id: int | None
    rules: tuple[Rule, ...] = ()
    instructor_role_id: int | None = None
    paused: bool = False
    retention_days: int = 90
    cooldowns: tuple[Cooldown, ...] = ()
    #: scope id (a channel's, or the guild's own for the whole server) -> "private"/"public".
    answer_visibility: tuple[tuple[int, str], ...] = ()
    #: The language moderators chose for the server's public messages (`/config language`);
    #: None: the server's own Discord language.
    language: str | None = None

    def visibility_in(self, channel_id: int | None, parent_id: int | None = None) -> str | None:
        """"private"/"public" when a moderator forced answers so here (the channel, else a
        thread's parent, else the server), None when the student chooses."""
        modes = dict(self.answer_visibility)
        for scope_id in (channel_id, parent_id, self.guild_id):
            if scope_id is not None and scope_id in modes:
                return modes[scope_id]
        return None

    def rule(self, scope: Scope, scope_id: int, command: str) -> Rule | None:
        """The rule stored for exactly this scope and command name (no "*" fallback)."""
        for rule in self.rules:
            if rule.scope == scope and rule.scope_id == scope_id and rule.command == command:
                return rule
        return None

    def cooldown_for(self, command: str) -> Cooldown | None:
        """The command's own cooldown, else the "*" one, else None."""
        fallback = None
        for cooldown in self.cooldowns:
            if cooldown.command == command:
                return cooldown
            if cooldown.command == ALL_COMMANDS:
                fallback = cooldown
        return fallback


class SettingsStore:
    def __init__(self, db: Database, *, default_retention_days: int = 90) -> None:
        self._db = db
        self._default_retention_days = default_retention_days
        self._cache: dict[int, GuildSettings] = {}
        self._generation: dict[int, int] = {}

    @property
    def default_retention_days(self) -> int:
        return self._default_retention_days

    async def get(self, guild_id: int | None) -> GuildSettings:
        """Settings for a guild; direct messages (None) get the defaults."""
        if guild_id is None:
            return GuildSettings(guild_id=None, retention_days=self._default_retention_days)
        cached = self._cache.get(guild_id)
        if cached is not None:
            return cached
        generation = self._generation.get(guild_id, 0)
        settings = await self._load(guild_id)
        if self._generation.get(guild_id, 0) == generation:
            self._cache[guild_id] = settings
        return settings

    async def _load(self, guild_id: int) -> GuildSettings:
        base = await self._db.fetchall(
            "SELECT instructor_role_id, paused, retention_days, language FROM guild_settings"
            " WHERE guild_id = ?",
            (guild_id,),
        )
        rules = await self._db.fetchall(
            "SELECT scope, scope_id, command, allow FROM rules WHERE guild_id = ?"
            " ORDER BY scope, scope_id, command",
            (guild_id,),
        )
        cooldowns = await self._db.fetchall(
            "SELECT command, uses, per_seconds FROM cooldowns WHERE guild_id = ? ORDER BY command",
            (guild_id,),
        )
        visibility = await self._db.fetchall(
            "SELECT scope_id, mode FROM answer_visibility WHERE guild_id = ? ORDER BY scope_id",
            (guild_id,),
        )
        row = base[0] if base else None
        return GuildSettings(
            answer_visibility=tuple((int(r["scope_id"]), r["mode"]) for r in visibility),
            guild_id=guild_id,
            rules=tuple(
                Rule(r["scope"], int(r["scope_id"]), r["command"], bool(r["allow"])) for r in rules
            ),
            instructor_role_id=row["instructor_role_id"] if row else None,
            paused=bool(row["paused"]) if row else False,
            language=row["language"] if row else None,
            retention_days=(
                int(row["retention_days"])
                if row and row["retention_days"] is not None
                else self._default_retention_days
            ),
            cooldowns=tuple(
                Cooldown(r["command"], int(r["uses"]), float(r["per_seconds"])) for r in cooldowns
            ),
        )

    @asynccontextmanager
    async def _write(self, guild_id: int) -> AsyncIterator[aiosqlite.Connection]:
        """One settings transaction; storage faults become `StorageError`; the cache entry is
        dropped whatever happened."""
        try:
            async with self._db.transaction() as conn:
                yield conn
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError)):
                raise
            raise storage_error(exc, self._db.path, "Saving a moderator setting") from exc
        finally:
            self._invalidate(guild_id)

    def _invalidate(self, guild_id: int) -> None:
        self._generation[guild_id] = self._generation.get(guild_id, 0) + 1
        self._cache.pop(guild_id, None)

    async def set_rule(
        self, guild_id: int, scope: Scope, scope_id: int, command: str, allow: bool | None
    ) -> None:
        """Add or replace a rule; `allow=None` removes it. For scope "guild", scope_id must be
        the guild id."""
        if scope not in SCOPES:
            raise ValueError(f"unknown rule scope {scope!r}")
        if scope == "guild" and scope_id != guild_id:
            raise ValueError("a guild-wide rule uses the guild id as scope_id")
        command = _command_name(command)
        async with self._write(guild_id) as conn:
            if allow is None:
                await conn.execute(
                    "DELETE FROM rules WHERE guild_id = ? AND scope = ? AND scope_id = ?"
                    " AND command = ?",
                    (guild_id, scope, scope_id, command),
                )
            else:
                await conn.execute(
                    "INSERT INTO rules (guild_id, scope, scope_id, command, allow)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (guild_id, scope, scope_id, command)"
                    " DO UPDATE SET allow = excluded.allow",
                    (guild_id, scope, scope_id, command, int(bool(allow))),
                )

    async def set_instructor_role(self, guild_id: int, role_id: int | None) -> None:
        await self._upsert(guild_id, "instructor_role_id", role_id)

    async def set_paused(self, guild_id: int, paused: bool) -> None:
        await self._upsert(guild_id, "paused", int(bool(paused)))

    async def set_language(self, guild_id: int, language: str | None) -> None:
        """The language of the server's public messages; None follows its Discord language."""
        await self._upsert(guild_id, "language", language)

    async def set_retention(self, guild_id: int, days: int | None) -> None:
        """Keep this guild's query-log rows for `days`; None goes back to the default."""
        if days is not None and not 1 <= days <= MAX_RETENTION_DAYS:
            raise InvalidInput(lazy(
                "Retention must be between 1 and {MAX_RETENTION_DAYS} days.",
                MAX_RETENTION_DAYS=MAX_RETENTION_DAYS))
        await self._upsert(guild_id, "retention_days", days)

    async def set_cooldown(
        self, guild_id: int, command: str, uses: int | None, per_seconds: float = 60.0
    ) -> None:
        """Limit each user to `uses` runs per `per_seconds`; `uses=None` removes the cooldown."""
        command = _command_name(command)
        if uses is not None and (uses < 1 or not per_seconds > 0):
            raise InvalidInput(lazy(
                "A cooldown needs at least 1 use and a period above 0 seconds."))
        async with self._write(guild_id) as conn:
            if uses is None:
                await conn.execute(
                    "DELETE FROM cooldowns WHERE guild_id = ? AND command = ?",
                    (guild_id, command),
                )
            else:
                await conn.execute(
                    "INSERT INTO cooldowns (guild_id, command, uses, per_seconds)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (guild_id, command)"
                    " DO UPDATE SET uses = excluded.uses, per_seconds = excluded.per_seconds",
                    (guild_id, command, int(uses), float(per_seconds)),
                )

    async def set_answer_visibility(self, guild_id: int, scope_id: int,
                                    mode: str | None) -> None:
        """Force answers "private" or "public" in a channel (or the server: its own id);
        None lets students choose again."""
        if mode not in (None, "private", "public"):
            raise InvalidInput(lazy("Answers are private, public, or the student's choice."))
        async with self._write(guild_id) as conn:
            if mode is None:
                await conn.execute(
                    "DELETE FROM answer_visibility WHERE guild_id = ? AND scope_id = ?",
                    (guild_id, scope_id))
            else:
                await conn.execute(
                    "INSERT INTO answer_visibility (guild_id, scope_id, mode) VALUES (?, ?, ?)"
                    " ON CONFLICT (guild_id, scope_id) DO UPDATE SET mode = excluded.mode",
                    (guild_id, scope_id, mode))

    async def remember_names(self, names: dict[int, str]) -> None:
        """Keep each server's current name (the dashboard shows it; it has no Discord)."""
        if not names:
            return
        seen = datetime.now(timezone.utc).isoformat()
        async with self._db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO guild_names (guild_id, name, seen_at) VALUES (?, ?, ?)"
                " ON CONFLICT (guild_id) DO UPDATE SET name = excluded.name,"
                " seen_at = excluded.seen_at",
                [(guild_id, name, seen) for guild_id, name in names.items()])

    async def _upsert(self, guild_id: int, column: str, value: object) -> None:
        # `column` is one of four literals from this module, never user input.
        assert column in ("instructor_role_id", "paused", "retention_days", "language")
        async with self._write(guild_id) as conn:
            await conn.execute(
                f"INSERT INTO guild_settings (guild_id, {column}) VALUES (?, ?)"
                f" ON CONFLICT (guild_id) DO UPDATE SET {column} = excluded.{column}",
                (guild_id, value),
            )


def _command_name(command: str) -> str:
    name = command.strip().lstrip("/").strip()
    if not name:
        raise ValueError("empty command name")
    return name
