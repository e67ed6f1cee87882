"""The errors the core can raise.

Everything a student can cause is a `UserError` whose `message` is safe to show as is; the bot
shows it ephemerally. Anything that is not a `CoreError` is a bug: the bot logs its traceback
and shows a generic apology, never `str(exc)`, because that can leak internals.
"""

from __future__ import annotations


class CoreError(Exception):
    """Base of every error the core raises on purpose."""

    #: A short, stable name for logs and the query log's `error` column.
    code: str = "core_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UserError(CoreError):
    """The request cannot be served as asked; `message` tells the student what to change."""

    code = "user_error"


class InvalidInput(UserError):
    code = "invalid_input"


class InputTooLong(UserError):
    code = "input_too_long"


class Overloaded(UserError):
    """The queue is full: fail fast rather than make a student wait minutes."""

    code = "overloaded"


class ModelUnavailable(UserError):
    """A model failed to load; the rest of the bot keeps working."""

    code = "model_unavailable"


class RequestTimeout(UserError):
    code = "timeout"


class NotReady(UserError):
    """Something the command needs does not exist yet (e.g. no sentiment classifier trained)."""

    code = "not_ready"


class EngineClosed(UserError):
    """The engine is shutting down; requests still queued are failed with this."""

    code = "engine_closed"


class ConfigError(CoreError):
    """A configuration value is missing or wrong; the message names the key."""

    code = "config_error"
