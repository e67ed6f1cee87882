"""The real entry point, `tlm-bot run`, as a subprocess against the loopback Discord.

Nothing is injected: the child reads a config file that points at the tiny test models, its
token from DISCORD_TOKEN, and reaches the emulator only through the `sitecustomize` patch that
`DiscordEmulator.env()` puts on its PYTHONPATH. A clean SIGTERM must exit 0 with every answer's
query-log row on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from tests.conftest import write_tiny_config
from tests.discord_emulator import IS_COMPONENTS_V2, DiscordEmulator, InteractionRecord

ENTRY_POINT = Path(sys.executable).with_name("tlm-bot")


async def final_answer(record: InteractionRecord, timeout: float = 60) -> InteractionRecord:
    """Wait past a "still loading" notice (a cold start) to the answer itself."""
    deadline = time.monotonic() + timeout
    while True:
        shown = record.visible_messages
        if shown and (shown[0].get("embeds") or shown[0]["flags"] & IS_COMPONENTS_V2):
            return record  # an embed answer, or a picture's layout (Components V2)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer; messages: {shown}, errors: {record.errors}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def tlm_bot_run(emu: DiscordEmulator, config: Path, log_path: Path,
                      *options: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`tlm-bot [options] run` against the emulator, its output in `log_path`; ready (READY
    sent) when this yields. Leaving the block sends SIGTERM and waits for a clean exit, which
    the caller reads from `proc.returncode`; a bot that does not stop is killed."""
    env = {**os.environ, **emu.env(), "DISCORD_TOKEN": emu.token, "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("TLM_CONFIG", None)
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            str(ENTRY_POINT), "--config", str(config), *options, "run",
            env=env, cwd=log_path.parent, stdout=log_file, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await emu.wait_ready(timeout=90)
            yield proc
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.mark.slow
@pytest.mark.skipif(not ENTRY_POINT.exists(), reason="tlm-bot is not installed in this venv")
async def test_tlm_bot_run_answers_commands_and_stops_cleanly(tiny_models, tmp_path):
    async with DiscordEmulator() as emu:
        config = write_tiny_config(
            tmp_path / "config.toml", tiny_models,
            discord={"dev_guild": emu.guild_id, "default_cooldown_uses": 0},
        )
        log_path = tmp_path / "bot.log"
        async with tlm_bot_run(emu, config, log_path) as proc:
            # dev_guild: the bot synced its commands to the guild itself, before READY.
            synced = {c["name"] for c in emu.synced_commands.get(emu.guild_id, [])}
            assert {"mask", "qa", "generate", "tokens", "sentiment"} <= synced
            mask = await emu.invoke("mask", {"text": "Paris is the [MASK] of France."})
            tokens = await emu.invoke("tokens", {"text": "Tokenization is unbelievable!"})
            await asyncio.gather(final_answer(mask), final_answer(tokens))
            # The other interaction kinds, through the real entry point: a button under
            # the answer, and a right-click on a message someone posted.
            attention = next(c["custom_id"] for c in mask.components
                             if c.get("label") == "Attention")
            clicked = await emu.click(mask.message, attention)
            posted = emu.add_message(content="Tokenize me, please.")
            menu = await emu.invoke_message_command("Tokenize", posted)
            await asyncio.gather(final_answer(clicked), final_answer(menu))
            # Every web surface the bot serves, opened as an instructor would: the link
            # from `/logs dashboard`, then each page of that server.
            pages = await _open_dashboard(emu)
        code = proc.returncode
    log = log_path.read_text(errors="replace")
    assert code == 0, log
    assert "Traceback" not in log and " ERROR " not in log, log
    print(f"\nsubprocess ack latencies: {[round(r.ack_latency or -1, 3) for r in (mask, tokens)]}")
    for record in (mask, tokens, clicked, menu):
        assert record.ack_latency is not None and record.ack_latency < 1.0, record.ack_latency
    assert mask.visible_messages[0]["embeds"][0]["title"] == "Fillers for [MASK]"
    assert tokens.visible_messages[0]["embeds"][0]["title"] == "WordPiece tokens"
    assert emu.unhandled == [] and emu.violations == []
    with sqlite3.connect(tmp_path / "tlm.db") as db:
        rows = db.execute("SELECT command, status, guild_id FROM queries ORDER BY id").fetchall()
    db.close()
    assert sorted(rows) == [
        ("attention", "ok", emu.guild_id), ("logs dashboard", "ok", emu.guild_id),
        ("mask", "ok", emu.guild_id), ("tokens", "ok", emu.guild_id),
        ("tokens", "ok", emu.guild_id)]
    assert pages == {"overview": 200, "queries": 200, "queries.csv": 200, "queries.json": 200,
                     "rules": 200}, pages


LINK = re.compile(r"<?(http://[^\s>]+/login\?[^\s>]+)>?")


async def _open_dashboard(emu: DiscordEmulator) -> dict[str, int]:
    """`/logs dashboard` as the moderator, then the link and every page it leads to; the HTTP
    status of each. (v0.2's `tlm-bot run` never started the dashboard: the link was missing.)"""
    record = await emu.invoke("logs", subcommand="dashboard", user_id=emu.moderator_id)
    await record.wait_done(timeout=30)
    match = LINK.search(record.text)
    assert match, record.text
    statuses: dict[str, int] = {}
    link = URL(match.group(1))
    base = f"{link.origin()}/g/{emu.guild_id}"
    statuses: dict[str, int] = {}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(link) as response:  # the cookie, and a page that moves on
            assert response.status == 200, await response.text()
        for page in ("", "queries", "queries.csv", "queries.json", "rules"):
            async with browser.get(f"{base}/{page}") as response:
                statuses[page or "overview"] = response.status
                if not page:
                    assert "Overview" in await response.text()
    return statuses


@pytest.mark.slow
@pytest.mark.skipif(not ENTRY_POINT.exists(), reason="tlm-bot is not installed in this venv")
async def test_verbose_log_holds_no_student_text_and_no_interaction_token(tiny_models, tmp_path):
    """`tlm-bot -v run` under log_inputs = "none": debug lines, but neither what the students
    typed (slash options, a right-clicked message) nor any interaction's webhook token
    (bot.logging_policy). Without the policy, discord.py's gateway DEBUG line prints every
    INTERACTION_CREATE whole."""
    async with DiscordEmulator() as emu:
        config = write_tiny_config(
            tmp_path / "config.toml", tiny_models,
            discord={"dev_guild": emu.guild_id, "default_cooldown_uses": 0},
            database={"path": str(tmp_path / "tlm.db"), "log_inputs": "none"},
        )
        log_path = tmp_path / "bot.log"
        markers = [f"zqmarker{i}x" for i in range(4)]
        async with tlm_bot_run(emu, config, log_path, "-v") as proc:
            records = [
                await emu.invoke("tokens", {"text": f"Tokenize {markers[0]} please"}),
                await emu.invoke("mask", {"text": f"{markers[1]} is the [MASK] here."}),
                await emu.invoke("qa", {"question": f"Where is {markers[2]}?",
                                        "context": "It is in the house."}),
            ]
            posted = emu.add_message(content=f"Tokenize {markers[3]}, please.")
            records.append(await emu.invoke_message_command("Tokenize", posted))
            await asyncio.gather(*(final_answer(r) for r in records))
        code = proc.returncode
    log = log_path.read_text(errors="replace")
    assert code == 0, log
    assert " DEBUG " in log  # -v took effect
    for marker in markers:
        assert marker not in log, marker
    for record in records:
        assert record.token not in log
    assert "--debug-discord" not in log  # no warning without the flag


@pytest.mark.slow
@pytest.mark.skipif(not ENTRY_POINT.exists(), reason="tlm-bot is not installed in this venv")
async def test_tlm_bot_run_speaks_the_member_s_language_explains_and_streams(tiny_models,
                                                                              tmp_path):
    """This round's surfaces through the real entry point: an Italian member's error in
    Italian, a Why? click under /mask (gated and logged as `explain mask`), a streamed
    /generate's final text, and the dashboard switched to Italian."""
    async with DiscordEmulator() as emu:
        italian = emu.guild.add_member("studentessa", roles=["Student"])
        emu.guild.member_locales[italian] = "it"
        config = write_tiny_config(
            tmp_path / "config.toml", tiny_models,
            discord={"dev_guild": emu.guild_id, "default_cooldown_uses": 0},
        )
        log_path = tmp_path / "bot.log"
        async with tlm_bot_run(emu, config, log_path) as proc:
            error = await emu.invoke("mask", {"text": "Paris is the capital."}, user_id=italian)
            await error.wait_done(timeout=60)
            mask = await final_answer(await emu.invoke("mask", {"text": "Paris is the [MASK]."}))
            why_id = next(c["custom_id"] for c in mask.components if c.get("label") == "Why?")
            why = await final_answer(await emu.click(mask.message, why_id))
            generated = await final_answer(await emu.invoke(
                "generate", {"prompt": "Once upon a time", "max_new_tokens": 12, "seed": 3}))
            page = await _dashboard_page(emu, "?lang=it")
        code = proc.returncode
    log = log_path.read_text(errors="replace")
    assert code == 0, log
    assert "Traceback" not in log and " ERROR " not in log, log
    assert error.ephemeral and "Il tuo testo non contiene [MASK]" in error.text, error.text
    assert why.visible_messages[0]["embeds"][0]["title"].startswith("Why “")
    assert generated.visible_messages[0]["embeds"][0]["description"].strip()
    assert "Panoramica" in page and "<html lang=it>" in page
    assert emu.unhandled == [] and emu.violations == []
    with sqlite3.connect(tmp_path / "tlm.db") as db:
        rows = db.execute("SELECT command, status, locale FROM queries ORDER BY id").fetchall()
    db.close()
    assert ("mask", "user_error", "it") in rows, rows
    assert ("explain mask", "ok", "en") in rows, rows
    assert [r[1] for r in rows if r[0] == "generate"] == ["ok"], rows


async def _dashboard_page(emu: DiscordEmulator, query: str) -> str:
    """The overview page, reached through `/logs dashboard`'s link, with `query` added."""
    record = await emu.invoke("logs", subcommand="dashboard", user_id=emu.moderator_id)
    await record.wait_done(timeout=30)
    match = LINK.search(record.text)
    assert match, record.text
    link = URL(match.group(1))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(link) as response:
            assert response.status == 200, await response.text()
        async with browser.get(f"{link.origin()}/g/{emu.guild_id}/{query}") as response:
            assert response.status == 200
            return await response.text()


@pytest.mark.slow
@pytest.mark.skipif(not ENTRY_POINT.exists(), reason="tlm-bot is not installed in this venv")
async def test_tlm_bot_run_with_the_shipped_engine_settings_and_the_fastest_path(
        tiny_models, tmp_path, monkeypatch):
    """The engine as it ships (`dtype = "auto"`: bfloat16 on a CPU with bfloat16 units, GPT-2
    too; `torch_threads = 0`) and the opt-in fastest path on the /mask model (ONNX Runtime int8:
    one-thread sessions, a batch per worker side by side), all through `tlm-bot run`: a burst
    of /mask from several students, /generate, /qa, an attention picture (torch's encoder,
    loaded on first need) and the dashboard."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("TLM_BOT_ONNX_CACHE", str(tmp_path / "onnx"))
    async with DiscordEmulator() as emu:
        students = [emu.guild.add_member(f"student{i}", roles=["Student"]) for i in range(6)]
        config = write_tiny_config(
            tmp_path / "config.toml", tiny_models,
            discord={"dev_guild": emu.guild_id, "default_cooldown_uses": 0},
            engine={"dtype": "auto", "torch_threads": 0},
        )
        fastest = (f'{{ id = "{tiny_models.masked_lm}", backend = "onnxruntime", '
                   'quantize = "int8" }')
        text = config.read_text(encoding="utf-8")
        for role in ("mask", "features"):
            text = text.replace(f'{role} = "{tiny_models.masked_lm}"', f"{role} = {fastest}")
        config.write_text(text, encoding="utf-8")
        log_path = tmp_path / "bot.log"
        async with tlm_bot_run(emu, config, log_path) as proc:
            burst = await asyncio.gather(*(
                emu.invoke("mask", {"text": f"Student {i} is the [MASK] of the class."},
                           user_id=student) for i, student in enumerate(students)))
            masks = await asyncio.gather(*(final_answer(record) for record in burst))
            attention = next(c["custom_id"] for c in masks[0].components
                             if c.get("label") == "Attention")
            picture, generated, answer = await asyncio.gather(
                final_answer(await emu.click(masks[0].message, attention)),
                final_answer(await emu.invoke(
                    "generate", {"prompt": "Once upon a time", "max_new_tokens": 8,
                                 "seed": 3})),
                final_answer(await emu.invoke("qa", {
                    "question": "Where do students ask?",
                    "context": "Students ask the bot questions in the class channel."})))
            pages = await _open_dashboard(emu)
        code = proc.returncode
    log = log_path.read_text(errors="replace")
    assert code == 0, log
    assert "Traceback" not in log and " ERROR " not in log, log
    assert "encoder runs in ONNX Runtime" in log, log
    assert all(m.visible_messages[0]["embeds"][0]["title"] == "Fillers for [MASK]"
               for m in masks)
    assert generated.visible_messages[0]["embeds"][0]["description"].strip()
    assert emu.unhandled == [] and emu.violations == []
    with sqlite3.connect(tmp_path / "tlm.db") as db:
        rows = db.execute("SELECT command, status FROM queries ORDER BY id").fetchall()
    db.close()
    assert sorted(rows) == sorted(
        [("mask", "ok")] * len(students)
        + [("attention", "ok"), ("generate", "ok"), ("qa", "ok"), ("logs dashboard", "ok")]
    ), rows
    assert picture.visible_messages and answer.visible_messages
    assert set(pages.values()) == {200}, pages
