"""The query log: one row per interaction outcome, written durably, read per guild.

One idea per module:

- `rows`: the one row builder (`RowBuilder.build_row`): a `QueryRecord` -> stored values,
  applying ``log_inputs`` to the input text, free-text options, output summary and name, and
  making every text storable (lone surrogates -> U+FFFD).
- `writer`: the group-commit writer; a row that cannot be stored is set aside, never blocks.
- `reads`: filters, the latest rows, statistics per `core.outcomes.Status`.
- `export`: CSV export streamed from SQLite in a worker thread.
- `service`: `QueryLog`, the object the bot holds, over all of the above.
"""

from __future__ import annotations

from core.outcomes import Status
from core.storage.querylog.export import (
    CSV_COLUMNS,
    ExportResult,
    escape_csv_cell,
    unescape_csv_cell,
    write_csv,
)
from core.storage.querylog.reads import STATUS_GROUPS, QueryFilter, Stats
from core.storage.querylog.rows import (
    STATUSES,
    LogInputs,
    QueryRecord,
    QueryRow,
    RowBuilder,
    StoredRow,
    from_db_time,
    storable_text,
    to_db_time,
)
from core.storage.querylog.service import QueryLog

__all__ = [
    "CSV_COLUMNS", "STATUSES", "STATUS_GROUPS", "ExportResult", "LogInputs", "QueryFilter",
    "QueryLog", "QueryRecord", "QueryRow", "RowBuilder", "Stats", "Status", "StoredRow",
    "escape_csv_cell", "from_db_time", "storable_text", "to_db_time", "unescape_csv_cell",
    "write_csv",
]  # fmt: skip
