"""Class quizzes: everyone commits to a guess, then the model's answer is revealed beside them.

`/quiz mask` asks for the word behind a `[MASK]`, `/quiz next` for GPT-2's next token. The
quiz lives in the database, not in a view's memory, so a restart keeps it and its guesses: the
bot reloads `QuizStore.open_quizzes()` at start and re-arms the timers (closing at once what
ended while it was down). One open quiz per channel is a UNIQUE partial index, so two
instructors starting a quiz at the same moment cannot both win.

The reveal is not computed here: it is the very `FillMaskResult` / `NextTokenResult` that
`/mask` and `/nexttoken` return for the quiz's prompt (`model_request` builds the request), so
the quiz cannot disagree with the commands students already know. `build_reveal` puts that
result beside the class's tally.

Privacy: a guess is the student's own word, so it follows `database.log_inputs`. With "full"
the normalised word is stored (and the display name), kept until the server's retention. With
"hashed" and "none" a guess is stored as an HMAC under a secret of its own quiz
(`core.privacy.keyed_digest`): the quiz can count equal guesses and match them with the model's
candidates (those are shown by name, the other words as "hidden word N"), and at the reveal
`forget_after_reveal` erases the guesses, the secret and the prompt. A digest of one word under
a salt kept beside the database would be reversed by hashing a word list; with the secret
gone, nothing a guess can be recovered from is left. The retention pass also forgets any closed
quiz a reveal did not (`FORGET_AFTER`). `QuizStore` is a store of student data
(`core.storage.student_data`): `/mydata show|delete` and the purge reach the guesses through it.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from core.errors import InvalidInput, UserError
from core.i18n import Localised, lazy, plural_noun
from core.inference.tasks.base import clean_text
from core.inference.tasks.fill_mask import FillMaskRequest, FillMaskResult
from core.inference.tasks.nexttoken import NextTokenRequest, NextTokenResult
from core.privacy import LogInputs, TextPolicy, keyed_digest, new_quiz_secret, salted_digest
from core.storage.database import Database
from core.storage.querylog import from_db_time, to_db_time
from core.storage.student_data import HeldItem

log = logging.getLogger(__name__)

QuizKind = Literal["mask", "next"]
QUIZ_KINDS: tuple[str, ...] = ("mask", "next")

MIN_SECONDS = 10
MAX_SECONDS = 3600
DEFAULT_SECONDS = 60
#: How many of the model's candidates the reveal lists (and marks in the class chart).
REVEAL_TOP_K = 10
MAX_GUESS_CHARS = 40
MAX_PROMPT_CHARS = 500
#: A closed quiz whose reveal did not forget it (a crash, a failed reveal) is forgotten by the
#: retention pass this long after it closed: longer than any reveal takes.
FORGET_AFTER = timedelta(hours=1)

#: A word: letters or digits, with inner apostrophes or hyphens ("don't", "well-known").
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
#: A next token may also be one punctuation mark (GPT-2 often predicts "," or ".").
_PUNCTUATION = frozenset(".,!?;:")


class QuizAlreadyOpen(UserError):
    code = "quiz_open"


class QuizClosed(UserError):
    code = "quiz_closed"


class QuizNotFound(UserError):
    code = "quiz_not_found"


@dataclass(frozen=True)
class NewQuiz:
    guild_id: int
    channel_id: int
    kind: QuizKind
    #: The sentence with one `[MASK]` (kind "mask") or the prompt to continue (kind "next").
    prompt: str
    creator_id: int
    seconds: int = DEFAULT_SECONDS
    show_names: bool = False


@dataclass(frozen=True)
class Quiz:
    id: int
    guild_id: int
    channel_id: int
    #: The public card's message id (None until the card is posted).
    message_id: int | None
    kind: QuizKind
    prompt: str
    seconds: int
    show_names: bool
    creator_id: int
    created_at: datetime
    ends_at: datetime
    closed_at: datetime | None

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    def seconds_left(self, now: datetime | None = None) -> float:
        return max(0.0, (self.ends_at - (now or _now())).total_seconds())


@dataclass(frozen=True)
class StoredGuess:
    user_id: int
    #: The normalised word (log_inputs "full") or its salted SHA-256.
    guess: str
    #: The display name at guess time; "" unless log_inputs is "full".
    user_name: str
    guessed_at: datetime


@dataclass(frozen=True)
class GuessReceipt:
    """What the student is told: their word as counted, and whether it replaced a guess."""

    quiz_id: int
    word: str
    changed: bool
    #: How many students have guessed so far (for the card).
    count: int


@dataclass(frozen=True)
class RevealCandidate:
    rank: int
    #: As the model writes it (GPT-2 keeps the leading space: " dog").
    token: str
    prob: float
    #: Students who guessed this word.
    class_count: int


@dataclass(frozen=True)
class TallyEntry:
    #: The guessed word, or "hidden word N" (a catalog message) when log_inputs keeps only
    #: digests.
    label: str | Localised
    count: int
    #: 1-based rank of this word among the model's top-k, None if the model did not list it.
    model_rank: int | None
    #: Who guessed it, only when the instructor chose show_names (else empty).
    user_ids: tuple[int, ...] = ()
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class QuizReveal:
    quiz_id: int
    kind: QuizKind
    prompt: str
    model_id: str
    #: The model's top-k, best first, with how many students guessed each.
    candidates: tuple[RevealCandidate, ...]
    #: The class's words, most guessed first (ties: the model's rank, then the label).
    tally: tuple[TallyEntry, ...]
    total_guesses: int
    #: Students whose guess is the model's first choice.
    matched_first: int
    #: Students whose guess is anywhere in the model's top-k.
    matched_top_k: int
    show_names: bool


# --------------------------------------------------------------------------- validation

def normalise_guess(text: str) -> str:
    """One word, as the quiz counts it: NFC, trimmed, case-folded ("Dog" and "dog" agree).

    Raises `InvalidInput` with a message written for the student.
    """
    if not isinstance(text, str):
        raise InvalidInput(lazy("Your guess must be text."))
    word = unicodedata.normalize("NFC", text).strip()
    if not word:
        raise InvalidInput(lazy("Your guess is empty. Type one word."))
    if any(ch.isspace() for ch in word):
        raise InvalidInput(lazy(
            "Guess one word, without spaces (got `{shown}`).",
            shown=_shown(word)))
    if len(word) > MAX_GUESS_CHARS:
        raise InvalidInput(lazy(
            "That guess is {n_word} characters long; the limit is {MAX_GUESS_CHARS}. Guess "
            "one word.",
            n_word=len(word), MAX_GUESS_CHARS=MAX_GUESS_CHARS))
    if not (_WORD.fullmatch(word) or word in _PUNCTUATION):
        raise InvalidInput(
            lazy(
                "`{shown}` is not a word. Use letters or digits (an inner ' or - is fine), or"
                " a single punctuation mark such as `,` or `.`.",
                shown=_shown(word))
        )
    return word.casefold()


def check_new_quiz(new: NewQuiz) -> NewQuiz:
    """Clean what the instructor typed; the prompt's own rules (one `[MASK]`...) are the model
    task's: validate `model_request(...)` with the engine too before creating the quiz."""
    if new.kind not in QUIZ_KINDS:
        raise InvalidInput(lazy("A quiz is `mask` or `next`, not `{kind}`.", kind=new.kind))
    if isinstance(new.seconds, bool) or not isinstance(new.seconds, int) or not (
            MIN_SECONDS <= new.seconds <= MAX_SECONDS):
        raise InvalidInput(
            lazy(
                "`seconds` goes from {MIN_SECONDS} to {MAX_SECONDS}; got {seconds}.",
                MIN_SECONDS=MIN_SECONDS, MAX_SECONDS=MAX_SECONDS, seconds=new.seconds)
        )
    what = lazy("sentence") if new.kind == "mask" else lazy("prompt")
    prompt = clean_text(new.prompt, what=what, max_chars=MAX_PROMPT_CHARS)
    return NewQuiz(new.guild_id, new.channel_id, new.kind, prompt, new.creator_id,
                   new.seconds, bool(new.show_names))


