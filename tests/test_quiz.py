"""Quizzes on a real SQLite file and the tiny models: storage, restart, privacy, the reveal."""

from __future__ import annotations

import asyncio
import io
import pickle
import random
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image

from core.errors import InvalidInput
from core.inference.tasks.fill_mask import FillMaskRequest, FillMaskResult, MaskFiller
from core.inference.tasks.nexttoken import NextTokenRequest
from core.pictures import charts
from core.privacy import keyed_digest, salted_digest
from core.storage.database import Database
from core.storage.quizzes import (
    FORGET_AFTER,
    NewQuiz,
    Quiz,
    QuizAlreadyOpen,
    QuizClosed,
    QuizStore,
    build_reveal,
    model_request,
    normalise_guess,
)

SENTENCE = "The [MASK] barked at the mailman."
GUILD, CHANNEL, TEACHER = 1, 10, 99


def _quiz(**changes) -> NewQuiz:
    values = dict(guild_id=GUILD, channel_id=CHANNEL, kind="mask", prompt=SENTENCE,
                  creator_id=TEACHER, seconds=60)
    values.update(changes)
    return NewQuiz(**values)


@pytest.fixture
async def db(tmp_path):
    async with await Database.open(tmp_path / "quiz.db") as db:
        yield db


async def test_schema_has_quizzes(db):
    assert db.schema_version >= 3
    rows = await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    assert {"quizzes", "quiz_guesses"} <= {r["name"] for r in rows}


async def test_one_open_quiz_per_channel(db):
    store = QuizStore(db)
    first = await store.create(_quiz())
    with pytest.raises(QuizAlreadyOpen, match="already running in this channel"):
        await store.create(_quiz(kind="next", prompt="Once upon a"))
    other = await store.create(_quiz(channel_id=CHANNEL + 1))
    assert (await store.open_in_channel(CHANNEL)).id == first.id
    closed, closed_now = await store.close(first.id)
    assert closed_now and not closed.is_open
    again = await store.create(_quiz())
    assert again.id not in (first.id, other.id)
    # A direct insert cannot break the rule either: it is the database's, not the code's.
    with pytest.raises(Exception, match="UNIQUE"):
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO quizzes (guild_id, channel_id, kind, prompt, seconds, creator_id, "
                "created_at, ends_at) SELECT guild_id, channel_id, kind, prompt, seconds, "
                "creator_id, created_at, ends_at FROM quizzes WHERE id = ?", (again.id,))


async def test_changing_a_guess_replaces_it(db):
    store = QuizStore(db)
    quiz = await store.create(_quiz())
    first = await store.guess(quiz.id, 5, "  Dog ", user_name="Ada")
    assert (first.word, first.changed, first.count) == ("dog", False, 1)
    second = await store.guess(quiz.id, 5, "cat", user_name="Ada")
    assert (second.word, second.changed, second.count) == ("cat", True, 1)
    stored = await store.guesses(quiz.id)
    assert [(g.user_id, g.guess, g.user_name) for g in stored] == [(5, "cat", "Ada")]


