"""The query log: one row per command outcome, written durably without slowing the bot down.

Durability promise: when `QueryLog.record` returns True, the row is committed with
``synchronous=FULL`` — it survives a crash or power loss from that moment on. Cogs await
`record` right after sending the answer (`cogs.respond`), so a ``kill -9`` loses only rows
whose commit was still running: answers sent in the last ~0.1 s (tests/test_durability.py).

Cost: one fsync per commit would cap us at a few hundred rows a second on a slow disk, so writes
use group commit. `record` only queues its row and awaits a future; one writer task takes
everything queued so far, inserts it with one ``executemany`` in one transaction, commits once
and resolves every waiter. Under load, rows that arrive while a commit is in flight form the next
batch, so 200 simultaneous records cost a handful of commits, not 200.

A failing write (database locked, disk full, read-only file) must never cost a student their
answer: `record` never raises, it logs and returns False. The rows are kept in a bounded
in-memory buffer and retried with the next batch (or after `retry_interval_s`); `aclose` makes a
last attempt, so a clean shutdown loses nothing that could be written. Rows are validated and
encoded before they are queued, so a batch can only fail for reasons that hit every row alike.

Privacy: ``log_inputs`` decides what is kept of the student's text: "full", "hashed"
(sha256 of salt + text, enough to spot repeats) or "none". In "hashed" and "none" modes the
output summary is dropped too, because summaries echo the input (a filled-in mask, a
continuation). A guild only ever reads its own rows: every read takes a guild id.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import statistics
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any, Literal

from core.database import Database
from core.outcomes import STATUS_VALUES, Status

log = logging.getLogger(__name__)

STATUSES: frozenset[str] = frozenset(STATUS_VALUES)
LogInputs = Literal["full", "hashed", "none"]

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def to_db_time(moment: datetime) -> str:
    """UTC, fixed width, so comparing the text compares the times. Naive datetimes are UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime(_TIME_FORMAT)


def from_db_time(text: str) -> datetime:
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class QueryRecord:
    """What a cog knows about one command outcome."""

    guild_id: int | None
    channel_id: int | None
    user_id: int
    command: str
    options: Mapping[str, object]
    input_text: str
    status: str
    output_summary: str = ""
    error: str = ""
    model_id: str = ""
    queue_ms: float | None = None
    inference_ms: float | None = None
    total_ms: float | None = None
    created_at: datetime | None = None
    #: Options whose values are the student's own words: stored under `log_inputs` like
    #: `input_text` (kept, hashed or dropped), never raw.
    free_text_options: frozenset[str] = frozenset()
    #: The member's display name at query time; stored only with log_inputs = "full".
    user_name: str = ""

    def __post_init__(self) -> None:
        if self.created_at is None:
            object.__setattr__(self, "created_at", datetime.now(timezone.utc))


@dataclass(frozen=True)
class QueryRow:
    """A stored row, as instructors see it (input_text is what `log_inputs` kept)."""

    id: int
    created_at: datetime
    guild_id: int | None
    channel_id: int | None
    user_id: int
    command: str
    options: Mapping[str, object]
    input_text: str
    status: str
    output_summary: str
    error: str
    model_id: str
    queue_ms: float | None
    inference_ms: float | None
    total_ms: float | None
    user_name: str = ""
    feedback: int | None = None


@dataclass(frozen=True)
class QueryFilter:
    """Which rows to read. `guild_id` is required: a guild only ever sees its own rows.

    `since` is inclusive, `until` exclusive. `limit=None` means no limit (exports).
    """

    guild_id: int
    user_id: int | None = None
    command: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = 50

    def __post_init__(self) -> None:
        if not isinstance(self.guild_id, int):
            raise TypeError("QueryFilter.guild_id must be a guild id")
        if self.limit is not None and self.limit < 1:
            raise ValueError("QueryFilter.limit must be at least 1 (or None for no limit)")


@dataclass(frozen=True)
class Stats:
    """Usage summary for one guild.

    `error_rate` is the share of requests that did not end "ok" (student mistakes, refusals,
    overload and crashes alike: how often a student did not get an answer); `by_status` has the
    breakdown. Latency percentiles use rows with a recorded total_ms and linear interpolation.
    """

    guild_id: int
    since: datetime | None
    total: int
    by_command: dict[str, int]
    by_user: dict[int, int]
    by_status: dict[str, int]
    error_rate: float
    median_total_ms: float | None
    p95_total_ms: float | None


CSV_COLUMNS: tuple[str, ...] = (
    "id", "created_at", "guild_id", "channel_id", "user_id", "user_name", "command", "options",
    "input_text", "status", "output_summary", "error", "model_id",
    "queue_ms", "inference_ms", "total_ms", "feedback",
)  # fmt: skip
_CSV_TEXT_COLUMNS = frozenset({"user_name", "command", "options", "input_text", "status",
                               "output_summary", "error", "model_id"})
