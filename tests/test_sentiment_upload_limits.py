"""Training data that hits a limit: a giant CSV cell, a body larger than its announced size.

(`/classifier train`.) Both used to end in the generic apology (or, for the body, read all of it
into memory first);
each must be refused with a message that says which limit and what to do.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator

import pytest

from core.errors import InvalidInput
from core.sentiment import parse_labelled_bytes, read_capped
from tests.test_sentiment_discord import (
    all_ephemeral,
    cdn_downloads,
    csv_bytes,
    reviews,
    sentiment_bot,
    upload,
)


def test_a_csv_cell_over_the_csv_modules_limit_names_the_line_and_the_limit():
    huge = "a" * (csv.field_size_limit() + 1)
    data = f'text,label\n"fine",1\n"{huge}",0\n'.encode()
    with pytest.raises(InvalidInput) as caught:
        parse_labelled_bytes(data, "reviews.csv", max_rows=100)
    message = caught.value.message
    assert message.startswith("reviews.csv line 3: a cell is longer than 131,072 characters")


async def endless(chunk: bytes, taken: list[int]) -> AsyncIterator[bytes]:
    while True:
        taken.append(len(chunk))
        yield chunk


async def test_read_capped_stops_at_the_limit_of_bytes_actually_received():
    taken: list[int] = []
    with pytest.raises(InvalidInput, match="larger than 1,000 bytes"):
        await read_capped(endless(b"x" * 300, taken), 1000, filename="big.csv")
    assert sum(taken) == 1200  # stopped at the first chunk past the limit, not at the end

    async def small() -> AsyncIterator[bytes]:
        for part in (b"text,", b"label\n"):
            yield part

    assert await read_capped(small(), 11, filename="ok.csv") == b"text,label\n"


async def test_an_attachment_that_understates_its_size_is_refused(tiny_config, tmp_path, caplog,
                                                                  monkeypatch):
    data = csv_bytes(reviews() * 20)
    assert len(data) > 2000
    async with sentiment_bot(tiny_config, tmp_path, caplog,
                             sentiment={"max_upload_bytes": 1000}) as h:
        store = h.emu._store_file

        def lying_store(*args, **kwargs):
            attachment = store(*args, **kwargs)
            attachment["size"] = 100  # the claim; the body is much larger
            return attachment

        monkeypatch.setattr(h.emu, "_store_file", lying_store)
        record = await upload(h, data)
        downloads = cdn_downloads(h.emu)
        rows = await h.rows()
        classifier = h.bot.sentiment.classifier
    assert all_ephemeral(record)
    assert "larger than 1,000 bytes, the upload limit" in record.text
    assert len(downloads) == 1
    assert classifier is None
    assert [(r["command"], r["status"], r["error"]) for r in rows] == [
        ("classifier train", "user_error", "invalid_input")]
