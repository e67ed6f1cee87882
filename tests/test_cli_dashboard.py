"""`tlm-bot dashboard --guild ID`: the dashboard of the configured database without Discord or
models, for an operator (or an instructor after the term ended).

The real entry point in a subprocess: it prints a signed link, the link opens the server's
overview over HTTP (200, the rows of that server in it), and SIGTERM ends it cleanly. No token,
no Discord, and no model is loaded (the config's models do not even exist).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from bot.cli import EXIT_USER, main
from core.storage.database import Database
from core.storage.querylog import QueryLog, QueryRecord
from tests.conftest import write_tiny_config

ROOT = Path(__file__).resolve().parents[1]
GUILD = 424242


async def a_database_with_rows(path: Path) -> None:
    async with await Database.open(path) as db:
        async with QueryLog(db, log_inputs="full") as querylog:
            for text in ("Paris is the [MASK] of France.", "The boys [MASK] shy."):
                await querylog.record(QueryRecord(
                    guild_id=GUILD, channel_id=1, user_id=7, user_name="student-seven",
                    command="mask", options={}, input_text=text, status="ok"))


def env_without_discord() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                         if p)}
    for name in ("TLM_CONFIG", "DISCORD_TOKEN", "TLM_DISCORD_EMULATOR_URL"):
        env.pop(name, None)
    return env


@pytest.mark.slow
async def test_the_printed_link_opens_the_servers_overview(tmp_path, tiny_models):
    config = write_tiny_config(tmp_path / "config.toml", tiny_models)
    # No model is needed: point every role at a folder that does not exist.
    text = config.read_text(encoding="utf-8")
    for path in (tiny_models.masked_lm, tiny_models.qa, tiny_models.causal_lm):
        text = text.replace(str(path), str(tmp_path / "no-model-here"))
    config.write_text(text, encoding="utf-8")
    await a_database_with_rows(tmp_path / "tlm.db")

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "--config", str(config), "dashboard", "--guild", str(GUILD),
        "--port", "0", cwd=tmp_path, env=env_without_discord(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert f"server {GUILD}" in first.decode(), first
        link = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        assert link.startswith("http://127.0.0.1:") and "/login?t=" in link, link
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.get(link) as r:  # the link, then its token-free page
                assert r.status == 200
            base = link.split("/login?")[0]
            async with s.get(f"{base}/g/{GUILD}/") as r:
                assert r.status == 200
                overview = await r.text()
            assert "Queries" in overview
            async with s.get(f"{base}/g/{GUILD}/queries") as r:
                assert r.status == 200 and "Paris is the [MASK] of France." in await r.text()
            async with s.get(f"{base}/g/{GUILD + 1}/") as r:
                assert r.status == 403  # the link is for this server only
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode() and "loading" not in err.decode(), err.decode()


@pytest.fixture
def no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TLM_CONFIG", "DISCORD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("no_ambient_config")
def test_no_database_yet_is_one_line_and_creates_none(tmp_path, tiny_models, capsys):
    config = write_tiny_config(tmp_path / "config.toml", tiny_models)
    assert main(["--config", str(config), "dashboard", "--guild", "1"]) == EXIT_USER
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no database at "), err
    assert not (tmp_path / "tlm.db").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("no_ambient_config")
def test_a_port_in_use_is_one_line_that_says_what_to_do(tmp_path, tiny_models):
    import socket

    config = write_tiny_config(tmp_path / "config.toml", tiny_models)
    asyncio.run(a_database_with_rows(tmp_path / "tlm.db"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "bot", "--config", str(config), "dashboard",
                               "--guild", "1", "--port", str(port)], cwd=tmp_path,
                              env=env_without_discord(), capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == EXIT_USER, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: the dashboard cannot listen on 127.0.0.1:{port}"), done.stderr
    assert "--port" in lines[0] and done.stdout == ""
    assert time.monotonic() - started < 60


# ------------------------------------------------------------- the server's name in the header


async def test_the_header_names_the_server_the_bot_saw(tiny_config, tmp_path, caplog):
    """The bot stores each server's name when it connects; the dashboard's header shows it
    (escaped), not the raw id, also when served later without Discord."""
    from tests.bot_harness import bot_config, running_bot
    from tests.discord_emulator import DiscordEmulator

    config = bot_config(tiny_config, tmp_path)
    async with DiscordEmulator() as emu:
        emu.guild.name = "Intro to NLP <2026>"
        async with running_bot(config, caplog, emulator=emu) as h:
            for _ in range(100):
                rows = await h.services.db.fetchall("SELECT guild_id, name FROM guild_names")
                if rows:
                    break
                await asyncio.sleep(0.05)
            assert [(r["guild_id"], r["name"]) for r in rows] == [
                (emu.guild_id, "Intro to NLP <2026>")]
            link = await h.services.dashboard.link(emu.guild_id, emu.moderator_id)
            base = h.services.dashboard.base_url
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
                async with s.get(link) as r:
                    assert r.status == 200
                async with s.get(f"{base}/g/{emu.guild_id}/queries") as r:
                    page = await r.text()
    header = page.split("<header>")[1].split("</header>")[0]
    assert "Intro to NLP &lt;2026&gt;" in header, header
    assert f"server {emu.guild_id}</h1>" not in header


# ------------------------------------------------------------------------- a phone's width

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (apt-get install chromium): "
                    "the dashboard's browser tests need it; CI installs it")
async def test_at_390_px_the_queries_fit_and_the_status_is_in_view(tmp_path, tiny_models):
    from playwright.async_api import async_playwright

    config = write_tiny_config(tmp_path / "config.toml", tiny_models)
    await a_database_with_rows(tmp_path / "tlm.db")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "--config", str(config), "dashboard", "--guild", str(GUILD),
        "--port", "0", cwd=tmp_path, env=env_without_discord(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await asyncio.wait_for(proc.stdout.readline(), 60)
        link = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox", "--disable-gpu"])
            page = await browser.new_page(viewport={"width": 390, "height": 844})
            await page.goto(link)
            # The login page moves on by itself (a meta refresh): let it land first, or the
            # next navigation races it.
            await page.wait_for_url(f"**/g/{GUILD}/")
            await page.goto(link.split("/login?")[0] + f"/g/{GUILD}/queries")
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the page scrolls sideways: {width} px wide"
            statuses = page.locator('#queries td[data-col="status"]')
            assert await statuses.count() == 2
            for i in range(2):
                box = await statuses.nth(i).bounding_box()
                assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
                assert await statuses.nth(i).is_visible()
            await browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
