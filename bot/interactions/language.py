"""Discord's side of the message catalog (`core.i18n`): which language a Discord locale is,
the commands' own descriptions in every language Discord shows them in, and the strings of a
command tree for `make messages`.

Command and option *names* stay English in every language: students type them, moderators
write rules against them (`/config deny command:mask`), the README and the course notebook
name them, and a query-log row must mean the same whatever the asker's language. What Discord
shows beside them - the descriptions of commands, options and choices, and the right-click
menus' names (a label no one types) - is translated.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Where

from core import i18n
from core.storage.guild_settings import SettingsStore

log = logging.getLogger(__name__)


def language_of(locale: discord.Locale | str | None) -> str | None:
    """The catalog language for a Discord locale ("it" -> "it", "en-US" -> "en"), or None
    when the bot does not speak it."""
    if locale is None:
        return None
    return i18n.supported(locale.value if isinstance(locale, discord.Locale) else locale)


def private_language(interaction: discord.Interaction) -> str:
    """What only the member reads (an ephemeral answer, every error): their client's
    language, else English."""
    return i18n.pick(language_of(interaction.locale))


async def server_language(settings: SettingsStore, guild_id: int | None,
                          guild_locale: discord.Locale | str | None) -> str:
    """What the whole server reads (a public answer, a quiz card, a reveal): the language its
    moderators chose (`/config language`), else the server's own Discord language
    (`guild_locale`), else English."""
    chosen = (await settings.get(guild_id)).language if guild_id is not None else None
    return i18n.pick(chosen, language_of(guild_locale))


#: `/config language`'s value for "follow the server's Discord language".
SERVER_LANGUAGE = "server"
#: `/config language`'s choices: each language the catalog has, under its own name (as
#: Discord's own language menu shows them, the same in every language), then the default.
LANGUAGE_CHOICES = [
    *(app_commands.Choice(name=f"{i18n.language_name(code)} ({code})", value=code)
      for code in i18n.languages()),
    app_commands.Choice(name="The server's Discord language", value=SERVER_LANGUAGE),
]


class CatalogTranslator(app_commands.Translator):
    """discord.py asks this for each description, option and choice of every command, in
    every Discord locale, when it builds the JSON it syncs (`bot.command_sync`)."""

    async def translate(self, string: app_commands.locale_str, locale: discord.Locale,
                        context: app_commands.TranslationContextTypes) -> str | None:
        language = language_of(locale)
        if language is None or language == i18n.SOURCE:
            return None
        if context.location in (Where.command_name, Where.group_name, Where.parameter_name):
            if not isinstance(context.data, app_commands.ContextMenu):
                return None  # names stay (module docstring); a menu's name is only a label
        if (context.location is Where.choice_name
                and getattr(context.data, "value", None) in i18n.languages()):
            return string.message  # a language's own name
        return i18n.lookup(language, string.message)


# ----------------------------------------------------------------- the strings of a tree


def command_strings(commands: Iterable[object]) -> Iterator[str]:
    """Every text Discord shows for these commands (slash commands, groups, right-click
    menus), as the catalog's message ids: descriptions, option descriptions, choice names and
    menu names."""
    for command in commands:
        if isinstance(command, app_commands.ContextMenu):
            yield command.name
            continue
        if isinstance(command, (app_commands.Command, app_commands.Group)):
            yield _text(command.description)
        if isinstance(command, app_commands.Group):
            yield from command_strings(command.commands)
        elif isinstance(command, app_commands.Command):
            for parameter in command.parameters:
                yield _text(parameter.description)
                for choice in parameter.choices:
                    if choice.value not in i18n.languages():  # a language's own name
                        yield choice.name


def _text(value: object) -> str:
    return value.message if isinstance(value, app_commands.locale_str) else str(value)
