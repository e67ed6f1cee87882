"""`QueryLog`: the query log as the bot uses it, one object over the writer, reads, export,
deletion and retention. A guild only ever reads or erases its own rows: every call takes a
guild id, and erasing across every guild must be asked for by name (`all_guilds=True`, the
owner's CLI path), so a command that arrives without a guild (a DM) can never erase a member's
rows everywhere.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import BinaryIO

from core.storage.database import Database
from core.storage.querylog import reads
from core.storage.querylog.export import ExportResult, write_csv
from core.storage.querylog.reads import QueryFilter, RowsPage, Stats
from core.storage.querylog.rows import LogInputs, QueryRecord, QueryRow, RowBuilder, to_db_time
from core.storage.querylog.writer import GroupCommitWriter

log = logging.getLogger("core.storage.querylog")


#: After rows are deleted: the full-text index (migration V11) records a deletion as a marker
#: beside the old entries, which keep pieces of the deleted text until segments merge.
#: 'optimize' merges them all now, dropping those entries (and `secure_delete` zeroes the
#: pages they used), so deleted text leaves the index with its row.
FORGET_INDEXED_TEXT = "INSERT INTO queries_text (queries_text) VALUES ('optimize')"

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
        self.rows = RowBuilder(log_inputs, hash_salt)
        if log_inputs == "hashed" and not hash_salt:
            log.warning("log_inputs='hashed' without a salt: short inputs can be guessed")
        if default_retention_days < 1:
            raise ValueError("default_retention_days must be at least 1")
        self._db = db
        self._default_retention_days = default_retention_days
        self._writer = GroupCommitWriter(db, retry_limit=retry_limit,
                                         retry_interval_s=retry_interval_s)

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
        return self._writer.pending_retry

    @property
    def dropped(self) -> int:
        """Rows given up because the retry buffer overflowed."""
        return self._writer.dropped

    @property
    def rejected(self) -> int:
        """Rows set aside because they could not be stored while others could."""
        return self._writer.rejected

    # ----------------------------------------------------------------- writing

    async def record(self, rec: QueryRecord) -> bool:
        """Store one outcome. True: the row is on disk. False: logged, kept for retry or dropped.

        Never raises (except CancelledError, which belongs to the caller); a row whose caller
        was cancelled is still written.
        """
        try:
            row = self.rows.build_row(rec)
        except Exception:
            log.exception("Query log: could not encode a record for /%s; dropped",
                          getattr(rec, "command", "?"))
            return False
        return await self._writer.submit(row)

    async def flush(self) -> bool:
        """Write everything queued or waiting for retry now; True when nothing is left over."""
        return await self._writer.flush()

    async def set_feedback(self, interaction_id: int, user_id: int, vote: int) -> bool:
        """Store 👍 (1) / 👎 (-1) on the row answering `interaction_id`, if `user_id` asked it.

        Goes through the writer's lock after writing what is queued, so a vote cast a moment
        after the answer still finds its row. False: no such row of that user (someone else's
        answer, a deleted row, or a row that could not be stored).
        """
        if vote not in (-1, 1):
            raise ValueError("feedback is 1 or -1")
        async with self._writer.lock:
            await self._writer.write_pending()
            async with self._db.transaction() as conn:
                cursor = await conn.execute(
                    "UPDATE queries SET feedback = ? WHERE interaction_id = ? AND user_id = ?",
                    (vote, interaction_id, user_id))
                return cursor.rowcount > 0

    async def clear_feedback(self, guild_id: int, user_id: int) -> int:
        """Erase the votes `user_id` gave in `guild_id` (their rows stay); how many went."""
        async with self._writer.lock:
            await self._writer.write_pending()
            async with self._db.transaction() as conn:
                cursor = await conn.execute(
                    "UPDATE queries SET feedback = NULL WHERE guild_id = ? AND user_id = ?"
                    " AND feedback IS NOT NULL", (guild_id, user_id))
                return cursor.rowcount

    async def aclose(self) -> None:
        """Stop accepting rows and write what is pending; safe to call twice."""
        await self._writer.aclose()

    # ----------------------------------------------------------------- reading

    async def recent(self, f: QueryFilter) -> list[QueryRow]:
        """Rows matching `f`, newest first."""
        return await reads.recent(self._db, f)

    async def count(self, f: QueryFilter) -> int:
        """How many rows match `f` (ignoring its limit)."""
        return await reads.count(self._db, f)

    async def page(self, f: QueryFilter, index: int, size: int) -> RowsPage:
        """Page `index` (0-based, clamped) of the rows matching `f`, `size` rows a page."""
        return await reads.page(self._db, f, index, size)

    async def stats(self, guild_id: int, since: datetime | None = None) -> Stats:
        return await reads.stats(self._db, guild_id, since)

    async def export_csv(self, f: QueryFilter, out: BinaryIO, *,
                         max_bytes: int | None = None) -> ExportResult:
        """Stream the rows matching `f` to `out` as CSV (see `core.storage.querylog.export`), in a
        worker thread with its own read-only connection: the event loop stays free and memory
        does not grow with the log. Rows queued before the call are included."""
        await self.flush()
        return await asyncio.to_thread(write_csv, self._db.path, f, out, max_bytes=max_bytes)

    # ----------------------------------------------------------------- deleting

    async def delete_user(self, guild_id: int | None, user_id: int, *,
                          all_guilds: bool = False) -> int:
        """Erase a user's rows in one guild (`all_guilds=True` and no guild: in every guild
        and DMs; the owner's CLI path). Refuses a missing guild otherwise.

        The user's rows waiting for retry are dropped and rows still queued are written first
        (then deleted), so nothing of the user reappears after the deletion. The deleted text
        is then checkpointed out of the WAL and, with ``secure_delete``, zeroed in the file.
        Returns the number of rows deleted, on disk or from the retry buffer.
        """
        if all_guilds != (guild_id is None):
            raise ValueError("delete_user needs a guild id, or guild_id=None with all_guilds=True")
        async with self._writer.lock:
            dropped = self._writer.drop_buffered(
                lambda row: row.user_id == user_id and (all_guilds or row.guild_id == guild_id))
            await self._writer.write_pending()
            sql = "DELETE FROM queries WHERE user_id = ?"
            params: list[object] = [user_id]
            if not all_guilds:
                sql += " AND guild_id = ?"
                params.append(guild_id)
            async with self._db.transaction() as conn:
                cursor = await conn.execute(sql, params)
                deleted = cursor.rowcount + dropped
                await conn.execute(FORGET_INDEXED_TEXT)
            await self._db.checkpoint()
        log.info("Deleted %d query-log rows of a user (%s)", deleted,
                 "every guild" if all_guilds else f"guild {guild_id}")
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
                await conn.execute(FORGET_INDEXED_TEXT)
        if deleted:
            log.info("Retention purge deleted %d query-log rows", deleted)
        return deleted