def model_request(kind: str, prompt: str,
                  mask_top_k: int = REVEAL_TOP_K) -> FillMaskRequest | NextTokenRequest:
    """The request whose result is the reveal: exactly what `/mask` or `/nexttoken` would run.

    `/nexttoken` at its defaults (temperature 1) lists the model's own distribution, the one
    `/generate` samples from at temperature 1. `mask_top_k` is capped by the engine's
    `limits.max_mask_top_k` (pass `min(REVEAL_TOP_K, limits.max_mask_top_k)`).
    """
    if kind == "mask":
        return FillMaskRequest(prompt, top_k=mask_top_k)
    if kind == "next":
        return NextTokenRequest(prompt)
    raise InvalidInput(lazy("A quiz is `mask` or `next`, not `{kind}`.", kind=kind))


# --------------------------------------------------------------------------- storage

_QUIZ_COLUMNS = ("id, guild_id, channel_id, message_id, kind, prompt, seconds, show_names, "
                 "creator_id, created_at, ends_at, closed_at")


class QuizStore:
    """Quizzes and guesses in the bot's database. Does not own `db`."""

    singular, plural = plural_noun("quiz guess", "quiz guesses")

    def __init__(self, db: Database, *, log_inputs: LogInputs = "full",
                 hash_salt: bytes = b"", default_retention_days: int = 90) -> None:
        self._policy = TextPolicy(log_inputs, hash_salt)
        self._db = db
        self._hash_salt = hash_salt
        self._default_retention_days = default_retention_days

    @property
    def keeps_words(self) -> bool:
        return self._policy.keeps_text

    def _key(self, secret: bytes | None) -> Callable[[str], str]:
        """What is stored for a normalised word in a quiz with `secret`: the word itself
        ("full"), its HMAC under the quiz's secret, or (a quiz from before schema 8) the
        installation's salted digest."""
        if self.keeps_words:
            return lambda word: word
        if secret is not None:
            return lambda word: keyed_digest(secret, word)
        return lambda word: salted_digest(self._hash_salt, word)

    async def _secret(self, quiz_id: int) -> bytes | None:
        rows = await self._db.fetchall("SELECT guess_secret FROM quizzes WHERE id = ?",
                                       (quiz_id,))
        return rows[0]["guess_secret"] if rows else None

    async def create(self, new: NewQuiz, *, now: datetime | None = None) -> Quiz:
        """Store a new open quiz; `QuizAlreadyOpen` if the channel has one."""
        new = check_new_quiz(new)
        created = now or _now()
        ends = created + timedelta(seconds=new.seconds)
        try:
            async with self._db.transaction() as conn:
                cursor = await conn.execute(
                    "INSERT INTO quizzes (guild_id, channel_id, kind, prompt, seconds, "
                    "show_names, creator_id, created_at, ends_at, guess_secret) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (new.guild_id, new.channel_id, new.kind, new.prompt, new.seconds,
                     int(new.show_names), new.creator_id, to_db_time(created), to_db_time(ends),
                     None if self.keeps_words else new_quiz_secret()),
                )
                quiz_id = cursor.lastrowid
        except sqlite3.IntegrityError:
            raise QuizAlreadyOpen(lazy(
                "A quiz is already running in this channel. Reveal it (or wait for its end) "
                "before starting another."
            )) from None
        assert quiz_id is not None
        quiz = await self.get(quiz_id)
        assert quiz is not None
        log.info("quiz %d (%s) opened in channel %d for %ds", quiz.id, quiz.kind,
                 quiz.channel_id, quiz.seconds)
        return quiz

    async def set_message(self, quiz_id: int, message_id: int) -> None:
        """Remember the card's message, so its buttons can be found again after a restart."""
        async with self._db.transaction() as conn:
            await conn.execute("UPDATE quizzes SET message_id = ? WHERE id = ?",
                               (message_id, quiz_id))

    async def get(self, quiz_id: int) -> Quiz | None:
        rows = await self._db.fetchall(f"SELECT {_QUIZ_COLUMNS} FROM quizzes WHERE id = ?",
                                       (quiz_id,))
        return _quiz(rows[0]) if rows else None

    async def open_in_channel(self, channel_id: int) -> Quiz | None:
        rows = await self._db.fetchall(
            f"SELECT {_QUIZ_COLUMNS} FROM quizzes WHERE channel_id = ? AND closed_at IS NULL",
            (channel_id,))
        return _quiz(rows[0]) if rows else None

    async def open_quizzes(self) -> list[Quiz]:
        """Every open quiz, soonest end first: what the bot re-arms at start."""
        rows = await self._db.fetchall(
            f"SELECT {_QUIZ_COLUMNS} FROM quizzes WHERE closed_at IS NULL ORDER BY ends_at, id")
        return [_quiz(row) for row in rows]

    async def guess(self, quiz_id: int, user_id: int, text: str, *, user_name: str = "",
                    now: datetime | None = None) -> GuessReceipt:
        """Store or replace a student's guess; refused once the quiz is closed or over."""
        word = normalise_guess(text)
        moment = now or _now()
        async with self._db.transaction() as conn:
            # Checked inside the write transaction: a concurrent close cannot slip between.
            rows = list(await conn.execute_fetchall(
                "SELECT closed_at, ends_at, guess_secret FROM quizzes WHERE id = ?",
                (quiz_id,)))
            if not rows:
                raise QuizNotFound(lazy("This quiz no longer exists."))
            if rows[0]["closed_at"] is not None or moment >= from_db_time(rows[0]["ends_at"]):
                raise QuizClosed(lazy("This quiz has ended; guesses are no longer taken."))
            before = list(await conn.execute_fetchall(
                "SELECT 1 FROM quiz_guesses WHERE quiz_id = ? AND user_id = ?",
                (quiz_id, user_id)))
            await conn.execute(
                "INSERT INTO quiz_guesses (quiz_id, user_id, guess, user_name, guessed_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (quiz_id, user_id) DO UPDATE SET "
                "guess = excluded.guess, user_name = excluded.user_name, "
                "guessed_at = excluded.guessed_at",
                (quiz_id, user_id, self._key(rows[0]["guess_secret"])(word),
                 user_name if self.keeps_words else "", to_db_time(moment)),
            )
            count_rows = list(await conn.execute_fetchall(
                "SELECT COUNT(*) FROM quiz_guesses WHERE quiz_id = ?", (quiz_id,)))
        return GuessReceipt(quiz_id, word, bool(before), int(count_rows[0][0]))

    async def count(self, quiz_id: int) -> int:
        rows = await self._db.fetchall("SELECT COUNT(*) FROM quiz_guesses WHERE quiz_id = ?",
                                       (quiz_id,))
        return int(rows[0][0])

    async def guesses(self, quiz_id: int) -> list[StoredGuess]:
        rows = await self._db.fetchall(
            "SELECT user_id, guess, user_name, guessed_at FROM quiz_guesses WHERE quiz_id = ? "
            "ORDER BY guessed_at, user_id", (quiz_id,))
        return [StoredGuess(int(r["user_id"]), r["guess"], r["user_name"],
                            from_db_time(r["guessed_at"])) for r in rows]

    async def close(self, quiz_id: int, *, now: datetime | None = None) -> tuple[Quiz, bool]:
        """Close the quiz; safe to call twice. The bool is True only for the call that closed
        it, so of a timer and a "Reveal now" click exactly one posts the reveal."""
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE quizzes SET closed_at = ? WHERE id = ? AND closed_at IS NULL",
                (to_db_time(now or _now()), quiz_id))
            closed_now = cursor.rowcount == 1
        quiz = await self.get(quiz_id)
        if quiz is None:
            raise QuizNotFound(lazy("This quiz no longer exists."))
        return quiz, closed_now

    # ----------------------------------------------------------- student data

    async def count_for_user(self, guild_id: int, user_id: int) -> int:
        rows = await self._db.fetchall(
            "SELECT COUNT(*) FROM quiz_guesses WHERE user_id = ? AND quiz_id IN "
            "(SELECT id FROM quizzes WHERE guild_id = ?)", (user_id, guild_id))
        return int(rows[0][0])

    async def show_for_user(self, guild_id: int, user_id: int, *, limit: int,
                            until: datetime | None = None) -> list[HeldItem]:
        """A student's stored guesses: the word ("full"), or that a digest is kept until the
        reveal."""
        rows = await self._db.fetchall(
            "SELECT g.quiz_id, g.guess, g.guessed_at, q.kind FROM quiz_guesses AS g "
            "JOIN quizzes AS q ON q.id = g.quiz_id WHERE g.user_id = ? AND q.guild_id = ? "
            "AND g.guessed_at < ? ORDER BY g.guessed_at DESC, g.quiz_id DESC LIMIT ?",
            (user_id, guild_id, to_db_time(until) if until else "9", limit))
        kept = "" if self.keeps_words else ", kept as a digest until the reveal"
        return [HeldItem(from_db_time(r["guessed_at"]),
                         f"guess in /quiz {r['kind']} #{r['quiz_id']}{kept}",
                         r["guess"] if self.keeps_words else "") for r in rows]

    async def delete_for_user(self, guild_id: int, user_id: int) -> int:
        """Delete a user's guesses in one guild; returns how many."""
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "DELETE FROM quiz_guesses WHERE user_id = ? AND quiz_id IN "
                "(SELECT id FROM quizzes WHERE guild_id = ?)", (user_id, guild_id))
            deleted = cursor.rowcount
        await self._db.checkpoint()
        log.info("Deleted %d quiz guesses of a user (guild %s)", deleted, guild_id)
        return deleted

    async def purge_expired(self, now: datetime) -> int:
        """Forget closed quizzes a reveal did not forget (`FORGET_AFTER`), then delete closed
        quizzes (their guesses go with them) older than their guild's retention, as
        `QueryLog.purge` does for rows. Returns how many guesses went."""
        forgotten = 0
        if not self.keeps_words:
            stale = await self._db.fetchall(
                "SELECT id FROM quizzes WHERE closed_at IS NOT NULL AND closed_at < ? AND "
                "(guess_secret IS NOT NULL OR prompt != '' OR id IN "
                "(SELECT quiz_id FROM quiz_guesses))", (to_db_time(now - FORGET_AFTER),))
            for row in stale:
                forgotten += await self.forget_after_reveal(int(row["id"]))
        overrides = await self._db.fetchall(
            "SELECT guild_id, retention_days FROM guild_settings WHERE retention_days IS NOT NULL")
        custom = {int(r["guild_id"]): int(r["retention_days"]) for r in overrides}
        quizzes = 0
        async with self._db.transaction() as conn:
            [[before]] = await conn.execute_fetchall("SELECT COUNT(*) FROM quiz_guesses")
            cursor = await conn.execute(
                "DELETE FROM quizzes WHERE closed_at IS NOT NULL AND created_at < ? AND guild_id "
                "NOT IN (SELECT guild_id FROM guild_settings WHERE retention_days IS NOT NULL)",
                (to_db_time(now - timedelta(days=self._default_retention_days)),))
            quizzes += cursor.rowcount
            for guild_id, days in custom.items():
                cursor = await conn.execute(
                    "DELETE FROM quizzes WHERE closed_at IS NOT NULL AND guild_id = ? AND "
                    "created_at < ?", (guild_id, to_db_time(now - timedelta(days=days))))
                quizzes += cursor.rowcount
            [[after]] = await conn.execute_fetchall("SELECT COUNT(*) FROM quiz_guesses")
        if quizzes:
            log.info("Retention purge deleted %d quizzes with %d guesses", quizzes,
                     before - after)
        return forgotten + before - after

    async def forget_after_reveal(self, quiz_id: int) -> int:
        """Once a quiz is closed and its reveal drawn: under "hashed" and "none", erase its
        guesses, its secret and its prompt, so nothing a guess or the prompt could be
        recovered from outlives the reveal (the card already shows the tally). Nothing under
        "full". Returns how many guesses went; an open quiz is left alone (0)."""
        if self.keeps_words:
            return 0
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE quizzes SET guess_secret = NULL, prompt = '' "
                "WHERE id = ? AND closed_at IS NOT NULL", (quiz_id,))
            if cursor.rowcount == 0:
                return 0
            cursor = await conn.execute("DELETE FROM quiz_guesses WHERE quiz_id = ?", (quiz_id,))
            forgotten = cursor.rowcount
        # Out of the WAL too (secure_delete zeroes the freed space in the file).
        await self._db.checkpoint()
        log.info("quiz %d: forgot its %d guesses and its prompt after the reveal", quiz_id,
                 forgotten)
        return forgotten

    async def reveal(self, quiz: Quiz, result: FillMaskResult | NextTokenResult,
                     *, top_k: int = REVEAL_TOP_K) -> QuizReveal:
        """The model's answer (the `/mask` or `/nexttoken` result for `quiz.prompt`) beside the
        class's stored guesses."""
        key = None if self.keeps_words else self._key(await self._secret(quiz.id))
        return build_reveal(quiz, await self.guesses(quiz.id), result, key=key, top_k=top_k)