# Spreadsheets run cells starting with these as formulas. The quote itself is included so that
# the escaping is reversible: a cell starting with ' always carries one added quote.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def escape_csv_cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def unescape_csv_cell(text: str) -> str:
    """Undo `escape_csv_cell` (for tools that read our exports back)."""
    return text[1:] if text.startswith("'") else text


_COLUMNS_SQL = (
    "id, created_at, guild_id, channel_id, user_id, user_name, command, options, input_text, "
    "status, output_summary, error, model_id, queue_ms, inference_ms, total_ms, feedback"
)
_INSERT_SQL = (
    "INSERT INTO queries (created_at, guild_id, channel_id, user_id, user_name, command, "
    "options, input_text, status, output_summary, error, model_id, queue_ms, inference_ms, "
    "total_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_Params = tuple[Any, ...]
# Column positions in _Params, for filtering the retry buffer.
_P_GUILD, _P_USER = 1, 3


class QueryLog:
    """Writes and reads the query log. Does not own `db`: close the log first, then the db."""

    def __init__(
        self,
        db: Database,
        *,
        log_inputs: LogInputs = "full",
        hash_salt: bytes = b"",
        default_retention_days: int = 90,
        retry_limit: int = 10_000,
        retry_interval_s: float = 5.0,
    ) -> None:
        if log_inputs not in ("full", "hashed", "none"):
            raise ValueError(f"log_inputs must be 'full', 'hashed' or 'none', not {log_inputs!r}")
        if log_inputs == "hashed" and not hash_salt:
            log.warning("log_inputs='hashed' without a salt: short inputs can be guessed")
        if default_retention_days < 1:
            raise ValueError("default_retention_days must be at least 1")
        self._db = db
        self._log_inputs = log_inputs
        self._hash_salt = hash_salt
        self._default_retention_days = default_retention_days
        self._retry_interval_s = retry_interval_s
        self._pending: list[tuple[_Params, asyncio.Future[bool]]] = []
        self._retry: deque[_Params] = deque(maxlen=retry_limit)
        self._flush_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._closed = False
        self._failing = False
        #: Rows given up because the retry buffer overflowed.
        self.dropped = 0

    async def __aenter__(self) -> QueryLog:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def pending_retry(self) -> int:
        """Rows that failed to write and wait for the next attempt."""
        return len(self._retry)

    # ----------------------------------------------------------------- writing

    async def record(self, rec: QueryRecord) -> bool:
        """Store one outcome. True: the row is on disk. False: logged, kept for retry or dropped.

        Never raises (except CancelledError, which belongs to the caller); a row whose caller
        was cancelled is still written.
        """
        try:
            params = self._encode(rec)
        except Exception:
            log.exception("Query log: could not encode a record for /%s; dropped",
                          getattr(rec, "command", "?"))
            return False
        if self._closed:
            log.warning("Query log is closed; dropped a record for /%s", rec.command)
            return False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((params, future))
        if self._writer_task is None or self._writer_task.done():
            self._writer_task = asyncio.get_running_loop().create_task(
                self._writer(), name="querylog-writer"
            )
        self._wakeup.set()
        return await future

    async def flush(self) -> bool:
        """Write everything queued or waiting for retry now; True when nothing is left over."""
        async with self._flush_lock:
            await self._write_pending()
        return not self._retry

    async def aclose(self) -> None:
        """Stop accepting rows and write what is pending; safe to call twice."""
        self._closed = True
        self._wakeup.set()
        if self._writer_task is not None:
            await self._writer_task
        if self._retry:
            log.error("Query log closed with %d rows that could not be written", len(self._retry))

    def _encode(self, rec: QueryRecord) -> _Params:
        if rec.status not in STATUSES:
            raise ValueError(f"unknown status {rec.status!r}")
        if not rec.command:
            raise ValueError("empty command name")
        assert rec.created_at is not None  # set by __post_init__
        text = self._kept_text(str(rec.input_text))
        summary = str(rec.output_summary) if self._log_inputs == "full" else ""
        user_name = str(rec.user_name) if self._log_inputs == "full" else ""
        kept_options = {
            name: (self._kept_text(str(value)) if name in rec.free_text_options
                   and value is not None else value)
            for name, value in dict(rec.options).items()
        }
        options = json.dumps(kept_options, default=str, sort_keys=True, ensure_ascii=False)
        return (
            to_db_time(rec.created_at),
            _opt_int(rec.guild_id),
            _opt_int(rec.channel_id),
            int(rec.user_id),
            user_name,
            str(rec.command),
            options,
            text,
            str(Status(rec.status)),
            summary,
            str(rec.error),
            str(rec.model_id),
            _opt_float(rec.queue_ms),
            _opt_float(rec.inference_ms),
            _opt_float(rec.total_ms),
        )

    def _kept_text(self, text: str) -> str:
        """What `log_inputs` keeps of a student's words: the text, a salted digest, or nothing."""
        if self._log_inputs == "hashed":
            return hashlib.sha256(self._hash_salt + text.encode("utf-8")).hexdigest()
        if self._log_inputs == "none":
            return ""
        return text

    async def _writer(self) -> None:
        """The single writer: everything queued while a commit runs becomes the next batch."""
        while True:
            if not self._pending:
                if self._closed:
                    break
                timeout = self._retry_interval_s if self._retry else None
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                except asyncio.TimeoutError:
                    pass  # time to retry the buffered rows
                self._wakeup.clear()
                if not self._pending and not self._retry:
                    continue
            async with self._flush_lock:
                await self._write_pending()
        if self._retry:  # last attempt on close for rows that failed earlier
            async with self._flush_lock:
                await self._write_pending()

    async def _write_pending(self) -> None:
        """Write the retry buffer and the queue in one transaction. Caller holds _flush_lock."""
        batch, self._pending = self._pending, []
        rows = list(self._retry) + [params for params, _ in batch]
        if not rows:
            return
        ok = False
        try:
            async with self._db.transaction() as conn:
                await conn.executemany(_INSERT_SQL, rows)
            ok = True
        except Exception:
            if not self._failing:
                log.exception("Query log write failed; keeping %d rows for retry", len(rows))
            else:
                log.warning("Query log write failed again; %d rows waiting", len(rows))
            self._failing = True
        if ok:
            if self._failing:
                log.info("Query log writes work again; wrote %d rows", len(rows))
            self._failing = False
            self._retry.clear()
        else:
            overflow = len(rows) - (self._retry.maxlen or len(rows))
            if overflow > 0:
                self.dropped += overflow
                log.error("Query log retry buffer full; dropped the %d oldest rows", overflow)
            self._retry.clear()
            self._retry.extend(rows)  # a full deque drops from the left: the oldest rows
        for _, future in batch:
            if not future.done():  # its caller may have been cancelled
                future.set_result(ok)

    # ----------------------------------------------------------------- reading

    async def recent(self, f: QueryFilter) -> list[QueryRow]:
        """Rows matching `f`, newest first."""
        where, params = _where(f)
        sql = f"SELECT {_COLUMNS_SQL} FROM queries WHERE {where} ORDER BY created_at DESC, id DESC"
        sql += " LIMIT ?"
        params.append(f.limit if f.limit is not None else -1)
        rows = await self._db.fetchall(sql, params)
        return [_row(r) for r in rows]

    async def stats(self, guild_id: int, since: datetime | None = None) -> Stats:
        sql = "SELECT command, user_id, status, total_ms FROM queries WHERE guild_id = ?"
        params: list[Any] = [guild_id]
        if since is not None:
            sql += " AND created_at >= ?"
            params.append(to_db_time(since))
        rows = await self._db.fetchall(sql, params)
        by_command = Counter(r["command"] for r in rows)
        by_user = Counter(int(r["user_id"]) for r in rows)
        by_status = Counter(r["status"] for r in rows)
        totals = sorted(float(r["total_ms"]) for r in rows if r["total_ms"] is not None)
        not_ok = len(rows) - by_status.get("ok", 0)
        return Stats(
            guild_id=guild_id,
            since=since,
            total=len(rows),
            by_command=dict(by_command.most_common()),
            by_user=dict(by_user.most_common()),
            by_status=dict(by_status.most_common()),
            error_rate=not_ok / len(rows) if rows else 0.0,
            median_total_ms=statistics.median(totals) if totals else None,
            p95_total_ms=_percentile(totals, 95),
        )

    async def export_csv(self, f: QueryFilter) -> str:
        """CSV text (header + rows, newest first) for an instructor's attachment.

        Text cells that a spreadsheet would run as a formula get a leading ' (see
        `escape_csv_cell`; `unescape_csv_cell` reverses it exactly).
        """
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for row in await self.recent(f):
            writer.writerow(_csv_cells(row))
        return out.getvalue()

    # ----------------------------------------------------------------- deleting

    async def delete_user(self, guild_id: int | None, user_id: int) -> int:
        """Delete a user's rows in one guild (or every guild when `guild_id` is None).

        The user's rows waiting for retry are dropped and rows still queued are written first
        (then deleted), so nothing of the user reappears after the deletion. Returns the number
        of rows deleted, on disk or from the retry buffer.
        """
        async with self._flush_lock:
            kept = [
                p for p in self._retry
                if not (p[_P_USER] == user_id and (guild_id is None or p[_P_GUILD] == guild_id))
            ]  # fmt: skip
            dropped = len(self._retry) - len(kept)
            self._retry.clear()
            self._retry.extend(kept)
            await self._write_pending()
            sql = "DELETE FROM queries WHERE user_id = ?"
            params: list[Any] = [user_id]
            if guild_id is not None:
                sql += " AND guild_id = ?"
                params.append(guild_id)
            async with self._db.transaction() as conn:
                cursor = await conn.execute(sql, params)
                deleted = cursor.rowcount + dropped
        log.info("Deleted %d query-log rows of a user (guild %s)", deleted, guild_id)
        return deleted

    async def purge(self, now: datetime | None = None) -> int:
        """Delete rows older than their guild's retention (guild_settings.retention_days, else
        the default; direct messages use the default). Returns how many rows went."""
        now = now or datetime.now(timezone.utc)
        overrides = await self._db.fetchall(
            "SELECT guild_id, retention_days FROM guild_settings WHERE retention_days IS NOT NULL"
        )
        default_cutoff = to_db_time(now - timedelta(days=self._default_retention_days))
        deleted = 0
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "DELETE FROM queries WHERE created_at < ? AND (guild_id IS NULL OR guild_id NOT IN"
                " (SELECT guild_id FROM guild_settings WHERE retention_days IS NOT NULL))",
                (default_cutoff,),
            )
            deleted += cursor.rowcount
            for row in overrides:
                cutoff = to_db_time(now - timedelta(days=int(row["retention_days"])))
                cursor = await conn.execute(
                    "DELETE FROM queries WHERE guild_id = ? AND created_at < ?",
                    (row["guild_id"], cutoff),
                )
                deleted += cursor.rowcount
        if deleted:
            log.info("Retention purge deleted %d query-log rows", deleted)
        return deleted


