"""Security promises, each tested against the real thing: the token stays secret, staff
commands stay with staff, a guild's log stays in the guild, nothing executes code it loaded,
and SQL never takes text as code.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from pathlib import Path

import discord
import numpy as np
import pytest

from bot.cli import main as cli_main
from core.config import ModelSpec
from core.errors import InvalidInput, ModelUnavailable
from core.inference.models import Head, LoadState, ModelRegistry
from core.sentiment import NPZ_NAME, EncoderInfo, SentimentClassifier
from core.sentiment.persistence import load_classifier, save_classifier
from core.storage.querylog import QueryFilter
from tests.bot_harness import bot_config, running_bot
from tests.discord_emulator import MANAGE_GUILD, DiscordEmulator

SECRET = "MTMwMDAwMDAwMDAwMDAwMDAwMQ.GhXkQz.s3cr3t-TLM-t0ken_value-0123456789abcdefXYZ"
MASK = {"text": "Paris is the [MASK] of France."}


class Everything(logging.Handler):
    """Every record at every level, formatted with its traceback: where a token could leak."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


# ------------------------------------------------------------------------------ the token


async def test_token_never_reaches_logs_or_database(tiny_config, tmp_path, caplog, monkeypatch):
    everything = Everything()
    logging.getLogger().addHandler(everything)
    for name in ("discord", "bot", "cogs", "core", "aiosqlite"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.DEBUG)
    try:
        async with DiscordEmulator(token=SECRET) as emu:
            config = bot_config(tiny_config, tmp_path, discord={"default_cooldown_uses": 1})
            async with running_bot(config, caplog, emulator=emu, check_clean=False) as h:
                await h.run("mask", MASK)
                await h.run("mask", MASK)  # refused by the cooldown: the error path logs too
                await h.run("qa", {"question": "?", "context": " "})  # a user error
                await h.run("logs", {}, subcommand="recent", user_id=emu.moderator_id)
                assert len(await h.rows()) == 4
            assert emu.violations == [] and emu.unhandled == []
    finally:
        logging.getLogger().removeHandler(everything)
    assert len(everything.lines) > 20 and any("discord" in line for line in everything.lines)
    assert not [line for line in everything.lines if SECRET in line]
    assert not [r for r in caplog.records if SECRET in r.getMessage()]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "tlm.db" for p in files)
    for path in files:  # the database, its WAL, the salt, the classifier directory
        assert SECRET.encode() not in path.read_bytes(), path


def test_check_config_masks_the_token(tmp_path, monkeypatch, capsys):
    path = tmp_path / "config.toml"
    path.write_text('[database]\npath = "tlm.db"\n', encoding="utf-8")
    monkeypatch.setenv("DISCORD_TOKEN", SECRET)
    assert cli_main(["check-config", str(path)]) == 0
    out = capsys.readouterr()
    assert "config OK" in out.out
    assert SECRET not in out.out + out.err
    assert SECRET[8:20] not in out.out + out.err  # not even a usable part of it


# ---------------------------------------------------------------------------- staff gates


STAFF_COMMANDS = [
    ("config", "pause", {"paused": True}),
    ("config", "deny", {"command": "mask"}),
    ("config", "cooldown", {"command": "*", "uses": 0}),
    ("config", "retention", {"days": 1}),
    ("config", "instructor", {}),
    ("logs", "recent", {}),
    ("logs", "export", {}),
    ("logs", "stats", {}),
    ("classifier", "info", {}),
]


async def test_staff_commands_refuse_students_without_discords_gate(tiny_config, tmp_path,
                                                                    caplog):
    """The emulator applies no default_member_permissions: as if an admin removed the gate."""
    async with running_bot(bot_config(tiny_config, tmp_path), caplog) as h:
        await h.run("mask", MASK, user_id=h.emu.moderator_id)  # a row a student must not read
        before = await h.services.settings.get(h.emu.guild_id)
        for name, sub, options in STAFF_COMMANDS:  # the default user is a student
            record = await h.run(name, options, subcommand=sub)
            assert record.ephemeral, (name, sub)
            assert "Only moderators" in record.text or "Only instructors" in record.text
            assert record.files == [] and "Paris" not in record.text
        assert await h.services.settings.get(h.emu.guild_id) == before  # nothing changed
        rows = await h.rows()
        assert [(r["command"], r["status"]) for r in rows[1:]] == [
            (f"{name} {sub}", "refused") for name, sub, _ in STAFF_COMMANDS]
        # The same commands work for a moderator: the refusal is about the member.
        for name, sub, options in STAFF_COMMANDS:
            allowed = await h.run(name, options, subcommand=sub, user_id=h.emu.moderator_id)
            assert "Only moderators" not in allowed.text, (name, sub)
            assert "Only instructors" not in allowed.text, (name, sub)
        assert (await h.services.settings.get(h.emu.guild_id)).paused


async def test_sync_is_for_the_owner_only(tiny_config, tmp_path, caplog):
    async with running_bot(bot_config(tiny_config, tmp_path), caplog) as h:
        synced_before = len(h.emu.find_requests("PUT", "/commands$"))
        record = await h.run("sync", {}, user_id=h.emu.moderator_id)
        assert record.ephemeral and "Only the bot's owner" in record.text
        assert len(h.emu.find_requests("PUT", "/commands$")) == synced_before


