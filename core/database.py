"""One SQLite database for everything the bot remembers: the query log and moderator settings.

Why these choices:

- WAL lets instructors read the log while the bot writes it, and ``synchronous=FULL`` makes every
  COMMIT reach the disk before it returns. That is what lets the query log promise "a row is on
  disk before the student sees the answer"; NORMAL would only promise it after a checkpoint.
- One aiosqlite connection (one thread) and one asyncio lock: every statement of a transaction is
  a separate await, so without the lock two coroutines could interleave their statements inside
  one transaction. Reads take the same lock; they are short and it keeps the model simple.
- Migrations are plain numbered SQL files (``core/migrations/V{n}__name.sql``), applied in order at
  open, each in its own transaction together with ``PRAGMA user_version = n``. A database written
  by newer code (a higher ``user_version``) is refused rather than silently misread.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from core.errors import ConfigError

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^V(\d+)__([A-Za-z0-9_]+)\.sql$")


class DatabaseTooNew(ConfigError):
    """The file was migrated by a newer version of the bot; reading it could corrupt it."""

    code = "database_too_new"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The migrations shipped in ``core/migrations``, checked to be numbered 1..n without gaps."""
    folder = resources.files("core") / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        # A packaging or naming bug, not something an operator can fix in config.
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


class Database:
    """An open SQLite database, migrated to the schema this code knows."""

    def __init__(self, conn: aiosqlite.Connection, path: str, schema_version: int) -> None:
        # Use `Database.open`; the constructor only stores what open() prepared.
        self._conn = conn
        self._lock = asyncio.Lock()
        self._closed = False
        self.path = path
        self.schema_version = schema_version
        #: Committed write transactions; lets tests and benchmarks see group commit working.
        self.commit_count = 0

    @classmethod
    async def open(
        cls, path: str | Path, *, migrations: Sequence[Migration] | None = None
    ) -> Database:
        """Open (creating if needed) and migrate the database at `path`.

        `migrations` defaults to the shipped ones; tests pass their own to simulate upgrades.
        """
        path_str = str(path)
        if path_str != ":memory:":
            Path(path_str).parent.mkdir(parents=True, exist_ok=True)
        todo = list(migrations) if migrations is not None else load_migrations()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so nothing commits implicitly.
        conn = await aiosqlite.connect(path_str, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            rows = await conn.execute_fetchall("PRAGMA journal_mode=WAL")
            mode = rows[0][0] if rows else "?"
            if mode != "wal" and path_str != ":memory:":
                log.warning("SQLite refused WAL mode for %s (got %r)", path_str, mode)
            await conn.execute("PRAGMA synchronous=FULL")
            await conn.execute("PRAGMA foreign_keys=ON")
            await conn.execute("PRAGMA busy_timeout=5000")
            version = await _migrate(conn, path_str, todo)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path_str, version)

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close the connection; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            await self._conn.close()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """Run one read query with bound parameters."""
        self._check_open()
        async with self._lock:
            return list(await self._conn.execute_fetchall(sql, tuple(params)))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction: committed (durably) on success, rolled back on any exception.

        BEGIN IMMEDIATE takes the write lock up front, so a busy database fails here, before
        any statement ran, instead of halfway through.
        """
        self._check_open()
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await _rollback_quietly(self._conn)
                raise
            try:
                await self._conn.execute("COMMIT")
            except BaseException:
                await _rollback_quietly(self._conn)
                raise
            self.commit_count += 1

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("database is closed")


async def _rollback_quietly(conn: aiosqlite.Connection) -> None:
    # SQLite may already have rolled back on its own (e.g. SQLITE_FULL); that is fine.
    if conn.in_transaction:
        try:
            await conn.execute("ROLLBACK")
        except Exception:
            log.warning("ROLLBACK failed", exc_info=True)


async def _migrate(conn: aiosqlite.Connection, path: str, todo: Sequence[Migration]) -> int:
    rows = await conn.execute_fetchall("PRAGMA user_version")
    current = int(rows[0][0])
    latest = todo[-1].version if todo else 0
    if current > latest:
        raise DatabaseTooNew(
            f"The database {path} has schema version {current}, but this version of the bot "
            f"only knows up to {latest}. Upgrade the bot or point it at another database file."
        )
    for migration in todo:
        if migration.version <= current:
            continue
        log.info("Applying migration V%d__%s to %s", migration.version, migration.name, path)
        # executescript runs several statements; BEGIN..COMMIT makes the file and the version
        # bump one atomic step. The version is an int from the file name, never user input.
        script = (
            f"BEGIN IMMEDIATE;\n{migration.sql}\n;"
            f"PRAGMA user_version = {int(migration.version)};\nCOMMIT;"
        )
        try:
            await conn.executescript(script)
        except BaseException:
            await _rollback_quietly(conn)
            raise
        current = migration.version
    return current
