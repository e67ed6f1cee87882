"""The one row builder: what a cog knows about an outcome (`QueryRecord`) -> what is stored.

Every row of the query log is made by `build_row`, so the privacy rules for rows live here:
``log_inputs`` decides what is kept of the student's words (`core.privacy.TextPolicy`: "full";
"hashed", a salted sha256, enough to spot repeats; "none"). It applies to `input_text` and to
every option a command declares as free text. In "hashed" and "none" modes the output summary
and the member's display name are dropped too, because summaries echo the input (a filled-in
mask, a continuation) and a name identifies. A record marked `dictionary_words` (a quiz guess:
one word a digest of which a word list reverses) keeps nothing of its words under "hashed".

Storable text: Discord delivers JSON, and a JSON escape such as ``\\ud800`` decodes to a lone
surrogate, a Python str that has no UTF-8 form, so SQLite cannot bind it. Every text value is
made storable here, before it is queued: a lone surrogate becomes U+FFFD (the replacement
character, what a browser shows for it); a valid surrogate pair becomes the character it
encodes. Hashes are taken of that storable form.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from core.outcomes import STATUS_VALUES, Status
from core.privacy import LogInputs, TextPolicy

STATUSES: frozenset[str] = frozenset(STATUS_VALUES)

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def to_db_time(moment: datetime) -> str:
    """UTC, fixed width, so comparing the text compares the times. Naive datetimes are UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime(_TIME_FORMAT)


def from_db_time(text: str) -> datetime:
    """The inverse of `to_db_time`. fromisoformat, not strptime: every read and export decodes
    each row's time, and strptime would dominate the time of a large export."""
    if not text.endswith("Z"):
        raise ValueError(f"not a stored time: {text!r}")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc)


def storable_text(value: object) -> str:
    """`str(value)` with every lone surrogate replaced by U+FFFD, so SQLite can store it."""
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # UTF-16 with surrogatepass joins valid pairs; decoding with "replace" turns each lone
        # surrogate into U+FFFD.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


@dataclass(frozen=True)
class QueryRecord:
    """What a cog knows about one command outcome."""

    guild_id: int | None
    channel_id: int | None
    user_id: int
    command: str
    options: Mapping[str, object]
    input_text: str
    status: str
    output_summary: str = ""
    error: str = ""
    model_id: str = ""
    queue_ms: float | None = None
    inference_ms: float | None = None
    total_ms: float | None = None
    created_at: datetime | None = None
    #: Options whose values are the student's own words: stored under `log_inputs` like
    #: `input_text` (kept, hashed or dropped), never raw.
    free_text_options: frozenset[str] = frozenset()
    #: The member's display name at query time; stored only with log_inputs = "full".
    user_name: str = ""
    #: The Discord interaction answered (None for the CLI): feedback buttons find the row by it.
    interaction_id: int | None = None
    #: The input and free-text options are single words a student picked (a quiz guess): a
    #: digest of one is reversed by hashing a word list, so "hashed" keeps nothing of them.
    dictionary_words: bool = False
    #: The language the reply was given in ("it", "en"; `core.i18n`).
    locale: str = ""

    def __post_init__(self) -> None:
        if self.created_at is None:
            object.__setattr__(self, "created_at", datetime.now(timezone.utc))


@dataclass(frozen=True)
class QueryRow:
    """A stored row, as instructors see it (input_text is what `log_inputs` kept)."""

    id: int
    created_at: datetime
    guild_id: int | None
    channel_id: int | None
    user_id: int
    command: str
    options: Mapping[str, object]
    input_text: str
    status: str
    output_summary: str
    error: str
    model_id: str
    queue_ms: float | None
    inference_ms: float | None
    total_ms: float | None
    user_name: str = ""
    feedback: int | None = None
    locale: str = ""


