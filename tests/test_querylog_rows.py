"""The query log's one row builder at unit level (no Discord): `log_inputs` on the free-text
options (the row builder alone, then a real SQLite file and its CSV export), times stored as
UTC, and a row read back whole. The end-to-end test (test_privacy_outcomes.py) drives every
command through the bot; these fail fast, in a second, when the filter breaks.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from core.storage.database import Database
from core.storage.querylog import QueryFilter, QueryLog, QueryRecord
from core.storage.querylog.rows import RowBuilder, from_db_time, to_db_time

MARK = "Zebrafinch"
SALT = b"pepper"
#: A /maskpair-like record: free text in two options (one of them a list the student typed),
#: fixed-choice and numeric options beside them, and a free-text option left empty.
FREE = {"sentence_a": f"The {MARK} is [MASK].", "targets": f"{MARK}, good", "note": None}
FIXED = {"top_k": 5, "model": "distilbert"}


def record(**changes: object) -> QueryRecord:
    values: dict = dict(
        guild_id=1, channel_id=2, user_id=3, command="maskpair", options={**FREE, **FIXED},
        free_text_options=frozenset(FREE), input_text=f"The {MARK} is [MASK].", status="ok",
        output_summary=f"{MARK} filled in", user_name=f"{MARK} the student",
    )
    values.update(changes)
    return QueryRecord(**values)


def kept(mode: str, text: str) -> str:
    return {"full": text, "hashed": hashlib.sha256(SALT + text.encode()).hexdigest(),
            "none": ""}[mode]


@pytest.mark.parametrize("mode", ["full", "hashed", "none"])
def test_free_text_options_are_kept_as_log_inputs_says(mode: str) -> None:
    row = RowBuilder(mode, hash_salt=SALT).build_row(record())  # type: ignore[arg-type]
    options = json.loads(row.options)
    assert options == {"sentence_a": kept(mode, FREE["sentence_a"]),
                       "targets": kept(mode, FREE["targets"]), "note": None, **FIXED}
    assert row.input_text == kept(mode, f"The {MARK} is [MASK].")
    # The summary echoes the input and the name identifies: kept only with "full".
    assert (row.output_summary, row.user_name) == (
        (f"{MARK} filled in", f"{MARK} the student") if mode == "full" else ("", ""))
    assert (MARK in repr(row)) == (mode == "full")


def test_an_option_not_declared_free_text_is_kept_as_is() -> None:
    """The declaration is what protects: only the options a command names as free text are
    filtered (a command's own declaration lists every string option without fixed choices)."""
    row = RowBuilder("none").build_row(record(free_text_options=frozenset({"sentence_a"})))
    assert json.loads(row.options)["targets"] == FREE["targets"]
    assert json.loads(row.options)["sentence_a"] == ""


async def test_none_leaves_no_trace_in_the_database_file_or_the_export(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    async with await Database.open(path) as db:
        async with QueryLog(db, log_inputs="none") as qlog:
            assert await qlog.record(record())
            assert await qlog.record(record(status="user_error", input_text=MARK))
            [*rows] = await qlog.recent(QueryFilter(guild_id=1))
            out = io.BytesIO()
            assert (await qlog.export_csv(QueryFilter(guild_id=1), out)).complete
    assert len(rows) == 2 and all(r.options["top_k"] == 5 for r in rows)
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    for where, data in (("database", stored), ("export", out.getvalue())):
        assert MARK.encode() not in data and MARK.lower().encode() not in data.lower(), where


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch):
    """The machine's local time zone set far from UTC, so "local" and "UTC" differ."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_times_are_stored_as_utc_whatever_the_machines_zone(far_from_utc) -> None:
    utc = datetime(2026, 3, 1, 12, 0, 30, 5, tzinfo=timezone.utc)
    stored = "2026-03-01T12:00:30.000005Z"
    assert to_db_time(utc) == stored
    assert to_db_time(utc.replace(tzinfo=None)) == stored  # naive means UTC, not local time
    assert to_db_time(utc.astimezone(timezone(timedelta(hours=-5)))) == stored
    assert from_db_time(stored) == utc


async def test_a_row_reads_back_whole(tmp_path: Path) -> None:
    at = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    async with await Database.open(tmp_path / "bot.db") as db:
        async with QueryLog(db) as qlog:
            assert await qlog.record(record(
                status="user_error", error="invalid_input", model_id="tiny", queue_ms=1.5,
                inference_ms=2.5, total_ms=4.0, created_at=at, interaction_id=77))
            assert await qlog.set_feedback(77, 3, -1)
            [row] = await qlog.recent(QueryFilter(guild_id=1))
    assert (row.created_at, row.guild_id, row.channel_id, row.user_id, row.user_name) == (
        at, 1, 2, 3, f"{MARK} the student")
    assert (row.command, row.options, row.input_text, row.output_summary) == (
        "maskpair", {**FREE, **FIXED}, f"The {MARK} is [MASK].", f"{MARK} filled in")
    assert (row.status, row.error, row.model_id) == ("user_error", "invalid_input", "tiny")
    assert (row.queue_ms, row.inference_ms, row.total_ms, row.feedback) == (1.5, 2.5, 4.0, -1)


def test_a_record_made_now_is_in_utc(far_from_utc) -> None:
    before = datetime.now(timezone.utc)
    made = record().created_at
    assert made is not None and made.utcoffset() == timedelta(0)
    assert before <= made <= datetime.now(timezone.utc)


def test_options_are_stored_as_sorted_json_with_their_own_characters() -> None:
    """One spelling per set of options (sorted keys), text as typed (no \\u escapes), and a
    value JSON cannot hold (a date) as its text rather than a failed row."""
    at = datetime(2026, 3, 1, tzinfo=timezone.utc)
    row = RowBuilder("full").build_row(record(options={"word": "café", "at": at, "k": 3}))
    assert row.options == f'{{"at": "{at}", "k": 3, "word": "café"}}'


@pytest.mark.parametrize("changes, message", [
    ({"status": "fine"}, "unknown status 'fine'"),
    ({"command": ""}, "empty command name"),
])
def test_a_bad_record_is_refused_with_its_reason(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RowBuilder().build_row(record(**changes))
    with pytest.raises(ValueError, match="not a stored time: '2026-03-01'"):
        from_db_time("2026-03-01")
