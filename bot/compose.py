"""The composition root: the one place the bot's services are built, for every entry point.

`tlm-bot run`, `tlm-bot sync`, `tlm-bot ask`, `tlm-bot dashboard`, the tests and the benchmarks
all call `open_services(config, Assembly(...))`. What differs between them is said as named
choices in `Assembly` (where the database is, whether the engine starts now, after the Discord
login, or never; whether the dashboard is served), so one flag can no longer switch off an
unrelated part. (v0.2 passed `start_engine=False` to log in first, and the same flag silently
kept the dashboard from ever starting under `tlm-bot run`, while every test passed `True`.)

Lifetimes: the database, the query log, the inference core, the dashboard and the bot are
opened in that order and closed in reverse, whatever happens (nested `async with`, as in
discord.py's `advanced_startup.py`). A clean stop therefore flushes every query-log row.

`run_bot` logs in to Discord *before* the models start loading: a bad token or no network then
fails in a second, instead of after a model load that shutdown would have to wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiohttp
import discord

from bot.client import EXTENSIONS, TLMBot
from bot.dashboard import Dashboard
from bot.dashboard.rights import DiscordRights
from core.config import Config
from core.errors import ServiceError
from core.inference.engine import InferenceEngine
from core.policy import Policy
from core.privacy import installation_salt
from core.sentiment.service import SentimentService
from core.storage.database import Database
from core.storage.guild_settings import Cooldown, SettingsStore
from core.storage.querylog import FeedbackVotes, QueryLog, QueryRows
from core.storage.quizzes import QuizStore
from core.storage.student_data import StudentData
from core.storage.sync_state import SyncState

log = logging.getLogger(__name__)

# The bot never joins a voice channel: discord.py's "PyNaCl/davey is not installed, voice will
# NOT be supported" warnings would only worry an operator.
discord.VoiceClient.warn_nacl = False
discord.VoiceClient.warn_dave = False


class DiscordUnreachable(ServiceError):
    """Discord's API or gateway cannot be reached (no network, DNS, a firewall, an outage)."""

    code = "discord_unreachable"
    status = "unavailable"


#: What discord.py raises when the network, not the token, is the problem.
_NETWORK_ERRORS = (aiohttp.ClientError, discord.GatewayNotFound, discord.DiscordServerError,
                   asyncio.TimeoutError)


@contextlib.contextmanager
def _discord_reachable() -> Iterator[None]:
    try:
        yield
    except _NETWORK_ERRORS as exc:
        log.debug("Discord unreachable", exc_info=exc)
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise DiscordUnreachable(
            f"cannot reach Discord: {reason or type(exc).__name__}. Check the network "
            "(DNS, proxy, firewall) and https://discordstatus.com, then start again."
        ) from None


@dataclass
class Services:
    """Everything the bot needs besides Discord, opened together and closed together."""

    config: Config
    db: Database
    querylog: QueryLog
    settings: SettingsStore
    policy: Policy
    engine: InferenceEngine
    sentiment: SentimentService
    #: Class quizzes and their guesses (same database, same `log_inputs` and salt as the log).
    quizzes: QuizStore
    #: Every store of student data: /mydata show|delete and the retention pass loop over it.
    student_data: StudentData
    #: None when `[dashboard] enabled = false`, not assembled, or it failed to bind.
    dashboard: Dashboard | None = None
    assembly: Assembly = None  # type: ignore[assignment]  # set by open_services

    async def start_engine(self) -> None:
        """Start the inference core (loading the `load_at_start` models), unless this
        assembly has none."""
        if self.assembly.engine == "never":
            raise RuntimeError("this assembly has no inference engine")
        await self.engine.start()


@dataclass(frozen=True)
class Assembly:
    """Which parts an entry point gets, each named on its own.

    The defaults are `tlm-bot run`'s, so a test that takes them exercises what users run.
    """

    #: "now": the engine starts (and loads `load_at_start` models) before `open_services`
    #: yields; "after_login": the caller calls `Services.start_engine()` once Discord accepted
    #: the token; "never": no models at all (a read-only dashboard, an export).
    engine: Literal["now", "after_login", "never"] = "after_login"
    #: Serve the web dashboard (when `[dashboard] enabled`); independent of the engine.
    dashboard: bool = True
    #: "configured": `[database] path`; "memory": a private in-memory database that vanishes
    #: with the process (`tlm-bot ask` keeps no rows and leaves no file behind).
    database: Literal["configured", "memory"] = "configured"


#: `tlm-bot run` and the end-to-end tests.
RUN = Assembly()
#: `tlm-bot ask`: one answer in the terminal; no rows kept, no file left, no web server.
ASK = Assembly(engine="now", dashboard=False, database="memory")
#: `tlm-bot sync`: log in, register the commands, log out; nothing else runs.
SYNC = Assembly(engine="never", dashboard=False)
#: `tlm-bot dashboard`: the configured database served read-only to a browser; no models.
DASHBOARD_ONLY = Assembly(engine="never", dashboard=True)