class StoredRow(NamedTuple):
    """The values of one INSERT, in `INSERT_SQL`'s order; only `build_row` makes them."""

    created_at: str
    guild_id: int | None
    channel_id: int | None
    user_id: int
    user_name: str
    command: str
    options: str
    input_text: str
    status: str
    output_summary: str
    error: str
    model_id: str
    queue_ms: float | None
    inference_ms: float | None
    total_ms: float | None
    interaction_id: int | None
    locale: str


INSERT_SQL = (
    f"INSERT INTO queries ({', '.join(StoredRow._fields)}) "
    f"VALUES ({', '.join('?' * len(StoredRow._fields))})"
)

#: Every column a read returns, in the CSV's order.
COLUMNS: tuple[str, ...] = (
    "id", "created_at", "guild_id", "channel_id", "user_id", "user_name", "command", "options",
    "input_text", "status", "output_summary", "error", "model_id",
    "queue_ms", "inference_ms", "total_ms", "feedback", "locale",
)  # fmt: skip
COLUMNS_SQL = ", ".join(COLUMNS)


class RowBuilder:
    """Turns records into stored values under one installation's `log_inputs` and salt."""

    def __init__(self, log_inputs: LogInputs = "full", hash_salt: bytes = b"") -> None:
        self.text_policy = TextPolicy(log_inputs, hash_salt)
        self.log_inputs = log_inputs

    def build_row(self, rec: QueryRecord) -> StoredRow:
        """Validate `rec` and return what is stored. Raises ValueError/TypeError for a bad one."""
        if rec.status not in STATUSES:
            raise ValueError(f"unknown status {rec.status!r}")
        if not rec.command:
            raise ValueError("empty command name")
        assert rec.created_at is not None  # set by __post_init__
        full = self.log_inputs == "full"
        words = rec.dictionary_words
        kept_options = {
            name: (self.kept_text(value, dictionary_word=words) if name in rec.free_text_options
                   and value is not None else value)
            for name, value in dict(rec.options).items()
        }  # fmt: skip
        options = json.dumps(kept_options, default=str, sort_keys=True, ensure_ascii=False)
        return StoredRow(
            created_at=to_db_time(rec.created_at),
            guild_id=_opt_int(rec.guild_id),
            channel_id=_opt_int(rec.channel_id),
            user_id=int(rec.user_id),
            user_name=storable_text(rec.user_name) if full else "",
            command=storable_text(rec.command),
            options=storable_text(options),
            input_text=self.kept_text(rec.input_text, dictionary_word=words),
            status=str(Status(rec.status)),
            output_summary=storable_text(rec.output_summary) if full else "",
            error=storable_text(rec.error),
            model_id=storable_text(rec.model_id),
            queue_ms=_opt_float(rec.queue_ms),
            inference_ms=_opt_float(rec.inference_ms),
            total_ms=_opt_float(rec.total_ms),
            interaction_id=_opt_int(rec.interaction_id),
            locale=storable_text(rec.locale)[:16],
        )

    def kept_text(self, value: object, *, dictionary_word: bool = False) -> str:
        """What `log_inputs` keeps of a student's words: the text, a salted digest, or nothing
        (`core.privacy.TextPolicy.kept`), of the storable form of `value`."""
        return self.text_policy.kept(storable_text(value), dictionary_word=dictionary_word)


def row_from_db(r: Any) -> QueryRow:
    """A `QueryRow` from a sqlite3.Row selected with `COLUMNS_SQL`."""
    return QueryRow(
        id=int(r["id"]),
        created_at=from_db_time(r["created_at"]),
        guild_id=r["guild_id"],
        channel_id=r["channel_id"],
        user_id=int(r["user_id"]),
        command=r["command"],
        options=json.loads(r["options"]),
        input_text=r["input_text"],
        status=r["status"],
        output_summary=r["output_summary"],
        error=r["error"],
        model_id=r["model_id"],
        queue_ms=r["queue_ms"],
        inference_ms=r["inference_ms"],
        total_ms=r["total_ms"],
        user_name=r["user_name"],
        feedback=r["feedback"],
        locale=r["locale"],
    )


def _opt_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
