"""Reading labelled sentences: SST-2's TSV, or a CSV/TSV with `text` and `label` columns.

Every way a file can be wrong ends in an `InvalidInput` that names the file and the line, since
the reader is an instructor uploading a spreadsheet export, not a programmer. Uploads are read
through `read_capped`, which counts the bytes actually received instead of trusting the size a
client announced.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InvalidInput
from core.i18n import lazy, number

DEFAULT_LABEL_NAMES = ("negative", "positive")
#: Label names end up in every prediction shown on Discord; keep them short.
MAX_LABEL_NAME_CHARS = 40
_LABEL_SYNONYMS = {"neg": "negative", "pos": "positive"}


@dataclass(frozen=True)
class LabelledData:
    """Sentences and their 0/1 labels; `label_names[i]` is what label `i` means."""

    texts: tuple[str, ...]
    labels: tuple[int, ...]
    label_names: tuple[str, str] = DEFAULT_LABEL_NAMES

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")
        if any(label not in (0, 1) for label in self.labels):
            raise ValueError("labels must be 0 or 1")

    def class_counts(self) -> tuple[int, int]:
        positives = sum(self.labels)
        return len(self.labels) - positives, positives


# --------------------------------------------------------------------------- reading data


def load_labelled_data(path: Path | str, *, limit: int | None = None) -> LabelledData:
    """Read a labelled file from disk; `limit` keeps only the first rows (the notebook used 2000).

    Accepts SST-2's header-less `sentence<TAB>label` TSV, or a CSV/TSV whose header names `text`
    (or `sentence`) and `label` columns.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(lazy("No such file: {path}", path=path)) from None
    return _parse(data, path.name, max_rows=None, limit=limit)


def parse_labelled_bytes(data: bytes, filename: str, *, max_rows: int) -> LabelledData:
    """Parse an uploaded file (a Discord attachment); more than `max_rows` rows is an error.

    Unlike `load_labelled_data`'s `limit`, extra rows are refused rather than silently dropped,
    so a student never trains on a different set than the one they uploaded.
    """
    return _parse(data, filename, max_rows=max_rows, limit=None)


def _parse(data: bytes, filename: str, *, max_rows: int | None, limit: int | None) -> LabelledData:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInput(
            lazy(
                "{filename} is not UTF-8 text (line {line}); save it as UTF-8 and upload it "
                "again.",
                filename=filename, line=line)
        ) from None
    rows = _rows(text, filename, max_rows=max_rows, limit=limit)
    if not rows:
        raise InvalidInput(lazy("{filename} has no labelled rows.", filename=filename))
    labels, label_names = _labels(rows, filename)
    result = LabelledData(
        texts=tuple(row[1] for row in rows), labels=tuple(labels), label_names=label_names
    )
    negatives, positives = result.class_counts()
    if negatives == 0 or positives == 0:
        only = label_names[1] if negatives == 0 else label_names[0]
        raise InvalidInput(
            lazy(
                "Every row of {filename} is labelled {only}; a classifier needs examples of "
                "both classes.",
                filename=filename, only=repr(only))
        )
    return result


def _rows(
    text: str, filename: str, *, max_rows: int | None, limit: int | None
) -> list[tuple[int, str, str]]:
    """(line number, text, raw label) per data row; blank lines are skipped."""
    # Not str.splitlines(): it also splits on form feeds and U+2028, which can occur in text.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return []
    is_csv = filename.lower().endswith(".csv")
    delimiter = "," if is_csv else "\t"
    header = [cell.strip().lower() for cell in _split(lines[first], delimiter, is_csv)]
    has_header = any(name in ("text", "sentence", "label") for name in header)
    if not has_header and is_csv:
        raise InvalidInput(
            lazy(
                "{filename}: a CSV file needs a header row with `text` and `label` columns "
                "(line {first} is not one).",
                filename=filename, first=first + 1)
        )
    if has_header:
        text_col = _column(header, ("text", "sentence"), filename, first + 1)
        label_col = _column(header, ("label",), filename, first + 1)
        start = first + 1
    else:  # SST-2 style: sentence<TAB>label, the sentence may not contain a tab
        text_col, label_col, start = 0, 1, first

    rows: list[tuple[int, str, str]] = []
    if is_csv:
        # The csv module handles quoted fields spanning lines; line_num follows it.
        reader = csv.reader(io.StringIO("\n".join(lines[start:])))
        numbered = _csv_rows(reader, start, filename)
    else:
        numbered = (
            (start + i + 1, line.split("\t") if has_header else line.rsplit("\t", 1))
            for i, line in enumerate(lines[start:])
        )
    for line_no, cells in numbered:
        if not any(cell.strip() for cell in cells):
            continue
        if limit is not None and len(rows) >= limit:
            break
        if max_rows is not None and len(rows) >= max_rows:
            raise InvalidInput(
                lazy(
                    "{filename} has more than {max_rows} rows (line {line_no} is row "
                    "{max_rows2}); upload at most {max_rows}.",
                    filename=filename, max_rows=max_rows, line_no=line_no, max_rows2=max_rows + 1)
            )
        if len(cells) <= max(text_col, label_col):
            expected = "`sentence<TAB>label`" if not has_header else f"{len(header)} columns"
            raise InvalidInput(
                lazy(
                    "{filename} line {line_no}: expected {expected}, found {n_cells} "
                    "column(s).",
                    filename=filename, line_no=line_no, expected=expected, n_cells=len(cells))
            )
        sentence = cells[text_col].strip()
        label = cells[label_col].strip()
        if not sentence:
            raise InvalidInput(lazy(
                "{filename} line {line_no}: the text is empty.",
                filename=filename, line_no=line_no))
        if not label:
            raise InvalidInput(lazy(
                "{filename} line {line_no}: the label is empty.",
                filename=filename, line_no=line_no))
        rows.append((line_no, sentence, label))
    return rows