async def test_a_guilds_log_never_leaves_it(tiny_config, tmp_path, caplog):
    async with DiscordEmulator() as emu:
        other = emu.add_guild("Other class")
        other.add_channel("general")
        other_mod = other.add_member("other-mod", roles=[other.add_role("Teacher", MANAGE_GUILD)])
        other.add_member("student", user_id=emu.student_id)  # the same student in both
        async with running_bot(bot_config(tiny_config, tmp_path), caplog, emulator=emu) as h:
            guild = discord.Object(other.id)
            h.bot.tree.copy_global_to(guild=guild)
            await h.bot.tree.sync(guild=guild)
            await h.run("mask", {"text": "classified-A is the [MASK]."})
            await h.run("tokens", {"text": "classified-A again"})
            mine = await h.run("mydata", {}, subcommand="show", guild_id=other.id)
            assert "Nothing is stored about you here" in mine.text
            other_student = other.add_member("other-student")
            await h.run("tokens", {"text": "visible-B"}, guild_id=other.id,
                        user_id=other_student)
            seen, counts = {}, {}
            for sub in ("recent", "stats", "export"):
                await h.services.querylog.flush()
                counts[sub] = len(await h.services.querylog.recent(
                    QueryFilter(guild_id=other.id, limit=None)))
                record = await h.run("logs", {}, subcommand=sub, guild_id=other.id,
                                     user_id=other_mod)
                seen[sub] = record.text + "".join(d.decode() for _, d in record.files)
                assert "classified-A" not in seen[sub], seen[sub]
                assert "`/mask`" not in seen[sub] and ",mask," not in seen[sub]
                assert str(emu.guild_id) not in seen[sub]
            # The other guild's moderator does see their own guild's rows, and only those.
            assert "visible-B" in seen["recent"] and "visible-B" in seen["export"]
            assert f"**{counts['stats']}** queries" in seen["stats"]
            # Erasing in the other guild leaves this guild's rows alone.
            await h.run("mydata", {"confirm": True}, subcommand="delete", guild_id=other.id)
            rows = await h.services.querylog.recent(QueryFilter(guild_id=emu.guild_id))
            assert {r.command for r in rows} >= {"mask", "tokens"}


# ------------------------------------------------------------------------- no code loading


class _RunsOnUnpickle:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_pickled_classifier_is_refused_unexecuted(tmp_path):
    encoder = EncoderInfo("tiny", "main", "cls")
    directory = tmp_path / "classifier"
    save_classifier(SentimentClassifier(encoder, ("negative", "positive"), np.ones(4), 0.0),
                    directory)
    assert load_classifier(directory, expected=encoder).label_names == (
        "negative", "positive")
    marker = tmp_path / "pickle-ran"
    buffer = io.BytesIO()
    np.savez(buffer, coef=np.array([_RunsOnUnpickle(marker)], dtype=object),
             intercept=np.zeros(1))
    (directory / NPZ_NAME).write_bytes(buffer.getvalue())
    manifest_path = directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["npz_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()  # a careful attacker
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(InvalidInput, match="unreadable"):
        load_classifier(directory, expected=encoder)
    assert not marker.exists()


async def test_a_model_with_remote_code_is_refused_unexecuted(tiny_models, tmp_path, caplog):
    model_dir = tmp_path / "remote-code-model"
    shutil.copytree(tiny_models.masked_lm, model_dir)
    marker = tmp_path / "remote-code-ran"
    (model_dir / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).mkdir()\n", encoding="utf-8")
    config = json.loads((model_dir / "config.json").read_text())
    config.update(model_type="tlm-remote-only", auto_map={
        "AutoConfig": "evil.EvilConfig", "AutoModelForMaskedLM": "evil.EvilModel"})
    (model_dir / "config.json").write_text(json.dumps(config))
    tokenizer = json.loads((model_dir / "tokenizer_config.json").read_text())
    tokenizer.pop("tokenizer_class")
    tokenizer["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    (model_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer))

    spec = ModelSpec(str(model_dir))
    registry = ModelRegistry({spec: {Head.MASKED_LM, Head.TOKENIZER}})
    try:
        with pytest.raises(ModelUnavailable):
            await registry.get(spec)
    finally:
        await registry.aclose()
    assert registry.state(spec) is LoadState.FAILED
    assert not marker.exists()


# --------------------------------------------------------------------------- SQL injection

INJECTIONS = [
    "x' OR 1=1 --", "mask' OR '1'='1", "'; DROP TABLE queries; --", '" OR ""="',
    "mask' --", "1; DELETE FROM queries", "%", "' UNION SELECT * FROM queries--",
]


async def test_sql_looking_input_is_only_ever_data(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord={"default_cooldown_uses": 0})
    async with running_bot(config, caplog) as h:
        await h.run("mask", {"text": "'); DROP TABLE queries; -- [MASK]"})
        await h.run("tokens", {"text": "x' OR 1=1 --"})
        await h.run("mask", MASK)
        stored = await h.rows()
        assert stored[0]["input_text"] == "'); DROP TABLE queries; -- [MASK]"
        mod = h.emu.moderator_id
        for text in INJECTIONS:
            recent = await h.run("logs", {"command": text, "since": "all"}, subcommand="recent",
                                 user_id=mod)
            assert "No queries match." in recent.text, (text, recent.text)
            export = await h.run("logs", {"command": text}, subcommand="export", user_id=mod)
            [(_, data)] = export.files
            assert data.decode().count("\n") == 1, (text, data)  # the header only
        # A real filter still works, so the empty answers above are not an accident.
        recent = await h.run("logs", {"command": "mask", "since": "all"}, subcommand="recent",
                             user_id=mod)
        assert recent.text.count("`/mask`") == 2
        rows = await h.rows()
        assert [r["id"] for r in rows[: len(stored)]] == [r["id"] for r in stored]
        tables = await h.services.db.fetchall("SELECT name FROM sqlite_master WHERE type='table'")
        assert {"queries", "guild_settings"} <= {t["name"] for t in tables}
