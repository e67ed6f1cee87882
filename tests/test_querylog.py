"""The database layer and query log against real SQLite files in tmp_path."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import logging
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.outcomes import STATUS_VALUES, Status
from core.storage.database import Database, DatabaseTooNew, Migration, load_migrations
from core.storage.guild_settings import SettingsStore
from core.storage.querylog import (
    CSV_COLUMNS,
    QueryFilter,
    QueryLog,
    QueryRecord,
    from_db_time,
    unescape_csv_cell,
)

GUILD_A, GUILD_B = 1001, 2002
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def rec(user: int = 1, *, guild: int | None = GUILD_A, command: str = "mask",
        status: str = "ok", text: str = "the [MASK] sat", at: datetime | None = None,
        total_ms: float | None = None, **kw: object) -> QueryRecord:
    return QueryRecord(
        guild_id=guild, channel_id=7, user_id=user, command=command, options={"top_k": 5},
        input_text=text, status=status, total_ms=total_ms, created_at=at, **kw,  # type: ignore[arg-type]
    )


def raw_rows(path: str | Path, sql: str = "SELECT * FROM queries ORDER BY id") -> list[tuple]:
    """Read with a separate plain sqlite3 connection: what another process would see."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def sql_exec(path: str | Path, sql: str) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(sql)
        conn.commit()


async def exported(qlog: QueryLog, f: QueryFilter) -> str:
    """The CSV export as text (the BOM checked and removed)."""
    out = io.BytesIO()
    result = await qlog.export_csv(f, out)
    assert result.complete
    text = out.getvalue().decode("utf-8")
    assert text.startswith("\ufeff")
    return text[1:]


@pytest.fixture
async def db(tmp_path: Path):
    database = await Database.open(tmp_path / "nested" / "bot.db")
    yield database
    await database.aclose()


@pytest.fixture
async def qlog(db: Database):
    log = QueryLog(db)
    yield log
    await log.aclose()


# ------------------------------------------------------------------ database


async def test_open_creates_dir_and_sets_pragmas(db: Database, tmp_path: Path) -> None:
    assert (tmp_path / "nested" / "bot.db").exists()
    assert (await db.fetchall("PRAGMA journal_mode"))[0][0] == "wal"
    assert (await db.fetchall("PRAGMA synchronous"))[0][0] == 2  # FULL
    assert (await db.fetchall("PRAGMA foreign_keys"))[0][0] == 1
    # WAL is a property of the file: another connection sees it too.
    assert raw_rows(db.path, "PRAGMA journal_mode") == [("wal",)]
    assert db.schema_version == len(load_migrations()) >= 1
    assert raw_rows(db.path, "PRAGMA user_version") == [(db.schema_version,)]


