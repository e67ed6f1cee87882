"""The group-commit writer: rows on disk durably without slowing the bot down, and one row
that cannot be stored never blocks the others.

Durability promise: when `submit` returns True, the row is committed with ``synchronous=FULL``:
it survives a crash or power loss from that moment on. Cogs await it right after sending the
answer, so a ``kill -9`` loses only rows whose commit was still running (tests/test_durability.py).

Cost: one fsync per commit would cap us at a few hundred rows a second on a slow disk, so writes
use group commit. `submit` only queues its row and awaits a future; one writer task takes
everything queued so far, inserts it with one ``executemany`` in one transaction, commits once
and resolves every waiter. Rows that arrive while a commit is in flight form the next batch, so
200 simultaneous rows cost a handful of commits, not 200.

A failing write must never cost a student their answer: `submit` never raises, it returns
False. Two kinds of failure, told apart by retrying a failed batch row by row (each row its own
statement, all in one transaction):

- A fault of the storage (disk full, read-only or damaged file, a lock) fails every row. The
  rows stay in a bounded in-memory buffer and are retried with the next batch or after
  `retry_interval_s`; `aclose` makes a last attempt, so a clean stop loses nothing that can be
  written. The first such failure is logged once, as an error that says what to do
  (`core.storage.database.storage_problem`); while it lasts, later attempts log one line each.
- A row that fails while others in its batch are written, or that cannot even be bound (a
  value SQLite has no type for), is poison: it is set aside at once, counted in `rejected` and
  logged with its reason and metadata, never its text. It would otherwise fail every later
  batch it is retried with (issue 12: one lone surrogate stopped the whole log).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Callable

from core.storage.database import Database, storage_problem
from core.storage.querylog.rows import INSERT_SQL, StoredRow

log = logging.getLogger("core.storage.querylog")

#: Errors raised while binding one row's values: the row itself is wrong, not the storage.
_ROW_ERRORS = (sqlite3.ProgrammingError, sqlite3.InterfaceError, UnicodeError, OverflowError,
               TypeError, ValueError)


# What became of one row in a write attempt.
_WRITTEN, _SET_ASIDE, _RETRY = "written", "set aside", "retry"


class GroupCommitWriter:
    """Queues rows and commits them in groups. Does not own `db`."""

    def __init__(self, db: Database, *, retry_limit: int = 10_000,
                 retry_interval_s: float = 5.0) -> None:
        self._db = db
        self._retry_interval_s = retry_interval_s
        self._pending: list[tuple[StoredRow, asyncio.Future[bool]]] = []
        self._retry: deque[StoredRow] = deque(maxlen=retry_limit)
        #: Held while rows are written; `QueryLog.delete_user` takes it to order a deletion
        #: after every row of the user that was queued before it.
        self.lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._failing = False
        #: Rows given up because the retry buffer overflowed.
        self.dropped = 0
        #: Rows set aside because they could not be stored while others could (poison rows).
        self.rejected = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending_retry(self) -> int:
        """Rows that failed to write and wait for the next attempt."""
        return len(self._retry)

    async def submit(self, row: StoredRow) -> bool:
        """Queue `row`; True once it is committed, False when it is not (never raises)."""
        if self._closed:
            log.warning("Query log is closed; dropped a row for /%s", row.command)
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append((row, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="querylog-writer")
        self._wakeup.set()
        return await future

    async def flush(self) -> bool:
        """Write everything queued or waiting for retry now; True when nothing is left over."""
        async with self.lock:
            await self.write_pending()
        return not self._retry

    async def aclose(self) -> None:
        """Stop accepting rows and write what is pending; safe to call twice."""
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._retry:
            log.error("Query log closed with %d rows that could not be written", len(self._retry))

    def drop_buffered(self, doomed: Callable[[StoredRow], bool]) -> int:
        """Forget rows waiting for retry that `doomed` picks; returns how many. Hold `lock`."""
        kept = [row for row in self._retry if not doomed(row)]
        dropped = len(self._retry) - len(kept)
        self._retry.clear()
        self._retry.extend(kept)
        return dropped

    async def _run(self) -> None:
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
            async with self.lock:
                await self.write_pending()
        if self._retry:  # last attempt on close for rows that failed earlier
            async with self.lock:
                await self.write_pending()

    async def write_pending(self) -> None:
        """Write the retry buffer and the queue. The caller holds `lock`."""
        batch, self._pending = self._pending, []
        rows = list(self._retry) + [row for row, _ in batch]
        if not rows:
            return
        outcomes = await self._insert(rows)
        retry = [row for row, outcome in zip(rows, outcomes) if outcome is _RETRY]
        if _WRITTEN in outcomes and self._failing:
            log.info("Query log writes work again; wrote %d rows", outcomes.count(_WRITTEN))
            self._failing = False
        overflow = len(retry) - (self._retry.maxlen or len(retry))
        if overflow > 0:
            self.dropped += overflow
            log.error("Query log retry buffer full; dropped the %d oldest rows", overflow)
        self._retry.clear()
        self._retry.extend(retry)  # a full deque drops from the left: the oldest rows
        for (_, future), outcome in zip(batch, outcomes[len(rows) - len(batch):]):
            if not future.done():  # its caller may have been cancelled
                future.set_result(outcome is _WRITTEN)

    async def _insert(self, rows: list[StoredRow]) -> list[str]:
        """Write `rows`; per row: _WRITTEN, _SET_ASIDE (poison) or _RETRY (storage fault)."""
        try:
            async with self._db.transaction() as conn:
                await conn.executemany(INSERT_SQL, rows)
            return [_WRITTEN] * len(rows)
        except Exception:
            pass  # find out, row by row, whether some rows or the storage are at fault
        outcomes = [_RETRY] * len(rows)
        errors: dict[int, BaseException] = {}
        storage_fault: BaseException | None = None
        try:
            async with self._db.transaction() as conn:
                for i, row in enumerate(rows):
                    try:
                        await conn.execute(INSERT_SQL, row)
                        outcomes[i] = _WRITTEN
                    except Exception as exc:
                        if not conn.in_transaction:  # SQLite rolled back: the storage failed
                            raise
                        errors[i] = exc
        except Exception as exc:
            storage_fault = exc
            outcomes = [_RETRY] * len(rows)
        if storage_fault is None and _WRITTEN not in outcomes:
            # Nothing could be written: the storage is at fault (a full disk or a refusing
            # trigger fails every row alike), except for rows that could not even be bound.
            storage_fault = next((e for e in errors.values() if not isinstance(e, _ROW_ERRORS)),
                                 None)
            errors = {i: e for i, e in errors.items() if isinstance(e, _ROW_ERRORS)}
        elif storage_fault is not None:
            errors = {i: e for i, e in errors.items() if isinstance(e, _ROW_ERRORS)}
        for i, exc in errors.items():
            outcomes[i] = _SET_ASIDE
            self._set_aside(rows[i], exc)
        if _RETRY in outcomes:
            self._report_storage_fault(storage_fault, outcomes.count(_RETRY))
        return outcomes

    def _set_aside(self, row: StoredRow, exc: BaseException) -> None:
        self.rejected += 1
        # Metadata only: the reason is SQLite's or the codec's message, never the row's text.
        log.error(
            "Query log: set aside a row that cannot be stored (/%s at %s, guild %s, user %s):"
            " %s: %s. The other rows are written.",
            row.command, row.created_at, row.guild_id, row.user_id, type(exc).__name__,
            str(exc)[:200],
        )

    def _report_storage_fault(self, exc: BaseException | None, rows: int) -> None:
        if not self._failing:
            problem = storage_problem(exc, self._db.path) if exc else "unknown cause"
            log.error("Query log write failed; keeping %d rows for retry. Cause: %s",
                      rows, problem, exc_info=exc)
        else:
            log.warning("Query log write failed again; %d rows waiting", rows)
        self._failing = True