async def test_tally_counts_equal_the_stored_guesses_and_survive_a_restart(tmp_path, engine):
    result = await engine.submit(model_request("mask", SENTENCE, 5))
    model_words = [f.token.strip().casefold() for f in result.fillers]
    # Half the class's words are the model's (its first choice among them), half are not.
    words = [model_words[0], model_words[2], model_words[4], "zebra", "cat", "bird"]
    rng = random.Random(0)
    async with await Database.open(tmp_path / "quiz.db") as db:
        store = QuizStore(db)
        quiz = await store.create(_quiz())
        await store.set_message(quiz.id, 12345)
        for student in range(30):
            await store.guess(quiz.id, 1000 + student, rng.choice(words), user_name=f"s{student}")
        for student in range(0, 30, 3):  # a third change their mind
            await store.guess(quiz.id, 1000 + student, rng.choice(words), user_name=f"s{student}")
        before = await store.guesses(quiz.id)
    # Restart: a new connection to the same file finds the open quiz and every guess.
    async with await Database.open(tmp_path / "quiz.db") as db:
        store = QuizStore(db)
        [reloaded] = await store.open_quizzes()
        assert reloaded == quiz.__class__(**{**quiz.__dict__, "message_id": 12345})
        stored = await store.guesses(quiz.id)
        assert stored == before and len(stored) == 30 == await store.count(quiz.id)
        await store.guess(quiz.id, 2000, "dog")  # still open for guesses after the restart
        stored = await store.guesses(quiz.id)
        closed, _ = await store.close(quiz.id)
        reveal = await store.reveal(closed, result, top_k=5)
    expected = Counter(g.guess for g in stored)
    assert {e.label: e.count for e in reveal.tally} == expected
    assert reveal.total_guesses == 31 == sum(e.count for e in reveal.tally)
    assert [e.count for e in reveal.tally] == sorted(expected.values(), reverse=True)
    assert reveal.matched_first > 0 and any(e.model_rank is None for e in reveal.tally)
    for entry in reveal.tally:
        rank = model_words.index(entry.label) + 1 if entry.label in model_words else None
        assert entry.model_rank == rank
        assert entry.user_ids == () and entry.names == ()  # show_names was off
    assert reveal.matched_first == expected[model_words[0]]
    assert reveal.matched_top_k == sum(expected[w] for w in set(model_words))
    for candidate, filler in zip(reveal.candidates, result.fillers):
        assert candidate.class_count == expected[filler.token.strip().casefold()]


async def test_quiz_reveal_equals_mask_and_nexttoken(db, engine):
    store = QuizStore(db)
    quiz = await store.create(_quiz())
    result = await engine.submit(model_request("mask", SENTENCE))
    mask = await engine.submit(FillMaskRequest(SENTENCE, top_k=10))
    assert result.fillers == mask.fillers
    reveal = await store.reveal(quiz, result)
    assert [(c.token, c.prob) for c in reveal.candidates] == [
        (f.token, f.score) for f in mask.fillers]
    assert reveal.model_id == mask.model_id

    next_quiz = await store.create(_quiz(channel_id=2, kind="next", prompt="Once upon a"))
    result = await engine.submit(model_request("next", "Once upon a"))
    nexttoken = await engine.submit(NextTokenRequest("Once upon a"))
    reveal = await store.reveal(next_quiz, result)
    assert [(c.token, c.prob) for c in reveal.candidates] == [
        (c.token, c.model_prob) for c in nexttoken.candidates[:10]]


async def test_names_only_when_the_instructor_asked(db, engine):
    store = QuizStore(db)
    quiz = await store.create(_quiz(show_names=True))
    await store.guess(quiz.id, 1, "dog", user_name="Ada")
    await store.guess(quiz.id, 2, "dog", user_name="Bo")
    result = await engine.submit(model_request("mask", SENTENCE))
    reveal = await store.reveal(quiz, result)
    assert reveal.tally[0].user_ids == (1, 2) and reveal.tally[0].names == ("Ada", "Bo")


@pytest.mark.parametrize("mode", ["hashed", "none"])
async def test_guesses_follow_log_inputs(db, engine, mode):
    store = QuizStore(db, log_inputs=mode, hash_salt=b"pepper")
    quiz = await store.create(_quiz())
    result = await engine.submit(model_request("mask", SENTENCE, 5))
    model_word = result.fillers[0].token.strip().casefold()
    await store.guess(quiz.id, 1, model_word.upper(), user_name="Ada")
    await store.guess(quiz.id, 2, "zebra", user_name="Bo")
    await store.guess(quiz.id, 3, "zebra")
    rows = await db.fetchall("SELECT guess, user_name FROM quiz_guesses")
    assert all(len(r["guess"]) == 64 and r["user_name"] == "" for r in rows)
    dump = "".join(r["guess"] for r in rows)
    assert "zebra" not in dump and model_word not in dump
    reveal = await store.reveal(quiz, result, top_k=5)
    assert {(e.label, e.count, e.model_rank) for e in reveal.tally} == {
        (model_word, 1, 1), ("hidden word 1", 2, None)}
    assert reveal.matched_first == 1


