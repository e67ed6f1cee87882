"""/logs: instructors review what was asked, with what result (always ephemeral).

Every query here is scoped to the guild the command runs in: `QueryFilter` requires a guild
id, so one server's instructors can never read another server's rows.
"""

from __future__ import annotations

import dataclasses
import io
from datetime import datetime, timedelta, timezone
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.interactions.host import Host
from bot.interactions.names import LoggedCommand
from bot.interactions.paging import Page, first_page, rows_page_shown
from bot.interactions.render import COLOUR, Reply, clip, safe
from bot.interactions.turn import reply_staff
from core.i18n import ngettext, number, percent, tr, translated
from core.outcomes import STATUS_VALUES
from core.storage.querylog import QueryFilter

SINCE = Literal["1h", "24h", "7d", "30d", "all"]
STATUS = Literal[STATUS_VALUES]  # type: ignore[valid-type]  # the one vocabulary
#: Rows per page of /logs recent: 15 lines of at most ~250 characters fit one embed.
RECENT_PAGE_SIZE = 15
_SINCE = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7),
          "30d": timedelta(days=30)}


def since_time(since: str) -> datetime | None:
    delta = _SINCE.get(since)
    return datetime.now(timezone.utc) - delta if delta else None


@app_commands.guild_only()
class Instructors(commands.GroupCog, group_name="logs", group_extras={"kind": "instructor"}):
    """Read this server's query log (instructors)."""

    def __init__(self, bot: Host) -> None:
        self.bot = bot
        super().__init__()

    def _filter(self, interaction: discord.Interaction, user, command, since, status,
                limit) -> QueryFilter:
        return QueryFilter(
            guild_id=interaction.guild_id, user_id=user.id if user else None,
            command=command or None, status=status, since=since_time(since), limit=limit,
        )

    @app_commands.command(name="recent")
    async def recent(self, interaction: discord.Interaction, user: discord.User | None = None,
                     command: LoggedCommand | None = None,
                     since: SINCE = "24h", status: STATUS | None = None) -> None:
        """The latest queries, newest first.

        Args:
            user: Only this student.
            command: Only this command (e.g. mask).
            since: How far back.
            status: Only this outcome.
        """
        # Pinned to now: rows logged while the instructor reads do not shift the later pages.
        listing = dataclasses.replace(
            self._filter(interaction, user, command, since, status, RECENT_PAGE_SIZE),
            until=datetime.now(timezone.utc))

        async def page(index: int) -> Page:
            found = await self.bot.querylog.page(listing, index, RECENT_PAGE_SIZE)
            rows, total = found.rows, found.total
            lines = []
            for row in rows:
                when = f"<t:{int(row.created_at.timestamp())}:R>"
                text = safe(row.input_text.replace("\n", " "), 80) or "—"
                out = safe(row.output_summary, 60)
                lines.append(f"{when} <@{row.user_id}> `/{row.command}` **{row.status}** {text}"
                             + (f" → {out}" if out else ""))
            embed = discord.Embed(title=tr("Recent queries ({since})", since=translated(since)),
                                  colour=COLOUR, description=clip(
                                      "\n".join(lines) or tr("No queries match."), 4000))
            return rows_page_shown(found, embed, ngettext(
                "{n} query, newest first", "{n} queries, newest first", total))

        await reply_staff(interaction,
                          await first_page(interaction, page, kind="instructor"))

    @app_commands.command(name="stats")
    async def stats(self, interaction: discord.Interaction, since: SINCE = "7d") -> None:
        """Counts per command and per student, error rate and latency.

        Args:
            since: How far back.
        """
        s = await self.bot.querylog.stats(interaction.guild_id, since_time(since))
        embed = discord.Embed(title=tr("Usage ({since})", since=translated(since)),
                              colour=COLOUR)
        embed.description = (
            tr("**{total}** queries · not answered **{errors}**: student's input **{student}**, "
               "refused (rules, cooldowns, pause) **{refused}**, server-side **{server}**",
               total=s.total, errors=percent(s.error_rate, "0.0%"),
               student=percent(s.student_error_rate, "0.0%"),
               refused=percent(s.refusal_rate, "0.0%"),
               server=percent(s.server_error_rate, "0.0%")) + " · "
            + (tr("median **{median} ms**, p95 **{p95} ms**",
                  median=number(s.median_total_ms, "0"), p95=number(s.p95_total_ms, "0"))
               if s.median_total_ms is not None else tr("no latency yet"))
        )
        top = sorted(s.by_command.items(), key=lambda kv: -kv[1])[:20]
        embed.add_field(name=tr("Per command"), value=clip(
            "\n".join(f"`/{c}` {n}" for c, n in top) or "—", 1024))
        users = sorted(s.by_user.items(), key=lambda kv: -kv[1])[:20]
        embed.add_field(name=tr("Per student"), value=clip(
            "\n".join(f"<@{u}> {n}" for u, n in users) or "—", 1024))
        if s.feedback_by_command:
            embed.add_field(name=tr("Feedback"), value=clip("\n".join(
                f"`/{c}` 👍 {up} · 👎 {down}" for c, (up, down) in s.feedback_by_command.items()),
                1024))
        embed.add_field(name=tr("Outcomes"), value=clip(
            "\n".join(f"{translated(k)}: {v}" for k, v in s.by_status.items() if v) or "—",
            1024))
        await reply_staff(interaction, Reply(embeds=[embed], summary=f"{s.total} rows"))

    @app_commands.command(name="export")
    async def export(self, interaction: discord.Interaction, user: discord.User | None = None,
                     command: LoggedCommand | None = None,
                     since: SINCE = "all", status: STATUS | None = None) -> None:
        """Download the query log as a CSV file.

        Args:
            user: Only this student.
            command: Only this command.
            since: How far back.
            status: Only this outcome.
        """
        await interaction.response.defer(ephemeral=True, thinking=True)
        # Streamed in a worker thread, stopping at Discord's limit: the bot stays responsive
        # and memory stays bounded by the attachment size (core.storage.querylog.export).
        # discord.py names the payload's `attachment_size_limit` `filesize_limit`.
        limit = getattr(interaction, "filesize_limit", None) or 10 * 1024 * 1024
        out = io.BytesIO()
        result = await self.bot.querylog.export_csv(
            self._filter(interaction, user, command, since, status, None), out, max_bytes=limit
        )
        if result.complete:
            note = ngettext("{n} row.", "{n} rows.", result.rows)
        else:
            cli = f"tlm-bot logs export --guild {interaction.guild_id}"
            note = tr("The newest {rows} of {matching} rows: Discord takes files up to {mb} MB. "
                      "For the rest, narrow the export with `since`, `user`, `command` or "
                      "`status`, or ask the bot's operator for `{cli}`.", rows=result.rows,
                      matching=result.matching, mb=number(limit / 1e6, "0"),
                      cli=cli)
        await reply_staff(interaction, Reply(
            content=note, files=[(f"queries-{interaction.guild_id}.csv", out.getvalue())],
            summary=f"{result.rows} of {result.matching} rows"))

    @app_commands.command(name="dashboard")
    async def dashboard(self, interaction: discord.Interaction) -> None:
        """A private link to this server's query-log dashboard in your browser."""
        dashboard = self.bot.dashboard
        if dashboard is None:
            text, summary = tr("The web dashboard is not running on this bot (see "
                               "`[dashboard]` in its config)."), "dashboard off"
        else:
            hours = self.bot.config.dashboard.link_hours
            # <...> stops Discord from fetching the link for a preview.
            link = await dashboard.link(interaction.guild_id, interaction.user.id)
            text = tr("Your dashboard for this server, valid {hours} h, for one browser. It is "
                      "for you only: don't share it.", hours=hours) + f"\n<{link}>"
            summary = "link issued"  # never the link itself: the log is not a key store
        await reply_staff(interaction, Reply(content=text, summary=summary))

    @app_commands.command(name="end-sessions", extras={"kind": "moderator"})
    async def end_sessions(self, interaction: discord.Interaction) -> None:
        """End every open web dashboard session of this server, and every unused link
        (moderators)."""
        dashboard = self.bot.dashboard
        if dashboard is None:
            text, summary = tr("The web dashboard is not running on this bot, so no session "
                               "is open."), "dashboard off"
        else:
            await dashboard.end_sessions(interaction.guild_id)
            text = tr("Every dashboard session and unused link of this server has ended. "
                      "Instructors ask for a new link with `/logs dashboard`.")
            summary = "sessions ended"
        await reply_staff(interaction, Reply(content=text, summary=summary))


async def setup(bot: Host) -> None:
    await bot.add_cog(Instructors(bot))
