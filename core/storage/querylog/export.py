"""The query log's exports: the one CSV encoding (and the JSON one), for every route.

`/logs export` and `tlm-bot logs export` write with `write_csv`; the dashboard streams
`csv_chunks` / `json_chunks` over the rows `reads.iter_rows` reads. Both encode each row with
`csv_cells`, so a file looks the same whichever route made it.

Why `write_csv` runs in a worker thread with its own read-only connection: a 300,000-row export
built on the event loop stalled the bot for seconds and held ~540 MB. Here it reads one
snapshot (one read transaction; WAL lets the bot keep writing meanwhile) row by row from
SQLite's cursor, and writes each row to the output as it goes, so memory does not grow with
the log. The rows matching the filter are counted first, in the same snapshot, and a
`max_bytes` limit (Discord's attachment size) stops the export at the last whole row that fits:
the result says how many of how many rows were written, so the reply can say how to get the
rest.

What the file looks like, so that spreadsheets show it right and tools can read it back:

- UTF-8 with a byte-order mark, so Excel decodes names and non-English text.
- Discord ids (guild_id, channel_id, user_id) are written as ``="123456789012345678"``:
  spreadsheets show that as text and keep all 19 digits (a plain number is rounded to 15
  significant digits). `unescape_csv_cell` turns it back into the digits.
- A text cell that a spreadsheet would run as a formula gets a leading ``'``: when its first
  visible character (after spaces, NBSP, zero-width characters and line breaks) is ``=``, ``+``,
  ``-``, ``@`` or their full-width forms (``＝ ＋ － ＠``), or it starts with a tab or carriage
  return. A cell that itself starts with ``'`` gets one too, so `unescape_csv_cell` (drop one
  leading ``'``) restores every text cell exactly.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from core.storage.querylog.reads import QueryFilter
from core.storage.querylog.rows import COLUMNS, COLUMNS_SQL, QueryRow, row_from_db, to_db_time

CSV_COLUMNS: tuple[str, ...] = COLUMNS
_TEXT_COLUMNS = frozenset({"user_name", "command", "options", "input_text", "status",
                           "output_summary", "error", "model_id"})
#: Snowflakes: 17-19 digits, more than a spreadsheet's 15 significant digits.
_ID_COLUMNS = frozenset({"guild_id", "channel_id", "user_id"})
BOM = "\ufeff"

_FORMULA_STARTS = frozenset("=+-@\uff1d\uff0b\uff0d\uff20")
# Characters a spreadsheet skips before deciding that a cell is a formula, beyond str.isspace()
# (which covers spaces, NBSP, tabs and line breaks).
_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad")
_ID_CELL = re.compile(r'="(\d+)"')


def _first_visible(text: str) -> str:
    for char in text:
        if not (char.isspace() or char in _INVISIBLE):
            return char
    return ""


def escape_csv_cell(text: str) -> str:
    """A text cell no spreadsheet runs as a formula (see the module docstring)."""
    if text.startswith(("'", "\t", "\r")) or _first_visible(text) in _FORMULA_STARTS:
        return "'" + text
    return text


def id_cell(value: int) -> str:
    return f'="{int(value)}"'


def unescape_csv_cell(text: str) -> str:
    """Undo `escape_csv_cell` and `id_cell` (for tools that read our exports back)."""
    match = _ID_CELL.fullmatch(text)
    if match:
        return match.group(1)
    return text[1:] if text.startswith("'") else text


def csv_cells(row: QueryRow) -> list[str]:
    """One CSV line's cells, in `CSV_COLUMNS` order: the only encoding of a row for a
    spreadsheet (ids as text, every text cell escaped)."""
    values = stored_values(row)
    cells = []
    for name in CSV_COLUMNS:
        value = values[name]
        if value is None:
            cells.append("")
        elif name in _ID_COLUMNS:
            cells.append(id_cell(value))
        elif name in _TEXT_COLUMNS:
            cells.append(escape_csv_cell(str(value)))
        else:
            cells.append(repr(value) if isinstance(value, float) else str(value))
    return cells


def stored_values(row: QueryRow) -> dict[str, Any]:
    """`row` as its columns hold it (times as stored, options as canonical JSON text)."""
    values = {name: getattr(row, name) for name in COLUMNS}
    values["created_at"] = to_db_time(row.created_at)
    values["options"] = json.dumps(dict(row.options), sort_keys=True, ensure_ascii=False)
    return values


def json_object(row: QueryRow) -> dict[str, Any]:
    """`row` for the JSON export: options as an object, Discord ids as strings (Discord's own
    convention: a JavaScript number keeps only 15-16 significant digits)."""
    values = stored_values(row)
    values["options"] = dict(row.options)
    for name in _ID_COLUMNS:
        if values[name] is not None:
            values[name] = str(values[name])
    return values


def csv_header() -> str:
    """The first line of every CSV export: the byte-order mark, then the column names."""
    return BOM + _csv_line(CSV_COLUMNS)


def csv_line(row: QueryRow) -> str:
    return _csv_line(csv_cells(row))


async def csv_chunks(rows: AsyncIterable[QueryRow], *,
                     chunk_bytes: int = 64_000) -> AsyncIterator[bytes]:
    """The CSV export of `rows` as UTF-8 chunks of about `chunk_bytes`, for a streamed HTTP
    answer (the dashboard): the same bytes `write_csv` writes for the same rows."""
    buffer = [csv_header()]
    size = len(buffer[0])
    async for row in rows:
        line = csv_line(row)
        buffer.append(line)
        size += len(line)
        if size >= chunk_bytes:
            yield "".join(buffer).encode("utf-8")
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer).encode("utf-8")


async def json_chunks(rows: AsyncIterable[QueryRow]) -> AsyncIterator[bytes]:
    """The rows as one JSON array, one object per row (`json_object`), streamed."""
    yield b"["
    first = True
    async for row in rows:
        text = json.dumps(json_object(row), ensure_ascii=False)
        yield (text if first else ",\n" + text).encode("utf-8")
        first = False
    yield b"]\n"


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: `rows` of the `matching` rows (newest first), in `bytes` bytes."""

    rows: int
    matching: int
    bytes: int

    @property
    def complete(self) -> bool:
        return self.rows == self.matching