async def test_reopen_keeps_data_and_does_not_reapply(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    async with await Database.open(path) as db:
        async with QueryLog(db) as qlog:
            assert await qlog.record(rec(text="kept"))
    async with await Database.open(path) as db:
        rows = await QueryLog(db).recent(QueryFilter(guild_id=GUILD_A))
        assert [r.input_text for r in rows] == ["kept"]


async def test_new_migration_bumps_version_and_old_code_refuses(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    shipped = load_migrations()
    newer = [*shipped, Migration(len(shipped) + 1, "extra", "CREATE TABLE extra (x INTEGER);")]
    async with await Database.open(path, migrations=shipped) as db:
        assert db.schema_version == len(shipped)
    async with await Database.open(path, migrations=newer) as db:
        assert db.schema_version == len(shipped) + 1
        await db.fetchall("SELECT x FROM extra")
    with pytest.raises(DatabaseTooNew) as info:
        await Database.open(path)
    assert isinstance(info.value, ConfigError)
    assert f"schema version {len(shipped) + 1}" in info.value.message
    assert str(path) in info.value.message


async def test_failed_migration_is_rolled_back(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    shipped = load_migrations()
    broken = [*shipped, Migration(len(shipped) + 1, "broken",
                                  "CREATE TABLE half (x INTEGER); INSERT INTO nope VALUES (1);")]
    with pytest.raises(sqlite3.OperationalError):
        await Database.open(path, migrations=broken)
    assert raw_rows(path, "PRAGMA user_version") == [(len(shipped),)]
    assert raw_rows(path, "SELECT name FROM sqlite_master WHERE name = 'half'") == []


async def test_aclose_is_idempotent_and_use_after_close_fails(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "bot.db")
    await db.aclose()
    await db.aclose()
    assert db.closed
    with pytest.raises(RuntimeError):
        await db.fetchall("SELECT 1")


# ------------------------------------------------------------------ writing


async def test_record_and_recent_with_filters(qlog: QueryLog) -> None:
    data = [
        rec(1, command="mask", at=T0),
        rec(2, command="mask", status="user_error", at=T0 + timedelta(minutes=1)),
        rec(1, command="generate", at=T0 + timedelta(minutes=2)),
        rec(3, command="qa", status="failed", at=T0 + timedelta(minutes=3)),
    ]
    for r in data:
        assert await qlog.record(r) is True

    rows = await qlog.recent(QueryFilter(guild_id=GUILD_A))
    assert [r.created_at for r in rows] == [r.created_at for r in reversed(data)]  # newest first
    first = rows[-1]
    assert (first.user_id, first.command, first.options, first.channel_id) == (1, "mask",
                                                                                {"top_k": 5}, 7)
    assert first.created_at == T0 and first.created_at.tzinfo is not None

    async def users(**kw: object) -> list[int]:
        return [r.user_id for r in await qlog.recent(QueryFilter(guild_id=GUILD_A, **kw))]

    assert await users(user_id=1) == [1, 1]
    assert await users(command="mask") == [2, 1]
    assert await users(status="failed") == [3]
    assert await users(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)) == [1, 2]
    assert await users(limit=2) == [3, 1]
    assert await users(command="mask", status="ok") == [1]


async def test_guild_isolation(qlog: QueryLog) -> None:
    await qlog.record(rec(1, guild=GUILD_A, text="a"))
    await qlog.record(rec(1, guild=GUILD_B, text="b"))
    await qlog.record(rec(1, guild=None, text="dm"))
    for guild, text in ((GUILD_A, "a"), (GUILD_B, "b")):
        rows = await qlog.recent(QueryFilter(guild_id=guild, user_id=1, limit=None))
        assert [r.input_text for r in rows] == [text]
        assert (await qlog.stats(guild)).total == 1
        cells = list(csv.DictReader(io.StringIO(await exported(qlog, QueryFilter(guild)))))
        assert [row["input_text"] for row in cells] == [text]
    # None names the direct-message rows only (the owner's `logs export --dms`), never "all".
    dms = await qlog.recent(QueryFilter(guild_id=None, limit=None))
    assert [r.input_text for r in dms] == ["dm"]
    with pytest.raises(TypeError):
        QueryFilter(guild_id="1")  # type: ignore[arg-type]


async def test_concurrent_records_share_few_commits(db: Database, qlog: QueryLog) -> None:
    before = db.commit_count
    results = await asyncio.gather(*(qlog.record(rec(i, text=f"t{i}")) for i in range(200)))
    assert results == [True] * 200
    commits = db.commit_count - before
    assert 1 <= commits <= 5, commits
    assert raw_rows(db.path, "SELECT count(*) FROM queries") == [(200,)]
    assert {r[0] for r in raw_rows(db.path, "SELECT user_id FROM queries")} == set(range(200))


async def test_row_is_durable_when_record_returns(db: Database, qlog: QueryLog) -> None:
    for i in range(3):
        assert await qlog.record(rec(i, text=f"row {i}"))
        # Another connection (another process, after a crash) sees it immediately.
        assert raw_rows(db.path, "SELECT input_text FROM queries ORDER BY id")[-1] == (f"row {i}",)


async def test_clean_close_flushes_pending_rows(db: Database) -> None:
    qlog = QueryLog(db)
    tasks = [asyncio.create_task(qlog.record(rec(i))) for i in range(50)]
    await asyncio.sleep(0)  # every task has queued its row; the writer has not run yet
    await qlog.aclose()
    assert [t.result() for t in tasks] == [True] * 50
    assert raw_rows(db.path, "SELECT count(*) FROM queries") == [(50,)]
    assert await qlog.record(rec(99)) is False  # closed: refused, not raised
    await qlog.aclose()


async def test_cancelled_caller_row_is_still_written(db: Database, qlog: QueryLog) -> None:
    task = asyncio.create_task(qlog.record(rec(5, text="cancelled caller")))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await qlog.record(rec(6))
    assert raw_rows(db.path, "SELECT input_text FROM queries WHERE user_id = 5") == [
        ("cancelled caller",)
    ]


async def test_invalid_record_returns_false(qlog: QueryLog, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.ERROR, logger="core.storage.querylog"):
        assert await qlog.record(rec(status="exploded")) is False
    assert "could not encode" in caplog.text
    assert await qlog.record(rec()) is True  # a bad row never poisons the next batch


@pytest.mark.parametrize("mode", ["full", "hashed", "none"])
async def test_log_inputs_modes(db: Database, mode: str) -> None:
    async with QueryLog(db, log_inputs=mode, hash_salt=b"pepper") as qlog:  # type: ignore[arg-type]
        await qlog.record(rec(text="secret essay", output_summary="secret essay, filled"))
        [row] = await qlog.recent(QueryFilter(guild_id=GUILD_A))
    expected = {
        "full": ("secret essay", "secret essay, filled"),
        "hashed": (hashlib.sha256(b"peppersecret essay").hexdigest(), ""),
        "none": ("", ""),
    }[mode]
    assert (row.input_text, row.output_summary) == expected
    assert row.command == "mask" and row.options == {"top_k": 5}  # metadata always kept
    assert ("secret essay" in str(raw_rows(db.path))) == (mode == "full")


@pytest.mark.parametrize("mode", ["full", "hashed", "none"])
async def test_a_dictionary_word_is_never_kept_as_a_digest(db: Database, mode: str) -> None:
    """A quiz guess is one word: its digest is reversed by hashing a word list, salt or not,
    so under "hashed" nothing of it is kept (issue 23); other inputs are still hashed."""
    async with QueryLog(db, log_inputs=mode, hash_salt=b"pepper") as qlog:  # type: ignore[arg-type]
        for user, words in ((1, True), (2, False)):
            await qlog.record(QueryRecord(
                guild_id=GUILD_A, channel_id=7, user_id=user, command="quiz guess",
                options={"guess": "walrus"}, input_text="walrus", status="ok",
                free_text_options=frozenset({"guess"}), dictionary_words=words))
        guess, other = sorted(await qlog.recent(QueryFilter(guild_id=GUILD_A)),
                              key=lambda r: r.user_id)
    digest = hashlib.sha256(b"pepperwalrus").hexdigest()
    kept = {"full": "walrus", "hashed": "", "none": ""}[mode]
    assert (guess.input_text, guess.options) == (kept, {"guess": kept})
    assert other.input_text == {"full": "walrus", "hashed": digest, "none": ""}[mode]


async def test_sql_looking_input_is_data(db: Database, qlog: QueryLog) -> None:
    evil = "'; DROP TABLE queries; --"
    assert await qlog.record(rec(1, text=evil, command=evil))
    assert await qlog.record(rec(2))
    [row] = await qlog.recent(QueryFilter(guild_id=GUILD_A, command=evil))
    assert (row.input_text, row.user_id) == (evil, 1)
    assert await qlog.recent(QueryFilter(guild_id=GUILD_A, command="' OR 1=1 --")) == []
    assert raw_rows(db.path, "SELECT count(*) FROM queries") == [(2,)]


# ------------------------------------------------------------------ reading


async def test_csv_export_round_trip_and_formula_guard(qlog: QueryLog) -> None:
    texts = ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "'quoted", "plain, with comma",
             "line\nbreak \"quotes\"", "ünïcødé 🤖"]
    for i, text in enumerate(texts):
        await qlog.record(rec(i, text=text, at=T0 + timedelta(seconds=i), total_ms=10.5 + i,
                              queue_ms=None, inference_ms=2.25, error="=cmd|' /C calc'!A0",
                              model_id="distilbert"))
    rows = await qlog.recent(QueryFilter(guild_id=GUILD_A, limit=None))
    text = await exported(qlog, QueryFilter(guild_id=GUILD_A, limit=None))

    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    parsed = list(reader)
    assert len(parsed) == len(rows) == len(texts)
    for cells, row in zip(parsed, rows):
        # No cell a spreadsheet would execute, except the ids' ="digits" (text, all digits).
        assert not any(v.startswith(("=", "+", "-", "@")) for k, v in cells.items()
                       if k not in ("guild_id", "channel_id", "user_id"))
        assert cells["guild_id"] == f'="{GUILD_A}"'
        assert int(cells["id"]) == row.id
        assert from_db_time(cells["created_at"]) == row.created_at
        assert int(unescape_csv_cell(cells["guild_id"])) == row.guild_id
        assert int(unescape_csv_cell(cells["user_id"])) == row.user_id
        assert unescape_csv_cell(cells["input_text"]) == row.input_text
        assert unescape_csv_cell(cells["error"]) == row.error
        assert unescape_csv_cell(cells["command"]) == row.command
        assert cells["options"] == '{"top_k": 5}'
        assert float(cells["total_ms"]) == row.total_ms
        assert float(cells["inference_ms"]) == row.inference_ms == 2.25
        assert cells["queue_ms"] == "" and row.queue_ms is None
    by_user = {int(unescape_csv_cell(c["user_id"])): c["input_text"] for c in parsed}
    assert by_user[0] == "'=HYPERLINK(\"http://x\")"
    assert by_user[4] == "''quoted"
    assert by_user[5] == "plain, with comma"


async def test_stats_on_known_data(qlog: QueryLog) -> None:
    totals = [10.0, 20.0, 30.0, 40.0, 1000.0]
    statuses = ["ok", "ok", "ok", "user_error", "failed"]
    users = [1, 1, 2, 3, 1]
    commands = ["mask", "mask", "qa", "mask", "generate"]
    for i in range(5):
        await qlog.record(rec(users[i], command=commands[i], status=statuses[i],
                              total_ms=totals[i], at=T0 + timedelta(hours=i)))
    await qlog.record(rec(9, status="refused", total_ms=None, at=T0 + timedelta(hours=5)))
    await qlog.record(rec(9, guild=GUILD_B, total_ms=5.0))  # another guild: not counted

    stats = await qlog.stats(GUILD_A)
    assert stats.total == 6
    assert stats.by_command == {"mask": 4, "qa": 1, "generate": 1}
    assert stats.by_user == {1: 3, 9: 1, 2: 1, 3: 1}
    assert stats.by_status == {s.value: {"ok": 3, "user_error": 1, "failed": 1, "refused": 1}
                               .get(s.value, 0) for s in Status}
    assert list(stats.by_status) == list(STATUS_VALUES)
    assert stats.student_error_rate == pytest.approx(1 / 6)  # user_error only
    assert stats.server_error_rate == pytest.approx(1 / 6)  # failed
    assert stats.refusal_rate == pytest.approx(1 / 6)  # refused
    assert stats.error_rate == pytest.approx(3 / 6)
    assert stats.median_total_ms == 30.0
    assert stats.p95_total_ms == pytest.approx(40.0 + 0.8 * 960.0)  # rank 3.8 of 0..4

    later = await qlog.stats(GUILD_A, since=T0 + timedelta(hours=3))
    assert later.total == 3 and later.median_total_ms == 520.0
    empty = await qlog.stats(424242)
    assert (empty.total, empty.error_rate, empty.median_total_ms, empty.p95_total_ms) == (
        0, 0.0, None, None)


# ------------------------------------------------------------------ deleting


async def test_delete_user(qlog: QueryLog) -> None:
    for guild in (GUILD_A, GUILD_B):
        for user in (1, 2):
            await qlog.record(rec(user, guild=guild))
            await qlog.record(rec(user, guild=guild))

    assert await qlog.delete_user(GUILD_A, 1) == 2
    assert [r.user_id for r in await qlog.recent(QueryFilter(guild_id=GUILD_A))] == [2, 2]
    assert len(await qlog.recent(QueryFilter(guild_id=GUILD_B, user_id=1))) == 2

    with pytest.raises(ValueError):  # no guild: refused unless every guild is asked for
        await qlog.delete_user(None, 2)
    with pytest.raises(ValueError):
        await qlog.delete_user(GUILD_A, 2, all_guilds=True)
    assert len(await qlog.recent(QueryFilter(guild_id=GUILD_B, user_id=2))) == 2
    assert await qlog.delete_user(None, 2, all_guilds=True) == 4
    assert await qlog.recent(QueryFilter(guild_id=GUILD_A)) == []
    assert [r.user_id for r in await qlog.recent(QueryFilter(guild_id=GUILD_B))] == [1, 1]
    assert await qlog.delete_user(None, 2, all_guilds=True) == 0


async def test_retention_purge(db: Database) -> None:
    now = datetime(2025, 6, 1, tzinfo=timezone.utc)
    store = SettingsStore(db)
    await store.set_retention(GUILD_B, 7)
    async with QueryLog(db, default_retention_days=30) as qlog:
        for guild in (GUILD_A, GUILD_B, None):
            for days_old in (1, 10, 40):
                await qlog.record(rec(days_old, guild=guild, at=now - timedelta(days=days_old)))
        assert await qlog.purge(now) == 4  # A: 40; B: 10 and 40; DM: 40

        left = sorted(raw_rows(db.path, "SELECT coalesce(guild_id, 0), user_id FROM queries"))
        assert left == [(0, 1), (0, 10), (GUILD_A, 1), (GUILD_A, 10), (GUILD_B, 1)]
        assert await qlog.purge(now) == 0


# ------------------------------------------------------------------ failing writes


def add_failing_trigger(path: str) -> None:
    # Root ignores file permissions, so a trigger is the reliable way to make writes fail.
    sql_exec(path, "CREATE TRIGGER refuse BEFORE INSERT ON queries "
                   "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")


async def test_failed_write_returns_false_and_is_retried(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    async with QueryLog(db, retry_interval_s=3600) as qlog:
        add_failing_trigger(db.path)
        with caplog.at_level(logging.WARNING, logger="core.storage.querylog"):
            assert await qlog.record(rec(1, text="first")) is False
            assert await qlog.record(rec(2, text="second")) is False
        assert "write failed" in caplog.text
        assert qlog.pending_retry == 2
        assert raw_rows(db.path, "SELECT count(*) FROM queries") == [(0,)]

        sql_exec(db.path, "DROP TRIGGER refuse")
        assert await qlog.record(rec(3, text="third")) is True  # carries the buffered rows
        assert qlog.pending_retry == 0
        texts = [r[0] for r in raw_rows(db.path, "SELECT input_text FROM queries ORDER BY id")]
        assert texts == ["first", "second", "third"]


async def test_buffered_rows_retried_by_timer_and_on_close(db: Database) -> None:
    qlog = QueryLog(db, retry_interval_s=0.05)
    add_failing_trigger(db.path)
    assert await qlog.record(rec(1)) is False
    sql_exec(db.path, "DROP TRIGGER refuse")
    for _ in range(100):  # no new record: the writer retries on its own
        if qlog.pending_retry == 0:
            break
        await asyncio.sleep(0.02)
    assert qlog.pending_retry == 0
    assert raw_rows(db.path, "SELECT count(*) FROM queries") == [(1,)]

    qlog2 = QueryLog(db, retry_interval_s=3600)
    add_failing_trigger(db.path)
    assert await qlog2.record(rec(2)) is False
    sql_exec(db.path, "DROP TRIGGER refuse")
    await qlog2.aclose()  # the last attempt on close writes it
    assert raw_rows(db.path, "SELECT count(*) FROM queries") == [(2,)]
    await qlog.aclose()


async def test_retry_buffer_is_bounded(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    async with QueryLog(db, retry_limit=3, retry_interval_s=3600) as qlog:
        add_failing_trigger(db.path)
        with caplog.at_level(logging.ERROR, logger="core.storage.querylog"):
            for i in range(5):
                assert await qlog.record(rec(i)) is False
        assert qlog.pending_retry == 3 and qlog.dropped == 2
        assert "buffer full" in caplog.text
        sql_exec(db.path, "DROP TRIGGER refuse")
        assert await qlog.flush() is True
    assert [r[0] for r in raw_rows(db.path, "SELECT user_id FROM queries ORDER BY id")] == [2, 3, 4]


def audit_inserts(path: str) -> None:
    """Record every user id ever inserted into queries, in a table a delete does not touch:
    "never written" and "written, then deleted" look alike in `queries` alone."""
    sql_exec(path, "CREATE TABLE inserted (user_id INTEGER)")
    sql_exec(path, "CREATE TRIGGER audit AFTER INSERT ON queries "
                   "BEGIN INSERT INTO inserted VALUES (NEW.user_id); END")


async def test_delete_user_also_drops_buffered_rows(db: Database) -> None:
    audit_inserts(db.path)
    async with QueryLog(db, retry_interval_s=3600) as qlog:
        add_failing_trigger(db.path)
        assert await qlog.record(rec(1)) is False
        assert await qlog.record(rec(2)) is False
        sql_exec(db.path, "DROP TRIGGER refuse")
        # Row 1 is dropped from the buffer (never written), row 2 is written.
        assert await qlog.delete_user(GUILD_A, 1) == 1
        assert qlog.pending_retry == 0
    assert raw_rows(db.path, "SELECT user_id FROM queries") == [(2,)]
    assert raw_rows(db.path, "SELECT user_id FROM inserted") == [(2,)]


async def test_a_buffered_row_deleted_while_the_storage_still_fails_never_appears(
        db: Database) -> None:
    """Issue 28: /mydata delete while inserts still fail, then the storage recovers. The
    buffered row must be dropped at the delete, not written at the recovery."""
    audit_inserts(db.path)
    async with QueryLog(db, retry_interval_s=3600) as qlog:
        add_failing_trigger(db.path)
        assert await qlog.record(rec(1, text="erase me")) is False
        assert await qlog.record(rec(2, text="keep me")) is False
        assert await qlog.delete_user(GUILD_A, 1) == 1  # the storage still refuses inserts
        assert qlog.pending_retry == 1
        sql_exec(db.path, "DROP TRIGGER refuse")
        assert await qlog.flush() is True  # recovery: what is left in the buffer is written
    assert raw_rows(db.path, "SELECT user_id, input_text FROM queries") == [(2, "keep me")]
    assert raw_rows(db.path, "SELECT user_id FROM inserted") == [(2,)]


# ------------------------------------------------------------------ text search (FTS5, V11)


def _index_bytes(path: str | Path) -> int:
    [(size,)] = raw_rows(path, "SELECT coalesce(sum(length(block)), 0) FROM queries_text_data")
    return size


async def test_text_search_reads_the_index_and_keeps_instr_semantics(qlog, db) -> None:
    texts = ["A gorgeous, witty movie", "GORGEOUS scenery", "plain text", 'he said "hi" OR no',
             "ab ok"]
    for text in texts:
        await qlog.record(rec(text=text))
    await qlog.record(rec(guild=GUILD_B, text="gorgeous elsewhere"))
    await qlog.flush()

    async def found(term: str) -> list[str]:
        rows = await qlog.recent(QueryFilter(guild_id=GUILD_A, text=term))
        return sorted(r.input_text for r in rows)

    assert await found("gorgeous") == ["A gorgeous, witty movie", "GORGEOUS scenery"]
    assert await found("orgeo") == ["A gorgeous, witty movie", "GORGEOUS scenery"]  # substring
    assert await found('"hi" OR') == ['he said "hi" OR no']  # typed text, not FTS syntax
    assert await found("b ") == ["ab ok"]  # under three characters: no index, same rule
    assert await qlog.count(QueryFilter(guild_id=GUILD_A, text="OR no")) == 1
    where, params = QueryFilter(guild_id=GUILD_A, text="gorgeous").where()
    with closing(sqlite3.connect(db.path)) as conn:
        plan = conn.execute(f"EXPLAIN QUERY PLAN SELECT id FROM queries WHERE {where}",
                            params).fetchall()
    assert any("queries_text VIRTUAL TABLE INDEX" in str(row) for row in plan), plan


async def test_deleted_text_leaves_the_index_with_its_row(qlog, db) -> None:
    """/mydata delete and the retention purge: the index's entries for the deleted text go at
    once (merged away, not only masked by a deletion marker)."""
    for i in range(150):
        await qlog.record(rec(user=1, text=f"secret essay number {i} about zebras {i * 7919}"))
    await qlog.record(rec(user=2, text="kept"))
    await qlog.flush()
    before = _index_bytes(db.path)
    assert await qlog.delete_user(GUILD_A, 1) == 150
    assert await qlog.recent(QueryFilter(guild_id=GUILD_A, text="zebras")) == []
    assert _index_bytes(db.path) < before / 10
    # The purge too.
    old = T0 - timedelta(days=400)
    for i in range(150):
        await qlog.record(rec(user=3, text=f"old essay {i} on giraffes {i * 104729}", at=old))
    await qlog.flush()
    before = _index_bytes(db.path)
    assert await qlog.purge(now=T0) == 150
    assert _index_bytes(db.path) < before / 10
    assert [r.input_text for r in await qlog.recent(QueryFilter(guild_id=GUILD_A, text="kep"))
            ] == ["kept"]
