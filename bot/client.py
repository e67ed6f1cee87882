"""The discord.py Bot subclass and its command tree.

The bot receives every collaborator (config, inference engine, query log, policy) in its
constructor, like discord.py's `advanced_startup.py`: nothing is a module global, so a test can
build one against a loopback Discord and tiny models. Lifetimes belong to `bot.compose`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.command_sync import SYNC_ERRORS, describe_scope, sync_tree
from bot.interactions.answers import BrokenButton
from bot.interactions.language import CatalogTranslator
from bot.interactions.names import command_kind, policy_name
from bot.interactions.registry import COMMANDS
from bot.interactions.streaming import EditPacing
from bot.interactions.turn import Turn, outcome_of_interaction_error
from core.config import Config
from core.inference.engine import InferenceEngine
from core.policy import Policy
from core.sentiment.service import SentimentService
from core.storage.guild_settings import SettingsStore
from core.storage.querylog import QueryLog, QueryRecord
from core.storage.quizzes import QuizStore
from core.storage.student_data import StudentData
from core.storage.sync_state import SyncState

if TYPE_CHECKING:
    from bot.dashboard import Dashboard

log = logging.getLogger(__name__)

EXTENSIONS: Sequence[str] = (
    "cogs.inference",
    "cogs.sentiment",
    "cogs.classifier",
    "cogs.teaching",
    "cogs.explain",
    "cogs.quiz",
    "cogs.config",
    "cogs.logs",
    "cogs.mydata",
    "cogs.sync",
    "cogs.buttons",
    "cogs.context_menus",
    "cogs.help",
)


class TLMTree(app_commands.CommandTree):
    """discord.py's own sequence for commands (`CommandTree._call`: check -> invoke -> error
    hook) is the front door's for slash commands and right-clicks: the check is the `Turn`'s
    gate (direct messages, moderator rules, pause, cooldown), and every error ends in the
    `Turn`'s one conclusion (`bot.interactions.turn`)."""

    client: TLMBot

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        turn = Turn.of(interaction)
        command = interaction.command
        if command is None or interaction.type is not discord.InteractionType.application_command:
            return True
        kind = command_kind(command)
        # Students' (and activities') rules and cooldowns are per command family (`sentiment`,
        # also for the right-click "Sentiment"; `quiz`); staff commands are named in full so a
        # refusal says which one (`/classifier train`).
        name = (policy_name(command) if kind in ("student", "activity")
                else command.qualified_name)
        await turn.gate(name, kind)
        return True

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError, /
    ) -> None:
        await Turn.of(interaction).conclude(outcome_of_interaction_error(error),
                                            error=getattr(error, "original", error))


