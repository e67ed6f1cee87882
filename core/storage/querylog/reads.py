"""Reading the query log: the one filter, pages of rows, every row, usage statistics.

Every read takes a guild id (`QueryFilter` refuses anything else), so one server's instructors
can never read another server's rows. Statistics are computed by SQLite (GROUP BY, ORDER BY ..
OFFSET for percentiles), so `/logs stats` costs no memory per row however big the log grows.

`QueryFilter.where` is the only WHERE clause over rows, `rows.COLUMNS_SQL` the only column list
and `rows.row_from_db` the only decoder: `/logs`, `/mydata`, the dashboard (over its own
read-only connection, any `Reader`) and the exports all read through here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from core.outcomes import Status
from core.storage.querylog.rows import COLUMNS_SQL, QueryRow, row_from_db, to_db_time

#: How `/logs stats` groups outcomes. Every status is in exactly one group (tested), so no
#: outcome is left out of a rate silently. "student" is the only one that is the student's doing.
STATUS_GROUPS: dict[str, tuple[Status, ...]] = {
    "answered": (Status.OK, Status.EXPIRED),
    "student": (Status.USER_ERROR,),
    "refused": (Status.REFUSED, Status.COOLDOWN, Status.PAUSED),
    "server": (Status.OVERLOADED, Status.UNAVAILABLE, Status.TIMEOUT, Status.FAILED),
}


class Reader(Protocol):
    """Anything that runs one read with bound parameters: the bot's `Database`, or the
    dashboard's read-only connection."""

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]: ...


#: The shortest search the trigram index can answer; shorter ones scan the class's rows.
TEXT_INDEX_MIN = 3

@dataclass(frozen=True)
class QueryFilter:
    """Which rows to read. `guild_id` is required: a guild only ever sees its own rows.
    `None` names the rows of direct messages (where `[discord] allow_dms` let them run): the
    owner's CLI export reads them, no guild's instructors ever do.

    `since` is inclusive, `until` exclusive. `limit=None` means no limit (exports). `offset`
    skips that many of the newest matching rows (`recent` only: a page of a listing; pin
    `until` to the first page's time so new rows do not shift the later pages). `text` keeps
    the rows whose stored input contains it, ignoring case (the dashboard's search; it finds
    words only where ``log_inputs = "full"`` kept them).
    """

    guild_id: int | None
    user_id: int | None = None
    command: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = 50
    offset: int = 0
    text: str = ""
    #: Only rows that carry a 👍/👎 vote.
    with_feedback: bool = False

    def __post_init__(self) -> None:
        if self.guild_id is not None and not isinstance(self.guild_id, int):
            raise TypeError("QueryFilter.guild_id must be a guild id (or None for DMs)")
        if self.limit is not None and self.limit < 1:
            raise ValueError("QueryFilter.limit must be at least 1 (or None for no limit)")
        if self.offset < 0:
            raise ValueError("QueryFilter.offset must be at least 0")

    def where(self) -> tuple[str, list[Any]]:
        """WHERE clause from fixed fragments; every value is a bound parameter."""
        clauses = ["guild_id = ?" if self.guild_id is not None else "guild_id IS NULL"]
        params: list[Any] = [self.guild_id] if self.guild_id is not None else []
        if self.user_id is not None:
            clauses.append("user_id = ?")
            params.append(self.user_id)
        if self.command is not None:
            clauses.append("command = ?")
            params.append(self.command)
        if self.status is not None:
            clauses.append("status = ?")
            params.append(self.status)
        if self.since is not None:
            clauses.append("created_at >= ?")
            params.append(to_db_time(self.since))
        if self.until is not None:
            clauses.append("created_at < ?")
            params.append(to_db_time(self.until))
        if self.with_feedback:
            clauses.append("feedback IS NOT NULL")
        if self.text:
            if len(self.text) >= TEXT_INDEX_MIN:
                # The full-text index (migration V11) finds the candidate rows without reading
                # every row of the class; a phrase, so nothing typed is read as FTS syntax.
                clauses.append("id IN (SELECT rowid FROM queries_text WHERE queries_text "
                               "MATCH ?)")
                params.append('"' + self.text.replace('"', '""') + '"')
            # instr, not LIKE: no wildcard characters to escape in what an instructor types.
            # Also the exact rule on the index's candidates (its case folding is wider).
            clauses.append("instr(lower(input_text), lower(?)) > 0")
            params.append(self.text)
        return " AND ".join(clauses), params


@dataclass(frozen=True)
class Stats:
    """Usage summary for one guild.

    `by_status` has every `Status` (zeros included), in the vocabulary's order. The rates split
    the requests that got no answer by whose doing it was, so none is hidden in another:
    `student_error_rate` (user_error: the input cannot work as given), `refusal_rate` (a
    moderator rule, cooldown or pause said no) and `server_error_rate` (overloaded,
    unavailable, timeout, failed: our side). `error_rate` is their sum: how often a student
    did not get an answer. Latency percentiles use rows with a recorded total_ms and linear
    interpolation (numpy's default).
    """

    guild_id: int
    since: datetime | None
    total: int
    by_command: dict[str, int]
    by_user: dict[int, int]
    by_status: dict[str, int]
    median_total_ms: float | None
    p95_total_ms: float | None
    by_group: dict[str, int] = field(default_factory=dict)
    #: command -> (👍, 👎) for the commands whose answers got feedback.
    feedback_by_command: dict[str, tuple[int, int]] = field(default_factory=dict)

    def rate(self, group: str) -> float:
        return self.by_group.get(group, 0) / self.total if self.total else 0.0

    @property
    def student_error_rate(self) -> float:
        return self.rate("student")

    @property
    def refusal_rate(self) -> float:
        return self.rate("refused")

    @property
    def server_error_rate(self) -> float:
        return self.rate("server")

    @property
    def error_rate(self) -> float:
        return self.student_error_rate + self.refusal_rate + self.server_error_rate


