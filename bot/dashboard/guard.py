"""Connections that cannot pile up: a deadline for each request's headers and a cap on
connections, in front of aiohttp's own protocol.

Why: every open connection holds a file descriptor of the bot's process, the same budget its
database, model files and Discord connections draw from. aiohttp waits for a request's headers
as long as its keep-alive timeout (an hour by default) and accepts any number of connections,
so clients that open connections and never finish a request could exhaust the descriptors and
take `/logs export` down with them (issue #23). Here:

- each connection must deliver a complete header block (up to the blank line) within
  `header_timeout_s` of connecting, and again within as long of starting its next request;
  past it the connection is closed. Idle keep-alive connections are aiohttp's to close
  (`keepalive_timeout`, set to the same value by `bot.dashboard`);
- at most `max_connections` are open; a new one beyond that pushes out the oldest connection
  still sending its headers (the slow ones are the suspects, not a page being served), and only
  if none is, the new one is refused.

It wraps the protocol factory, not aiohttp's classes: the bytes pass through unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

_HEADER_ENDS = (b"\r\n\r\n", b"\n\n")


class ConnectionGuard:
    """A protocol factory around `inner` (aiohttp's `web.Server`) with the two limits."""

    def __init__(self, inner: Callable[[], asyncio.Protocol], *, max_connections: int,
                 header_timeout_s: float) -> None:
        self._inner = inner
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.open = 0
        #: Connections still sending headers, oldest first.
        self._waiting: OrderedDict[_Guarded, None] = OrderedDict()
        self.timed_out = 0
        self.pushed_out = 0
        self.refused = 0

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self, self._inner())

    def _admit(self, conn: _Guarded) -> bool:
        self.open += 1
        if self.open <= self.max_connections:
            return True
        if self._waiting:
            oldest = next(iter(self._waiting))
            self.pushed_out += 1
            oldest.drop()
            return True
        self.refused += 1
        return False


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's protocol behind a header deadline."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes seen, for a blank line split across two reads
        self._closed = False

    # --- asyncio.Protocol, passed through

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if not self._guard._admit(self):
            self._closed = True
            self._guard.open -= 1
            transport.abort()  # type: ignore[attr-defined]
            return
        self._inner.connection_made(transport)
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        if self._timer is None:  # the next request on a kept-alive connection begins
            self._await_headers()
        seen = self._tail + data
        if any(end in seen for end in _HEADER_ENDS):
            self._headers_done()
        else:
            self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed:
            self._closed = True
            self._guard.open -= 1
            self._headers_done()
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # --- the deadline

    def _await_headers(self) -> None:
        loop = asyncio.get_running_loop()
        self._tail = b""
        self._timer = loop.call_later(self._guard.header_timeout_s, self._too_slow)
        self._guard._waiting[self] = None

    def _headers_done(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._guard._waiting.pop(self, None)
        self._tail = b""

    def _too_slow(self) -> None:
        self._timer = None
        self._guard.timed_out += 1
        self.drop()

    def drop(self) -> None:
        """Close now, without waiting for buffers (the peer is not reading anyway)."""
        self._guard._waiting.pop(self, None)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()  # connection_lost follows and tells aiohttp


class GuardedSite(web.BaseSite):
    """`web.TCPSite` with a `ConnectionGuard` between the socket and aiohttp."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *,
                 max_connections: int, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(runner, **kwargs)
        self._host = host
        self._port = port
        self._limits = {"max_connections": max_connections,
                        "header_timeout_s": header_timeout_s}
        self.guard: ConnectionGuard | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self.guard = ConnectionGuard(server, **self._limits)
        self._server = await asyncio.get_running_loop().create_server(
            self.guard, self._host, self._port, backlog=self._backlog, reuse_address=True)
