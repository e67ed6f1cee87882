"""The emulator's gateway: websocket sessions, HELLO/IDENTIFY/READY, dispatch and RESUME.

discord.py's reconnect logic is exercised for real: events dispatched while the client is away
are kept per session and replayed on RESUME, and the fault-injection helpers (RECONNECT, a dropped
TCP connection, INVALID_SESSION) are what Discord does to a bot in production. Frames are sent as
text, never zlib-compressed: discord.py only decompresses binary frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .world import Guild


@dataclass
class _Session:
    id: str
    ws: web.WebSocketResponse | None
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # kept for RESUME replay
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class GatewayMixin:
    """The gateway half of DiscordEmulator (the state it uses is set up in its __init__)."""

    token: str
    application_id: int
    bot_user: dict[str, Any]
    gateway_url: str
    guilds: dict[int, Guild]
    gateway_log: list[str]
    unhandled: list[str]
    _sessions: dict[str, _Session]
    _session: _Session | None
    _sockets: dict[web.WebSocketResponse, web.Request]
    _ready: asyncio.Event

    # ----- fault injection

    async def send_reconnect(self) -> None:
        self.gateway_log.append("RECONNECT")
        await self._send(self._live_session().ws, {"op": 7, "d": None, "s": None, "t": None})

    async def drop_connection(self) -> None:
        """Cut the TCP connection with no close frame, as a network fault would."""
        session = self._live_session()
        self.gateway_log.append("DROP")
        request = self._sockets.get(session.ws) if session.ws else None
        session.ws = None
        if request is not None and request.transport is not None:
            request.transport.abort()

    async def invalidate_session(self, resumable: bool = False) -> None:
        session = self._live_session()
        self.gateway_log.append("INVALID_SESSION")
        if not resumable:
            self._sessions.pop(session.id, None)
            self._ready.clear()
        await self._send(session.ws, {"op": 9, "d": resumable, "s": None, "t": None})

    # ----- gateway

    async def wait_ready(self, timeout: float = 10) -> None:
        """Wait until a client identified and was sent READY and every GUILD_CREATE."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def wait_gateway(self, entry: str, count: int = 1, timeout: float = 10) -> None:
        """Wait until `entry` (e.g. "RESUMED") appears `count` times in gateway_log."""
        deadline = time.monotonic() + timeout
        while self.gateway_log.count(entry) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{entry} x{count} not seen; gateway log: {self.gateway_log}")
            await asyncio.sleep(0.01)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a gateway event; while the client is away it is kept for RESUME to replay."""
        session = self._session
        if session is None:
            raise RuntimeError("no client has identified with the emulator")
        async with session.lock:
            session.seq += 1
            frame = {"op": 0, "t": event, "s": session.seq, "d": data}
            session.events.append(frame)
            await self._send(session.ws, frame)

    def _live_session(self) -> _Session:
        if self._session is None or self._session.ws is None:
            raise RuntimeError("no client is connected to the emulator's gateway")
        return self._session

    @staticmethod
    async def _send(ws: web.WebSocketResponse | None, frame: dict[str, Any]) -> None:
        # Text frames: discord.py only decompresses binary ones, so zlib-stream is not needed.
        if ws is not None and not ws.closed:
            with contextlib.suppress(ConnectionResetError):
                await ws.send_str(json.dumps(frame))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self._sockets[ws] = request
        try:
            await self._send(ws, {"op": 10, "d": {"heartbeat_interval": 41250}, "s": None,
                                  "t": None})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_frame(ws, json.loads(msg.data))
        finally:
            del self._sockets[ws]
            for session in self._sessions.values():
                if session.ws is ws:
                    session.ws = None
        return ws

    async def _on_frame(self, ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        op, data = frame.get("op"), frame.get("d")
        if op == 1:
            await self._send(ws, {"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(ws, data)
        elif op == 6:
            await self._resume(ws, data)
        elif op == 3:
            self.gateway_log.append("PRESENCE_UPDATE")
        else:
            self.unhandled.append(f"gateway op {op}: {frame}")

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        self.gateway_log.append("IDENTIFY")
        if data.get("token") != self.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        self._ready.clear()
        session = _Session(id=secrets.token_hex(16), ws=ws)
        self._sessions[session.id] = self._session = session
        await self.dispatch("READY", {
            "v": 10, "user": self.bot_user, "session_id": session.id,
            "resume_gateway_url": self.gateway_url, "session_type": "normal",
            "shard": data.get("shard", [0, 1]), "private_channels": [], "relationships": [],
            "presences": [], "user_settings": {}, "guild_join_requests": [],
            "geo_ordered_rtc_regions": [], "application": {"id": str(self.application_id),
                                                           "flags": 0},
            "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds]})
        self.gateway_log.append("READY")
        for guild in self.guilds.values():
            await self.dispatch("GUILD_CREATE", guild.gateway_payload())
        self._ready.set()

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        self.gateway_log.append("RESUME")
        session = self._sessions.get(data.get("session_id", ""))
        if session is None or data.get("token") != self.token:
            self.gateway_log.append("INVALID_SESSION")
            await self._send(ws, {"op": 9, "d": False, "s": None, "t": None})
            return
        async with session.lock:
            session.ws, self._session = ws, session
            for frame in session.events:
                if frame["s"] > (data.get("seq") or 0):
                    await self._send(ws, frame)
            session.seq += 1
            resumed = {"op": 0, "t": "RESUMED", "s": session.seq, "d": {}}
            session.events.append(resumed)
            await self._send(ws, resumed)
        self.gateway_log.append("RESUMED")
