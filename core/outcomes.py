"""How an interaction ended: the one status vocabulary and the one mapping from an error to it.

Every interaction (slash command, context menu, button, modal, staff command) ends in exactly
one `Outcome`: the status stored in the query log, the message the member sees, and a short
error code for instructors. The vocabulary lives here only; the database's CHECK constraint,
`/logs stats`, the CSV export and the README are checked against `Status` by tests.

Why the split between `user_error` and the server-side statuses: instructors read error rates
to find students who need help. A full queue, a model that failed to load or a timeout is not
the student's mistake and must not be counted as one (v0.1 did).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from core.errors import CoreError
from core.i18n import Localised, lazy


class Status(str, Enum):
    """What happened to one interaction. The value is what the query log stores."""

    OK = "ok"
    USER_ERROR = "user_error"
    REFUSED = "refused"
    COOLDOWN = "cooldown"
    PAUSED = "paused"
    OVERLOADED = "overloaded"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    FAILED = "failed"
    EXPIRED = "expired"

    def __str__(self) -> str:
        return self.value

    @property
    def meaning(self) -> str:
        return STATUS_MEANINGS[self]

    @property
    def students_fault(self) -> bool:
        """Only these count as "the student asked for something that cannot work"."""
        return self is Status.USER_ERROR


STATUS_MEANINGS: dict[Status, str] = {
    Status.OK: "answered",
    Status.USER_ERROR: "the input cannot work as given (the reply says what to change)",
    Status.REFUSED: "a moderator rule or Discord permission said no",
    Status.COOLDOWN: "the member used the command too often; the reply says when to retry",
    Status.PAUSED: "a moderator paused student commands",
    Status.OVERLOADED: "the queue was full; the member was told to try again",
    Status.UNAVAILABLE: "a model or classifier is not available (failed to load, not trained)",
    Status.TIMEOUT: "the answer took longer than the request timeout",
    Status.FAILED: "a bug or a fault on our side; logged with its traceback",
    Status.EXPIRED: "answered, but Discord's 15-minute token had expired or the reply was gone",
}

STATUS_VALUES: tuple[str, ...] = tuple(s.value for s in Status)

APOLOGY = lazy(
    "Sorry, something went wrong on our side while answering that. "
    "It has been logged for the instructors; please try again."
)


@dataclass(frozen=True)
class Outcome:
    """The decision for one interaction: what is stored and what the member reads."""

    status: Status
    #: Translated when replied, into the member's language (`core.i18n`).
    message: str | Localised = ""
    error_code: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (Status.OK, Status.EXPIRED)


def outcome_of_error(exc: BaseException) -> Outcome:
    """Map any exception to its outcome. Only `CoreError`s carry a message fit for a member;
    anything else is a bug and gets the apology (never `str(exc)`, which can leak internals)."""
    if isinstance(exc, CoreError):
        return Outcome(Status(exc.status), exc.message, exc.code)
    return Outcome(Status.FAILED, APOLOGY, type(exc).__name__)