def _opt_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _where(f: QueryFilter) -> tuple[str, list[Any]]:
    """WHERE clause from fixed fragments; every value is a bound parameter."""
    clauses = ["guild_id = ?"]
    params: list[Any] = [f.guild_id]
    if f.user_id is not None:
        clauses.append("user_id = ?")
        params.append(f.user_id)
    if f.command is not None:
        clauses.append("command = ?")
        params.append(f.command)
    if f.status is not None:
        clauses.append("status = ?")
        params.append(f.status)
    if f.since is not None:
        clauses.append("created_at >= ?")
        params.append(to_db_time(f.since))
    if f.until is not None:
        clauses.append("created_at < ?")
        params.append(to_db_time(f.until))
    return " AND ".join(clauses), params


def _row(r: Any) -> QueryRow:
    return QueryRow(
        id=int(r["id"]),
        created_at=from_db_time(r["created_at"]),
        guild_id=r["guild_id"],
        channel_id=r["channel_id"],
        user_id=int(r["user_id"]),
        command=r["command"],
        options=json.loads(r["options"]),
        input_text=r["input_text"],
        status=r["status"],
        output_summary=r["output_summary"],
        error=r["error"],
        model_id=r["model_id"],
        queue_ms=r["queue_ms"],
        inference_ms=r["inference_ms"],
        total_ms=r["total_ms"],
        user_name=r["user_name"],
        feedback=r["feedback"],
    )