class TLMBot(commands.Bot):
    def __init__(
        self,
        config: Config,
        *,
        engine: InferenceEngine,
        querylog: QueryLog,
        settings: SettingsStore,
        policy: Policy,
        sentiment: SentimentService,
        quizzes: QuizStore,
        student_data: StudentData,
        dashboard: Dashboard | None = None,
        sync_state: SyncState | None = None,
        sync_at_start: bool = True,
        extensions: Sequence[str] = EXTENSIONS,
        guild_ready_timeout: float = 2.0,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # channels and roles for rules; slash commands need nothing else
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=TLMTree,
            # Commands show in servers only, unless the operator allows direct messages.
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=config.discord.allow_dms,
                private_channel=config.discord.allow_dms,
            ),
            allowed_mentions=discord.AllowedMentions.none(),
            owner_ids=set(config.discord.owner_ids) or None,
            help_command=None,
            guild_ready_timeout=guild_ready_timeout,
        )
        self.config = config
        self.engine = engine
        self.querylog = querylog
        self.settings = settings
        self.policy = policy
        self.sentiment = sentiment
        self.quizzes = quizzes
        #: Every store of student data, for /mydata show and delete.
        self.student_data = student_data
        self.dashboard = dashboard
        #: Edits of streamed answers, per channel, shared by every student there.
        self.edit_pacing = EditPacing.of(config.discord)
        #: Where the last synced tree's digest is kept; None: this bot never syncs by itself.
        self.sync_state = sync_state
        self._sync_at_start = sync_at_start and sync_state is not None
        self._extensions = extensions
        self._handlers = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def handling(self) -> Iterator[None]:
        """Mark a command as in flight (see `close`)."""
        self._handlers += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._handlers -= 1
            if self._handlers == 0:
                self._idle.set()

    async def idle(self) -> None:
        """Return once no interaction is being answered or logged."""
        await self._idle.wait()

    async def close(self) -> None:
        """Shut down without dropping answers: let the core finish the batches it is running
        (queued requests fail with a polite "restarting"), let the commands in flight deliver
        their answers and log their rows, and only then close the Discord connection."""
        if not self.is_closed():
            await self.engine.aclose()
            try:
                await asyncio.wait_for(self._idle.wait(), timeout=15)
            except asyncio.TimeoutError:
                log.warning("closing with %d commands still in flight", self._handlers)
        await super().close()

    async def setup_hook(self) -> None:
        # Discord shows each command's descriptions in the member's language (the catalog's).
        await self.tree.set_translator(CatalogTranslator())
        for name in self._extensions:
            await self.load_extension(name)
        # Last, so every extension's own templates are registered before the catch-all.
        self.add_dynamic_items(BrokenButton)
        apply_option_limits(self.tree, self.config)
        if self._sync_at_start:
            await self._sync_if_changed()

    async def sync_commands(self, guild_id: int | None, *, force: bool = True
                            ) -> list[app_commands.AppCommand] | None:
        """Register the tree with Discord for one guild or globally (`bot.command_sync`);
        None when `force` is off and the tree is what Discord already has."""
        if self.sync_state is None or self.application_id is None:
            raise RuntimeError("sync_commands needs a sync state and a logged-in bot")
        return await sync_tree(self.tree, self.sync_state, self.application_id, guild_id,
                               force=force)

    async def _sync_if_changed(self) -> None:
        """At start: sync to `dev_guild` (guild commands update instantly) or globally, if the
        tree changed. A failure costs only the update: it is logged in one line and the bot
        serves the commands Discord already has."""
        guild_id = self.config.discord.dev_guild
        try:
            await self.sync_commands(guild_id, force=False)
        except SYNC_ERRORS as exc:
            log.error("command sync to %s failed (%s: %s); serving the commands Discord "
                      "already has. `tlm-bot sync` retries.", describe_scope(guild_id),
                      type(exc).__name__, _one_line(exc))

    async def record_query(self, record: QueryRecord) -> None:
        """Never raises: a failed log write must not cost a student their answer."""
        try:
            await self.querylog.record(record)
        except Exception:
            log.exception("query log write failed")

    async def on_ready(self) -> None:
        log.info("connected as %s to %d guild(s)", self.user, len(self.guilds))
        await self._remember_guild_names(self.guilds)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._remember_guild_names([guild])

    async def on_guild_update(self, before: discord.Guild, after: discord.Guild) -> None:
        if before.name != after.name:
            await self._remember_guild_names([after])

    async def _remember_guild_names(self, guilds: Sequence[discord.Guild]) -> None:
        """For the dashboard's header, which has no Discord to ask (also `tlm-bot dashboard`)."""
        try:
            await self.settings.remember_names({g.id: g.name for g in guilds if g.name})
        except Exception:
            log.warning("could not store the servers' names for the dashboard", exc_info=True)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no details"


def apply_option_limits(tree: app_commands.CommandTree, config: Config) -> None:
    """Slash option bounds that follow `[limits]`: raising a limit in the config file raises
    what Discord accepts (at the next sync), not only what the core allows."""
    for command in tree.walk_commands():
        student = COMMANDS.get(command.qualified_name)
        if student is None or not isinstance(command, app_commands.Command):
            continue
        for limit in student.limits:
            # discord.py keeps a text option's length bounds in min_value/max_value too.
            command._params[limit.option].max_value = limit.of(config.limits)
