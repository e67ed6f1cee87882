"""The query log's durability promise, checked against the real `tlm-bot run` process.

README: "A row is committed (on disk) before the command's handling finishes, so a clean
shutdown loses nothing and a `kill -9` loses at most the rows of answers being sent at that
instant." The bot runs as a subprocess (the real entry point, pointed at the loopback Discord by
`tests/emulator_site/sitecustomize.py`), answers a burst of /tokens commands, and is stopped
mid-burst. Every command carries a unique text, so an answer the emulator saw is matched to its
row exactly (log_inputs = "full").

Also here: a database that rejects every insert must not cost a student their answer, and the
rows come back once the database accepts writes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bot_harness import bot_config, running_bot
from tests.conftest import write_tiny_config
from tests.discord_emulator import DiscordEmulator, InteractionRecord
from tests.tiny_models import TinyModelPaths

REPO = Path(__file__).resolve().parents[1]
BURST = 100  # /tokens commands fired at once
STOP_AFTER = 40  # answers the emulator has seen when the bot is stopped
STARTUP_TIMEOUT = 90.0
#: How long after its answer a row may still be uncommitted (observed: up to ~0.2 s in a burst).
MAX_COMMIT_LAG_S = 2.0
#: How long the bot's children may outlive a `kill -9` (the watchdog polls twice a second).
ORPHAN_GRACE_S = 5.0


@dataclass
class BotProcess:
    proc: asyncio.subprocess.Process
    db_path: Path
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


async def _until(condition: Callable[[], bool], timeout: float, bot: BotProcess,
                 what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if bot.proc.returncode is not None:
            pytest.fail(f"the bot exited ({bot.proc.returncode}) before {what}:\n"
                        + bot.log_tail())
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n" + bot.log_tail())
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def bot_process(emu: DiscordEmulator, models: TinyModelPaths,
                      tmp_path: Path) -> AsyncIterator[BotProcess]:
    """`python -m bot run` against the emulator, ready (commands synced, model warm)."""
    # dev_guild: the bot syncs its commands there at start, as a developer's bot would.
    config_path = write_tiny_config(
        tmp_path / "config.toml", models, engine={"queue_size": 1000},
        discord={"dev_guild": emu.guild_id, "default_cooldown_uses": 0},
    )
    env = {**os.environ, **emu.env(), "DISCORD_TOKEN": emu.token, "TLM_CONFIG": str(config_path),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log_path = tmp_path / "bot.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=REPO, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=asyncio.subprocess.STDOUT,
        )
    bot = BotProcess(proc, tmp_path / "tlm.db", log_path)
    try:
        await _until(lambda: emu.guild_id in emu.synced_commands and emu._ready.is_set(),
                     STARTUP_TIMEOUT, bot, "READY and the command sync")
        warmup = await emu.invoke("tokens", {"text": "warm up"})
        await _until(lambda: _answered(warmup), STARTUP_TIMEOUT, bot, "the first answer")
        yield bot
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def _answered(record: InteractionRecord) -> bool:
    """The student saw the answer: the tokens embed, not a placeholder or "still loading"."""
    return any(msg.get("embeds") for msg in record.visible_messages)


async def _burst(emu: DiscordEmulator, bot: BotProcess, prefix: str, count: int,
                 answered: int) -> list[InteractionRecord]:
    """Fire `count` /tokens at once; return when `answered` of them were answered."""
    records = [await emu.invoke("tokens", {"text": f"{prefix} {i}"}) for i in range(count)]
    await _until(lambda: sum(map(_answered, records)) >= answered, 60, bot,
                 f"{answered} answers")
    return records


def _text(record: InteractionRecord) -> str:
    return record.payload["data"]["options"][0]["value"]


def _texts(records: list[InteractionRecord]) -> set[str]:
    return {_text(r) for r in records if _answered(r)}


def _answer_time(emu: DiscordEmulator, record: InteractionRecord) -> float:
    """When the emulator received the edit that showed the answer (time.monotonic)."""
    return min(r.time for r in emu.find_requests("PATCH", record.token)
               if isinstance(r.json, dict) and r.json.get("embeds"))


def _logged_texts(db_path: Path) -> set[str]:
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT input_text FROM queries WHERE command = 'tokens'").fetchall()
    finally:
        conn.close()
    texts = [r[0] for r in rows]
    assert len(texts) == len(set(texts)), "an interaction was logged twice"
    return set(texts)


async def test_kill_9_loses_only_rows_still_being_committed(tiny_models, tmp_path):
    async with DiscordEmulator() as emu:
        async with bot_process(emu, tiny_models, tmp_path) as bot:
            earlier = await _burst(emu, bot, "early", 30, answered=30)
            await asyncio.sleep(1.0)
            children = _descendants(bot.proc.pid)
            records = await _burst(emu, bot, "probe", BURST, answered=STOP_AFTER)
            os.kill(bot.proc.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            # No await since the kill: this is what the emulator had seen at that instant.
            seen_at_kill = [r for r in records if _answered(r)]
            await bot.proc.wait()
            assert bot.proc.returncode == -signal.SIGKILL
            survivors = await _survivors(children, ORPHAN_GRACE_S)
    logged = _logged_texts(bot.db_path)
    # Answered a second before the kill: long committed.
    assert _texts(earlier) <= logged
    missing = [r for r in seen_at_kill if _text(r) not in logged]
    ages = [killed_at - _answer_time(emu, r) for r in missing]
    print(f"\nkill -9 after {len(seen_at_kill)}/{BURST} answers of a burst: "
          f"{len(seen_at_kill) - len(missing)} have their row, {len(missing)} do not "
          f"(answered at most {max(ages, default=0) * 1000:.0f} ms before the kill)")
    # The rows a kill may lose are those whose group commit was still running: answers sent in
    # the last moments before it (the row is written right after the answer goes out).
    assert max(ages, default=0) < MAX_COMMIT_LAG_S, sorted(zip(ages, map(_text, missing)))
    # The bot's children (drawing processes, multiprocessing's resource tracker) end with it
    # instead of living on as orphans of init.
    if sys.platform.startswith("linux"):
        assert children, "expected the bot to have child processes (the drawers)"
    assert survivors == {}, f"orphans still alive {ORPHAN_GRACE_S}s after kill -9: {survivors}"


def _descendants(pid: int) -> dict[int, str]:
    """Every process below `pid` (pid -> command line), read from /proc (Linux only)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # it ended while we looked
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses.
        parents[int(stat.parent.name)] = int(text[text.rindex(")") + 2:].split()[1])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = _cmdline(child)
                frontier.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return ""