def write_csv(db_path: str | Path, f: QueryFilter, out: BinaryIO, *,
              max_bytes: int | None = None) -> ExportResult:
    """Write the rows matching `f` (newest first) to `out` as CSV; blocking, for a thread.

    Stops before the first row that would take the output past `max_bytes`.
    """
    if str(db_path) == ":memory:":
        raise ValueError("an export reads the database file; an in-memory database has none")
    uri = Path(db_path).resolve().as_uri() + "?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, isolation_level=None)) as conn:
        conn.row_factory = sqlite3.Row
        conn.execute("BEGIN")  # one snapshot for the count and the rows
        where, params = f.where()
        [[matching]] = conn.execute(f"SELECT count(*) FROM queries WHERE {where}", params)
        if f.limit is not None:
            matching = min(matching, f.limit)
        header = csv_header().encode("utf-8")
        if max_bytes is not None and len(header) > max_bytes:
            return ExportResult(0, matching, 0)
        out.write(header)
        size, rows = len(header), 0
        for line in _lines(conn, f, where, params):
            data = line.encode("utf-8")
            if max_bytes is not None and size + len(data) > max_bytes:
                break
            out.write(data)
            size += len(data)
            rows += 1
        conn.execute("COMMIT")
    return ExportResult(rows, matching, size)


def _lines(conn: sqlite3.Connection, f: QueryFilter, where: str,
           params: list[Any]) -> Iterator[str]:
    sql = (f"SELECT {COLUMNS_SQL} FROM queries WHERE {where}"
           " ORDER BY created_at DESC, id DESC LIMIT ?")
    cursor = conn.execute(sql, [*params, f.limit if f.limit is not None else -1])
    while page := cursor.fetchmany(500):
        for row in page:
            yield csv_line(row_from_db(row))


def _csv_line(cells: list[str] | tuple[str, ...]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()
