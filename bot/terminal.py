"""What the `tlm-bot` command line shows a person at a terminal, beside the answer itself.

Two things a terminal needs that Discord does not: the answer as plain text (Discord renders
`**bold**`, `` `code` `` and fenced blocks; a terminal would print the marks), and a sign of
life while a model loads for seconds. Both only where a person reads: piped or redirected
output stays what Discord receives, and a script's stderr gets no status lines.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

#: A load that takes longer than this gets one status line on stderr.
LOADING_STATUS_AFTER_S = 1.0

_FENCE = re.compile(r"^```\w*$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_UNDERLINE = re.compile(r"__(.+?)__")
_ITALIC = re.compile(r"(?<![\w*\\])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])")
_CODE = re.compile(r"`([^`\n]+)`")
_ESCAPED = re.compile(r"\\([*_`~|>\\])")


def plain_text(markdown: str) -> str:
    """Discord markdown as a terminal should show it: no emphasis marks, no code fences, no
    escaping backslashes; the lines inside a fenced block exactly as they are."""
    lines = []
    in_block = False
    for line in markdown.split("\n"):
        if _FENCE.match(line.strip()):
            in_block = not in_block
            continue
        if not in_block:
            line = _CODE.sub(r"\1", line)
            line = _UNDERLINE.sub(r"\1", _BOLD.sub(r"\1", line))
            line = _ESCAPED.sub(r"\1", _ITALIC.sub(r"\1", line))
        lines.append(line)
    return "\n".join(lines)


def for_terminal(markdown: str, stream: TextIO | None = None) -> str:
    """Plain text when `stream` (default stdout) is a terminal; Discord's markdown otherwise,
    so `tlm-bot ask ... | xclip` still pastes into Discord as it would look there."""
    stream = stream if stream is not None else sys.stdout
    return plain_text(markdown) if stream.isatty() else markdown


class LoadingStatus(logging.Handler):
    """One `loading MODEL...` line on stderr for a model load that is not done within
    `LOADING_STATUS_AFTER_S`.

    It listens to the model loader's own log records ("loading %s (...)", then "loaded ..." or
    "could not load ..."), so the loader knows nothing of terminals.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.INFO)
        self._stream = stream
        self._timers: dict[str, threading.Timer] = {}
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if not record.args or not isinstance(record.args, tuple):
            return
        model = str(record.args[0])
        if record.msg.startswith("loading %s"):
            timer = threading.Timer(LOADING_STATUS_AFTER_S, self._say, (model,))
            timer.daemon = True
            with self._lock:
                self._timers[model] = timer
            timer.start()
        elif record.msg.startswith(("loaded %s", "could not load %s")):
            with self._lock:
                timer = self._timers.pop(model, None)
            if timer is not None:
                timer.cancel()

    def cancel(self) -> None:
        """No status line after this (the command is over)."""
        with self._lock:
            timers, self._timers = list(self._timers.values()), {}
        for timer in timers:
            timer.cancel()

    def _say(self, model: str) -> None:
        with self._lock:
            if self._timers.pop(model, None) is None:
                return  # the load finished meanwhile
        print(f"loading {model}...", file=self._stream, flush=True)


@contextlib.contextmanager
def model_loading_status(stream: TextIO | None = None) -> Iterator[LoadingStatus | None]:
    """While inside: `LoadingStatus` on the model loader's logger, when `stream` (default
    stderr) is a terminal; yields it (None where no person watches). The logger is put back
    as it was on the way out."""
    stream = stream if stream is not None else sys.stderr
    if not stream.isatty():
        yield None
        return
    handler = LoadingStatus(stream)
    logger = logging.getLogger("core.inference.models")
    level, propagate = logger.level, logger.propagate
    if logger.getEffectiveLevel() > logging.INFO:
        # A quiet command: the loader's records reach this handler only; the `error:` line
        # still reports a failure.
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        handler.cancel()
