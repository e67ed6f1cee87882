"""/config: moderators decide which commands run where, and for whom.

The decision logic (and its precedence: channel over role over server) is `core.policy`;
this cog only turns options into settings writes and explains the result. Discord's own
per-command permissions (Server Settings -> Integrations) still apply on top of these rules.
"""

from __future__ import annotations

from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.interactions.host import Host
from bot.interactions.language import LANGUAGE_CHOICES, SERVER_LANGUAGE
from bot.interactions.names import CommandName, actor_of_member, command_kind, parent_channel_id
from bot.interactions.render import COLOUR, Reply, clip
from bot.interactions.turn import reply_staff
from core import i18n
from core.errors import InvalidInput
from core.i18n import lazy, number, tr
from core.storage.guild_settings import ALL_COMMANDS

#: Where a channel rule can apply: text and announcement channels, the text chat of voice and
#: stage channels, and threads (a thread without rules of its own follows its parent).
RuleChannel = discord.TextChannel | discord.VoiceChannel | discord.StageChannel | discord.Thread


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Moderation(commands.GroupCog, group_name="config",
                 group_extras={"kind": "moderator"}):
    """Moderator settings for tlm-bot in this server."""

    def __init__(self, bot: Host) -> None:
        self.bot = bot
        super().__init__()

    async def _done(self, interaction: discord.Interaction, text: str) -> None:
        embed = discord.Embed(description=clip(text, 4000), colour=COLOUR)
        await reply_staff(interaction, Reply(embeds=[embed], summary=text[:100]))

    async def _rule(self, interaction: discord.Interaction, command: str, allow: bool | None,
                    channel: RuleChannel | None, role: discord.Role | None) -> None:
        guild_id = interaction.guild_id
        if channel is not None and role is not None:
            raise InvalidInput(lazy("Give a channel *or* a role, not both."))
        if channel is not None:
            scope, scope_id, where = "channel", channel.id, channel.mention
        elif role is not None:
            scope, scope_id, where = "role", role.id, tr("members with {role}",
                                                         role=role.mention)
        else:
            scope, scope_id, where = "guild", guild_id, tr("the whole server")
        await self.bot.settings.set_rule(guild_id, scope, scope_id, command, allow)
        name = tr("every command") if command == ALL_COMMANDS else f"/{command}"
        if allow is None:
            text = tr("{command} is now back to the default in {where}.", command=name,
                      where=where)
        elif allow:
            text = tr("{command} is now allowed in {where}.", command=name, where=where)
        else:
            text = tr("{command} is now denied in {where}.", command=name, where=where)
        await self._done(interaction, text)

    @app_commands.command(name="allow")
    async def allow(self, interaction: discord.Interaction, command: CommandName,
                    channel: RuleChannel | None = None,
                    role: discord.Role | None = None) -> None:
        """Allow a command in a channel, for a role, or server-wide.

        Args:
            command: The command ("*" = all student commands).
            channel: Only in this channel (beats role and server rules).
            role: Only for members with this role (beats the server rule).
        """
        await self._rule(interaction, command, True, channel, role)

    @app_commands.command(name="deny")
    async def deny(self, interaction: discord.Interaction, command: CommandName,
                   channel: RuleChannel | None = None,
                   role: discord.Role | None = None) -> None:
        """Turn a command off in a channel, for a role, or server-wide.

        Args:
            command: The command ("*" = all student commands).
            channel: Only in this channel (beats role and server rules).
            role: Only for members with this role (beats the server rule).
        """
        await self._rule(interaction, command, False, channel, role)

    @app_commands.command(name="clear")
    async def clear(self, interaction: discord.Interaction, command: CommandName,
                    channel: RuleChannel | None = None,
                    role: discord.Role | None = None) -> None:
        """Remove a rule so the next level decides.

        Args:
            command: The command the rule was for.
            channel: The channel the rule was for.
            role: The role the rule was for.
        """
        await self._rule(interaction, command, None, channel, role)

    @app_commands.command(name="instructor")
    async def instructor(self, interaction: discord.Interaction,
                         role: discord.Role | None = None) -> None:
        """Set the role whose members can read the query log (/logs).

        Args:
            role: The instructor role; leave empty to remove it.
        """
        await self.bot.settings.set_instructor_role(interaction.guild_id, role.id if role else None)
        text = (tr("Instructors are now members with {role} (and moderators).",
                   role=role.mention) if role
                else tr("No instructor role: only moderators can read the query log."))
        await self._done(interaction, text)

    @app_commands.command(name="pause")
    async def pause(self, interaction: discord.Interaction, paused: bool) -> None:
        """Stop (or restart) all student commands, e.g. during an exam.

        Args:
            paused: True stops student commands; False lets them run again.
        """
        await self.bot.settings.set_paused(interaction.guild_id, paused)
        text = (tr("Student commands are **paused** in this server.") if paused
                else tr("Student commands run again."))
        await self._done(interaction, text)

    @app_commands.command(name="answers")
    async def answers(self, interaction: discord.Interaction,
                      mode: Literal["private", "public", "student's choice"],
                      channel: RuleChannel | None = None) -> None:
        """Force students' answers private (only the asker sees them) or public.

        Args:
            mode: private, public, or the student's choice (their `private` option).
            channel: Only this channel (default: the whole server).
        """
        scope_id = channel.id if channel is not None else interaction.guild_id
        where = channel.mention if channel is not None else tr("this server")
        stored = None if mode == "student's choice" else mode
        await self.bot.settings.set_answer_visibility(interaction.guild_id, scope_id, stored)
        if stored is None:
            text = tr("In {where}, each student chooses whether an answer is private.",
                      where=where)
        elif stored == "private":
            text = tr("In {where}, answers are now always **private**.", where=where)
        else:
            text = tr("In {where}, answers are now always **public**.", where=where)
        await self._done(interaction, text)

    @app_commands.command(name="language")
    @app_commands.choices(language=LANGUAGE_CHOICES)
    async def language(self, interaction: discord.Interaction,
                       language: app_commands.Choice[str]) -> None:
        """The language of the bot's public messages here (answers, quiz cards).

        Args:
            language: A language, or the server's own Discord language (the default).
        """
        chosen = None if language.value == SERVER_LANGUAGE else language.value
        await self.bot.settings.set_language(interaction.guild_id, chosen)
        if chosen is None:
            text = tr("Public messages now follow this server's Discord language; private "
                          "answers follow each member's own.")
        else:
            text = tr("Public messages are now in {language}; private answers follow "
                          "each member's own language.",
                          language=i18n.language_name(chosen))
        await self._done(interaction, text)

    @app_commands.command(name="cooldown")
    async def cooldown(self, interaction: discord.Interaction, command: CommandName,
                       uses: app_commands.Range[int, 0, 1000],
                       per_seconds: app_commands.Range[float, 1, 86400] = 60.0) -> None:
        """Limit how often each student may run a command.

        Args:
            command: The command ("*" = each command without its own cooldown).
            uses: Runs allowed per period; 0 removes this cooldown.
            per_seconds: The period, in seconds.
        """
        await self.bot.settings.set_cooldown(
            interaction.guild_id, command, uses or None, per_seconds
        )
        name = tr("each command") if command == ALL_COMMANDS else f"/{command}"
        text = (tr("{command}: at most {uses} per {seconds} s per student.", command=name,
                   uses=uses, seconds=number(per_seconds)) if uses
                else tr("{command}: cooldown removed.", command=name))
        await self._done(interaction, text)

    @app_commands.command(name="retention")
    async def retention(self, interaction: discord.Interaction,
                        days: app_commands.Range[int, 1, 3650]) -> None:
        """How many days this server's query log keeps rows.

        Args:
            days: Rows older than this are deleted automatically.
        """
        await self.bot.settings.set_retention(interaction.guild_id, days)
        await self._done(interaction, tr("Query-log rows are now kept for {days} days.",
                                         days=days))

    @app_commands.command(name="show")
    async def show(self, interaction: discord.Interaction) -> None:
        """List this server's rules and settings."""
        s = await self.bot.settings.get(interaction.guild_id)
        lines = [
            tr("**Paused:** yes") if s.paused else tr("**Paused:** no"),
            tr("**Instructor role:** {role}",
               role=(f"<@&{s.instructor_role_id}>" if s.instructor_role_id
                     else tr("none (moderators only)"))),
            tr("**Retention:** {days} days", days=s.retention_days),
            tr("**Language:** {language}",
               language=(i18n.language_name(s.language) if s.language
                         else tr("the server's Discord language"))),
            "", tr("**Rules** (channel beats role beats server):"),
        ]
        where = {"channel": "<#{}>", "role": "<@&{}>", "guild": tr("server")}
        for r in sorted(s.rules, key=lambda r: (r.scope, r.scope_id, r.command)):
            target = where[r.scope].format(r.scope_id)
            lines.append("• " + (tr("allow `{command}` in {where}", command=r.command,
                                    where=target) if r.allow else
                                 tr("deny `{command}` in {where}", command=r.command,
                                    where=target)))
        if not s.rules:
            lines.append("• " + tr("none: every command is allowed everywhere"))
        lines += ["", tr("**Cooldowns:**")]
        lines += [f"• `{c.command}`: " + tr("{uses} per {seconds} s", uses=c.uses,
                                           seconds=number(c.per_seconds))
                  for c in s.cooldowns]
        d = self.bot.config.discord
        if not s.cooldowns:
            lines.append("• " + tr("default: {uses} per {seconds} s per command",
                                   uses=d.default_cooldown_uses,
                                   seconds=number(d.default_cooldown_seconds)))
        await self._done(interaction, "\n".join(lines))

    @app_commands.command(name="why")
    async def why(self, interaction: discord.Interaction, command: CommandName,
                  user: discord.Member | None = None,
                  channel: RuleChannel | None = None) -> None:
        """Explain whether a member may run a command in a channel, step by step.

        Args:
            command: The command to check.
            user: The member (default: you).
            channel: The channel (default: this one).
        """
        member = user or interaction.user
        if not isinstance(member, discord.Member):
            raise InvalidInput(lazy("That user is not a member of this server."))
        channel_id = channel.id if channel else interaction.channel_id
        if command == ALL_COMMANDS:
            raise InvalidInput(lazy("Pick one command to explain."))
        declared = self.bot.tree.get_command(command)  # /quiz is an activity, not a student's
        kind = command_kind(declared) if declared is not None else "student"
        decision = await self.bot.policy.explain(
            interaction.guild_id, channel_id, actor_of_member(member), command, kind,  # type: ignore[arg-type]
            parent_channel_id=parent_channel_id(channel or interaction.channel),
        )
        verdict = "✅ " + tr("allowed") if decision.allowed else "⛔ " + tr("refused")
        where = f"<#{channel_id}>"
        text = (tr("/{command} for {member} in {channel}: **{verdict}**", command=command,
                   member=member.mention, channel=where, verdict=verdict) + "\n"
                + "\n".join(f"{i}. {step}" for i, step in enumerate(decision.steps, 1)))
        await self._done(interaction, text)


async def setup(bot: Host) -> None:
    await bot.add_cog(Moderation(bot))