async def _survivors(children: dict[int, str], grace: float) -> dict[int, str]:
    """Those of `children` (same pid, same command line) still alive after `grace` seconds."""
    deadline = time.monotonic() + grace
    while True:
        alive = {pid: cmd for pid, cmd in children.items() if _cmdline(pid) == cmd and cmd}
        if not alive or time.monotonic() > deadline:
            return alive
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_clean_stop_loses_no_row(tiny_models, tmp_path, sig):
    async with DiscordEmulator() as emu:
        async with bot_process(emu, tiny_models, tmp_path) as bot:
            records = await _burst(emu, bot, "probe", BURST, answered=STOP_AFTER)
            bot.proc.send_signal(sig)
            await asyncio.wait_for(bot.proc.wait(), 60)
            assert bot.proc.returncode in (0, 130), bot.log_tail()
        await asyncio.sleep(0.2)
    answered = _texts(records)
    # Acknowledged: the bot received the command (and deferred it). Stopping mid-burst may
    # cost a student the answer, but every command the bot took on still gets its row.
    acknowledged = {_text(r) for r in records if r.first_response is not None}
    logged = _logged_texts(bot.db_path)
    print(f"\n{sig.name} mid-burst: {len(acknowledged)}/{BURST} acknowledged, "
          f"{len(answered)} answered, {len(logged - {'warm up'})} rows")
    assert answered <= logged, sorted(answered - logged)
    assert acknowledged <= logged, sorted(acknowledged - logged)


async def test_failing_log_write_keeps_the_answer(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path)
    async with running_bot(config, caplog, check_clean=False) as h:
        await h.run("tokens", {"text": "before"})
        await _wait_rows(h, 1)
        # Another connection, like an operator's sqlite3 shell, makes every insert fail.
        _execute(h.services.db.path,
                 "CREATE TRIGGER no_inserts BEFORE INSERT ON queries "
                 "BEGIN SELECT RAISE(ABORT, 'inserts disabled by the test'); END")
        during = [await h.run("tokens", {"text": f"during {i}"}) for i in range(3)]
        for record in during:
            assert "during" in record.text and not record.ephemeral
        querylog = h.services.querylog
        await _until_true(lambda: querylog.pending_retry == 3)
        assert [r["input_text"] for r in await h.rows()] == ["before"]
        failures = [r for r in caplog.records if "Query log write failed" in r.getMessage()]
        assert failures and failures[0].levelno == logging.ERROR  # logged loudly once
        # The bot keeps serving, and the rows arrive once the database accepts writes again.
        _execute(h.services.db.path, "DROP TRIGGER no_inserts")
        assert await querylog.flush()
        after = await h.run("tokens", {"text": "after"})
        assert "after" in after.text
        await _wait_rows(h, 5)
        assert [r["input_text"] for r in await h.rows()] == [
            "before", "during 0", "during 1", "during 2", "after"]
        assert querylog.pending_retry == 0
    assert h.emu.unhandled == [] and h.emu.violations == []
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    [error] = errors  # said once, with the cause and what to do
    assert error.startswith("Query log write failed; keeping 1 rows for retry. Cause: ")
    assert "inserts disabled by the test" in error


def _execute(db_path: str, sql: str) -> None:
    conn = sqlite3.connect(db_path, timeout=5)
    try:
        conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


async def _until_true(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def _wait_rows(h, count: int, timeout: float = 10) -> None:
    """The row is recorded after the answer is sent: wait for it rather than race it."""
    deadline = time.monotonic() + timeout
    while len(await h.rows()) < count:
        assert time.monotonic() < deadline, f"fewer than {count} rows"
        await asyncio.sleep(0.01)
