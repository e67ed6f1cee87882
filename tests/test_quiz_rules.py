"""The quiz store's rules, each at its edge, on a real SQLite file and without a model:
what a student is told, where a limit starts, what a guess is stored as under each
`log_inputs`, and what the retention pass deletes per guild.

tests/test_quiz.py covers the quiz through the models (reveal, restart, privacy end to end);
these are the fast checks a mutation run leans on (docs/MUTATION.md).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from core.errors import InvalidInput
from core.privacy import keyed_digest, salted_digest
from core.storage.database import Database
from core.storage.guild_settings import SettingsStore
from core.storage.quizzes import (
    FORGET_AFTER,
    MAX_GUESS_CHARS,
    MAX_SECONDS,
    MIN_SECONDS,
    NewQuiz,
    QuizAlreadyOpen,
    QuizClosed,
    QuizNotFound,
    QuizStore,
    check_new_quiz,
    normalise_guess,
)

GUILD, CHANNEL, TEACHER = 1, 10, 99
START = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _quiz(**changes) -> NewQuiz:
    values = dict(guild_id=GUILD, channel_id=CHANNEL, kind="mask",
                  prompt="The [MASK] barked.", creator_id=TEACHER, seconds=60)
    values.update(changes)
    return NewQuiz(**values)


@pytest.fixture
async def db(tmp_path):
    async with await Database.open(tmp_path / "quiz.db") as db:
        yield db


# --------------------------------------------------------------------------- what students read

@pytest.mark.parametrize("text, message", [
    (None, "Your guess must be text."),
    (" \t", "Your guess is empty. Type one word."),
    ("dog!", "`dog!` is not a word. Use letters or digits (an inner ' or - is fine), "
             "or a single punctuation mark such as `,` or `.`."),
    (" big `dog` ", "Guess one word, without spaces (got `big 'dog'`)."),
    ("a" * (MAX_GUESS_CHARS + 1),
     f"That guess is {MAX_GUESS_CHARS + 1} characters long; the limit is {MAX_GUESS_CHARS}. "
     "Guess one word."),
])
def test_a_refused_guess_says_exactly_why(text, message):
    with pytest.raises(InvalidInput) as refused:
        normalise_guess(text)
    assert refused.value.message == message


def test_a_guess_of_exactly_the_longest_length_is_taken():
    assert normalise_guess("A" * MAX_GUESS_CHARS) == "a" * MAX_GUESS_CHARS


@pytest.mark.parametrize("seconds", [MIN_SECONDS, MAX_SECONDS])
def test_quiz_lengths_at_both_limits_are_taken(seconds):
    assert check_new_quiz(_quiz(seconds=seconds)).seconds == seconds


@pytest.mark.parametrize("seconds, shown", [
    (MIN_SECONDS - 1, str(MIN_SECONDS - 1)), (MAX_SECONDS + 1, str(MAX_SECONDS + 1)),
    (30.0, "30"), (True, "True"), ("30", "30"),  # a number is shown the language's way
])
def test_quiz_lengths_outside_the_limits_or_not_whole_seconds_are_refused(seconds, shown):
    with pytest.raises(InvalidInput) as refused:
        check_new_quiz(_quiz(seconds=seconds))
    assert refused.value.message == (
        f"`seconds` goes from {MIN_SECONDS} to {MAX_SECONDS}; got {shown}.")


def test_a_quiz_of_an_unknown_kind_is_refused_naming_it():
    with pytest.raises(InvalidInput) as refused:
        check_new_quiz(_quiz(kind="cloze"))
    assert refused.value.message == "A quiz is `mask` or `next`, not `cloze`."


def test_an_empty_prompt_is_named_as_the_kind_calls_it():
    with pytest.raises(InvalidInput, match="sentence is empty"):
        check_new_quiz(_quiz(kind="mask", prompt="  "))
    with pytest.raises(InvalidInput, match="prompt is empty"):
        check_new_quiz(_quiz(kind="next", prompt="  "))


async def test_a_new_quiz_is_logged_with_its_kind_channel_and_length(db, caplog):
    caplog.set_level(logging.INFO, logger="core.storage.quizzes")
    quiz = await QuizStore(db).create(_quiz(kind="next", prompt="Once upon a", seconds=45))
    assert caplog.messages[-1] == f"quiz {quiz.id} (next) opened in channel {CHANNEL} for 45s"


async def test_a_missing_quiz_is_said_for_guesses_and_for_closing(db):
    store = QuizStore(db)
    for attempt in (store.guess(404, 1, "dog"), store.close(404)):
        with pytest.raises(QuizNotFound) as refused:
            await attempt
        assert refused.value.message == "This quiz no longer exists."


async def test_a_second_quiz_in_a_channel_is_refused_with_what_to_do(db):
    store = QuizStore(db)
    await store.create(_quiz())
    with pytest.raises(QuizAlreadyOpen) as refused:
        await store.create(_quiz(kind="next", prompt="Once upon a"))
    assert refused.value.message == (
        "A quiz is already running in this channel. Reveal it (or wait for its end) "
        "before starting another.")


async def test_a_guess_after_the_end_is_refused_with_the_reason(db):
    store = QuizStore(db)
    quiz = await store.create(_quiz(seconds=30), now=START)
    with pytest.raises(QuizClosed) as refused:
        await store.guess(quiz.id, 1, "dog", now=START + timedelta(seconds=31))
    assert refused.value.message == "This quiz has ended; guesses are no longer taken."


async def test_a_receipt_names_its_quiz_the_word_and_the_count(db):
    store = QuizStore(db)
    await store.create(_quiz(channel_id=CHANNEL + 1))  # another quiz, so ids differ from 1
    quiz = await store.create(_quiz())
    receipt = await store.guess(quiz.id, 3, " Dog ")
    assert (receipt.quiz_id, receipt.word, receipt.changed, receipt.count) == (
        quiz.id, "dog", False, 1)


# --------------------------------------------------------------------------- what is stored

async def _stored(db, quiz_id: int) -> list[str]:
    rows = await db.fetchall("SELECT guess FROM quiz_guesses WHERE quiz_id = ? ORDER BY user_id",
                             (quiz_id,))
    return [r["guess"] for r in rows]


async def test_under_hashed_a_guess_is_keyed_by_its_quiz_s_secret(db):
    store = QuizStore(db, log_inputs="hashed", hash_salt=b"installation salt")
    quiz = await store.create(_quiz())
    [[secret]] = await db.fetchall("SELECT guess_secret FROM quizzes WHERE id = ?", (quiz.id,))
    await store.guess(quiz.id, 1, "Dog")
    assert await _stored(db, quiz.id) == [keyed_digest(secret, "dog")]


async def test_a_quiz_from_before_quiz_secrets_falls_back_to_the_salted_digest(db):
    """Quizzes created before schema 8 have no secret: their guesses are compared through the
    installation's salted digest, never stored as words."""
    store = QuizStore(db, log_inputs="hashed", hash_salt=b"installation salt")
    quiz = await store.create(_quiz())
    async with db.transaction() as conn:
        await conn.execute("UPDATE quizzes SET guess_secret = NULL WHERE id = ?", (quiz.id,))
    await store.guess(quiz.id, 1, "Dog")
    assert await _stored(db, quiz.id) == [salted_digest(b"installation salt", "dog")]