def _split(line: str, delimiter: str, is_csv: bool) -> list[str]:
    if is_csv:
        return next(_csv_rows(csv.reader([line]), 0, "the header"), (0, []))[1]
    return line.split(delimiter)


def _csv_rows(reader: Any, start: int, filename: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) per CSV record; the csv module's own errors become a clear message.

    The csv module refuses a field over `csv.field_size_limit()` characters (131,072 by
    default) and malformed quoting; either used to end in a generic apology.
    """
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line = start + reader.line_num
            if "field larger than field limit" in str(exc):
                raise InvalidInput(
                    lazy(
                        "{filename} line {line}: a cell is longer than {field_size_limit} "
                        "characters; shorten it (a sentence or a review is far shorter) or "
                        "check for an unclosed quote.",
                        filename=filename, line=line,
                        field_size_limit=number(csv.field_size_limit(), "#,##0"))
                ) from None
            raise InvalidInput(lazy(
                "{filename} line {line}: not valid CSV ({exc}).",
                filename=filename, line=line, exc=exc)) from None
        yield start + reader.line_num, cells


async def read_capped(chunks: AsyncIterable[bytes], limit: int, *, filename: str) -> bytes:
    """Collect a download, refusing it as soon as more than `limit` bytes have arrived.

    A client's announced size (a Discord attachment's `size`) is only a claim: this counts the
    bytes actually received, so a body far larger than announced costs at most `limit` bytes
    of memory before it is refused.
    """
    received = bytearray()
    async for chunk in chunks:
        received += chunk
        if len(received) > limit:
            raise InvalidInput(
                lazy(
                    "{filename} is larger than {limit} bytes, the upload limit; upload a "
                    "smaller file.",
                    filename=filename, limit=number(limit, "#,##0"))
            )
    return bytes(received)


def _column(header: list[str], names: tuple[str, ...], filename: str, line: int) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise InvalidInput(
        lazy(
            "{filename} line {line}: the header has no `{names}` column (found: {join}).",
            filename=filename, line=line, names=names[0],
            join=", ".join(h or "(empty)" for h in header))
    )


def _labels(rows: list[tuple[int, str, str]], filename: str) -> tuple[list[int], tuple[str, str]]:
    """Map raw labels to 0/1: numbers must be 0/1; two names are sorted (negative < positive)."""
    numeric = [row for row in rows if _is_number(row[2])]
    if numeric:
        for line_no, _, raw in numeric:
            if float(raw) not in (0.0, 1.0):  # "1.0" is how pandas writes an int column with NaN
                raise InvalidInput(
                    lazy(
                        "{filename} line {line_no}: label {raw} is not 0 or 1 (0 = negative, "
                        "1 = positive).",
                        filename=filename, line_no=line_no, raw=repr(raw))
                )
        if len(numeric) != len(rows):
            line_no, _, raw = next(row for row in rows if not _is_number(row[2]))
            raise InvalidInput(
                lazy(
                    "{filename} line {line_no}: label {raw} is a name, but other rows use "
                    "0/1; use one or the other.",
                    filename=filename, line_no=line_no, raw=repr(raw))
            )
        return [int(float(row[2])) for row in rows], DEFAULT_LABEL_NAMES

    seen: dict[str, int] = {}
    for line_no, _, raw in rows:
        name = _LABEL_SYNONYMS.get(raw.lower(), raw.lower())
        if name in seen:
            continue
        if len(seen) == 2:
            first, second = sorted(seen)
            raise InvalidInput(
                lazy(
                    "{filename} line {line_no}: a third label {raw}; the classifier has two "
                    "classes and earlier rows already use {first} and {second}.",
                    filename=filename, line_no=line_no, raw=repr(raw), first=repr(first),
                    second=repr(second))
            )
        if len(name) > MAX_LABEL_NAME_CHARS:
            raise InvalidInput(
                lazy(
                    "{filename} line {line_no}: label {raw}... is longer than {limit} characters.",
                    filename=filename, line_no=line_no, raw=repr(raw[:20]),
                    limit=MAX_LABEL_NAME_CHARS)
            )
        seen[name] = line_no
    names = sorted(seen)
    if len(names) == 1:
        names.append("")  # caught by the one-class check with a clearer message
    label_names = (names[0], names[1])
    index = {name: i for i, name in enumerate(label_names)}
    labels = [index[_LABEL_SYNONYMS.get(raw.lower(), raw.lower())] for _, _, raw in rows]
    return labels, label_names


def _is_number(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return True