async def test_a_finished_quiz_refuses_guesses_from_its_end_second(db):
    store = QuizStore(db)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    quiz = await store.create(_quiz(seconds=30), now=start)
    await store.guess(quiz.id, 1, "dog", now=start + timedelta(seconds=29))
    with pytest.raises(QuizClosed, match="has ended"):
        await store.guess(quiz.id, 2, "dog", now=start + timedelta(seconds=30))
    assert [g.guess for g in await store.guesses(quiz.id)] == ["dog"]


async def test_a_closed_quiz_refuses_guesses_while_time_is_left_and_close_is_idempotent(db):
    """The bot closes a quiz before it reveals the answer ("Reveal now" or the timer): a guess
    after the reveal must be refused even though the quiz's time has not run out."""
    store = QuizStore(db)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    quiz = await store.create(_quiz(seconds=60), now=start)
    await store.guess(quiz.id, 1, "dog", now=start + timedelta(seconds=5))
    _, first = await store.close(quiz.id, now=start + timedelta(seconds=10))
    again, second = await store.close(quiz.id, now=start + timedelta(seconds=11))
    assert (first, second) == (True, False) and not again.is_open
    for student, moment in ((1, 12), (2, 12), (3, 59)):  # a change of mind, a newcomer
        with pytest.raises(QuizClosed, match="has ended"):
            await store.guess(quiz.id, student, "cat", now=start + timedelta(seconds=moment))
    assert await store.open_quizzes() == []
    assert [(g.user_id, g.guess) for g in await store.guesses(quiz.id)] == [(1, "dog")]


async def test_delete_user_removes_only_that_guilds_guesses(db, caplog):
    caplog.set_level("INFO", logger="core.storage.quizzes")
    store = QuizStore(db)
    here = await store.create(_quiz())
    elsewhere = await store.create(_quiz(guild_id=2, channel_id=20))
    for quiz in (here, elsewhere):
        await store.guess(quiz.id, 7, "dog")
        await store.guess(quiz.id, 8, "cat")
    assert await store.delete_for_user(GUILD, 7) == 1
    assert [g.user_id for g in await store.guesses(here.id)] == [8]
    assert sorted(g.user_id for g in await store.guesses(elsewhere.id)) == [7, 8]
    # The operator's record of an erasure: how many, where; never the words.
    assert caplog.messages[-1] == f"Deleted 1 quiz guesses of a user (guild {GUILD})"


@pytest.mark.parametrize("text, word", [
    ("Dog", "dog"), ("  don't ", "don't"), ("well-known", "well-known"), (",", ","),
    ("Café", "café"), ("42", "42"),
])
def test_guess_normalisation(text, word):
    assert normalise_guess(text) == word


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("   ", "empty"), ("two words", "one word"), ("@everyone", "not a word"),
    ("<@123>", "not a word"), ("a" * 41, "the limit is 40"), ("dog!", "not a word"),
    ("`x`", "not a word"),
])
def test_bad_guesses_are_refused_clearly(text, message):
    with pytest.raises(InvalidInput, match=message):
        normalise_guess(text)


async def test_quiz_settings_are_checked(db):
    store = QuizStore(db)
    with pytest.raises(InvalidInput, match="`seconds` goes from 10"):
        await store.create(_quiz(seconds=5))
    with pytest.raises(InvalidInput, match="`mask` or `next`"):
        await store.create(_quiz(kind="essay"))
    with pytest.raises(InvalidInput, match="sentence is empty"):
        await store.create(_quiz(prompt="   "))


