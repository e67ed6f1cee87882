"""The faults a semester of Discord produces, against the real bot, core and SQLite.

Each test injects one fault through the loopback Discord (429s, gateway drops, slow or expired
webhooks) or through our own code (a model that raises, a query log that cannot write, a burst
bigger than the queue) and asserts what the student sees and what the log keeps. See
tests/bot_harness.py for what `running_bot` checks on a clean exit.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import sqlite3
import time
from collections.abc import Callable

import pytest

from core.inference.tasks.fill_mask import FillMaskRequest, FillMaskTask
from tests.bot_harness import Harness, bot_config, running_bot
from tests.discord_emulator import DiscordEmulator

MASK = {"text": "Paris is the [MASK] of France."}
BUSY = "very busy"
APOLOGY_START = "Sorry, something went wrong"


async def models_ready(h: Harness) -> None:
    """Wait for the background loads so a test measures its fault, not a cold start."""
    registry = h.services.engine.registry
    await asyncio.gather(*(registry.get(spec) for spec in registry.specs))


async def no_pause_before_identify(shard_id: int | None, *, initial: bool = False) -> None:
    """discord.py waits 5 s before a re-IDENTIFY to spare real Discord; a test need not."""


def slow_fill_mask(monkeypatch: pytest.MonkeyPatch, seconds: float,
                   when: Callable[[list[FillMaskRequest]], bool] = lambda requests: True) -> None:
    """Make our fill-mask task take `seconds` per batch (in its worker thread)."""
    original = FillMaskTask.run_batch

    def run_batch(self, model, requests, emit):
        if when(list(requests)):
            time.sleep(seconds)
        return original(self, model, requests, emit)

    monkeypatch.setattr(FillMaskTask, "run_batch", run_batch)


def error_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def wait_for(condition: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.01)


# ----------------------------------------------------------------------------- Discord faults


@pytest.mark.parametrize("global_", [False, True], ids=["route", "global"])
async def test_rate_limited_replies_still_arrive(tiny_config, tmp_path, caplog, global_):
    async with running_bot(bot_config(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        # Both the first response and the answer itself meet a 429 first.
        h.emu.rate_limit_next(r"^/interactions/\d+/[^/]+/callback$", 0.2, global_=global_)
        h.emu.rate_limit_next(r"^/webhooks/", 0.3, global_=global_)
        record = await h.run("mask", MASK)
        assert "Fillers for [MASK]" in record.text
        assert record.ack_latency is not None and record.ack_latency < 3
        limited = [r for r in h.emu.requests if r.status == 429]
        assert len(limited) == 2
        assert [r["status"] for r in await h.rows()] == ["ok"]


@pytest.mark.parametrize("fault", ["reconnect", "drop", "resumable_invalid"])
async def test_interaction_sent_across_a_resume_is_answered(tiny_config, tmp_path, caplog, fault):
    async with running_bot(bot_config(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        if fault == "reconnect":
            await h.emu.send_reconnect()
        elif fault == "drop":
            await h.emu.drop_connection()
        else:
            await h.emu.invalidate_session(resumable=True)
        # Dispatched while the bot is away or about to leave: RESUME must replay it.
        record = await h.emu.invoke("mask", MASK)
        await h.emu.wait_gateway("RESUMED")
        await record.wait_done(10)
        assert "Fillers for [MASK]" in record.text
        assert h.emu.gateway_log.count("IDENTIFY") == 1
        # ... and the bot keeps serving on the resumed session.
        again = await h.run("tokens", {"text": "still here"}, user_id=h.emu.moderator_id)
        assert "WordPiece tokens" in again.text
        assert [r["status"] for r in await h.rows()] == ["ok", "ok"]


async def test_invalid_session_reidentifies_and_keeps_serving(tiny_config, tmp_path, caplog,
                                                              monkeypatch):
    async with running_bot(bot_config(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        monkeypatch.setattr(h.bot, "before_identify_hook", no_pause_before_identify)
        before = await h.run("mask", MASK)
        assert "Fillers" in before.text
        await h.emu.invalidate_session(resumable=False)
        await h.emu.wait_ready()
        assert h.emu.gateway_log.count("IDENTIFY") == 2
        after = await h.run("mask", MASK, user_id=h.emu.moderator_id)
        assert "Fillers for [MASK]" in after.text
        assert [r["status"] for r in await h.rows()] == ["ok", "ok"]


async def test_slow_discord_does_not_hold_the_workers(tiny_config, tmp_path, caplog):
    delay = 2.0
    config = bot_config(tiny_config, tmp_path, discord={"default_cooldown_uses": 0})
    async with running_bot(config, caplog) as h:
        await models_ready(h)
        h.emu.set_response_delay(r"^/webhooks/", delay)
        started = time.monotonic()
        first = await h.emu.invoke("mask", MASK)
        # Once the first answer is on its (slow) way to Discord, the core must be free.
        await wait_for(lambda: h.emu.find_requests("PATCH", first.token), what="first answer")
        t0 = time.perf_counter()
        result = await h.services.engine.submit(FillMaskRequest(MASK["text"], 3))
        core_seconds = time.perf_counter() - t0
        assert result.fillers and core_seconds < 0.5 * delay
        others = [await h.emu.invoke("tokens", {"text": f"word {i}"}) for i in range(5)]
        for record in [first, *others]:
            await record.wait_done(10)
        elapsed = time.monotonic() - started
        # Six answers each held 2 s by Discord: in parallel, not one after another.
        assert elapsed < 2 * delay + 1.5, elapsed
        rows = await h.rows()
        assert [r["status"] for r in rows] == ["ok"] * 6
        for row in rows:
            assert row["queue_ms"] + row["inference_ms"] < 500  # the core's part stayed quick
            assert row["total_ms"] >= delay * 1000  # while Discord took its time


async def test_expired_token_posts_the_answer_to_the_channel(tiny_config, tmp_path, caplog,
                                                             monkeypatch):
    slow_fill_mask(monkeypatch, 1.5)
    async with DiscordEmulator(token_ttl_s=1.0) as emu:
        async with running_bot(bot_config(tiny_config, tmp_path), caplog, emulator=emu,
                               check_clean=False) as h:
            await models_ready(h)
            record = await h.emu.invoke("mask", MASK)
            await record.wait_first_response()
            await wait_for(lambda: h.emu.channel_messages, timeout=15, what="channel post")
            rows = await h.rows()
        assert [r["status"] for r in rows] == ["expired"]
        [post] = emu.channel_messages
        assert "Fillers for [MASK]" in post["embeds"][0]["title"]
        assert post["content"].startswith("Answer for")
        assert post["allowed_mentions"] == {"parse": []}
        assert emu.unhandled == []
        # The only rule broken is the one the test forces: a token that died during the job.
        assert emu.violations and all("expired" in v for v in emu.violations)
        assert error_logs(caplog) == []


async def test_a_model_error_costs_only_its_own_request(tiny_config, tmp_path, caplog,
                                                        monkeypatch):
    original = FillMaskTask.run_batch

    def run_batch(self, model, requests, emit):
        if any("boom" in r.text for r in requests):
            raise ValueError("tokenizer choked on odd input")
        return original(self, model, requests, emit)

    monkeypatch.setattr(FillMaskTask, "run_batch", run_batch)
    config = bot_config(tiny_config, tmp_path, engine={"max_wait_ms": 300.0})
    async with running_bot(config, caplog, check_clean=False) as h:
        await models_ready(h)
        users = [h.emu.guild.add_member(f"s{i}") for i in range(3)]
        texts = ["Paris is the [MASK].", "boom [MASK] boom", "Rome is the [MASK]."]
        records = [await h.emu.invoke("mask", {"text": t}, user_id=u)
                   for t, u in zip(texts, users)]
        for record in records:
            await record.wait_done(10)
        good = [records[0], records[2]]
        for record in good:
            assert "Fillers for [MASK]" in record.text
            assert "batched with 2 other" in record.text  # all three shared one forward pass
        assert records[1].ephemeral and APOLOGY_START in records[1].text
        # The worker lives on.
        after = await h.run("mask", MASK)
        assert "Fillers for [MASK]" in after.text
        rows = await h.rows()
        assert sorted(r["status"] for r in rows) == ["failed", "ok", "ok", "ok"]
        assert emu_clean(h.emu)
    assert any("failed for one request" in m for m in error_logs(caplog))


def emu_clean(emu: DiscordEmulator) -> bool:
    return emu.unhandled == [] and emu.violations == []


async def test_query_log_outage_never_costs_an_answer_or_a_row(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord={"default_cooldown_uses": 0})
    async with running_bot(config, caplog, check_clean=False) as h:
        await models_ready(h)
        db, querylog = h.services.db, h.services.querylog
        async with db.transaction() as conn:  # "disk full" on every insert into queries
            await conn.execute("CREATE TRIGGER full_disk BEFORE INSERT ON queries "
                               "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
        records = [await h.run("mask", MASK) for _ in range(3)]
        for record in records:
            assert "Fillers for [MASK]" in record.text  # answers go out regardless
        await wait_for(lambda: querylog.pending_retry == 3, what="rows kept for retry")
        assert await db.fetchall("SELECT id FROM queries") == []
        assert any("Query log write failed" in m for m in error_logs(caplog))
        async with db.transaction() as conn:  # the disk has room again
            await conn.execute("DROP TRIGGER full_disk")
        # The next row's write carries the buffered ones with it (no explicit flush).
        await h.run("tokens", {"text": "back again"})
        await wait_for(lambda: querylog.pending_retry == 0, what="buffered rows written")
        stored = await db.fetchall("SELECT command, status FROM queries ORDER BY id")
        assert [(r["command"], r["status"]) for r in stored] == [("mask", "ok")] * 3 + [
            ("tokens", "ok")]
        assert emu_clean(h.emu)
    # A clean stop flushed everything: rows lost = 0.
    with sqlite3.connect(tmp_path / "tlm.db") as conn:
        assert conn.execute("SELECT count(*) FROM queries").fetchone()[0] == 4
    conn.close()
    assert querylog.dropped == 0


# ----------------------------------------------------------------------------------- overload


async def test_burst_of_200_is_acknowledged_bounded_and_answered(tiny_config, tmp_path, caplog,
                                                                 monkeypatch):
    burst, queue_size = 200, 16
    slow_fill_mask(monkeypatch, 0.2)  # a slower model than the tiny one, like the real CPU
    config = bot_config(tiny_config, tmp_path, engine={"queue_size": queue_size,
                                                       "max_batch_size": 8})
    async with running_bot(config, caplog) as h:
        await models_ready(h)
        users = [h.emu.guild.add_member(f"student{i}") for i in range(burst)]
        lanes = h.services.engine.lanes
        deepest = 0

        async def watch() -> None:
            nonlocal deepest
            while True:
                deepest = max([deepest, *(len(lane.pending) for lane in lanes.values())])
                await asyncio.sleep(0.002)

        watcher = asyncio.create_task(watch())
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tasks_before = asyncio.all_tasks()
        records = await asyncio.gather(*(
            h.emu.invoke("mask", {"text": f"Student {i} is the [MASK]."}, user_id=user)
            for i, user in enumerate(users)))
        try:
            for record in records:
                await record.wait_done(30)  # none hangs
        finally:
            watcher.cancel()
        assert max(r.ack_latency for r in records) < 3.0
        answered = [r for r in records if "Fillers for [MASK]" in r.text]
        busy = [r for r in records if r.ephemeral and BUSY in r.text]
        print(f"burst {burst}: {len(answered)} answered, {len(busy)} busy, max ack "
              f"{max(r.ack_latency for r in records):.2f}s, deepest queue {deepest}")
        assert len(answered) + len(busy) == burst
        assert answered and len(busy) > burst // 2
        assert deepest <= queue_size
        rows = await h.rows()
        assert len(rows) == burst
        assert sorted({r["status"] for r in rows}) == ["ok", "overloaded"]
        # Nothing is left behind per interaction: only the lane and the log writer are new
        # (the emulator's own keep-alive connection handlers aside).
        def leftovers() -> set[str]:
            return {t.get_coro().__qualname__ for t in asyncio.all_tasks() - tasks_before} - {
                "RequestHandler.start"}

        try:
            await wait_for(lambda: leftovers() <= {"Lane._batch_forever", "GroupCommitWriter._run"})
        except TimeoutError:
            raise AssertionError(f"per-interaction tasks left: {sorted(leftovers())}") from None
        rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        assert rss_growth_mb < 200, rss_growth_mb


async def test_cooldown_stops_one_student_filling_the_queue(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord={"default_cooldown_uses": 3,
                                                        "default_cooldown_seconds": 60.0})
    async with running_bot(config, caplog) as h:
        await models_ready(h)
        records = [await h.emu.invoke("mask", MASK) for _ in range(12)]
        for record in records:
            await record.wait_done(10)
        answered = [r for r in records if "Fillers for [MASK]" in r.text]
        refused = [r for r in records if r.ephemeral and r not in answered]
        assert len(answered) == 3 and len(refused) == 9
        assert all(r.first_response["type"] == 4 for r in refused)  # refused before queueing
        # Another student is not affected by the first one's cooldown.
        other = await h.run("mask", MASK, user_id=h.emu.guild.add_member("other"))
        assert "Fillers for [MASK]" in other.text
        rows = await h.rows()
        assert sorted((r["status"], r["error"]) for r in rows) == (
            [("cooldown", "cooldown")] * 9 + [("ok", "")] * 4)
