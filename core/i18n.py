"""The message catalog: every word the bot says, in English (the source) and each language with
a gettext catalog in `core/locales/<language>.po`.

Why gettext through Babel: translators get the standard `.po` tools (Poedit, Weblate), plural
forms follow each language's own rule (Italian: "1 studente", "2 studenti"), and numbers and
dates follow the language's conventions ("0,82" in Italian) from the CLDR data Babel ships.

The `.po` files are read at run time (on first use, once per process): there is no compiled
`.mo` to forget, so a fresh clone runs `make test` / `make run` with no extra step. Adding a
language is adding one file, `core/locales/<code>.po` (a copy of `messages.pot` translated);
`make messages` re-extracts the strings and updates every `.po`.

The English text is the message id. Two ways to mark it:

- `tr("Fillers for {mask}", mask=token)` -> `str`, translated now into the *current* language
  (a context variable the front door sets for the reply it is building, `using`);
- `lazy("No {mask} in your text.", mask=...)` -> `Text`, translated when it is shown: for
  messages made before anyone knows who will read them (a core error raised in a worker
  thread, a policy refusal, a module constant). `str(text)` renders it in the current
  language; `text.render(language)` in a given one.

`ngettext` / `lazy_ngettext` pick the plural form for `n`. Values are placed with
`str.format`; a value that is a `Text` or a `number(...)` is rendered in the same language, so
numbers in a sentence get the language's decimal sign.

A missing or broken translation shows the English text and is logged once per message and
language, never an error. This module imports nothing of Discord.
"""

from __future__ import annotations

import contextlib
import gettext
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any, Callable

from babel import Locale, UnknownLocaleError, dates, numbers
from babel.messages.pofile import read_po

log = logging.getLogger(__name__)

#: The language the message ids are written in.
SOURCE = "en"
#: One `.po` per language besides English (and `messages.pot`, the template `make messages`
#: writes).
LOCALES_DIR = Path(__file__).with_name("locales")

_current: ContextVar[str] = ContextVar("tlm_language", default=SOURCE)


# ----------------------------------------------------------------------------- languages


@cache
def languages() -> tuple[str, ...]:
    """Every language the bot speaks: English, then each `.po` file's, sorted."""
    return (SOURCE, *sorted(p.stem for p in LOCALES_DIR.glob("*.po") if p.stem != SOURCE))


def supported(tag: str | None) -> str | None:
    """The language the bot speaks for a locale tag ("it", "en-US", "pt_BR", "it-IT"), or None.

    A regional tag falls back to its language ("it-CH" -> "it"), as Discord's locales are
    mostly regional ("en-US", "es-ES") while a catalog is per language."""
    if not tag:
        return None
    tag = str(tag).replace("_", "-").strip()
    spoken = languages()
    if tag in spoken:
        return tag
    base = tag.split("-", 1)[0].lower()
    return base if base in spoken else None


def pick(*tags: str | None) -> str:
    """The first of `tags` the bot speaks, else English (an unknown locale is no error)."""
    for tag in tags:
        language = supported(tag)
        if language is not None:
            return language
    return SOURCE


def from_accept_language(header: str | None) -> str:
    """The language a browser's Accept-Language prefers among those the bot speaks
    ("it-IT,it;q=0.9,en;q=0.8" -> "it"), else English."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        if tag and tag != "*" and weight > 0:
            ranked.append((-weight, index, tag))
    return pick(*(tag for _, _, tag in sorted(ranked)))


def current_language() -> str:
    return _current.get()


def set_language(language: str) -> None:
    """Make `language` the current one for the rest of this task (and the tasks it starts)."""
    _current.set(pick(language))


@contextlib.contextmanager
def using(language: str) -> Iterator[str]:
    """`language` is the current one inside the block."""
    token = _current.set(pick(language))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def language_name(language: str) -> str:
    """The language's own name for itself ("italiano", "English")."""
    try:
        return Locale.parse(language).get_display_name(language) or language
    except (UnknownLocaleError, ValueError):
        return language


# ------------------------------------------------------------------------------ catalogs