def test_build_reveal_without_guesses():
    result = FillMaskResult("m", SENTENCE, "[MASK]", (
        MaskFiller(5, "dog", 0.5, ""), MaskFiller(6, "##s", 0.2, ""),
        MaskFiller(7, "Dog", 0.1, "")))
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    quiz = Quiz(1, GUILD, CHANNEL, None, "mask", SENTENCE, 60, False, TEACHER, now, now, now)
    reveal = build_reveal(quiz, [], result)
    assert reveal.total_guesses == reveal.matched_first == reveal.matched_top_k == 0
    assert reveal.tally == () and [c.class_count for c in reveal.candidates] == [0, 0, 0]


async def test_reveal_chart_is_drawn_from_the_reveal_alone(db, engine):
    store = QuizStore(db)
    quiz = await store.create(_quiz())
    result = await engine.submit(model_request("mask", SENTENCE))
    for student, word in enumerate(["dog", "dog", "$cat", "日本"] * 5):
        if word.startswith("$"):
            word = word[1:]
        await store.guess(quiz.id, student, word)
    reveal = pickle.loads(pickle.dumps(await store.reveal(quiz, result)))
    image = Image.open(io.BytesIO(charts.quiz_reveal_chart(reveal)))
    image.load()
    assert image.format == "PNG" and image.size == (1200, 800)
    text = charts.quiz_reveal_alt_text(reveal)
    assert "dog 10" in text and "The class's guesses (20)" in text
    empty = build_reveal(quiz, [], result)
    image = Image.open(io.BytesIO(charts.quiz_reveal_chart(empty)))
    assert image.size == (1200, 800)
    assert "none" in charts.quiz_reveal_alt_text(empty)


async def test_purge_deletes_old_closed_quizzes_with_their_guesses(db):
    store = QuizStore(db)
    old = datetime(2026, 1, 1, tzinfo=timezone.utc)
    stale = await store.create(_quiz(), now=old)
    await store.guess(stale.id, 1, "dog", now=old)
    await store.close(stale.id, now=old)
    running = await store.create(_quiz(channel_id=2), now=old)  # still open: kept
    later = old + timedelta(days=91)
    assert await store.purge_expired(later) == 1
    assert await store.get(stale.id) is None and await store.get(running.id) is not None
    assert (await db.fetchall("SELECT COUNT(*) FROM quiz_guesses"))[0][0] == 0


async def test_thirty_students_guessing_at_once_are_all_counted(db):
    store = QuizStore(db)
    quiz = await store.create(_quiz())
    words = ["dog", "cat", "bird"]
    receipts = await asyncio.gather(*(
        store.guess(quiz.id, student, words[student % 3]) for student in range(30)))
    assert sorted(r.count for r in receipts) == list(range(1, 31))  # each saw its own commit
    again = await asyncio.gather(*(store.guess(quiz.id, s, "cat") for s in range(0, 30, 2)))
    assert all(r.changed and r.count == 30 for r in again)
    assert Counter(g.guess for g in await store.guesses(quiz.id)) == {
        "cat": 10 + 5 + 5, "dog": 5, "bird": 5}


async def test_the_bots_retention_pass_purges_quizzes_as_it_purges_rows(tiny_config, tmp_path):
    """`bot.compose.purge_expired` (the hourly pass) purges old closed quizzes with their guesses,
    beside the query log's rows, with the same default retention."""
    from bot.compose import Assembly, open_services, purge_expired
    from tests.bot_harness import bot_config

    config = bot_config(tiny_config, tmp_path)
    long_ago = datetime.now(timezone.utc) - timedelta(
        days=config.database.default_retention_days + 1)
    async with open_services(config, Assembly(engine="never", dashboard=False)) as services:
        store = services.quizzes
        old = await store.create(NewQuiz(1, 10, "mask", "A [MASK].", 5, 60), now=long_ago)
        await store.guess(old.id, 7, "dog", now=long_ago)
        await store.close(old.id, now=long_ago)
        recent = await store.create(NewQuiz(1, 10, "mask", "A [MASK].", 5, 60))
        await store.guess(recent.id, 7, "cat")
        await purge_expired(services)
        assert await store.get(old.id) is None and await store.guesses(old.id) == []
        assert [g.guess for g in await store.guesses(recent.id)] == ["cat"]


# --------------------------------------------------------------------------- forgetting (issue 23)

