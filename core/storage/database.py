"""One SQLite database for everything the bot remembers: the query log and moderator settings.

Why these choices:

- WAL lets instructors read the log while the bot writes it, and ``synchronous=FULL`` makes every
  COMMIT reach the disk before it returns. That is what lets the query log promise "a row is on
  disk before the student sees the answer"; NORMAL would only promise it after a checkpoint.
- One aiosqlite connection (one thread) and one asyncio lock: every statement of a transaction is
  a separate await, so without the lock two coroutines could interleave their statements inside
  one transaction. Reads take the same lock; they are short and it keeps the model simple.
- Migrations are plain numbered SQL files (``core/storage/migrations/V{n}__name.sql``), applied in
order at
  open, each in its own transaction together with ``PRAGMA user_version = n``. A database written
  by newer code (a higher ``user_version``) is refused rather than silently misread.
- Privacy: the file is created readable by its owner only (0600, like the salt file); SQLite
  gives the WAL and SHM files the database file's permissions. ``secure_delete=ON`` overwrites
  deleted rows with zeros instead of leaving them in free pages, and `checkpoint` lets a
  deletion also empty the WAL, so erased text does not linger on disk.
- A database that cannot be used is found at open, not at the first student's row:
  ``PRAGMA quick_check`` runs at start, and a file that is not a database, is corrupt or cannot
  be written ends start-up with one `DatabaseUnusable` message saying what to do. What fails
  later (disk full, the file turned read-only) is described by `storage_problem` in the same
  words, and raised to members as `StorageError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
import stat
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from core.errors import ConfigError, ServiceError
from core.i18n import lazy

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^V(\d+)__([A-Za-z0-9_]+)\.sql$")


class DatabaseTooNew(ConfigError):
    """The file was migrated by a newer version of the bot; reading it could corrupt it."""

    code = "database_too_new"


class DatabaseUnusable(ConfigError):
    """The database file cannot be opened, read or written; the message says what to do."""

    code = "database_unusable"


class StorageError(ServiceError):
    """A write failed for a reason of the server's disk (full, read-only, corrupt).

    Its message is for a moderator: what was not saved and that the bot's operator must act.
    """

    code = "storage_error"
    status = "unavailable"


def storage_fault_kind(exc: BaseException) -> str:
    """Which storage fault `exc` is: full, read-only, damaged, unopenable, io, locked, other."""
    text = str(exc).lower()
    code = getattr(exc, "sqlite_errorname", "") or ""
    if code.startswith("SQLITE_FULL") or "disk is full" in text or "disk full" in text:
        return "full"
    if code.startswith("SQLITE_READONLY") or "readonly" in text or "read-only" in text:
        return "read-only"
    if (code.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text
            or "not a database" in text):
        return "damaged"
    if (code.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH"))
            or "unable to open" in text):
        return "unopenable"
    if code.startswith("SQLITE_IOERR") or "disk i/o" in text:
        return "io"
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return "locked"
    return "other"


def storage_problem(exc: BaseException, path: str) -> str:
    """What went wrong with the database file and what the operator should do, in one line."""
    kind = storage_fault_kind(exc)
    if kind == "full":
        return (f"the disk holding the database {path} is full: free some space "
                "(writes resume by themselves).")
    if kind == "read-only":
        return (f"the database {path} is read-only: make the file, its -wal and -shm files and "
                "their folder writable by the bot's user, then restart the bot.")
    if kind == "damaged":
        return (f"the database {path} is damaged: stop the bot, keep a copy of the file, and "
                f"either restore a backup or recover it with `sqlite3 {path} .recover | sqlite3 "
                "recovered.db`, then point [database] path at the recovered file.")
    if kind == "unopenable":
        return (f"the database {path} cannot be opened: check that its folder exists and that "
                "the bot's user may read and write it.")
    if kind == "io":
        return f"the disk failed while writing the database {path}: check the disk, then restart."
    if kind == "locked":
        return (f"the database {path} is locked by another program: close it (e.g. a sqlite3 "
                "shell holding a transaction).")
    return f"the database {path} failed ({type(exc).__name__}: {exc})."


_FAULT_FOR_MEMBERS = {
    "full": lazy("the bot's disk is full"),
    "read-only": lazy("the bot's database is read-only"),
    "damaged": lazy("the bot's database is damaged"),
}


def storage_error(exc: BaseException, path: str, what: str) -> StorageError:
    """A `StorageError` for members (no paths) after logging the operator's version once."""
    log.error("%s failed: %s", what, storage_problem(exc, path))
    fault = _FAULT_FOR_MEMBERS.get(storage_fault_kind(exc),
                                   lazy("the bot could not write its database"))
    return StorageError(lazy("Nothing was saved: {fault}. Please tell the bot's operator (the "
                             "bot's log says what to do) and try again later.", fault=fault))


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The migrations shipped in ``core/storage/migrations``, checked to be numbered 1..n without
    gaps."""
    folder = resources.files("core.storage") / "migrations"
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
        todo = list(migrations) if migrations is not None else load_migrations()
        try:
            if path_str != ":memory:":
                _create_private(Path(path_str))
            # isolation_level=None: we issue BEGIN/COMMIT ourselves; nothing commits implicitly.
            conn = await aiosqlite.connect(path_str, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise _unusable(exc, path_str) from exc
        try:
            conn.row_factory = sqlite3.Row
            try:
                await _prepare(conn, path_str)
            except sqlite3.Error as exc:
                raise _unusable(exc, path_str) from exc
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

    async def checkpoint(self) -> None:
        """Copy the WAL into the database file and truncate the WAL to zero bytes.

        After a deletion this is what makes the deleted text leave the WAL (with
        ``secure_delete`` it is zeroed in the database file too). Best effort: a reader in
        another process can keep the checkpoint from finishing; it then ends at the next one.
        """
        self._check_open()
        async with self._lock:
            rows = await self._conn.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        if rows and rows[0][0]:
            log.warning("WAL checkpoint of %s was blocked by a reader; it will finish later",
                        self.path)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("database is closed")


def _unusable(exc: BaseException, path: str) -> DatabaseUnusable:
    return DatabaseUnusable(f"cannot open the database: {storage_problem(exc, path)}")


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (its -wal and -shm copy the mode);
    tighten an existing one that others could read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode
        if stat.S_ISREG(mode) and mode & 0o077:
            log.warning("%s was readable by other users; setting it to owner-only (0600)", path)
            for extra in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(f"{path}{extra}", 0o600)
    else:
        os.close(fd)


async def _prepare(conn: aiosqlite.Connection, path: str) -> None:
    rows = await conn.execute_fetchall("PRAGMA journal_mode=WAL")
    mode = rows[0][0] if rows else "?"
    if mode != "wal" and path != ":memory:":
        log.warning("SQLite refused WAL mode for %s (got %r)", path, mode)
    await conn.execute("PRAGMA synchronous=FULL")
    await conn.execute("PRAGMA foreign_keys=ON")
    await conn.execute("PRAGMA busy_timeout=5000")
    await conn.execute("PRAGMA secure_delete=ON")
    await _check_integrity(conn, path)
    # A read-only file opens fine and fails at the first write: find out now, with a write
    # that is rolled back.
    await conn.execute("BEGIN IMMEDIATE")
    try:
        await conn.execute("CREATE TABLE write_probe (x INTEGER)")
    finally:
        await conn.execute("ROLLBACK")


async def _check_integrity(conn: aiosqlite.Connection, path: str) -> None:
    """``quick_check`` reads every page (not the index contents): seconds for a large file,
    once per start, instead of discovering damage one failed write at a time."""
    rows = await conn.execute_fetchall("PRAGMA quick_check")
    problems = [str(r[0]) for r in rows]
    if problems != ["ok"]:
        damaged = storage_problem(sqlite3.DatabaseError("database disk image is malformed"), path)
        raise DatabaseUnusable(f"cannot open the database: {damaged} "
                               f"(quick_check: {'; '.join(problems[:3])})")


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
