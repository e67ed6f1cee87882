"""Privacy by construction: whatever a command is and however it ends, a student's words are
stored only as `log_inputs` says, in every place they could end up.

Every student command (read from the registry, so a new command is covered without editing this
file), and a quiz guess, x every outcome a student can reach (answered or failed, a bad option,
a rule, the pause, a cooldown, a direct message) x every `log_inputs` mode, through the real bot
and the emulated Discord. Each free-text option carries a marker; with "hashed" or "none" the
marker must appear nowhere: not in the database file, not in its WAL, not in the CSV exports
(Discord's and the CLI's), not in the bot's log output at DEBUG. A revealed quiz whose prompt
holds the marker, guessed by a student, must have left none of it behind either.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot.cli import main as cli_main
from bot.interactions.registry import COMMANDS
from tests.bot_harness import bot_config, running_bot
from tests.test_quiz_discord import _guess as guess
from tests.test_quiz_discord import _start as start_quiz

pytestmark = pytest.mark.slow

MARK = "Zebrafinch"  # one token-friendly word that no model output or id contains

#: Valid options per student command; "{M}" becomes the marker in every free-text option.
VALID = {
    "mask": {"text": "The {M} is a [MASK] ."},
    "qa": {"question": "Where is {M} ?", "context": "{M} lives in Paris ."},
    "generate": {"prompt": "Hello {M}", "max_new_tokens": 2, "seed": 1},
    "tokens": {"text": "{M} tokens"},
    "sentiment": {"text": "{M} was great"},
    "attention": {"text": "the {M} sat"},
    "contextsim": {"word": "{M}", "sentence_a": "a {M} here", "sentence_b": "the {M} there"},
    "maskpair": {"sentence_a": "The {M} is [MASK] .", "sentence_b": "A {M} was [MASK] .",
                 "targets": "{M}, good"},
    "nexttoken": {"prompt": "{M} says"},
    "logitlens": {"prompt": "The {M} said"},
    "neighbours": {"word": "{M}", "sentence": "the {M} sat"},
    "explain sentiment": {"text": "{M} was great"},
    "explain mask": {"text": "The {M} is a [MASK] .", "target": "{M}"},
    "explain qa": {"question": "Where is {M} ?", "context": "{M} lives in Paris ."},
    "explain next": {"prompt": "{M} says"},
}


def options_for(name: str, marker: str) -> dict:
    return {k: v.replace("{M}", marker) if isinstance(v, str) else v
            for k, v in VALID[name].items()}


def test_every_student_command_is_covered():
    assert set(VALID) == set(COMMANDS)


async def _quiz_guesses(h, marker: str) -> None:
    """A quiz guess is a student's word too: one answered, one refused at its submit (the bot
    was paused while the form was open). Then the reveal: under "hashed" and "none" nothing of
    the guesses or of the prompt (the marker is in it) may outlive it (issue 23)."""
    emu = h.emu
    card = await start_quiz(h, "mask", {"sentence": f"The {marker} sat on a [MASK] ."},
                            emu.moderator_id)
    marker = marker.lower()  # as a guess is stored (case-folded)
    assert "Your guess is in" in await guess(h, card, emu.student_id, marker)
    guess_id = next(c["custom_id"] for row in emu.message(card["id"])["components"]
                    for c in row["components"] if c["label"] == "Guess")
    form = await emu.click(card["id"], guess_id)
    await form.wait_first_response(timeout=10)
    await h.run("config", {"paused": True}, subcommand="pause", user_id=emu.moderator_id)
    refused = await emu.submit_modal(form, {"word": marker})
    await refused.wait_done(timeout=10)
    assert "paused" in refused.text
    await h.run("config", {"paused": False}, subcommand="pause", user_id=emu.moderator_id)
    reveal_id = next(c["custom_id"] for row in emu.message(card["id"])["components"]
                     for c in row["components"] if c["label"] == "Reveal now")
    reveal = await emu.click(card["id"], reveal_id, user_id=emu.moderator_id)
    await reveal.wait_done(timeout=60)
    assert "Revealed" in reveal.text, reveal.text


async def _all_outcomes(h, marker: str) -> None:
    emu = h.emu
    await _quiz_guesses(h, marker)

    async def each(**kwargs):
        records = [await h.run(name, options_for(name, marker), **kwargs) for name in COMMANDS]
        return records

    await each()  # answered, or failed for reasons of the command's own (e.g. no classifier)
    # Input the core refuses (e.g. no [MASK]): the first text option is the marker alone.
    for name in COMMANDS:
        options = options_for(name, marker)
        first_text = next(k for k, v in options.items() if isinstance(v, str))
        options[first_text] = marker
        await h.run(name, options)
    await h.run("config", {"command": "*"}, subcommand="deny", user_id=emu.moderator_id)
    await each()  # refused by a rule
    await h.run("config", {"command": "*"}, subcommand="clear", user_id=emu.moderator_id)
    await h.run("config", {"paused": True}, subcommand="pause", user_id=emu.moderator_id)
    await each()  # paused
    await h.run("config", {"paused": False}, subcommand="pause", user_id=emu.moderator_id)
    await h.run("config", {"command": "*", "uses": 1, "per_seconds": 3600},
                subcommand="cooldown", user_id=emu.moderator_id)
    await each()
    await each()  # cooldown
    dms = await each(dm=True)  # direct messages: refused (allow_dms is off)
    assert all(r.ephemeral and "only answers in a server" in r.text for r in dms), [
        r.text for r in dms]
    # Staff commands with free-text options are rows too.
    await h.run("logs", {"command": marker}, subcommand="recent", user_id=emu.moderator_id)


@pytest.mark.parametrize("log_inputs", ["full", "hashed", "none"])
async def test_raw_text_is_stored_only_as_log_inputs_says(tiny_config, tmp_path, caplog,
                                                          log_inputs):
    config = bot_config(tiny_config, tmp_path, database={"log_inputs": log_inputs})
    async with running_bot(config, caplog, check_clean=False, log_level=logging.DEBUG) as h:
        await _all_outcomes(h, MARK)
        rows = await h.rows()
        statuses = {r["status"] for r in rows}
        assert {"ok", "user_error", "unavailable", "refused", "paused", "cooldown"} <= statuses
        export = await h.run("logs", {}, subcommand="export", user_id=h.emu.moderator_id)
        [(_, discord_csv)] = export.files
        await asyncio.sleep(0)
        db_path = Path(config.database.path)
        stored = db_path.read_bytes() + _read(db_path.with_name(db_path.name + "-wal"))
    cli_csv = tmp_path / "cli.csv"
    assert await asyncio.to_thread(cli_main, [
        "--config", str(_write_config(tmp_path, config)), "logs", "export",
        "--guild", str(h.emu.guild_id), "--out", str(cli_csv)]) == 0
    places = {
        "database": stored,
        "discord export": discord_csv,
        "cli export": cli_csv.read_bytes(),
        "bot log": caplog.text.encode(),
    }
    marker = MARK.encode()
    if log_inputs == "full":  # the test can see the marker where it is allowed to be
        assert marker in places["database"] and marker in places["discord export"]
        return
    leaks = [where for where, data in places.items()
             if marker in data or marker.lower() in data]  # a quiz guess is case-folded
    assert leaks == []


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def _write_config(tmp_path: Path, config) -> Path:
    path = tmp_path / "privacy.toml"
    path.write_text(f'[database]\npath = "{config.database.path}"\n'
                    f'log_inputs = "{config.database.log_inputs}"\n')
    return path


async def test_allowed_dms_get_the_default_cooldown_and_the_owner_exports_them(
        tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord={
        "allow_dms": True, "default_cooldown_uses": 1, "default_cooldown_seconds": 3600.0})
    async with running_bot(config, caplog, check_clean=False) as h:
        first = await h.run("tokens", {"text": "hello from a DM"}, dm=True)
        second = await h.run("tokens", {"text": "again"}, dm=True)
        assert "tokens" in first.text.lower() and not first.ephemeral
        assert second.ephemeral and "too fast" in second.text
        rows = await h.rows()
        assert [(r["guild_id"], r["status"]) for r in rows] == [(None, "ok"), (None, "cooldown")]
    out = tmp_path / "dms.csv"
    assert await asyncio.to_thread(cli_main, [
        "--config", str(_write_config(tmp_path, config)), "logs", "export", "--dms",
        "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8-sig")
    assert "hello from a DM" in text and text.count("\n") >= 3
