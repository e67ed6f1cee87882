"""The export encoding at its edges, without a bot: where a size limit cuts, how a stream is
chunked, what an escape catches, and that an export never writes to the database it reads.

tests/test_exports.py compares every route's file; these are the fast checks a mutation run
leans on (docs/MUTATION.md).
"""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from core.storage.database import Database
from core.storage.querylog import QueryFilter, QueryLog, QueryRecord, escape_csv_cell
from core.storage.querylog.export import (
    csv_chunks,
    csv_header,
    csv_line,
    json_chunks,
    write_csv,
)
from core.storage.querylog.rows import QueryRow

GUILD = 42
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


#: Long enough that a row's line is longer than the header's.
TEXT = "the [MASK] sat on the mat " * 8


def _row(n: int, text: str = TEXT, **options: object) -> QueryRow:
    return QueryRow(id=n, created_at=T0, guild_id=GUILD, channel_id=7, user_id=5,
                    command="mask", options=options or {"top_k": 5}, input_text=text,
                    status="ok", output_summary="cat 0.50", error="", model_id="m",
                    queue_ms=1.0, inference_ms=2.0, total_ms=3.0)


async def _aiter(rows):
    for row in rows:
        yield row


async def _chunks(rows, chunk_bytes: int) -> list[bytes]:
    return [c async for c in csv_chunks(_aiter(rows), chunk_bytes=chunk_bytes)]


# --------------------------------------------------------------------------- cells

def test_a_cell_starting_with_a_carriage_return_is_escaped():
    assert escape_csv_cell("\rhello") == "'\rhello"
    assert escape_csv_cell("\thello") == "'\thello"
    assert escape_csv_cell("hello\r") == "hello\r"


def test_options_are_sorted_json_with_their_own_characters():
    line = csv_line(_row(1, top_k=5, model="città", a=1))
    assert '"{""a"": 1, ""model"": ""città"", ""top_k"": 5}"' in line


async def test_the_json_export_keeps_characters_as_they_are():
    data = b"".join([c async for c in json_chunks(_aiter([_row(1, "perché"), _row(2)]))])
    assert "perché".encode() in data and b"\\u00e9" not in data
    objects = json.loads(data)
    assert [o["id"] for o in objects] == [1, 2] and objects[0]["input_text"] == "perché"


# --------------------------------------------------------------------------- streamed chunks

async def test_chunks_end_at_the_first_line_that_reaches_the_chunk_size():
    """Every row line has the same length L here; the header is shorter. A chunk is flushed
    as soon as it holds `chunk_bytes` characters, so chunk_bytes = 2L makes the first chunk
    the header and two lines, and every later one exactly two lines."""
    rows = [_row(n) for n in range(1, 8)]
    length = len(csv_line(rows[0]))
    assert {len(csv_line(r)) for r in rows} == {length} and len(csv_header()) < length
    chunks = await _chunks(rows, 2 * length)
    assert [c.count(b"\r\n") for c in chunks] == [3, 2, 2, 1]
    assert b"".join(chunks).decode("utf-8") == csv_header() + "".join(map(csv_line, rows))


async def test_a_new_chunk_counts_from_zero():
    rows = [_row(n) for n in range(1, 8)]
    length = len(csv_line(rows[0]))
    chunks = await _chunks(rows, 2 * length + 1)
    # The header and two lines pass 2L+1; after that, three lines are needed each time.
    assert [c.count(b"\r\n") for c in chunks] == [3, 3, 2]


async def test_a_line_longer_than_the_chunk_size_is_never_split():
    """The chunk that takes it ends after it; the next row starts a new chunk."""
    rows = [_row(1, "short"), _row(2, "x" * 600), _row(3, "short")]
    chunks = await _chunks(rows, 500)
    assert [c.count(b"\r\n") for c in chunks] == [3, 1]
    assert chunks[0].endswith(csv_line(rows[1]).encode("utf-8"))


# --------------------------------------------------------------------------- write_csv

@pytest.fixture
async def log_file(tmp_path: Path) -> Path:
    db = await Database.open(tmp_path / "bot.db")
    async with QueryLog(db) as qlog:
        for n in range(5):
            await qlog.record(QueryRecord(guild_id=GUILD, channel_id=7, user_id=5,
                                          command="mask", options={"top_k": 5},
                                          input_text=f"row {n} [MASK]", status="ok"))
    await db.aclose()
    return tmp_path / "bot.db"


def _export(path: Path, *, limit: int | None = None, max_bytes: int | None = None):
    out = io.BytesIO()
    result = write_csv(path, QueryFilter(GUILD, limit=limit), out, max_bytes=max_bytes)
    return result, out.getvalue()


async def test_a_limit_exports_only_the_newest_rows(log_file):
    result, data = _export(log_file, limit=2)
    assert (result.rows, result.matching) == (2, 2)
    assert data.decode("utf-8").count("[MASK]") == 2 and "row 4" in data.decode("utf-8")


async def test_a_size_limit_keeps_every_row_that_fits_exactly(log_file):
    _, whole = _export(log_file)
    lines = whole.decode("utf-8").splitlines(keepends=True)
    exact = len("".join(lines[:3]).encode("utf-8"))  # the header and two rows
    result, data = _export(log_file, max_bytes=exact)
    assert (result.rows, result.matching, result.bytes) == (2, 5, exact)
    assert data == "".join(lines[:3]).encode("utf-8") and not result.complete
    result, _ = _export(log_file, max_bytes=exact - 1)
    assert (result.rows, result.bytes) == (1, len("".join(lines[:2]).encode("utf-8")))


async def test_a_size_limit_below_the_header_writes_nothing_and_says_so(log_file):
    header = csv_header().encode("utf-8")
    result, data = _export(log_file, max_bytes=len(header) - 1)
    assert (result.rows, result.matching, result.bytes, data) == (0, 5, 0, b"")
    result, data = _export(log_file, max_bytes=len(header))
    assert (result.rows, result.matching, result.bytes, data) == (0, 5, len(header), header)


def test_an_in_memory_database_cannot_be_exported():
    with pytest.raises(ValueError) as refused:
        write_csv(":memory:", QueryFilter(GUILD), io.BytesIO())
    assert str(refused.value) == (
        "an export reads the database file; an in-memory database has none")


def test_an_export_never_creates_or_writes_the_database(tmp_path):
    missing = tmp_path / "nothing.db"
    with pytest.raises(sqlite3.OperationalError):
        write_csv(missing, QueryFilter(GUILD), io.BytesIO())
    assert not missing.exists()