@dataclass(frozen=True)
class Catalog:
    """One language's translated messages (fuzzy and empty entries are left out: they fall
    back to English) and its plural rule."""

    language: str
    messages: Mapping[str, str | tuple[str, ...]]
    plural: Callable[[int], int]


_lock = threading.Lock()


@cache
def catalog(language: str) -> Catalog:
    """The parsed `<language>.po` (English: no messages, the ids are the text)."""
    if language == SOURCE:
        return Catalog(SOURCE, {}, lambda n: int(n != 1))
    path = LOCALES_DIR / f"{language}.po"
    with _lock, path.open("rb") as handle:
        po = read_po(handle, locale=language)
    messages: dict[str, str | tuple[str, ...]] = {}
    for message in po:
        if not message.id or message.fuzzy:
            continue
        if isinstance(message.id, (tuple, list)):
            forms = tuple(message.string or ())
            if forms and all(forms):
                messages[message.id[0]] = forms
        elif message.string:
            messages[message.id] = message.string
    return Catalog(language, messages, gettext.c2py(po.plural_expr))


_reported: set[tuple[str, str]] = set()


def _missing(language: str, msgid: str, why: str) -> None:
    if (language, msgid) not in _reported:
        _reported.add((language, msgid))
        log.warning("no usable %s translation for %r (%s): English is shown", language, msgid,
                    why)


def _entry(language: str, msgid: str) -> str | tuple[str, ...] | None:
    """`msgid`'s entry in `language`'s catalog (a plural's forms as a tuple), or None, the
    miss logged once."""
    found = catalog(language).messages.get(msgid)
    if found is None:
        _missing(language, msgid, "not in the catalog")
    return found


def _translate(language: str, msgid: str, plural: str | None, n: int | None) -> str:
    english = msgid if plural is None or n == 1 else plural
    if language == SOURCE:
        return english
    found = _entry(language, msgid)
    if found is None:
        return english
    if isinstance(found, tuple):
        index = catalog(language).plural(int(n or 0))
        return found[min(index, len(found) - 1)]
    return found


def lookup(language: str, msgid: str) -> str | None:
    """`msgid`'s translation into `language`, or None (English: None; a missing one is
    logged once). For texts a library translates itself (Discord's command descriptions)."""
    language = pick(language)
    if language == SOURCE:
        return None
    found = _entry(language, msgid)
    if found is None:
        return None
    return found if isinstance(found, str) else found[0]


# ------------------------------------------------------------------------------ messages


class Localised:
    """Anything rendered differently per language: a message, a number, a date."""

    def render(self, language: str | None = None) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.render()

    def __format__(self, spec: str) -> str:
        return format(self.render(), spec)

    # Read as the text it renders to in the current language, so code and tests that treat a
    # message as a string ("no [MASK]" in message, message == "...") keep working.
    def __contains__(self, part: str) -> bool:
        return part in self.render()

    def __len__(self) -> int:
        return len(self.render())

    def __getattr__(self, name: str) -> Any:
        """`startswith`, `splitlines`... of the rendered text (never a field of the class)."""
        if name.startswith("__") or not hasattr(str, name):
            raise AttributeError(name)
        return getattr(self.render(), name)

    def __add__(self, other: str) -> str:
        return self.render() + other

    def __radd__(self, other: str) -> str:
        return other + self.render()


@dataclass(frozen=True, eq=False)
class Text(Localised):
    """A message translated when shown (`lazy`, `lazy_ngettext`)."""

    msgid: str
    params: Mapping[str, Any] = field(default_factory=dict)
    plural: str | None = None
    n: int | None = None

    def render(self, language: str | None = None) -> str:
        language = pick(language) if language else _current.get()
        text = _translate(language, self.msgid, self.plural, self.n)
        if not self.params:
            return text
        values = {name: _value(value, language) for name, value in self.params.items()}
        try:
            return text.format(**values)
        except (KeyError, IndexError, ValueError) as exc:
            if language == SOURCE:
                raise  # the English message itself is wrong: a bug the tests must catch
            _missing(language, self.msgid, f"its placeholders do not match: {exc!r}")
            english = self.msgid if self.plural is None or self.n == 1 else self.plural
            return english.format(**values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Text):
            return (self.msgid, self.plural, self.n, dict(self.params)) == (
                other.msgid, other.plural, other.n, dict(other.params))
        if isinstance(other, str):
            return self.render() == other
        return NotImplemented

    def __hash__(self) -> int:  # equal to the text it renders to, so hash like it
        return hash(self.render())


