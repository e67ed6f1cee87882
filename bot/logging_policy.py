"""What the bot's log may hold, whatever the level: one place, applied by `bot.cli` at start.

Two rules:

1. **No student text and no interaction tokens from the libraries**, even with ``-v``.
   discord.py logs every gateway event whole at DEBUG (an INTERACTION_CREATE carries what the
   student typed and the interaction's 15-minute webhook token) and every request's URL and
   body (an interaction's URL holds its token); aiosqlite logs each statement with its
   parameters. Those loggers stay at INFO unless ``--debug-discord`` is given, which says at
   start that the log will hold students' text. Lines that name a URL at any level (discord.py's
   rate-limit warnings) have the token in it replaced.
2. **A flood of one error is logged a few times, then counted.** A client that opens
   connections faster than they close can make asyncio log the same accept error thousands of
   times a second; a storm of refused dashboard links, a warning per attempt. The same line
   (logger, level, message template) is let through `burst` times per `window_s`, then a single
   "... repeated N more times" line follows when the window ends.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

#: Loggers whose DEBUG lines carry payloads: whole gateway events, request URLs and bodies,
#: SQL parameters. discord.webhook covers interaction follow-ups (URL = token).
PAYLOAD_LOGGERS = ("discord.gateway", "discord.http", "discord.webhook", "discord.client",
                   "discord.state", "aiosqlite")
#: Loggers that format URLs into lines at WARNING too (rate limits).
URL_LOGGERS = ("discord.http", "discord.webhook.async_", "discord.webhook.sync")
#: Where floods of one line come from (a logger's filters see only its own lines, not its
#: children's: each is named).
FLOOD_LOGGERS = ("asyncio", "aiohttp.server", "aiohttp.web", "bot.dashboard.app")

DEBUG_DISCORD_WARNING = (
    "--debug-discord: discord.py's gateway events and requests are logged whole; this log will "
    "hold students' text and interaction tokens (valid 15 minutes), whatever log_inputs says. "
    "Keep it private and delete it after use.")

# /interactions/<id>/<token>/callback and /webhooks/<application id>/<token>[/messages/...]
_TOKEN_IN_URL = re.compile(r"(/(?:interactions|webhooks)/\d+/)[A-Za-z0-9_.\-]+")


class RedactTokens(logging.Filter):
    """Replaces interaction and webhook tokens in a line's URLs with ``<token>``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _TOKEN_IN_URL.sub(r"\1<token>", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class RepeatLimit(logging.Filter):
    """Lets one line (logger, level, template) through `burst` times per `window_s`; the rest
    of the window is counted and reported once by the next line of that kind after it."""

    def __init__(self, burst: int = 5, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self._clock = clock
        self._seen: dict[tuple[str, int, str], list[float | int]] = {}  # start, passed, held

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= self.window_s:
            held = int(entry[2]) if entry is not None else 0
            if len(self._seen) > 1000:  # many different lines: start over rather than grow
                self._seen.clear()
            self._seen[key] = [now, 1, 0]
            if held:
                record.msg = f"{record.getMessage()} (and {held} more like it before, not shown)"
                record.args = None
            return True
        if entry[1] < self.burst:
            entry[1] += 1
            return True
        entry[2] += 1
        if entry[2] == 1:
            # Said once per window, so a reader knows the silence is deliberate.
            record.msg = (f"{record.getMessage()} (repeated; more lines like this one are "
                          f"counted, not shown, for {self.window_s:g} s)")
            record.args = None
            record.exc_info = record.exc_text = None
            return True
        return False


def apply(*, debug_discord: bool) -> None:
    """Set the library loggers' levels and filters for this process (idempotent)."""
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug_discord else logging.INFO)
    for name in URL_LOGGERS:
        _add_once(logging.getLogger(name), RedactTokens)
    for name in FLOOD_LOGGERS:
        _add_once(logging.getLogger(name), RepeatLimit)
    if debug_discord:
        logging.getLogger("tlm-bot").warning(DEBUG_DISCORD_WARNING)


def _add_once(logger: logging.Logger, kind: type[logging.Filter]) -> None:
    if not any(isinstance(f, kind) for f in logger.filters):
        logger.addFilter(kind())
