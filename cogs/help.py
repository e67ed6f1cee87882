"""/help and /about: what this member can do here, and what the bot is and keeps (ephemeral).

/help is generated from the live command tree (slash commands and message context menus), so a
command added later appears by itself, and it asks `core.policy` the same question the tree's
gate asks, through `Policy.explain`, which counts no cooldown use: reading the help never costs
a student a run. Staff commands are listed only to members the policy lets run them (and /sync
only to the bot's owners). Both commands are `kind="self"`: reachable wherever moderators
turned commands off, like /mydata, because that is exactly when a member needs to know why.
"""

from __future__ import annotations

import dataclasses
from importlib import metadata
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.interactions.host import Host
from bot.interactions.names import actor_of_member, command_kind, parent_channel_id, policy_name
from bot.interactions.render import COLOUR, EMBED_FIELD_LIMIT, Reply, clip, printable, safe
from bot.interactions.turn import reply_staff
from core.config import ModelSpec
from core.i18n import lazy, number, tr, translated
from core.policy import Decision

#: Room for the command list; with three fields of at most 1024 characters the embed stays
#: under Discord's 6000 characters per message.
COMMANDS_LIMIT = 2600

STORED = {
    "full": lazy("the text you send (and every free-text option), a short summary of the "
                 "answer and your display name"),
    "hashed": lazy("a salted hash of your text instead of the text (no answer summary, no "
                   "display name)"),
    "none": lazy("none of your text: only which command ran, its non-text options and the "
                 "outcome"),
}


def package_version() -> str:
    try:
        return metadata.version("tlm-bot")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return tr("unknown (not installed as a package)")


def inline_code(text: str, limit: int) -> str:
    """Operator-given text (a model id, a folder) as a code span: markdown escapes would show
    as backslashes there, so only the backtick that would end the span is replaced."""
    return f"`{clip(printable(text).replace('`', 'ˋ'), limit)}`"


def describe_model(spec: ModelSpec) -> str:
    """Hub id (or a local folder's last two parts: the server's paths are nobody's business)
    and the revision it is pinned to."""
    return f"{inline_code(spec.short_name, 100)} @ {inline_code(spec.revision, 60)}"


def models_text(bot: Host, *, with_state: bool) -> str:
    models = bot.config.models
    lines = []
    for role in ("mask", "qa", "generate", "features", "multilingual"):
        spec: ModelSpec | None = getattr(models, role)
        if spec is None:  # an optional model the config leaves out
            continue
        line = f"**{role}**: {describe_model(spec)}"
        state = bot.engine.model_state(spec) if with_state else None
        if state is not None:
            line += f" ({state.value})"
        lines.append(line)
    return clip("\n".join(lines), EMBED_FIELD_LIMIT)


def limits_text(bot: Host) -> str:
    fields = dataclasses.asdict(bot.config.limits)
    return clip("\n".join(f"`{key}` {value}" for key, value in fields.items()),
                EMBED_FIELD_LIMIT)


def queue_text(bot: Host) -> str:
    state = bot.engine.queue_state()
    waiting = sum(state.waiting.values())
    lines = [tr("**{waiting}** waiting · **{batches}** batches running · **{pictures}** "
                "pictures in the works", waiting=waiting, batches=state.running_batches,
                pictures=state.pictures_in_flight)]
    lines += [tr("{model}: {n} of {size}", model=inline_code(name.rsplit("/", 1)[-1], 60), n=n,
                 size=state.queue_size)
              for name, n in sorted(state.waiting.items()) if n]
    return clip("\n".join(lines), EMBED_FIELD_LIMIT)