def _value(value: Any, language: str) -> Any:
    if isinstance(value, Localised):
        return value.render(language)
    if isinstance(value, float):
        return numbers.format_decimal(value, "0.###", locale=language)
    return value


def lazy(msgid: str, /, **params: Any) -> Text:
    return Text(msgid, params)


def lazy_ngettext(singular: str, plural: str, n: int, /, **params: Any) -> Text:
    """`n` is also a value of the message, as `{n}`."""
    return Text(singular, {"n": n, **params}, plural, n)


def tr(msgid: str, /, **params: Any) -> str:
    """The message in the current language, now."""
    return Text(msgid, params).render()


def ngettext(singular: str, plural: str, n: int, /, **params: Any) -> str:
    return lazy_ngettext(singular, plural, n, **params).render()


def plural_noun(singular: str, plural: str, /) -> tuple[str, str]:
    """Marks a noun's two English forms for the catalog (`make messages`) where the code keeps
    them as names ("quiz guess", "quiz guesses"); `ngettext(*noun, n)` translates them."""
    return singular, plural


def translated(msgid: str) -> str:
    """A text the catalog holds but the code does not spell out (a command's description,
    which `make messages` takes from the command itself), in the current language."""
    return Text(msgid).render() if msgid else msgid


def render(message: str | Localised, language: str | None = None) -> str:
    """A message that may or may not be translatable, as text in `language` (or the current)."""
    if isinstance(message, Localised):
        return message.render(language)
    return message


@dataclass(frozen=True)
class Joined(Localised):
    """Parts (messages, numbers, plain text) joined by `separator`, each rendered in the same
    language: a list inside a message that is translated later (a picture's alt text)."""

    separator: str
    parts: tuple[Any, ...]

    def render(self, language: str | None = None) -> str:
        language = pick(language) if language else _current.get()
        return self.separator.join(str(_value(part, language)) for part in self.parts)


def join(separator: str, parts: Iterable[Any]) -> Joined:
    return Joined(separator, tuple(parts))


@dataclass(frozen=True)
class Clipped(Localised):
    """A message cut to `limit` characters ("…" last) in whatever language it is written."""

    message: Any
    limit: int

    def render(self, language: str | None = None) -> str:
        text = str(_value(self.message, pick(language) if language else _current.get()))
        return text if len(text) <= self.limit else text[: self.limit - 1] + "…"


def clipped(message: Any, limit: int) -> Clipped:
    return Clipped(message, limit)


# ------------------------------------------------------------------------ numbers, dates


@dataclass(frozen=True)
class Number(Localised):
    """A number written the language's way: `pattern` is a CLDR pattern ("0.000", "0%",
    "#,##0"), whose "." and "," become the language's decimal and group signs."""

    value: float
    pattern: str = "0.###"
    percent: bool = False

    def render(self, language: str | None = None) -> str:
        language = pick(language) if language else _current.get()
        if self.percent:
            return numbers.format_percent(self.value, self.pattern, locale=language)
        return numbers.format_decimal(self.value, self.pattern, locale=language)


def number(value: float, pattern: str = "0.###") -> Number:
    """`number(0.8234, "0.00")` reads "0.82" in English and "0,82" in Italian."""
    return Number(value, pattern)


def percent(value: float, pattern: str = "0%") -> Number:
    """`percent(0.413, "0.0%")`: "41.3%" / "41,3%"."""
    return Number(value, pattern, percent=True)


@dataclass(frozen=True)
class When(Localised):
    moment: datetime | date
    format: str = "medium"

    def render(self, language: str | None = None) -> str:
        language = pick(language) if language else _current.get()
        if isinstance(self.moment, datetime):
            return dates.format_datetime(self.moment, self.format, locale=language)
        return dates.format_date(self.moment, self.format, locale=language)


def when(moment: datetime | date, format: str = "medium") -> When:
    """A date or time the language's way ("6 dic 2026, 21:04:00")."""
    return When(moment, format)
