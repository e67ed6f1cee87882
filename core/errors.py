"""The errors the core can raise.

Everything a student can cause is a `UserError` whose `message` is safe to show as is; the bot
shows it ephemerally. What the server causes (a full queue, a model that did not load, a
timeout, a shutdown) is a `ServiceError`: its message is just as safe, but it is not the
student's fault, and the query log says so. Each class names its `status` (a value of
`core.outcomes.Status`, kept as text here so this module imports only the message catalog:
a message is a `core.i18n.lazy` text, translated when it is shown). Anything that is not a
`CoreError` is a bug: the bot logs its traceback and shows a generic apology, never
`str(exc)`, because that can leak internals.
"""

from __future__ import annotations

from core.i18n import Localised


class CoreError(Exception):
    """Base of every error the core raises on purpose."""

    #: A short, stable name for logs and the query log's `error` column.
    code: str = "core_error"
    #: The query log's status for this error (see `core.outcomes.Status`).
    status: str = "failed"

    def __init__(self, message: str | Localised) -> None:
        super().__init__(message)
        #: For the member: a `core.i18n.lazy` message, translated when it is replied.
        self.message = message


class UserError(CoreError):
    """The request cannot be served as asked; `message` tells the student what to change."""

    code = "user_error"
    status = "user_error"


class ServiceError(CoreError):
    """The request was fine but the server could not serve it now; not the student's fault."""

    code = "service_error"
    status = "failed"


class InvalidInput(UserError):
    code = "invalid_input"


class InputTooLong(UserError):
    code = "input_too_long"


class Overloaded(ServiceError):
    """The queue is full: fail fast rather than make a student wait minutes."""

    code = "overloaded"
    status = "overloaded"


class ModelUnavailable(ServiceError):
    """A model failed to load; the rest of the bot keeps working."""

    code = "model_unavailable"
    status = "unavailable"


class RequestTimeout(ServiceError):
    code = "timeout"
    status = "timeout"


class NotReady(ServiceError):
    """Something the command needs does not exist yet (e.g. no sentiment classifier trained)."""

    code = "not_ready"
    status = "unavailable"


class EngineClosed(ServiceError):
    """The engine is shutting down; requests still queued are failed with this."""

    code = "engine_closed"
    status = "unavailable"


class ConfigError(CoreError):
    """A configuration value is missing or wrong; the message names the key."""

    code = "config_error"