class Help(commands.Cog):
    def __init__(self, bot: Host) -> None:
        self.bot = bot

    @app_commands.command(name="help", extras={"kind": "self"})
    async def help(self, interaction: discord.Interaction) -> None:
        """What you can run here (and why not, if not), the models, limits and queue."""
        lines = await self._command_lines(interaction)
        embed = discord.Embed(title=tr("tlm-bot: what you can do here"), colour=COLOUR,
                              description=clip("\n".join(lines), COMMANDS_LIMIT))
        embed.add_field(name=tr("Models"), value=models_text(self.bot, with_state=True),
                        inline=False)
        embed.add_field(name=tr("Limits"), value=limits_text(self.bot), inline=True)
        embed.add_field(name=tr("Queue right now"), value=queue_text(self.bot), inline=True)
        embed.set_footer(text=tr("/about: what tlm-bot stores and for how long"))
        allowed = sum(line.startswith("✅") for line in lines)
        await reply_staff(interaction, Reply(
            embeds=[embed], summary=f"{allowed} allowed, "
                                    f"{sum(line.startswith('⛔') for line in lines)} refused"))

    async def _command_lines(self, interaction: discord.Interaction) -> list[str]:
        bot = self.bot
        user = interaction.user
        actor = actor_of_member(user)
        where = (interaction.guild_id, interaction.channel_id)
        parent = parent_channel_id(interaction.channel)
        decisions: dict[tuple[str, str], Decision] = {}

        async def decide(name: str, kind: str) -> Decision:
            if (name, kind) not in decisions:
                decisions[name, kind] = await bot.policy.explain(
                    *where, actor, name, kind, parent_channel_id=parent)  # type: ignore[arg-type]
            return decisions[name, kind]

        student: list[str] = []
        #: Staff commands by family, one line each (`/config` has a dozen subcommands).
        staff: dict[str, list[Any]] = {}
        own: list[str] = []
        menus: list[Any] = bot.tree.get_commands(type=discord.AppCommandType.message)
        everything = [c for c in bot.tree.walk_commands()
                      if not isinstance(c, app_commands.Group)] + menus
        is_owner: bool | None = None
        for command in everything:
            kind = command_kind(command)
            label = (tr("Apps ▸ **{menu}** (right-click a message)",
                        menu=safe(translated(command.name), 60))
                     if isinstance(command, app_commands.ContextMenu)
                     else f"`/{command.qualified_name}`")
            about = clip(translated(getattr(command, "description", "") or ""), 100)
            described = f"{label}: {about}" if about else label
            if kind in ("student", "activity"):  # the kinds moderators' rules apply to
                decision = await decide(policy_name(command), kind)
                student.append(f"✅ {described}" if decision.allowed
                               else f"⛔ {label}: {decision.reason}")
            elif kind in ("instructor", "moderator"):
                if (await decide(command.qualified_name, kind)).allowed:
                    staff.setdefault(policy_name(command), []).append(command)
            elif kind == "owner":
                if is_owner is None:
                    is_owner = await bot.is_owner(user)
                if is_owner:
                    staff.setdefault(policy_name(command), []).append(command)
            elif kind == "self":  # a member's own data and these pages, reachable everywhere
                own.append(f"• {described}")
        lines = [tr("**Commands for you here**"), *student]
        if staff:
            lines += ["", tr("**Your staff commands**")]
            for family, members in staff.items():
                subs = [c.qualified_name.split(" ", 1)[1] for c in members if " " in
                        c.qualified_name]
                about = (clip(translated(members[0].description), 100) if not subs
                         else " · ".join(subs))
                lines.append(f"• `/{family}` {about}")
        lines += ["", tr("**Always available**"), *own]
        return lines

    @app_commands.command(name="about", extras={"kind": "self"})
    async def about(self, interaction: discord.Interaction) -> None:
        """The bot's version and models, and what it stores about you and for how long."""
        bot = self.bot
        database = bot.config.database
        retention = (await bot.settings.get(interaction.guild_id)).retention_days
        embed = discord.Embed(
            title=f"tlm-bot {package_version()}", colour=COLOUR,
            description=tr("A class's window into transformer language models: tokenizers, "
                           "masked words, question answering, generation, attention."))
        embed.add_field(name=tr("Models"), value=models_text(bot, with_state=False),
                        inline=False)
        hours = database.purge_interval_s / 3600
        stored = tr(
            "For each command: when, where (server, channel), your user id, the command, its "
            "outcome and timings, and {stored}.\nKept **{days} days** in this server "
            "(moderators set this with `/config retention`), then deleted within {hours} h. "
            "Instructors of this server and the bot's operator can read this server's rows.\n"
            "**`/mydata show`** lists what is stored about you here; **`/mydata delete`** "
            "erases it now.", stored=STORED[database.log_inputs], days=retention,
            hours=number(hours))
        embed.add_field(name=tr("What is stored, and for how long"),
                        value=clip(stored, EMBED_FIELD_LIMIT), inline=False)
        await reply_staff(interaction, Reply(
            embeds=[embed], summary=f"version {package_version()}"))


async def setup(bot: Host) -> None:
    await bot.add_cog(Help(bot))
