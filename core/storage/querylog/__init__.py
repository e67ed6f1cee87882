"""The query log: one row per interaction outcome, written durably, read per guild.

One idea per module:

- `rows`: the one row builder (`RowBuilder.build_row`): a `QueryRecord` -> stored values,
  applying ``log_inputs`` to the input text, free-text options, output summary and name, and
  making every text storable (lone surrogates -> U+FFFD).
- `writer`: the group-commit writer; a row that cannot be stored is set aside, never blocks.
- `reads`: the one filter (`QueryFilter`), pages of rows, every row, statistics per
  `core.outcomes.Status`.
- `export`: the one CSV encoding (and JSON), written from SQLite in a worker thread or streamed.
- `student_data`: the log's two stores of student data (rows, feedback votes), for
  `core.storage.student_data.StudentData`.
- `service`: `QueryLog`, the object the bot holds, over all of the above.
"""

from __future__ import annotations

from core.outcomes import Status
from core.privacy import LogInputs
from core.storage.querylog.export import (
    CSV_COLUMNS,
    ExportResult,
    csv_chunks,
    escape_csv_cell,
    json_chunks,
    unescape_csv_cell,
    write_csv,
)
from core.storage.querylog.reads import STATUS_GROUPS, QueryFilter, Reader, RowsPage, Stats
from core.storage.querylog.rows import (
    STATUSES,
    QueryRecord,
    QueryRow,
    RowBuilder,
    StoredRow,
    from_db_time,
    storable_text,
    to_db_time,
)
from core.storage.querylog.service import QueryLog
from core.storage.querylog.student_data import FeedbackVotes, QueryRows

__all__ = [
    "CSV_COLUMNS", "STATUSES", "STATUS_GROUPS", "ExportResult", "FeedbackVotes", "LogInputs",
    "QueryFilter", "QueryLog", "QueryRecord", "QueryRow", "QueryRows", "Reader", "RowBuilder",
    "RowsPage", "Stats", "Status", "StoredRow", "csv_chunks", "escape_csv_cell", "from_db_time",
    "json_chunks", "storable_text", "to_db_time", "unescape_csv_cell", "write_csv",
]  # fmt: skip
