"""The discord.py Bot subclass and its command tree.

The bot receives every collaborator (config, inference engine, query log, policy) in its
constructor, like discord.py's `advanced_startup.py`: nothing is a module global, so a test can
build one against a loopback Discord and tiny models. Lifetimes belong to `bot.app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.render import safe
from cogs.respond import send_error
from core.config import Config
from core.engine import InferenceEngine
from core.errors import CoreError
from core.outcomes import APOLOGY
from core.policy import Actor, Decision, Policy
from core.querylog import QueryLog, QueryRecord
from core.sentiment_service import SentimentService
from core.settings import SettingsStore

log = logging.getLogger(__name__)

EXTENSIONS: Sequence[str] = (
    "cogs.inference",
    "cogs.sentiment",
    "cogs.teaching",
    "cogs.moderation",
    "cogs.instructors",
    "cogs.mydata",
    "cogs.owner",
)


class Refused(app_commands.CheckFailure):
    """A moderator rule, the pause switch or a cooldown said no."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


def command_kind(command: app_commands.Command | app_commands.ContextMenu | None) -> str:
    """Who a command is for; set with `extras={"kind": ...}` (a group's extras count too)."""
    while command is not None:
        kind = getattr(command, "extras", {}).get("kind")
        if kind:
            return kind
        command = getattr(command, "parent", None)
    return "student"


def policy_name(command: app_commands.Command | app_commands.ContextMenu) -> str:
    """The name rules are written against: the top-level command (`logs`, not `logs recent`)."""
    return command.qualified_name.split()[0]


def actor_of(interaction: discord.Interaction) -> Actor:
    return actor_of_member(interaction.user)


def actor_of_member(user: discord.User | discord.Member) -> Actor:
    if isinstance(user, discord.Member):
        # Discord's @everyone role has the guild's id; include it so rules on it apply.
        return Actor(
            user_id=user.id,
            role_ids=frozenset(role.id for role in user.roles) | {user.guild.id},
            is_moderator=user.guild_permissions.manage_guild,
        )
    return Actor(user_id=user.id)


class TLMTree(app_commands.CommandTree):
    """Holds the global gate (moderator rules, cooldowns) and the one error handler."""

    client: TLMBot

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        command = interaction.command
        if command is None or interaction.type is not discord.InteractionType.application_command:
            return True
        if command_kind(command) in ("owner", "self"):
            # owner: checked by the command against the application's owner; self: a student's
            # own data must stay reachable even where moderators turned commands off.
            return True
        kind = command_kind(command)
        # Students' rules and cooldowns are per command family (`sentiment`); staff commands
        # are named in full so a refusal says which one (`/sentiment train`).
        name = policy_name(command) if kind == "student" else command.qualified_name
        decision = await self.client.policy.check(
            interaction.guild_id, interaction.channel_id, actor_of(interaction), name, kind
        )
        if not decision.allowed:
            raise Refused(decision)
        return True

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError, /
    ) -> None:
        command = interaction.command.qualified_name if interaction.command else "?"
        original = getattr(error, "original", error)
        status, code = "failed", type(original).__name__
        if isinstance(error, Refused):
            message = error.decision.reason
            status, code = "refused", "cooldown" if error.decision.retry_after else "refused"
        elif isinstance(original, CoreError):
            message, status, code = original.message, original.status, original.code
        elif isinstance(error, app_commands.CheckFailure):
            message, status, code = "You can't use this command here.", "refused", "check_failure"
        elif isinstance(error, app_commands.TransformerError):
            message, status, code = (
                "That value doesn't fit this option: "
                + safe(str(error.value), 100),
                "user_error", "bad_option",
            )
        else:
            log.error("unhandled error in /%s", command, exc_info=original)
            message = APOLOGY
        await send_error(interaction, message)
        await self.client.record_query(QueryRecord(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            command=command,
            options=_options(interaction),
            input_text="",
            status=status,
            error=code,
        ))


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
        extensions: Sequence[str] = EXTENSIONS,
        guild_ready_timeout: float = 2.0,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # channels and roles for rules; slash commands need nothing else
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=TLMTree,
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
        for name in self._extensions:
            await self.load_extension(name)
        guild_id = self.config.discord.dev_guild
        if guild_id:
            # Guild commands update instantly: handy while developing, never global spam.
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)

    async def record_query(self, record: QueryRecord) -> None:
        """Never raises: a failed log write must not cost a student their answer."""
        try:
            await self.querylog.record(record)
        except Exception:
            log.exception("query log write failed")

    async def on_ready(self) -> None:
        log.info("connected as %s to %d guild(s)", self.user, len(self.guilds))


def _options(interaction: discord.Interaction) -> dict[str, Any]:
    data: Any = interaction.data or {}
    options = data.get("options", [])
    while options and options[0].get("type") in (1, 2):  # sub-command (group): descend
        options = options[0].get("options", [])
    return {o["name"]: o.get("value") for o in options if "name" in o}