@contextlib.asynccontextmanager
async def open_services(config: Config, assembly: Assembly = RUN) -> AsyncIterator[Services]:
    """Build every service for `assembly`, yield them, close them in reverse order."""
    in_memory = assembly.database == "memory"
    db_path = Path(":memory:") if in_memory else config.resolve_path(config.database.path)
    async with await Database.open(":memory:" if in_memory else db_path) as db:
        salt = secrets.token_bytes(32) if in_memory else installation_salt(db_path)
        querylog = QueryLog(
            db,
            log_inputs=config.database.log_inputs,
            hash_salt=salt,
            default_retention_days=config.database.default_retention_days,
        )
        async with querylog:
            settings = SettingsStore(
                db, default_retention_days=config.database.default_retention_days
            )
            d = config.discord
            policy = Policy(settings, default_cooldown=Cooldown(
                "*", d.default_cooldown_uses, d.default_cooldown_seconds
            ) if d.default_cooldown_uses else None)
            engine = InferenceEngine(config)
            sentiment = SentimentService(engine, config)
            quizzes = QuizStore(db, log_inputs=config.database.log_inputs, hash_salt=salt,
                                default_retention_days=config.database.default_retention_days)
            # Feedback votes before the rows they live on (`StudentData.register`).
            student_data = StudentData([FeedbackVotes(querylog), QueryRows(querylog), quizzes])
            services = Services(config, db, querylog, settings, policy, engine, sentiment,
                                quizzes, student_data, assembly=assembly)
            if assembly.engine == "now":
                await services.start_engine()
            try:
                async with _dashboard(config, db, settings, sentiment,
                                      enabled=assembly.dashboard) as dashboard:
                    services.dashboard = dashboard
                    yield services
            finally:
                await engine.aclose()


@contextlib.asynccontextmanager
async def _dashboard(config: Config, db: Database, settings: SettingsStore,
                     sentiment: SentimentService, *, enabled: bool
                     ) -> AsyncIterator[Dashboard | None]:
    """The web dashboard, if enabled. A port already taken is logged, not fatal: students'
    commands matter more than the instructors' web view."""
    if not (enabled and config.dashboard.enabled):
        yield None
        return
    dashboard = Dashboard(config, db, settings, sentiment)
    try:
        await dashboard.start()
    except OSError as exc:
        log.error("dashboard not started: cannot listen on %s:%s (%s)",
                  config.dashboard.host, config.dashboard.port, exc)
        yield None
        return
    try:
        yield dashboard
    finally:
        await dashboard.aclose()


def make_bot(services: Services, extensions: Sequence[str] = EXTENSIONS,
             **options: float | bool) -> TLMBot:
    bot = _new_bot(services, extensions, **options)
    if services.dashboard is not None:  # the dashboard asks this bot who is an instructor
        services.dashboard.authorize = DiscordRights(
            bot, services.settings, recheck_s=services.config.dashboard.recheck_rights_s)
    return bot


def _new_bot(services: Services, extensions: Sequence[str] = EXTENSIONS,
             **options: float | bool) -> TLMBot:
    return TLMBot(
        services.config,
        engine=services.engine,
        querylog=services.querylog,
        settings=services.settings,
        policy=services.policy,
        sentiment=services.sentiment,
        quizzes=services.quizzes,
        student_data=services.student_data,
        dashboard=services.dashboard,
        sync_state=SyncState(services.db),
        extensions=extensions,
        **options,
    )


async def run_bot(config: Config, token: str) -> None:
    """Serve until stopped (Ctrl+C or SIGTERM), then shut down in order."""
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # not on Windows
        loop.add_signal_handler(signal.SIGTERM, main.cancel)
    async with open_services(config, RUN) as services:
        async with make_bot(services) as bot:
            with _discord_reachable():
                await bot.login(token)
            # Logged in: now the models may start loading while the gateway connects.
            await services.start_engine()
            purge = asyncio.create_task(_purge_forever(services))
            try:
                with _discord_reachable():
                    await bot.connect()
            finally:
                purge.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purge


async def sync_commands(config: Config, token: str, guild_id: int | None) -> list[str]:
    """Register the slash commands with Discord (globally, or to one guild) whether or not
    they changed, then log out. `tlm-bot run` then knows they are current."""
    async with open_services(config, SYNC) as services:
        async with make_bot(services, sync_at_start=False) as bot:
            with _discord_reachable():
                await bot.login(token)
                synced = await bot.sync_commands(guild_id, force=True) or []
            return [command.name for command in synced]


async def _purge_forever(services: Services) -> None:
    """Apply each guild's retention on a schedule (and once at start)."""
    while True:
        await purge_expired(services)
        await asyncio.sleep(services.config.database.purge_interval_s)


async def purge_expired(services: Services) -> None:
    """One retention pass over every store of student data; never raises."""
    await services.student_data.purge_expired()