@dataclass(frozen=True)
class RowsPage:
    """Page `index` (0-based) of `count` pages of `size` rows; `total` rows match."""

    rows: list[QueryRow]
    index: int
    count: int
    total: int
    size: int


def page_count(total: int, size: int) -> int:
    """Pages needed for `total` rows (at least one, empty, page)."""
    return max(1, -(-total // size))


async def recent(db: Reader, f: QueryFilter) -> list[QueryRow]:
    """Rows matching `f`, newest first."""
    where, params = f.where()
    sql = f"SELECT {COLUMNS_SQL} FROM queries WHERE {where} ORDER BY created_at DESC, id DESC"
    sql += " LIMIT ? OFFSET ?"
    params += [f.limit if f.limit is not None else -1, f.offset]
    return [row_from_db(r) for r in await db.fetchall(sql, params)]


async def count(db: Reader, f: QueryFilter) -> int:
    """How many rows match `f` (ignoring its limit)."""
    where, params = f.where()
    rows = await db.fetchall(f"SELECT count(*) FROM queries WHERE {where}", params)
    return int(rows[0][0])


async def page(db: Reader, f: QueryFilter, index: int, size: int) -> RowsPage:
    """Page `index` of the rows `f` matches, newest first, clamped to the pages that exist
    now (`f`'s limit and offset are ignored). Pin `f.until` so rows logged while someone reads
    do not shift the later pages."""
    total = await count(db, f)
    pages = page_count(total, size)
    index = max(0, min(index, pages - 1))
    rows = await recent(db, replace(f, offset=index * size, limit=size))
    # A row committed between the count and the read (group commit) still counts.
    total = max(total, index * size + len(rows))
    return RowsPage(rows, index, page_count(total, size), total, size)


async def iter_rows(db: Reader, f: QueryFilter, *, chunk: int = 2000
                    ) -> AsyncIterator[QueryRow]:
    """Every row `f` matches (up to its limit), newest first, `chunk` rows a read: keyset
    paging on (created_at, id), so the last chunk costs what the first did and no read holds
    the connection for the whole export."""
    where, params = f.where()
    left = f.limit
    after: tuple[str, int] | None = None
    while left is None or left > 0:
        extra, extra_params = "", []
        if after is not None:
            extra = " AND (created_at < ? OR (created_at = ? AND id < ?))"
            extra_params = [after[0], after[0], after[1]]
        size = chunk if left is None else min(chunk, left)
        rows = await db.fetchall(
            f"SELECT {COLUMNS_SQL} FROM queries WHERE {where}{extra} "
            "ORDER BY created_at DESC, id DESC LIMIT ?", [*params, *extra_params, size])
        for r in rows:
            yield row_from_db(r)
        if len(rows) < size:
            return
        if left is not None:
            left -= len(rows)
        after = (rows[-1]["created_at"], int(rows[-1]["id"]))


async def stats(db: Reader, guild_id: int, since: datetime | None = None) -> Stats:
    where, params = QueryFilter(guild_id=guild_id, since=since).where()

    async def counts(column: str) -> dict[Any, int]:
        # `column` is one of three literals below, never user input.
        rows = await db.fetchall(
            f"SELECT {column}, count(*) AS n FROM queries WHERE {where} GROUP BY {column}"
            f" ORDER BY n DESC, {column}", params)
        return {r[0]: int(r[1]) for r in rows}

    by_command = await counts("command")
    by_user = {int(user): n for user, n in (await counts("user_id")).items()}
    stored = await counts("status")
    by_status = {status.value: stored.get(status.value, 0) for status in Status}
    by_group = {group: sum(by_status[s.value] for s in members)
                for group, members in STATUS_GROUPS.items()}
    timed = f"{where} AND total_ms IS NOT NULL"
    [[n_timed]] = await db.fetchall(f"SELECT count(*) FROM queries WHERE {timed}", params)

    async def percentile(pct: float) -> float | None:
        """Linear interpolation between closest ranks, reading only the two ranks needed."""
        if not n_timed:
            return None
        rank = (n_timed - 1) * pct / 100
        low = int(rank)
        rows = await db.fetchall(
            f"SELECT total_ms FROM queries WHERE {timed} ORDER BY total_ms LIMIT 2 OFFSET ?",
            [*params, low])
        values = [float(r[0]) for r in rows]
        high = values[1] if len(values) > 1 else values[0]
        return values[0] + (high - values[0]) * (rank - low)

    votes = await db.fetchall(
        f"SELECT command, sum(feedback = 1), sum(feedback = -1) FROM queries WHERE {where}"
        " AND feedback IS NOT NULL GROUP BY command ORDER BY command", params)
    return Stats(
        feedback_by_command={r[0]: (int(r[1]), int(r[2])) for r in votes},
        guild_id=guild_id,
        since=since,
        total=sum(by_status.values()),
        by_command=by_command,
        by_user=by_user,
        by_status=by_status,
        median_total_ms=await percentile(50),
        p95_total_ms=await percentile(95),
        by_group=by_group,
    )
