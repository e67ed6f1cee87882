"""The read-only instructor dashboard, served by the bot process (aiohttp.web).

`Dashboard` owns the web server's lifetime and makes the signed links `/logs dashboard` hands
out; `app` has the routes and the access rules, `access` what decides whether a grant still
holds (with `rights`, its Discord side), `guard` the limits on connections, `pages` and
`charts` the HTML and SVG, and `core.storage.dashboard_data` the aggregates (rows:
`core.storage.querylog`).

The bot gives the dashboard one callback, `authorize` (see `bot.dashboard.access.Authorize`):
until it is set, nobody is let in (503), because nobody's rights can be checked.
"""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

from bot.dashboard.access import Authorize, Sessions, no_discord
from bot.dashboard.app import DashboardContext, make_app
from bot.dashboard.guard import GuardedSite
from bot.dashboard.signing import Grant, Signer, dashboard_key, new_link_id
from core.config import Config
from core.storage.dashboard_data import DashboardData
from core.storage.database import Database
from core.storage.guild_settings import SettingsStore

if TYPE_CHECKING:  # not at run time: benchmarks/dashboard.py runs without torch
    from core.sentiment.service import SentimentService

log = logging.getLogger(__name__)


class Dashboard:
    """The web server: `start` binds it, `link` signs a link, `end_sessions` ends a guild's
    sessions, `aclose` stops it."""

    def __init__(self, config: Config, db: Database, settings: SettingsStore,
                 sentiment: SentimentService, *, authorize: Authorize | None = None) -> None:
        self.config = config
        self._db = db
        self._settings = settings
        self._sentiment = sentiment
        #: Whether a user may still read a guild's dashboard; asked on every request. The bot
        #: sets it once it exists (`bot.dashboard.rights.DiscordRights`).
        self.authorize: Authorize = authorize or no_discord
        self.sessions = Sessions(db)
        self._signer: Signer | None = None
        self._data: DashboardData | None = None
        self._runner: web.AppRunner | None = None
        self._site: GuardedSite | None = None
        self.base_url = ""

    async def start(self) -> None:
        cfg = self.config.dashboard
        self._signer = Signer(await dashboard_key(self._db))
        self._data = await DashboardData.open(self._db.path)
        public = cfg.public_url.rstrip("/") if cfg.public_url else ""
        d = self.config.discord
        context = DashboardContext(
            sentiment_report=self._sentiment_report,
            default_cooldown=f"{d.default_cooldown_uses} per {d.default_cooldown_seconds:g} s "
                             "per command" if d.default_cooldown_uses else "none",
            log_inputs=self.config.database.log_inputs,
            public_path=urlsplit(public).path if public else "",
            secure_cookies=public.startswith("https://"),
            link_seconds=cfg.link_hours * 3600,
            sessions=self.sessions,
            authorize=self._authorize,
            trusted_proxy=cfg.trusted_proxy,
        )
        app = make_app(self._data, self._signer, self._settings, context)
        # keepalive_timeout: an idle kept-alive connection closes as soon as a slow one would.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     keepalive_timeout=cfg.header_timeout_s)
        try:
            await self._runner.setup()
            self._site = GuardedSite(self._runner, cfg.host, cfg.port,
                                     max_connections=cfg.max_connections,
                                     header_timeout_s=cfg.header_timeout_s)
            await self._site.start()
        except BaseException:
            await self.aclose()
            raise
        port = self._runner.addresses[0][1]
        self.base_url = public or f"http://{cfg.host}:{port}"
        log.info("dashboard listening on %s:%s (links point to %s)", cfg.host, port,
                 self.base_url)

    async def _authorize(self, guild_id: int, user_id: int) -> bool:
        return await self.authorize(guild_id, user_id)  # late-bound: set after start

    def _sentiment_report(self) -> str:
        classifier = self._sentiment.classifier
        if classifier is None:
            return self._sentiment.problem
        report = classifier.report
        return report.to_text() if report is not None else "(no training report saved)"

    async def link(self, guild_id: int, user_id: int, *, expires_at: int | None = None) -> str:
        """A link for one instructor to one guild's dashboard, valid `link_hours` (or until
        `expires_at`, unix seconds), for one browser session, until the guild's sessions are
        ended."""
        if self._signer is None:
            raise RuntimeError("the dashboard is not running")
        expires = expires_at if expires_at is not None else (
            int(time.time()) + self.config.dashboard.link_hours * 3600)
        epoch = await self.sessions.epoch(guild_id)
        token = self._signer.issue("link", Grant(guild_id, user_id, expires, epoch,
                                                 new_link_id()))
        return f"{self.base_url}/login?t={token}"

    async def end_sessions(self, guild_id: int) -> None:
        """End every session and every unused link of this guild (`/logs end-sessions`)."""
        await self.sessions.end_all(guild_id)
        log.info("dashboard: every session of guild %s ended", guild_id)

    async def aclose(self) -> None:
        """Stop serving; safe to call twice."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._data is not None:
            data, self._data = self._data, None
            await data.aclose()

    async def __aenter__(self) -> Dashboard:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


__all__ = ["Dashboard"]
