"""The instructor dashboard's aggregates (overview, command list, one student), read from the
query log's roll-ups: one guild, bounded work per page.

Its rows (the tables and the exports) are read through `core.storage.querylog.reads` over this
same connection (`DashboardData` is a `Reader`): one filter, one decoder, one column list.

Why its own read-only connection: the bot's `Database` serialises every statement behind one
lock, so a 100 ms dashboard aggregate on it would hold up the query log's commits. WAL lets a
second connection read while the bot writes; opening it with ``mode=ro`` and
``PRAGMA query_only`` makes "the dashboard never writes" a property of the connection, not a
promise of the code.

Why these pages stay fast at 200,000 rows (benchmarks/dashboard.py): the overview reads the
hourly roll-ups that triggers keep exact as rows are written (migration V3: counts per hour x
command x status x feedback, per hour x student, and total_ms histograms per hour and per day),
so its cost grows with the hours shown, not with the rows; latency percentiles come from those
histograms (whole ms below 1 s, three significant digits above). Every other statement starts
with ``guild_id = ?`` and walks an index; tables are paged with LIMIT/OFFSET after a COUNT the
index answers; the command list is a loose index scan over ``(guild_id, command, ...)``; exports
stream in keyset-paged chunks (`reads.iter_rows`). The one scan is text search, over the chosen
range of one guild.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from core.storage.querylog import to_db_time

Bucket = Literal["hour", "day"]
#: Characters of the fixed-width timestamp that name an hour / a day ("2026-11-30T01").
_BUCKET_CHARS: dict[str, int] = {"hour": 13, "day": 10}


@dataclass(frozen=True)
class Window:
    """A half-open time range [since, until) drawn in `bucket`s."""

    since: datetime
    until: datetime
    bucket: Bucket

    @classmethod
    def last(cls, span: timedelta, now: datetime | None = None) -> Window:
        """The last `span` up to `now`, widened to whole buckets (the roll-ups are hourly)."""
        now = now or datetime.now(timezone.utc)
        bucket: Bucket = "hour" if span <= timedelta(days=2) else "day"
        since = (now - span).replace(minute=0, second=0, microsecond=0)
        if bucket == "day":
            since = since.replace(hour=0)
        return cls(since, now, bucket)

    @property
    def first_hour(self) -> str:
        return to_db_time(self.since)[:13]

    @property
    def last_hour(self) -> str:
        return to_db_time(self.until)[:13]

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

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        """One read with bound parameters (so the query log's reads run on this connection)."""
        return list(await self._conn.execute_fetchall(sql, tuple(params)))

    # ------------------------------------------------------------------ overview

    async def overview(self, guild_id: int, window: Window, *, top: int = 10) -> Overview:
        """From the hourly roll-ups (migration V3), never from the rows themselves."""
        width = _BUCKET_CHARS[window.bucket]
        first, last = window.first_hour, window.last_hour
        counted = await self.fetchall(
            f"SELECT substr(hour, 1, {width}) AS b, command, status, feedback, SUM(n) AS n "
            "FROM dash_counts WHERE guild_id = ? AND hour >= ? AND hour <= ? "
            "GROUP BY b, command, status, feedback", [guild_id, first, last])
        per_bucket: dict[str, dict[str, int]] = defaultdict(dict)
        by_command: Counter[str] = Counter()
        by_status: Counter[str] = Counter()
        feedback: Counter[int] = Counter()
        for r in counted:
            n = int(r["n"])
            if not n:
                continue
            cell = per_bucket[r["b"]]
            cell[r["command"]] = cell.get(r["command"], 0) + n
            by_command[r["command"]] += n
            by_status[r["status"]] += n
            if r["feedback"]:
                feedback[int(r["feedback"])] += n
        histograms = await self.fetchall(
            "SELECT period, ms, n FROM dash_latency WHERE guild_id = ? AND period >= ? "
            f"AND period <= ? AND length(period) = {width} AND n > 0 ORDER BY period, ms",
            [guild_id, first[:width], last[:width]])
        per_period: dict[str, list[tuple[int, int]]] = defaultdict(list)
        merged: Counter[int] = Counter()
        for r in histograms:
            per_period[r["period"]].append((int(r["ms"]), int(r["n"])))
            merged[int(r["ms"])] += int(r["n"])
        latency = [Latency(b, sum(n for _, n in h), _percentile(h, 50), _percentile(h, 95))
                   for b, h in sorted(per_period.items())]
        overall = sorted(merged.items())
        busiest = await self.fetchall(
            # SQLite: with one max() aggregate, the bare user_name comes from that latest hour.
            "SELECT user_id, SUM(n) AS total, max(hour) AS latest, user_name FROM dash_users "
            "WHERE guild_id = ? AND hour >= ? AND hour <= ? GROUP BY user_id "
            "HAVING total > 0 ORDER BY total DESC, user_id LIMIT ?", [guild_id, first, last, top])
        return Overview(
            window=window,
            total=sum(by_status.values()),
            per_bucket=dict(per_bucket),
            by_command=dict(by_command.most_common()),
            by_status=dict(by_status.most_common()),
            feedback=dict(feedback),
            latency=latency,
            p50_ms=_percentile(overall, 50) if overall else None,
            p95_ms=_percentile(overall, 95) if overall else None,
            busiest=[Student(int(r["user_id"]), int(r["total"]), r["user_name"])
                     for r in busiest],
        )

    # ------------------------------------------------------------------ tables

    async def guild_name(self, guild_id: int) -> str:
        """The server's name as the bot last saw it; "" if it never did."""
        rows = await self.fetchall("SELECT name FROM guild_names WHERE guild_id = ?", (guild_id,))
        return str(rows[0]["name"]) if rows else ""

    async def commands(self, guild_id: int) -> list[str]:
        """The distinct commands this guild ever logged: a loose index scan (one seek per
        command) over (guild_id, command, created_at), not a pass over every row."""
        rows = await self.fetchall(
            """WITH RECURSIVE c(command) AS (
                SELECT min(command) FROM queries WHERE guild_id = ?
                UNION ALL
                SELECT (SELECT min(command) FROM queries WHERE guild_id = ? AND command > c.command)
                FROM c WHERE c.command IS NOT NULL)
            SELECT command FROM c WHERE command IS NOT NULL""", [guild_id, guild_id])
        return [r["command"] for r in rows]

    # ------------------------------------------------------------------ one student

    async def student(self, guild_id: int, user_id: int, window: Window) -> StudentView:
        """A student's commands (all time) and their queries per bucket in `window`.
        Uses the (user_id, guild_id) index: a student's rows, never the class's."""
        mine = "user_id = ? AND guild_id = ?"
        totals = await self.fetchall(
            f"SELECT command, COUNT(*) AS n FROM queries WHERE {mine} "
            "GROUP BY command ORDER BY n DESC, command", [user_id, guild_id])
        name_rows = await self.fetchall(
            f"SELECT user_name FROM queries WHERE {mine} AND user_name != '' "
            "ORDER BY created_at DESC LIMIT 1", [user_id, guild_id])
        width = _BUCKET_CHARS[window.bucket]
        counted = await self.fetchall(
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


def _percentile(histogram: list[tuple[int, int]], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default, like `QueryLog.stats`),
    over a histogram of (value, count) sorted by value."""
    n = sum(count for _, count in histogram)
    position = (n - 1) * pct / 100
    low, high = int(position), min(int(position) + 1, n - 1)

    def value_at(rank: int) -> float:
        seen = 0
        for value, count in histogram:
            seen += count
            if rank < seen:
                return float(value)
        return float(histogram[-1][0])

    a, b = value_at(low), value_at(high)
    return a + (b - a) * (position - low)
