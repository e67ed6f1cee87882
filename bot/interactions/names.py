"""Who runs what: which commands exist, for whom, under which name rules are written (read
from the live command tree, as RoboDanny's `CommandName` converter does, never from a hand-kept
list), and the member reduced to what `core.policy` needs."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from core.errors import InvalidInput
from core.i18n import lazy
from core.policy import Actor
from core.storage.guild_settings import ALL_COMMANDS


def command_kind(command: Any) -> str:
    """Who a command is for; set with `extras={"kind": ...}` (a group's extras count too)."""
    while command is not None:
        kind = getattr(command, "extras", {}).get("kind")
        if kind:
            return kind
        command = getattr(command, "parent", None)
    return "student"


def policy_name(command: Any) -> str:
    """The name rules are written against: the top-level command (`logs`, not `logs recent`);
    for a right-click menu, the student command it runs ("Tokenize" -> `tokens`)."""
    runs = getattr(command, "extras", {}).get("runs")
    return runs or command.qualified_name.split()[0]


#: The kinds moderators write rules for (`/config allow|deny`): students' commands, and the
#: activities an instructor runs for the class (which a rule may open to others).
RULED_KINDS = frozenset({"student", "activity"})


def student_command_names(tree: app_commands.CommandTree) -> list[str]:
    # Right-click menus are not listed: each belongs to the student command it runs.
    names = {policy_name(c) for c in tree.walk_commands()
             if command_kind(c) in RULED_KINDS and not isinstance(c, app_commands.Group)}
    return sorted(names)


class StudentCommandName(app_commands.Transformer):
    """A student command of the running bot, or "*" for all of them (autocompleted)."""

    async def transform(self, interaction: discord.Interaction, value: str) -> str:
        name = value.strip().lstrip("/").lower()
        names = student_command_names(interaction.client.tree)  # type: ignore[attr-defined]
        if name != ALL_COMMANDS and name not in names:
            raise InvalidInput(lazy("There is no student command /{name}. Choose one of: "
                                    "{names}, or * for all.", name=name[:40],
                                    names=", ".join(names)))
        return name

    async def autocomplete(self, interaction: discord.Interaction, value: str,
                           ) -> list[app_commands.Choice[str]]:
        names = [ALL_COMMANDS] + student_command_names(interaction.client.tree)  # type: ignore
        typed = value.strip().lstrip("/").lower()
        return [app_commands.Choice(name=n, value=n) for n in names if typed in n][:25]


CommandName = app_commands.Transform[str, StudentCommandName]


def logged_command_names(tree: app_commands.CommandTree) -> list[str]:
    """The names query-log rows carry: every slash command's full name (`logs recent`).
    Buttons and right-click menus log the student command they run, so they add none."""
    return sorted({c.qualified_name for c in tree.walk_commands()
                   if not isinstance(c, app_commands.Group)})


class LoggedCommandName(app_commands.Transformer):
    """A command to filter the query log by (`/logs`), autocompleted from the live tree.

    Any name is accepted, unlike `StudentCommandName`: rows of a command since removed or
    renamed are still in the log and must stay reachable.
    """

    @property
    def min_value(self) -> int:  # a string option's length bounds
        return 1

    @property
    def max_value(self) -> int:
        return 32

    async def transform(self, interaction: discord.Interaction, value: str) -> str:
        return value.strip().lstrip("/").strip().lower()

    async def autocomplete(self, interaction: discord.Interaction, value: str,
                           ) -> list[app_commands.Choice[str]]:
        names = logged_command_names(interaction.client.tree)  # type: ignore[attr-defined]
        typed = value.strip().lstrip("/").lower()
        return [app_commands.Choice(name=n, value=n) for n in names if typed in n][:25]


LoggedCommand = app_commands.Transform[str, LoggedCommandName]


def actor_of_member(user: discord.User | discord.Member) -> Actor:
    if isinstance(user, discord.Member):
        # Discord's @everyone role has the guild's id; include it so rules on it apply.
        return Actor(
            user_id=user.id,
            role_ids=frozenset(role.id for role in user.roles) | {user.guild.id},
            is_moderator=user.guild_permissions.manage_guild,
        )
    return Actor(user_id=user.id)


def parent_channel_id(channel: object) -> int | None:
    """A thread's parent channel (its rules apply to the thread), else None."""
    if isinstance(channel, discord.Thread):
        return channel.parent_id
    return None
