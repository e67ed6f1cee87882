"""The query log's stores of student data (`core.storage.student_data.StudentDataStore`).

Two stores over one table: the rows themselves (what a student asked, under ``log_inputs``),
and the 👍/👎 votes a student gave on their answers (a column of those rows). The votes are
registered before the rows (`StudentData.register`): erasing them first counts them.
"""

from __future__ import annotations

from datetime import datetime

from core.i18n import plural_noun
from core.storage.querylog.reads import QueryFilter
from core.storage.querylog.service import QueryLog
from core.storage.student_data import HeldItem


class QueryRows:
    """Every row of the query log about a student."""

    singular, plural = plural_noun("query-log row", "query-log rows")

    def __init__(self, querylog: QueryLog) -> None:
        self._log = querylog

    async def count_for_user(self, guild_id: int, user_id: int) -> int:
        return await self._log.count(QueryFilter(guild_id=guild_id, user_id=user_id))

    async def show_for_user(self, guild_id: int, user_id: int, *, limit: int,
                            until: datetime | None = None) -> list[HeldItem]:
        rows = await self._log.recent(QueryFilter(guild_id=guild_id, user_id=user_id,
                                                  until=until, limit=limit))
        return [HeldItem(r.created_at, f"/{r.command} {r.status}", r.input_text) for r in rows]

    async def delete_for_user(self, guild_id: int, user_id: int) -> int:
        """Rows on disk and rows waiting in the retry buffer (`QueryLog.delete_user`)."""
        return await self._log.delete_user(guild_id, user_id)

    async def purge_expired(self, now: datetime) -> int:
        return await self._log.purge(now)


class FeedbackVotes:
    """The 👍/👎 votes a student gave on their own answers."""

    singular, plural = plural_noun("feedback vote", "feedback votes")

    def __init__(self, querylog: QueryLog) -> None:
        self._log = querylog

    async def count_for_user(self, guild_id: int, user_id: int) -> int:
        return await self._log.count(QueryFilter(guild_id=guild_id, user_id=user_id,
                                                 with_feedback=True))

    async def show_for_user(self, guild_id: int, user_id: int, *, limit: int,
                            until: datetime | None = None) -> list[HeldItem]:
        rows = await self._log.recent(QueryFilter(guild_id=guild_id, user_id=user_id,
                                                  until=until, limit=limit,
                                                  with_feedback=True))
        return [HeldItem(r.created_at, f"{'👍' if r.feedback == 1 else '👎'} on /{r.command}")
                for r in rows]

    async def delete_for_user(self, guild_id: int, user_id: int) -> int:
        return await self._log.clear_feedback(guild_id, user_id)

    async def purge_expired(self, now: datetime) -> int:
        """Nothing of its own: a vote lives on its row, which `QueryRows` purges."""
        return 0
