"""DiscordEmulator: the world, the gateway and the REST API on one loopback port.

The class only holds the state and the wiring (start/close, pointing discord.py at it in this
process or in a subprocess); what it does lives in the mixins of gateway.py, rest.py,
interactions.py and components.py, and the state is all created here so one place shows
everything a test can read.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from .components import ComponentsMixin
from .gateway import GatewayMixin, _Session
from .interactions import InteractionsMixin
from .rest import API_PREFIX, RecordedRequest, RestMixin, _RateLimit
from .rules import BOT_PERMISSIONS, MANAGE_GUILD
from .world import Guild, InteractionRecord, _user

SITE_DIR = Path(__file__).resolve().parents[1] / "emulator_site"


class DiscordEmulator(ComponentsMixin, InteractionsMixin, GatewayMixin, RestMixin):
    """REST + gateway on 127.0.0.1 that a real discord.py client logs into.

    One bot at a time: events go to the session that identified last. Paths in `requests`,
    `unhandled` and the regexes of the fault-injection helpers are relative to /api/v10.
    """

    def __init__(self, *, token: str = "test-token", application_id: int = 1300000000000000001,
                 owner_id: int = 1300000000000000002, respond_deadline_s: float = 3.0,
                 token_ttl_s: float = 900.0, bot_name: str = "tlm-bot") -> None:
        self.token = token
        self.application_id = application_id
        self.owner_id = owner_id
        self.respond_deadline_s = respond_deadline_s
        self.token_ttl_s = token_ttl_s
        self.bot_user = _user(application_id, bot_name, bot=True)
        self.url = ""
        self.guilds: dict[int, Guild] = {}
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[str] = []
        self.violations: list[str] = []
        self.channel_messages: list[dict[str, Any]] = []
        self.interactions: list[InteractionRecord] = []
        self.gateway_log: list[str] = []  # IDENTIFY, READY, RESUME, RESUMED, RECONNECT, ...
        self.synced_commands: dict[int | None, list[dict[str, Any]]] = {}
        self._by_id: dict[int, InteractionRecord] = {}
        self._by_token: dict[str, InteractionRecord] = {}
        self._cdn: dict[str, tuple[str, bytes]] = {}
        self._messages: dict[int, dict[str, Any]] = {}  # every live message, by id
        self._rate_limits: list[_RateLimit] = []
        self._edit_limit: tuple[int, float] | None = None  # limit_channel_edits
        self._edit_times: dict[int, collections.deque[float]] = {}
        self.edit_rate_limited: list[RecordedRequest] = []  # 429s of the per-channel limit
        self._delays: dict[str, float] = {}
        self._sessions: dict[str, _Session] = {}
        self._session: _Session | None = None
        self._sockets: dict[web.WebSocketResponse, web.Request] = {}
        self._ready = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._routes = self._route_table()

        self.guild = self.add_guild("Class")
        self.guild_id = self.guild.id
        self.channel_id = self.guild.add_channel("general")
        self.everyone_role_id = self.guild.id
        self.student_role_id = self.guild.add_role("Student")
        self.instructor_role_id = self.guild.add_role("Instructor", MANAGE_GUILD)
        self.student_id = self.guild.add_member("student", roles=["Student"])
        self.moderator_id = self.guild.add_member("instructor", roles=["Instructor"])

    # ----- lifecycle and wiring

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/gateway/", self._gateway)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def api_url(self) -> str:
        return self.url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/gateway/"

    @contextlib.asynccontextmanager
    async def connected(self, client: Any) -> AsyncIterator[Any]:
        """`client` (a discord.py bot) logged in, ready, its commands synced to the guild;
        closed, and its connection ended, afterwards. Inside `patch_discord`."""
        import discord

        await client.login(self.token)
        runner = asyncio.create_task(client.connect())
        await self.wait_ready()
        await asyncio.wait_for(client.wait_until_ready(), 5)
        client.tree.copy_global_to(guild=discord.Object(self.guild_id))
        await client.tree.sync(guild=discord.Object(self.guild_id))
        try:
            yield client
        finally:
            await client.close()
            await asyncio.wait_for(runner, 5)

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[DiscordEmulator]:
        """Point this process's discord.py at the emulator; restores the real URLs on exit."""
        import discord
        import discord.gateway
        import discord.http
        import yarl

        saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
                 discord.Asset.BASE)
        discord.http.Route.BASE = self.api_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        discord.Asset.BASE = self.url
        try:
            yield self
        finally:
            (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
             discord.Asset.BASE) = saved

    def env(self) -> dict[str, str]:
        """Environment for a subprocess bot: sitecustomize.py applies the same patch there."""
        paths = [str(SITE_DIR), os.environ.get("PYTHONPATH", "")]
        return {"PYTHONPATH": os.pathsep.join(p for p in paths if p),
                "TLM_DISCORD_EMULATOR_URL": self.url}

    def add_guild(self, name: str = "Class") -> Guild:
        """Add a guild (with the bot as a member). Add guilds before the bot connects."""
        guild = Guild(name)
        guild.add_member(self.bot_user["username"], permissions=BOT_PERMISSIONS, bot=True,
                         user_id=self.application_id)
        self.guilds[guild.id] = guild
        return guild

    def find_requests(self, method: str | None = None,
                      path_regex: str = "") -> list[RecordedRequest]:
        return [r for r in self.requests
                if (method is None or r.method == method) and re.search(path_regex, r.path)]