def _csv_cells(row: QueryRow) -> list[str]:
    values: dict[str, object] = {
        "id": row.id,
        "created_at": to_db_time(row.created_at),
        "guild_id": row.guild_id,
        "channel_id": row.channel_id,
        "user_id": row.user_id,
        "command": row.command,
        "options": json.dumps(dict(row.options), sort_keys=True, ensure_ascii=False),
        "input_text": row.input_text,
        "status": row.status,
        "output_summary": row.output_summary,
        "error": row.error,
        "model_id": row.model_id,
        "queue_ms": row.queue_ms,
        "inference_ms": row.inference_ms,
        "total_ms": row.total_ms,
        "user_name": row.user_name,
        "feedback": row.feedback,
    }
    cells = []
    for name in CSV_COLUMNS:
        value = values[name]
        if value is None:
            cells.append("")
        elif name in _CSV_TEXT_COLUMNS:
            cells.append(escape_csv_cell(str(value)))
        else:
            cells.append(repr(value) if isinstance(value, float) else str(value))
    return cells


def _percentile(sorted_values: list[float], pct: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


__all__ = [
    "CSV_COLUMNS", "STATUSES", "LogInputs", "QueryFilter", "QueryLog", "QueryRecord",
    "QueryRow", "Stats", "Status", "escape_csv_cell", "from_db_time",
    "to_db_time", "unescape_csv_cell",
]  # fmt: skip
