"""What the instructor dashboard shows, read from the query log: one guild, bounded work per page.

Why its own read-only connection: the bot's `Database` serialises every statement behind one
lock, so a 100 ms dashboard aggregate on it would hold up the query log's commits. WAL lets a
second connection read while the bot writes; opening it with ``mode=ro`` and
``PRAGMA query_only`` makes "the dashboard never writes" a property of the connection, not a
promise of the code.

Why these queries stay fast at 200,000 rows (benchmarks/dashboard.py): every statement starts
with ``guild_id = ?`` and, except the per-student ones, a time range, so it walks the
``(guild_id, created_at)`` index instead of the table; aggregates are computed in SQL (one pass
for counts per bucket x command x status x feedback, percentiles with window functions) and
only their small results reach Python; tables are paged with LIMIT/OFFSET after a COUNT that
the index answers; the command list is a loose index scan over ``(guild_id, command, ...)``;
exports stream in keyset-paged chunks instead of loading every row.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from core.querylog import QueryFilter, QueryRow, from_db_time, to_db_time

Bucket = Literal["hour", "day"]
#: Characters of the fixed-width timestamp that name an hour / a day ("2026-11-30T01").
_BUCKET_CHARS: dict[str, int] = {"hour": 13, "day": 10}
_COLUMNS = (
    "id, created_at, guild_id, channel_id, user_id, user_name, command, options, input_text, "
    "status, output_summary, error, model_id, queue_ms, inference_ms, total_ms, feedback"
)


@dataclass(frozen=True)
class Window:
    """A half-open time range [since, until) drawn in `bucket`s."""

    since: datetime
    until: datetime
    bucket: Bucket

    @classmethod
    def last(cls, span: timedelta, now: datetime | None = None) -> Window:
        now = now or datetime.now(timezone.utc)
        bucket: Bucket = "hour" if span <= timedelta(days=2) else "day"
        return cls(now - span, now, bucket)

    def buckets(self) -> list[str]:
        """Every bucket label in the window, oldest first (empty ones included)."""
        step = timedelta(hours=1) if self.bucket == "hour" else timedelta(days=1)
        width = _BUCKET_CHARS[self.bucket]
        labels: list[str] = []
        moment = self.since
        while moment < self.until + step:
            label = to_db_time(moment)[:width]
            if not labels or labels[-1] != label:
                labels.append(label)
            moment += step
        last = to_db_time(self.until)[:width]
        return labels[: labels.index(last) + 1] if last in labels else labels


@dataclass(frozen=True)
class Latency:
    bucket: str
    count: int
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class Student:
    user_id: int
    queries: int
    name: str  # display name at the latest query, "" unless log_inputs = "full"


@dataclass(frozen=True)
class Overview:
    window: Window
    total: int
    #: bucket label -> command -> count
    per_bucket: dict[str, dict[str, int]]
    by_command: dict[str, int]
    by_status: dict[str, int]
    #: 1 (thumbs up) / -1 (thumbs down) -> count; empty when nobody gave feedback
    feedback: dict[int, int]
    latency: list[Latency]
    p50_ms: float | None
    p95_ms: float | None
    busiest: list[Student]

    def rate(self, *statuses: str) -> float:
        return sum(self.by_status.get(s, 0) for s in statuses) / self.total if self.total else 0.0


@dataclass(frozen=True)
class Page:
    rows: list[QueryRow]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


@dataclass(frozen=True)
class StudentView:
    user_id: int
    name: str
    total: int
    by_command: dict[str, int]
    per_bucket: dict[str, dict[str, int]] = field(default_factory=dict)


class DashboardData:
    """Read-only queries over one database file; every method takes the guild it may read."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, path: str | Path) -> DashboardData:
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        conn = await aiosqlite.connect(uri, uri=True)
        try:
            conn.row_factory = aiosqlite.Row
            await conn.execute("PRAGMA query_only = ON")
            await conn.execute("PRAGMA busy_timeout = 5000")
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def aclose(self) -> None:
        await self._conn.close()

    async def _all(self, sql: str, params: list[Any] | tuple[Any, ...]) -> list[Any]:
        return list(await self._conn.execute_fetchall(sql, tuple(params)))

    # ------------------------------------------------------------------ overview

    async def overview(self, guild_id: int, window: Window, *, top: int = 10) -> Overview:
        width = _BUCKET_CHARS[window.bucket]
        span = [guild_id, to_db_time(window.since), to_db_time(window.until)]
        in_window = "guild_id = ? AND created_at >= ? AND created_at < ?"
        counted = await self._all(
            f"SELECT substr(created_at, 1, {width}) AS b, command, status, feedback, "
            f"COUNT(*) AS n FROM queries WHERE {in_window} "
            "GROUP BY b, command, status, feedback", span)
        per_bucket: dict[str, dict[str, int]] = defaultdict(dict)
        by_command: Counter[str] = Counter()
        by_status: Counter[str] = Counter()
        feedback: Counter[int] = Counter()
        for r in counted:
            cell = per_bucket[r["b"]]
            cell[r["command"]] = cell.get(r["command"], 0) + r["n"]
            by_command[r["command"]] += r["n"]
            by_status[r["status"]] += r["n"]
            if r["feedback"] is not None:
                feedback[int(r["feedback"])] += r["n"]
        latency = await self._latency(in_window, span, width)
        overall = await self._latency(in_window, span, 0)
        busiest = await self._all(
            # SQLite: with one max() aggregate, the bare user_name comes from that newest row.
            "SELECT user_id, COUNT(*) AS n, max(created_at) AS latest, user_name "
            f"FROM queries WHERE {in_window} GROUP BY user_id ORDER BY n DESC, user_id "
            "LIMIT ?", [*span, top])
        return Overview(
            window=window,
            total=sum(by_status.values()),
            per_bucket=dict(per_bucket),
            by_command=dict(by_command.most_common()),
            by_status=dict(by_status.most_common()),
            feedback=dict(feedback),
            latency=latency,
            p50_ms=overall[0].p50_ms if overall else None,
            p95_ms=overall[0].p95_ms if overall else None,
            busiest=[Student(int(r["user_id"]), int(r["n"]), r["user_name"]) for r in busiest],
        )

    async def _latency(self, where: str, params: list[Any], width: int) -> list[Latency]:
        """p50/p95 of total_ms per bucket (width 0: one bucket), linear interpolation between
        closest ranks like numpy's default and `QueryLog.stats`. SQLite sorts inside each
        bucket; only the two or four ranks around each percentile come back."""
        bucket = f"substr(created_at, 1, {width})" if width else "''"
        rows = await self._all(
            f"""WITH ranked AS (
                SELECT {bucket} AS b, total_ms,
                       ROW_NUMBER() OVER (PARTITION BY {bucket} ORDER BY total_ms) - 1 AS rank,
                       COUNT(*) OVER (PARTITION BY {bucket}) AS n
                FROM queries WHERE {where} AND total_ms IS NOT NULL)
            SELECT b, n, rank, total_ms FROM ranked
            WHERE rank IN (CAST((n - 1) * 0.50 AS INTEGER), CAST((n - 1) * 0.50 AS INTEGER) + 1,
                           CAST((n - 1) * 0.95 AS INTEGER), CAST((n - 1) * 0.95 AS INTEGER) + 1)
            ORDER BY b, rank""", params)
        by_bucket: dict[str, tuple[int, dict[int, float]]] = {}
        for r in rows:
            n, ranks = by_bucket.setdefault(r["b"], (int(r["n"]), {}))
            ranks[int(r["rank"])] = float(r["total_ms"])
        return [Latency(b, n, _interpolate(ranks, n, 50), _interpolate(ranks, n, 95))
                for b, (n, ranks) in sorted(by_bucket.items())]

    # ------------------------------------------------------------------ tables

    async def commands(self, guild_id: int) -> list[str]:
        """The distinct commands this guild ever logged: a loose index scan (one seek per
        command) over (guild_id, command, created_at), not a pass over every row."""
        rows = await self._all(
            """WITH RECURSIVE c(command) AS (
                SELECT min(command) FROM queries WHERE guild_id = ?
                UNION ALL
                SELECT (SELECT min(command) FROM queries WHERE guild_id = ? AND command > c.command)
                FROM c WHERE c.command IS NOT NULL)
            SELECT command FROM c WHERE command IS NOT NULL""", [guild_id, guild_id])
        return [r["command"] for r in rows]

    async def page(self, f: QueryFilter, *, text: str = "", page: int = 1,
                   page_size: int = 50) -> Page:
        """One page of matching rows, newest first, and how many match in all."""
        where, params = _where(f, text)
        (total,) = (await self._all(f"SELECT COUNT(*) FROM queries WHERE {where}", params))[0]
        page = max(1, min(page, max(1, -(-int(total) // page_size))))
        rows = await self._all(
            f"SELECT {_COLUMNS} FROM queries WHERE {where} "
            "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            [*params, page_size, (page - 1) * page_size])
        return Page([_row(r) for r in rows], int(total), page, page_size)

    async def iter_rows(self, f: QueryFilter, *, text: str = "",
                        chunk: int = 2000) -> AsyncIterator[QueryRow]:
        """Every matching row, newest first, fetched `chunk` rows at a time (keyset paging on
        (created_at, id), so the last chunk costs what the first did)."""
        where, params = _where(f, text)
        after: tuple[str, int] | None = None
        while True:
            extra, extra_params = "", []
            if after is not None:
                extra = " AND (created_at < ? OR (created_at = ? AND id < ?))"
                extra_params = [after[0], after[0], after[1]]
            rows = await self._all(
                f"SELECT {_COLUMNS} FROM queries WHERE {where}{extra} "
                "ORDER BY created_at DESC, id DESC LIMIT ?", [*params, *extra_params, chunk])
            for r in rows:
                yield _row(r)
            if len(rows) < chunk:
                return
            after = (rows[-1]["created_at"], int(rows[-1]["id"]))

    # ------------------------------------------------------------------ one student

    async def student(self, guild_id: int, user_id: int, window: Window) -> StudentView:
        """A student's commands (all time) and their queries per bucket in `window`.
        Uses the (user_id, guild_id) index: a student's rows, never the class's."""
        mine = "user_id = ? AND guild_id = ?"
        totals = await self._all(
            f"SELECT command, COUNT(*) AS n FROM queries WHERE {mine} "
            "GROUP BY command ORDER BY n DESC, command", [user_id, guild_id])
        name_rows = await self._all(
            f"SELECT user_name FROM queries WHERE {mine} AND user_name != '' "
            "ORDER BY created_at DESC LIMIT 1", [user_id, guild_id])
        width = _BUCKET_CHARS[window.bucket]
        counted = await self._all(
            f"SELECT substr(created_at, 1, {width}) AS b, command, COUNT(*) AS n "
            f"FROM queries WHERE {mine} AND created_at >= ? AND created_at < ? "
            "GROUP BY b, command",
            [user_id, guild_id, to_db_time(window.since), to_db_time(window.until)])
        per_bucket: dict[str, dict[str, int]] = defaultdict(dict)
        for r in counted:
            per_bucket[r["b"]][r["command"]] = int(r["n"])
        return StudentView(
            user_id=user_id,
            name=name_rows[0]["user_name"] if name_rows else "",
            total=sum(int(r["n"]) for r in totals),
            by_command={r["command"]: int(r["n"]) for r in totals},
            per_bucket=dict(per_bucket),
        )


def _where(f: QueryFilter, text: str) -> tuple[str, list[Any]]:
    """WHERE clause from fixed fragments; every value is a bound parameter."""
    clauses = ["guild_id = ?"]
    params: list[Any] = [f.guild_id]
    for column, value in (("user_id", f.user_id), ("command", f.command),
                          ("status", f.status)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if f.since is not None:
        clauses.append("created_at >= ?")
        params.append(to_db_time(f.since))
    if f.until is not None:
        clauses.append("created_at < ?")
        params.append(to_db_time(f.until))
    if text:
        # instr, not LIKE: no wildcard characters to escape in what an instructor types.
        clauses.append("instr(lower(input_text), lower(?)) > 0")
        params.append(text)
    return " AND ".join(clauses), params


def _row(r: Any) -> QueryRow:
    return QueryRow(
        id=int(r["id"]), created_at=from_db_time(r["created_at"]), guild_id=r["guild_id"],
        channel_id=r["channel_id"], user_id=int(r["user_id"]), command=r["command"],
        options=json.loads(r["options"]), input_text=r["input_text"], status=r["status"],
        output_summary=r["output_summary"], error=r["error"], model_id=r["model_id"],
        queue_ms=r["queue_ms"], inference_ms=r["inference_ms"], total_ms=r["total_ms"],
        user_name=r["user_name"], feedback=r["feedback"],
    )


def _interpolate(ranks: dict[int, float], n: int, pct: float) -> float:
    # (n - 1) * 0.95 exactly as the SQL computes it, so both pick the same ranks.
    position = (n - 1) * (pct / 100)
    low = int(position)
    high = min(low + 1, n - 1)
    return ranks[low] + (ranks.get(high, ranks[low]) - ranks[low]) * (position - low)


__all__ = ["Bucket", "DashboardData", "Latency", "Overview", "Page", "Student", "StudentView",
           "Window"]
