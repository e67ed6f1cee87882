"""Every store of student data is shown, erased and expired through one aggregate
(`core.storage.student_data.StudentData`): the query log's rows and feedback votes, quiz
guesses, and a store added later (here a fake one) without touching `/mydata` or the purge."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.storage.database import Database
from core.storage.querylog import FeedbackVotes, QueryLog, QueryRecord, QueryRows
from core.storage.quizzes import NewQuiz, QuizStore
from core.storage.student_data import HeldItem, StudentData, StudentDataStore
from tests.bot_harness import bot_config, running_bot

GUILD, OTHER, STUDENT, CLASSMATE = 1, 2, 7, 8
NOW = datetime.now(timezone.utc)


class FakeNotes:
    """A store added later: notes a future feature keeps about students."""

    singular, plural = "note", "notes"

    def __init__(self) -> None:
        #: (guild, user, written at, text)
        self.notes: list[tuple[int, int, datetime, str]] = []
        self.purged_at: list[datetime] = []

    async def count_for_user(self, guild_id: int, user_id: int) -> int:
        return len([n for n in self.notes if n[:2] == (guild_id, user_id)])

    async def show_for_user(self, guild_id: int, user_id: int, *, limit: int,
                            until: datetime | None = None) -> list[HeldItem]:
        mine = sorted((n for n in self.notes if n[:2] == (guild_id, user_id)
                       and (until is None or n[2] < until)), key=lambda n: n[2], reverse=True)
        return [HeldItem(at, "note", text) for _, _, at, text in mine[:limit]]

    async def delete_for_user(self, guild_id: int, user_id: int) -> int:
        before = len(self.notes)
        self.notes = [n for n in self.notes if n[:2] != (guild_id, user_id)]
        return before - len(self.notes)

    async def purge_expired(self, now: datetime) -> int:
        self.purged_at.append(now)
        before = len(self.notes)
        self.notes = [n for n in self.notes if now - n[2] < timedelta(days=90)]
        return before - len(self.notes)


@pytest.fixture
async def stores(tmp_path):
    async with await Database.open(tmp_path / "s.db") as db, QueryLog(db) as querylog:
        quizzes = QuizStore(db)
        data = StudentData([FeedbackVotes(querylog), QueryRows(querylog), quizzes])
        yield data, querylog, quizzes, db


async def _fill(querylog: QueryLog, quizzes: QuizStore) -> None:
    for i, (guild, user) in enumerate([(GUILD, STUDENT), (GUILD, STUDENT), (GUILD, CLASSMATE),
                                       (OTHER, STUDENT)]):
        assert await querylog.record(QueryRecord(
            guild_id=guild, channel_id=3, user_id=user, command="tokens", options={},
            input_text=f"text {i}", status="ok", interaction_id=100 + i,
            created_at=NOW - timedelta(minutes=10 - i)))
    assert await querylog.set_feedback(100, STUDENT, 1)
    assert await querylog.set_feedback(102, CLASSMATE, -1)
    for guild, channel in ((GUILD, 10), (OTHER, 20)):
        quiz = await quizzes.create(NewQuiz(guild, channel, "mask", "A [MASK] here.", 99))
        await quizzes.guess(quiz.id, STUDENT, "dog")
        await quizzes.guess(quiz.id, CLASSMATE, "cat")


async def test_show_lists_every_store_newest_first(stores):
    data, querylog, quizzes, _ = stores
    await _fill(querylog, quizzes)
    page = await data.show(GUILD, STUDENT, size=10)
    assert page.by_store == {"feedback votes": 1, "query-log rows": 2, "quiz guesses": 1}
    assert page.total == 4 and page.count == 1
    # A vote is dated by its row (ties: the order the stores were registered in).
    assert [i.what for i in page.items] == [
        "guess in /quiz mask #1", "/tokens ok", "👍 on /tokens", "/tokens ok"]
    assert [i.text for i in page.items] == ["dog", "text 1", "", "text 0"]
    assert data.describe(page.by_store) == (
        "1 feedback vote, 2 query-log rows and 1 quiz guess")
    # Paged across stores: the second page of two-item pages is the older half.
    second = await data.show(GUILD, STUDENT, index=1, size=2)
    assert [i.what for i in second.items] == ["👍 on /tokens", "/tokens ok"]
    assert second.count == 2


async def test_delete_erases_every_store_in_that_server_only(stores):
    data, querylog, quizzes, db = stores
    await _fill(querylog, quizzes)
    assert await data.delete_for_user(GUILD, STUDENT) == {
        "feedback votes": 1, "query-log rows": 2, "quiz guesses": 1}
    assert (await data.show(GUILD, STUDENT)).total == 0
    assert (await data.show(OTHER, STUDENT)).by_store == {
        "feedback votes": 0, "query-log rows": 1, "quiz guesses": 1}
    assert (await data.show(GUILD, CLASSMATE)).by_store == {
        "feedback votes": 1, "query-log rows": 1, "quiz guesses": 1}
    left = await db.fetchall("SELECT user_id, guild_id FROM queries ORDER BY id")
    assert [tuple(r) for r in left] == [(CLASSMATE, GUILD), (STUDENT, OTHER)]


async def test_a_store_added_later_is_shown_erased_and_purged(stores):
    data, querylog, quizzes, _ = stores
    await _fill(querylog, quizzes)
    notes = FakeNotes()
    data.register(notes)
    newest = datetime.now(timezone.utc) + timedelta(seconds=1)
    notes.notes += [(GUILD, STUDENT, newest, "newest thing"),
                    (GUILD, STUDENT, NOW - timedelta(days=100), "ancient"),
                    (GUILD, CLASSMATE, NOW, "not theirs")]
    page = await data.show(GUILD, STUDENT)
    assert page.by_store["notes"] == 2 and page.total == 6
    assert page.items[0] == HeldItem(newest, "note", "newest thing")
    assert page.items[-1].text == "ancient"
    assert (await data.purge_expired(NOW))["notes"] == 1 and notes.purged_at == [NOW]
    assert (await data.delete_for_user(GUILD, STUDENT))["notes"] == 1
    assert notes.notes == [(GUILD, CLASSMATE, NOW, "not theirs")]


async def test_one_failing_store_does_not_spare_the_others(stores):
    data, querylog, quizzes, _ = stores
    await _fill(querylog, quizzes)

    class Broken(FakeNotes):
        singular, plural = "broken thing", "broken things"

        async def delete_for_user(self, guild_id: int, user_id: int) -> int:
            raise OSError("disk says no")

        async def purge_expired(self, now: datetime) -> int:
            raise OSError("disk says no")

    erased = StudentData([Broken(), *data.stores])
    with pytest.raises(OSError, match="disk says no"):
        await erased.delete_for_user(GUILD, STUDENT)
    assert (await data.show(GUILD, STUDENT)).total == 0  # the others still erased
    assert "broken things" not in await erased.purge_expired(NOW)  # logged, never raised


def test_only_stores_can_be_registered():
    with pytest.raises(TypeError, match="not a StudentDataStore"):
        StudentData([object()])  # type: ignore[list-item]
    assert isinstance(FakeNotes(), StudentDataStore)


async def test_retention_goes_through_every_store(stores):
    data, querylog, quizzes, db = stores
    old = NOW - timedelta(days=91)
    assert await querylog.record(QueryRecord(
        guild_id=GUILD, channel_id=3, user_id=STUDENT, command="tokens", options={},
        input_text="old", status="ok", created_at=old))
    quiz = await quizzes.create(NewQuiz(GUILD, 10, "mask", "A [MASK].", 99, 60), now=old)
    await quizzes.guess(quiz.id, STUDENT, "dog", now=old)
    await quizzes.close(quiz.id, now=old)
    assert await data.purge_expired(NOW) == {
        "feedback votes": 0, "query-log rows": 1, "quiz guesses": 1}
    assert (await db.fetchall("SELECT COUNT(*) FROM quizzes"))[0][0] == 0


async def test_mydata_show_and_delete_cover_quiz_guesses_and_any_store(tiny_config, tmp_path,
                                                                      caplog):
    """Through the bot: /mydata show lists a quiz guess and a store registered at run time,
    /mydata delete erases both."""
    config = bot_config(tiny_config, tmp_path)
    async with running_bot(config, caplog) as h:
        emu = h.emu
        quiz = await h.services.quizzes.create(NewQuiz(emu.guild_id, emu.channel_id, "mask",
                                                       "A [MASK] here.", emu.moderator_id))
        await h.services.quizzes.guess(quiz.id, emu.student_id, "Walrus")
        notes = FakeNotes()
        notes.notes.append((emu.guild_id, emu.student_id, NOW, "a note about them"))
        h.services.student_data.register(notes)
        shown = await h.run("mydata", {}, subcommand="show")
        assert shown.ephemeral
        assert "guess in /quiz mask" in shown.text and "walrus" in shown.text
        assert "a note about them" in shown.text
        done = await h.run("mydata", {"confirm": True}, subcommand="delete")
        assert "1 quiz guess" in done.text and "1 note" in done.text, done.text
        assert notes.notes == [] and await h.services.quizzes.guesses(quiz.id) == []
        again = await h.run("mydata", {}, subcommand="show")
        assert "Nothing is stored about you here" in again.text