async def test_under_full_the_word_and_the_name_are_kept(db):
    store = QuizStore(db, log_inputs="full")
    quiz = await store.create(_quiz())
    # The words themselves are kept: no secret to key them by is made.
    [[secret]] = await db.fetchall("SELECT guess_secret FROM quizzes WHERE id = ?", (quiz.id,))
    assert secret is None
    await store.guess(quiz.id, 1, "Dog", user_name="Ada")
    await store.guess(quiz.id, 2, "Cat")  # no name given: none stored
    assert [(g.guess, g.user_name) for g in await store.guesses(quiz.id)] == [
        ("dog", "Ada"), ("cat", "")]


# --------------------------------------------------------------------------- forgetting

async def test_the_reveal_s_erasure_is_logged_with_the_quiz_and_how_many(db, caplog):
    caplog.set_level(logging.INFO, logger="core.storage.quizzes")
    store = QuizStore(db, log_inputs="none")
    quiz = await store.create(_quiz(), now=START)
    for student in (1, 2):
        await store.guess(quiz.id, student, "dog", now=START)
    await store.close(quiz.id, now=START + timedelta(seconds=5))
    assert await store.forget_after_reveal(quiz.id) == 2
    assert caplog.messages[-1] == (
        f"quiz {quiz.id}: forgot its 2 guesses and its prompt after the reveal")


async def test_the_retention_pass_counts_every_stale_quiz_it_forgets(db):
    store = QuizStore(db, log_inputs="none")
    for channel, guessers in ((1, 1), (2, 2)):
        quiz = await store.create(_quiz(channel_id=channel), now=START)
        for student in range(guessers):
            await store.guess(quiz.id, student, "dog", now=START)
        await store.close(quiz.id, now=START + timedelta(seconds=5))
    assert await store.purge_expired(START + FORGET_AFTER * 3) == 3


async def test_each_guild_keeps_closed_quizzes_for_its_own_retention(db, caplog):
    """A guild with its own retention (`/config retention`) loses its closed quizzes after its
    days; the others after the default; an open quiz is never deleted."""
    caplog.set_level(logging.INFO, logger="core.storage.quizzes")
    await SettingsStore(db).set_retention(2, 10)
    store = QuizStore(db, default_retention_days=30)
    created = START - timedelta(days=20)
    default_old = await store.create(_quiz(channel_id=1), now=START - timedelta(days=31))
    default_young = await store.create(_quiz(channel_id=2), now=created)
    short_old = await store.create(_quiz(guild_id=2, channel_id=3), now=created)
    short_young = await store.create(_quiz(guild_id=2, channel_id=4),
                                     now=START - timedelta(days=9))
    short_open = await store.create(_quiz(guild_id=2, channel_id=5, seconds=MAX_SECONDS),
                                    now=created)
    for quiz, guessers in ((default_old, 2), (default_young, 1), (short_old, 3),
                           (short_young, 1)):
        for student in range(guessers):
            await store.guess(quiz.id, student, "dog", now=quiz.created_at)
        await store.close(quiz.id, now=quiz.created_at + timedelta(seconds=5))
    assert await store.purge_expired(START) == 5
    kept = {q.id for q in (default_young, short_young, short_open)}
    for quiz in (default_old, default_young, short_old, short_young, short_open):
        assert (await store.get(quiz.id) is not None) == (quiz.id in kept), quiz
    assert caplog.messages[-1] == "Retention purge deleted 2 quizzes with 5 guesses"