MARKER = "Zebrafinch"  # in the prompt and guessed: it must be nowhere once the quiz is revealed


def _files(path) -> bytes:
    """Everything SQLite keeps on disk for the database at `path`."""
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal"),
                                             path.with_name(path.name + "-shm")) if p.exists())


@pytest.mark.parametrize("mode", ["hashed", "none"])
async def test_nothing_of_a_guess_or_the_prompt_outlives_the_reveal(tmp_path, engine, mode):
    """A guess used to be stored as sha256(salt + word) with the salt beside the database:
    a word list reversed it. Now a guess is keyed by its quiz's own secret, and the reveal
    erases the guesses, the secret and the prompt; no column and no file keeps any of them."""
    path, salt = tmp_path / "quiz.db", b"pepper"
    prompt = f"The {MARKER} saw a [MASK] ."
    async with await Database.open(path) as db:
        store = QuizStore(db, log_inputs=mode, hash_salt=salt)
        quiz = await store.create(_quiz(prompt=prompt))
        result = await engine.submit(model_request("mask", prompt, 5))
        model_word = result.fillers[0].token.strip().casefold()
        words = [MARKER.casefold(), "walrus", model_word]
        for student, word in enumerate(words):
            await store.guess(quiz.id, student, word, user_name="Ada")
        [secret] = [r[0] for r in await db.fetchall("SELECT guess_secret FROM quizzes")]
        stored = [r[0] for r in await db.fetchall("SELECT guess FROM quiz_guesses")]
        closed, _ = await store.close(quiz.id)
        reveal = await store.reveal(closed, result, top_k=5)
        assert reveal.total_guesses == 3 and reveal.matched_first == 1  # counted first
        assert await store.forget_after_reveal(quiz.id) == 3
        assert await store.guesses(quiz.id) == []
        after = await db.fetchall("SELECT prompt, guess_secret FROM quizzes")
        assert [tuple(r) for r in after] == [("", None)]
        data = _files(path)  # while the bot would still run: the WAL is there too
    needles = [MARKER.encode(), MARKER.casefold().encode(), b"walrus", secret, *(
        digest(key, word).encode() for word in words
        for key, digest in ((salt, salted_digest), (secret, keyed_digest))),
        *(s.encode() for s in stored)]
    assert [n for n in needles if n in data] == []


async def test_under_full_the_reveal_forgets_nothing(db):
    store = QuizStore(db, log_inputs="full")
    quiz = await store.create(_quiz())
    await store.guess(quiz.id, 1, "dog")
    await store.close(quiz.id)
    assert await store.forget_after_reveal(quiz.id) == 0
    assert [g.guess for g in await store.guesses(quiz.id)] == ["dog"]
    assert (await store.get(quiz.id)).prompt == SENTENCE


async def test_an_open_quiz_is_never_forgotten(db):
    store = QuizStore(db, log_inputs="none")
    quiz = await store.create(_quiz())
    await store.guess(quiz.id, 1, "dog")
    assert await store.forget_after_reveal(quiz.id) == 0
    assert await store.count(quiz.id) == 1 and (await store.get(quiz.id)).prompt == SENTENCE


async def test_the_retention_pass_forgets_a_quiz_whose_reveal_did_not(db):
    """A crash between the close and the reveal, or a reveal that failed: the retention pass
    forgets the quiz once no reveal can still be running (`FORGET_AFTER`), not before."""
    store = QuizStore(db, log_inputs="none")
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    quiz = await store.create(_quiz(seconds=60), now=start)
    await store.guess(quiz.id, 1, "dog", now=start)
    await store.close(quiz.id, now=start + timedelta(seconds=60))
    assert await store.purge_expired(start + timedelta(minutes=2)) == 0  # a reveal may run
    assert await store.count(quiz.id) == 1
    assert await store.purge_expired(start + timedelta(seconds=60) + FORGET_AFTER * 2) == 1
    assert await store.count(quiz.id) == 0 and (await store.get(quiz.id)).prompt == ""
