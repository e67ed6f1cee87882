"""Everything kept about a student, as one thing: shown, erased and expired store by store.

After Red-DiscordBot's ``red_delete_data_for_user``: each store of student data declares how
to show, delete and purge what it holds (`StudentDataStore`), and `StudentData` loops over the
stores it was given. `/mydata show`, `/mydata delete` and the retention pass call the
aggregate, never a store by name, so a store added later (registered where the services are
built) is shown, erased and purged with the others by construction.

Why a failing store does not stop the others: a student who asked to be forgotten must lose
everything that can be erased now; the first failure is raised once every store was tried. The
retention pass logs a store's failure and goes on (the next pass tries again).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

from core.i18n import ngettext, tr

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldItem:
    """One thing a store keeps about a student, as `/mydata show` lists it."""

    at: datetime
    #: What it is, for the student: "/mask ok", "👍 on /mask", "guess in quiz 12".
    what: str
    #: What is kept of the student's own words: the text, a digest, or "" (``log_inputs``).
    text: str = ""


@runtime_checkable
class StudentDataStore(Protocol):
    """A store of student data: what it holds about one member of one server, how to erase
    it, and how to drop what is past its server's retention."""

    #: How one and several of its items are called ("quiz guess", "quiz guesses"), in English:
    #: mark them with `core.i18n.plural_noun` so the catalog translates them.
    singular: str
    plural: str

    async def count_for_user(self, guild_id: int, user_id: int) -> int:
        """How many items it keeps about `user_id` in `guild_id`."""
        ...

    async def show_for_user(self, guild_id: int, user_id: int, *, limit: int,
                            until: datetime | None = None) -> list[HeldItem]:
        """The newest `limit` items about `user_id` in `guild_id` (before `until`), newest
        first."""
        ...

    async def delete_for_user(self, guild_id: int, user_id: int) -> int:
        """Erase every item about `user_id` in `guild_id`; how many went."""
        ...

    async def purge_expired(self, now: datetime) -> int:
        """Erase what is past its server's retention at `now`; how many went."""
        ...


@dataclass(frozen=True)
class HeldPage:
    """One page of everything kept about a student, newest first, across every store."""

    items: list[HeldItem]
    #: 0-based, clamped to the pages that exist.
    index: int
    count: int
    total: int
    #: Each store's count, in registration order, keyed by its plural.
    by_store: dict[str, int]


class StudentData:
    """The stores of student data, looped over; construct it where the services are built."""

    def __init__(self, stores: Iterable[StudentDataStore] = ()) -> None:
        self._stores: list[StudentDataStore] = []
        for store in stores:
            self.register(store)

    def register(self, store: StudentDataStore) -> None:
        """Add a store. A store whose items live inside another's (feedback votes on query-log
        rows) is registered before it, so its deletion count is taken while they exist."""
        if not isinstance(store, StudentDataStore):
            raise TypeError(f"{type(store).__name__} is not a StudentDataStore")
        self._stores.append(store)

    @property
    def stores(self) -> tuple[StudentDataStore, ...]:
        return tuple(self._stores)

    async def show(self, guild_id: int, user_id: int, *, index: int = 0, size: int = 10,
                   until: datetime | None = None) -> HeldPage:
        """Page `index` of the items every store keeps about the user, newest first. Pin
        `until` so items written while the student reads do not shift the later pages."""
        counts = {store.plural: await store.count_for_user(guild_id, user_id)
                  for store in self._stores}
        total = sum(counts.values())
        pages = max(1, -(-total // size))
        index = max(0, min(index, pages - 1))
        wanted = (index + 1) * size
        lists = [await store.show_for_user(guild_id, user_id, limit=wanted, until=until)
                 for store in self._stores]
        merged = list(heapq.merge(*lists, key=lambda item: item.at, reverse=True))
        return HeldPage(merged[index * size:wanted], index, pages, total, counts)

    async def delete_for_user(self, guild_id: int, user_id: int) -> dict[str, int]:
        """Erase everything about the user in `guild_id`, store by store; how many items each
        store erased (by plural). Every store is tried; then the first failure is raised."""
        if not isinstance(guild_id, int):
            raise TypeError("delete_for_user erases within one server: guild_id must be an id")
        deleted: dict[str, int] = {}
        failure: BaseException | None = None
        for store in self._stores:
            try:
                deleted[store.plural] = await store.delete_for_user(guild_id, user_id)
            except Exception as exc:
                log.exception("erasing a user's %s failed", store.plural)
                failure = failure or exc
        if failure is not None:
            raise failure
        return deleted

    async def purge_expired(self, now: datetime | None = None) -> dict[str, int]:
        """One retention pass over every store; never raises (the next pass tries again)."""
        now = now or datetime.now(timezone.utc)
        purged: dict[str, int] = {}
        for store in self._stores:
            try:
                purged[store.plural] = await store.purge_expired(now)
            except Exception:
                log.exception("retention purge of %s failed", store.plural)
                continue
            if purged[store.plural]:
                log.info("retention: purged %d %s", purged[store.plural], store.plural)
        return purged

    def describe(self, counts: Mapping[str, int], *, zeros: bool = True) -> str:
        """"1 feedback vote, 4 query-log rows and 0 quiz guesses", in registration order
        (`zeros=False`: the stores that hold something only)."""
        parts = [str(n) + " " + ngettext(s.singular, s.plural, n)
                 for s, n in ((s, counts.get(s.plural, 0)) for s in self._stores)
                 if zeros or n]
        if not parts:
            return tr("nothing")
        if len(parts) == 1:
            return parts[0]
        return tr("{items} and {last}", items=", ".join(parts[:-1]), last=parts[-1])
