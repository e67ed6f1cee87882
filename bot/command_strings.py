"""`make messages`' extractor for the cogs: the strings `pybabel extract` finds in the code
(`tr`, `lazy`, `locale_str`...), plus the texts Discord shows for each slash command, which
discord.py reads from the commands' docstrings and annotations (descriptions, option
descriptions, choices), not from a marked call.

Named in `babel.cfg` as `bot.command_strings:extract`; it imports the cog module by name, as
the bot loads it, and reads the commands its classes declare.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from babel.messages.extract import extract_python
from discord.ext import commands

from bot.interactions.language import command_strings

COMMENT = "Discord shows this beside a command (at most 100 characters)."


def extract(fileobj: Any, keywords: Any, comment_tags: Any, options: Any) -> Iterator[tuple]:
    yield from extract_python(fileobj, keywords, comment_tags, options)
    path = Path(fileobj.name).resolve().relative_to(Path.cwd())
    module = importlib.import_module(".".join(path.with_suffix("").parts))
    for value in vars(module).values():
        if not (isinstance(value, type) and issubclass(value, commands.Cog)
                and value.__module__ == module.__name__):
            continue
        found = list(command_strings(value.__cog_app_commands__))
        if issubclass(value, commands.GroupCog):
            found.insert(0, str(value.__cog_group_description__))
        for text in found:
            if text and text != "…":
                yield 1, None, text, [COMMENT]