# --------------------------------------------------------------------------- the reveal

def model_candidates(result: FillMaskResult | NextTokenResult,
                     top_k: int = REVEAL_TOP_K) -> list[tuple[str, float]]:
    """(token, probability) of the model's best candidates, best first."""
    if isinstance(result, FillMaskResult):
        return [(f.token, f.score) for f in result.fillers[:top_k]]
    return [(c.token, c.model_prob) for c in result.candidates[:top_k]]


def candidate_word(token: str) -> str | None:
    """The word a student would type for a model token, or None if no guess can match it
    (a special token, a word piece such as `##s`, whitespace)."""
    word = token.strip()
    if not word or word.startswith("##"):
        return None
    try:
        return normalise_guess(word)
    except InvalidInput:
        return None


def build_reveal(quiz: Quiz, guesses: Sequence[StoredGuess],
                 result: FillMaskResult | NextTokenResult, *,
                 key: Callable[[str], str] | None = None,
                 top_k: int = REVEAL_TOP_K) -> QuizReveal:
    """Tally the stored guesses against the model's top-k.

    `key` maps a normalised word to its stored digest (the quiz's keyed digest) when guesses are
    stored hashed, so digests are compared with digests; None means guesses are stored as words.
    """
    keeps_words = key is None
    key = key or (lambda word: word)
    candidates = model_candidates(result, top_k)
    rank_of: dict[str, int] = {}
    word_of: dict[str, str] = {}
    for rank, (token, _) in enumerate(candidates, start=1):
        word = candidate_word(token)
        if word is not None:
            stored = key(word)
            rank_of.setdefault(stored, rank)
            word_of.setdefault(stored, word)
    counts = Counter(g.guess for g in guesses)
    by_guess: dict[str, list[StoredGuess]] = defaultdict(list)
    for g in guesses:
        by_guess[g.guess].append(g)
    hidden = 0
    entries: list[TallyEntry] = []
    ordered = sorted(counts, key=lambda s: (-counts[s], rank_of.get(s, top_k + 1), s))
    for stored in ordered:
        if stored in word_of:
            label = word_of[stored]
        elif keeps_words:
            label = stored
        else:
            hidden += 1
            label = lazy("hidden word {n}", n=hidden)
        who = by_guess[stored] if quiz.show_names else []
        entries.append(TallyEntry(
            label=label,
            count=counts[stored],
            model_rank=rank_of.get(stored),
            user_ids=tuple(g.user_id for g in who),
            names=tuple(g.user_name for g in who if g.user_name),
        ))
    first = next((s for s, r in rank_of.items() if r == 1), None)
    return QuizReveal(
        quiz_id=quiz.id,
        kind=quiz.kind,
        prompt=quiz.prompt,
        model_id=result.model_id,
        candidates=tuple(
            RevealCandidate(rank, token, prob, _class_count(counts, token, key))
            for rank, (token, prob) in enumerate(candidates, start=1)
        ),
        tally=tuple(entries),
        total_guesses=len(guesses),
        matched_first=counts[first] if first is not None else 0,
        matched_top_k=sum(counts[s] for s in rank_of),
        show_names=quiz.show_names,
    )


def _class_count(counts: Counter[str], token: str, key: Callable[[str], str]) -> int:
    word = candidate_word(token)
    return counts[key(word)] if word is not None else 0


# --------------------------------------------------------------------------- helpers

def _quiz(row: sqlite3.Row) -> Quiz:
    return Quiz(
        id=int(row["id"]),
        guild_id=int(row["guild_id"]),
        channel_id=int(row["channel_id"]),
        message_id=None if row["message_id"] is None else int(row["message_id"]),
        kind=row["kind"],
        prompt=row["prompt"],
        seconds=int(row["seconds"]),
        show_names=bool(row["show_names"]),
        creator_id=int(row["creator_id"]),
        created_at=from_db_time(row["created_at"]),
        ends_at=from_db_time(row["ends_at"]),
        closed_at=None if row["closed_at"] is None else from_db_time(row["closed_at"]),
    )


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _shown(word: str) -> str:
    """A student's text echoed in a message: short, and no backticks to break the code span."""
    word = word.replace("`", "'")
    return word if len(word) <= 40 else word[:39] + "…"
