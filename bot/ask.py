"""`tlm-bot ask COMMAND ...`: every student command without Discord, through the same registry,
request builders, runners and renderers as the bot.

The sub-commands and their options are generated from the slash commands themselves (names,
types, defaults, limits, choices and the descriptions students see), so the CLI cannot miss a
command or drift from it. Pictures are written to a file and the path printed.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.interactions.registry import COMMANDS, IfServed, SentimentRunner
from core.config import Config, ModelSpec

_TYPES = {
    discord.AppCommandOptionType.string: str,
    discord.AppCommandOptionType.integer: int,
    discord.AppCommandOptionType.number: float,
    discord.AppCommandOptionType.boolean: lambda text: text.lower() in ("1", "true", "yes"),
}


def slash_commands(extensions: Iterable[str]) -> dict[str, app_commands.Command]:
    """The slash commands the extensions declare, by full name (`explain mask` for a group's
    sub-command), without starting a bot."""
    found: dict[str, app_commands.Command] = {}
    for name in extensions:
        module = importlib.import_module(name)
        for _, cog in inspect.getmembers(module, inspect.isclass):
            if issubclass(cog, commands.GroupCog):
                continue  # its commands are sub-commands (`/quiz mask` is not `/mask`)
            if issubclass(cog, commands.Cog) and cog.__module__ == module.__name__:
                for command in cog.__cog_app_commands__:
                    if isinstance(command, app_commands.Command):
                        found[command.name] = command
                    elif isinstance(command, app_commands.Group):
                        for sub in command.walk_commands():
                            if isinstance(sub, app_commands.Command):
                                found[sub.qualified_name] = sub
    return found


#: Slash options about how Discord shows an answer, meaningless in a terminal.
DISCORD_ONLY = frozenset({"private"})


def add_ask_parsers(ask: argparse.ArgumentParser, extensions: Iterable[str]) -> None:
    what = ask.add_subparsers(dest="what", required=True, metavar="COMMAND")
    declared = slash_commands(extensions)
    groups: dict[str, Any] = {}
    for name, student in COMMANDS.items():
        command = declared[name]
        parent = what
        if command.parent is not None:  # `ask explain mask ...`: the group, then its command
            group = command.parent
            if group.name not in groups:
                groups[group.name] = what.add_parser(
                    group.name, help=group.description, description=group.description,
                ).add_subparsers(dest="what_in_group", required=True, metavar="COMMAND")
            parent = groups[group.name]
        p = parent.add_parser(command.name, help=command.description,
                              description=command.description,
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.set_defaults(what=name)  # the full name, for a group's sub-command too
        for parameter in command.parameters:
            if parameter.name not in DISCORD_ONLY:
                # The texts a command reads are positional, even one that Discord lets a
                # student leave out to type it in a form instead (/qa's context).
                _add_option(p, parameter, positional=parameter.name in student.input_options)
        if student.picture:
            p.add_argument("--out", help="where to write the picture (default: its own name in "
                                         "the current folder)")


def _add_option(parser: argparse.ArgumentParser, parameter: app_commands.Parameter, *,
                positional: bool = False) -> None:
    kind = _TYPES.get(parameter.type, str)
    help_text = parameter.description or ""
    if positional and not parameter.required:
        # Its description tells Discord users how to leave it out; here it must be given.
        help_text = (help_text.split(". ")[0].rstrip(".") + ". Required here (in Discord it "
                     "may be left out, to type it in a form).")
    if parameter.type is discord.AppCommandOptionType.string:
        if parameter.max_value is not None:  # discord.py's name for a text's length bound
            help_text += f" (at most {parameter.max_value} characters)"
    elif parameter.min_value is not None or parameter.max_value is not None:
        help_text += f" ({parameter.min_value} to {parameter.max_value})"
    choices = [c.value for c in parameter.choices] or None
    if parameter.required or positional:
        parser.add_argument(parameter.name, type=kind, choices=choices, help=help_text)
    else:
        default = None if parameter.default is discord.utils.MISSING else parameter.default
        parser.add_argument("--" + parameter.name.replace("_", "-"), dest=parameter.name,
                            type=kind, choices=choices, default=default, help=help_text)


def models_for(args: argparse.Namespace, config: Config,
               extensions: Iterable[str]) -> list[ModelSpec]:
    """The models `args.what` will load, from the tasks its request goes to."""
    from core.inference.task_table import TASK_TYPES

    student = COMMANDS[args.what]
    if isinstance(student.runner, SentimentRunner):
        return [config.models.features]
    command = slash_commands(extensions)[args.what]
    request = student.build({p.name: getattr(args, p.name, None) for p in command.parameters})
    tasks = {t.request_type: t(config.models, config.limits) for t in TASK_TYPES}
    requests = [r.request if isinstance(r, IfServed) else r
                for r in (request if isinstance(request, tuple) else (request,))]
    # An optional model the config leaves out (`IfServed`) has no spec: nothing to load.
    return [spec for r in requests if (spec := tasks[type(r)].spec(r)) is not None]


async def answer_offline(args: argparse.Namespace, config: Config,
                         extensions: Iterable[str]) -> str:
    """Run `args.what` like the bot would and return what a student would read."""
    from bot.compose import ASK, open_services

    student = COMMANDS[args.what]
    command = slash_commands(extensions)[args.what]
    options = {p.name: getattr(args, p.name) for p in command.parameters
               if p.name not in DISCORD_ONLY}
    async with open_services(config, ASK) as services:
        if isinstance(student.runner, SentimentRunner):
            services.sentiment.load()
        result = await student.runner.admit(services, student.build(options))
    reply = student.render(result)
    text = reply.as_text()
    for name, data in reply.files:
        out = Path(getattr(args, "out", None) or name)
        out = out / name if out.is_dir() else out  # `--out pictures/`: its own name in there
        out.write_bytes(data)
        text += f"\npicture written to {out}"
    return text
