"""The message catalog (`core.i18n`): every string the code marks, and every text Discord shows
for a command, has its translation in every language's `.po`, with the same placeholders;
plurals, numbers and dates follow the language; a missing translation is English and logged
once, never an error.

The strings are extracted the way `make messages` does (`make messages-pot`, pybabel with the
project's keywords and `babel.cfg`), so a string added without its Italian form fails here
whether or not anyone ran `make messages`.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from core import i18n

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = re.compile(r"(?<!\{)\{([a-z_]*)[^{}]*\}(?!\})")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """msgid -> plural id (or None) of every string the code marks, freshly extracted."""
    pot = tmp_path_factory.mktemp("pot") / "messages.pot"
    venv = Path(sys.prefix)
    subprocess.run(
        ["make", "--no-print-directory", "-s", "-o", f"{venv}/.installed", "messages-pot",
         f"POT={pot}", f"BIN={Path(sys.executable).parent}", f"VENV={venv}"],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )
    with pot.open("rb") as handle:
        catalog = read_po(handle)
    return {
        (m.id[0] if isinstance(m.id, (tuple, list)) else m.id):
        (m.id[1] if isinstance(m.id, (tuple, list)) else None)
        for m in catalog if m.id
    }


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def test_the_extraction_sees_code_strings_and_command_descriptions(extracted):
    assert "Fillers for {mask}" in extracted  # a `tr()` in render.py
    assert "Ask DistilBERT which words fit a [MASK]." in extracted  # a docstring of /mask
    assert "How many candidate words to show." in extracted  # an option of /mask
    assert len(extracted) > 150


@pytest.mark.parametrize("language", [lang for lang in i18n.languages() if lang != i18n.SOURCE])
def test_every_string_is_translated_with_the_same_placeholders(extracted, language):
    messages = i18n.catalog(language).messages
    missing = sorted(msgid for msgid in extracted if msgid not in messages)
    assert not missing, (f"{len(missing)} strings have no {language} translation (run `make "
                         f"messages`, then translate core/locales/{language}.po): {missing[:10]}")
    wrong = []
    for msgid, plural in extracted.items():
        expected = placeholders(msgid) | placeholders(plural or "")
        forms = messages[msgid]
        for form in (forms,) if isinstance(forms, str) else forms:
            # A plural's singular may say "one" instead of {n}; nothing else may differ.
            if placeholders(form) - expected or (expected - {"n"}) - placeholders(form):
                wrong.append((msgid, form))
    assert not wrong, wrong


def test_plural_forms_numbers_and_dates_follow_the_language():
    with i18n.using("it"):
        assert i18n.ngettext("{n} student", "{n} students", 1) == "1 studente"
        assert i18n.ngettext("{n} student", "{n} students", 3) == "3 studenti"
        assert str(i18n.number(0.8234, "0.00")) == "0,82"
        assert i18n.tr("held-out accuracy {accuracy}",
                      accuracy=i18n.percent(0.913, "0.0%")) == "accuratezza sui dati di test 91,3%"
        assert "dic" in str(i18n.when(datetime(2026, 12, 6, tzinfo=timezone.utc)))
    assert str(i18n.number(0.8234, "0.00")) == "0.82"  # the block ended: English again
    assert i18n.ngettext("{n} student", "{n} students", 0) == "0 students"


def test_a_lazy_message_is_translated_where_it_is_shown():
    message = i18n.lazy("Your text has {n} masks. Put exactly one `[MASK]` where the missing "
                        "word goes, e.g. `Paris is the [MASK] of France.`", n=2)
    assert message.render("it").startswith("Il tuo testo contiene 2 maschere.")
    assert message.render("en-US").startswith("Your text has 2 masks.")
    with i18n.using("it-IT"):
        assert str(message).startswith("Il tuo testo")
    assert i18n.pick("fr", None) == "en" and i18n.pick("pt-BR", "it") == "it"


def test_a_missing_translation_is_english_and_logged_once(caplog):
    caplog.set_level(logging.WARNING, logger="core.i18n")
    never = i18n.lazy("A sentence nobody translated ({x}).", x=1)
    assert never.render("it") == never.render("it") == "A sentence nobody translated (1)."
    assert [r.getMessage() for r in caplog.records].count(
        "no usable it translation for 'A sentence nobody translated ({x}).' "
        "(not in the catalog): English is shown") == 1


def test_a_translation_with_wrong_placeholders_falls_back_to_english(monkeypatch, caplog):
    broken = i18n.Catalog("it", {"Fillers for {mask}": "Parole per {maschera}"},
                          lambda n: int(n != 1))
    monkeypatch.setattr(i18n, "catalog", lambda language: broken)
    assert i18n.lazy("Fillers for {mask}", mask="[MASK]").render("it") == "Fillers for [MASK]"
    assert "placeholders do not match" in caplog.text
