"""Paging: /logs recent and /mydata show turn their pages with Previous/Next buttons.

Through the real bot and the loopback Discord's clicks: only the member who ran the command
can turn the pages (a forged click by someone else is refused and logged), each turn is one
logged row with its page, passes the gate again, and rows logged meanwhile do not shift the
pages.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from bot.interactions.paging import NOT_YOURS
from core.storage.querylog import QueryRecord
from tests.bot_harness import Harness, bot_config, running_bot

PREVIOUS, NEXT = "◀ Previous", "Next ▶"


def button(record, label: str) -> dict[str, Any]:
    return next(c for c in record.components if c.get("label") == label)


def footer(record) -> str:
    return record.message["embeds"][0]["footer"]["text"]


def inputs_shown(record) -> list[str]:
    return re.findall(r"probe-\d+", record.message["embeds"][0]["description"])


async def seed(h: Harness, user_id: int, count: int, *, minutes_ago: int = 5) -> None:
    """`count` rows by `user_id`, oldest first, a second apart, a few minutes ago."""
    start = datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)
    for i in range(count):
        await h.services.querylog.record(QueryRecord(
            guild_id=h.emu.guild_id, channel_id=h.emu.channel_id, user_id=user_id,
            command="tokens", options={}, input_text=f"probe-{i:02d}", status="ok",
            created_at=start + timedelta(seconds=i)))
    await h.services.querylog.flush()


async def click(h: Harness, shown, label: str, *, user_id: int | None = None):
    record = await h.emu.click(shown.message, button(shown, label)["custom_id"],
                               user_id=user_id)
    await record.wait_done()
    return record


async def test_logs_recent_pages_for_the_instructor_who_asked(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord={"default_cooldown_uses": 0})
    async with running_bot(config, caplog) as h:
        emu = h.emu
        await seed(h, emu.student_id, 40)
        first = await h.run("logs", {"since": "24h"}, subcommand="recent",
                            user_id=emu.moderator_id)
        assert first.ephemeral and footer(first).startswith("Page 1 of 3 · 40 queries")
        assert button(first, PREVIOUS).get("disabled") and not button(first, NEXT).get("disabled")
        pages = [inputs_shown(first)]
        await seed(h, emu.student_id, 3, minutes_ago=0)  # logged while the instructor reads
        second = await click(h, first, NEXT)
        assert second.first_response["type"] == 7  # the message itself turns its page
        pages.append(inputs_shown(second))
        third = await click(h, second, NEXT)
        pages.append(inputs_shown(third))
        assert footer(third).startswith("Page 3 of 3")
        assert button(third, NEXT).get("disabled") and not button(third, PREVIOUS).get("disabled")
        back = await click(h, third, PREVIOUS)
        assert inputs_shown(back) == pages[1]
        rows = await h.rows()
    # Newest first, every row once, none of the rows logged after the first page.
    shown = [text for page in pages for text in page]
    assert shown == [f"probe-{i:02d}" for i in range(39, -1, -1)]
    assert [len(p) for p in pages] == [15, 15, 10]
    turns = [json.loads(r["options"]).get("page") for r in rows if r["command"] == "logs recent"]
    assert turns == [None, 2, 3, 2]
    assert {r["status"] for r in rows if r["command"] == "logs recent"} == {"ok"}


async def test_only_the_asker_turns_the_pages(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord={"default_cooldown_uses": 0})
    async with running_bot(config, caplog) as h:
        emu = h.emu
        await seed(h, emu.student_id, 20)
        first = await h.run("logs", {}, subcommand="recent", user_id=emu.moderator_id)
        before = emu.message(first.message["id"])
        next_id = button(first, NEXT)["custom_id"]
        # The listing is ephemeral: Discord shows it to nobody else, so no client can click it.
        try:
            await emu.click(first.message, next_id, user_id=emu.student_id)
        except ValueError as exc:
            assert "ephemeral" in str(exc)
        else:
            raise AssertionError("the emulator let another user click an ephemeral message")
        # A forged click (a raw API client) is refused all the same, privately, and logged.
        forged = await emu._dispatch_component(before, emu.student_id,
                                               {"custom_id": next_id, "component_type": 2})
        await forged.wait_done()
        assert forged.ephemeral and NOT_YOURS in forged.text
        assert forged.first_response["type"] == 4  # a new private message, not an edit
        assert emu.message(first.message["id"])["embeds"] == before["embeds"]
        rows = await h.rows()
    refused = [r for r in rows if r["command"] == "logs recent" and r["status"] == "refused"]
    assert len(refused) == 1 and refused[0]["user_id"] == emu.student_id
    assert json.loads(refused[0]["options"])["page"] == 1


async def test_a_page_turn_passes_the_gate_again(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord={"default_cooldown_uses": 0})
    async with running_bot(config, caplog) as h:
        emu, settings = h.emu, h.services.settings
        await settings.set_instructor_role(emu.guild_id, emu.student_role_id)
        await seed(h, emu.moderator_id, 20)
        first = await h.run("logs", {}, subcommand="recent", user_id=emu.student_id)
        assert footer(first).startswith("Page 1 of 2")
        await settings.set_instructor_role(emu.guild_id, None)  # no longer an instructor
        turned = await h.emu.click(first.message, button(first, NEXT)["custom_id"])
        await turned.wait_done()
        assert turned.ephemeral and "Only moderators can use /logs recent" in turned.text
        assert footer(first).startswith("Page 1 of 2")  # the listing did not move
        rows = await h.rows()
    assert [r["status"] for r in rows if r["command"] == "logs recent"] == ["ok", "refused"]


async def test_mydata_show_pages(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord={"default_cooldown_uses": 0})
    async with running_bot(config, caplog) as h:
        emu = h.emu
        await seed(h, emu.student_id, 25)
        await seed(h, emu.moderator_id, 5)  # someone else's rows never show
        first = await h.run("mydata", {}, subcommand="show")
        assert first.ephemeral and footer(first).startswith("Page 1 of 3 · 25 query-log rows")
        shown = inputs_shown(first)  # read now: a page turn edits this very message
        second = await click(h, first, NEXT)
        shown += inputs_shown(second)
        third = await click(h, second, NEXT)
        shown += inputs_shown(third)
        forged = await emu._dispatch_component(
            emu.message(third.message["id"]), emu.moderator_id,
            {"custom_id": button(third, PREVIOUS)["custom_id"], "component_type": 2})
        await forged.wait_done()
        rows = await h.rows()
    assert shown == [f"probe-{i:02d}" for i in range(24, -1, -1)]
    assert NOT_YOURS in forged.text
    turns = [(json.loads(r["options"]).get("page"), r["status"])
             for r in rows if r["command"] == "mydata show"]
    assert turns == [(None, "ok"), (2, "ok"), (3, "ok"), (3, "refused")]


async def test_a_short_listing_has_no_buttons(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path)
    async with running_bot(config, caplog) as h:
        await seed(h, h.emu.student_id, 3)
        record = await h.run("mydata", {}, subcommand="show")
    assert footer(record).startswith("Page 1 of 1") and record.components == []


async def test_page_buttons_grey_out_after_the_timeout(tiny_config, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("bot.interactions.paging.PAGER_TIMEOUT_S", 0.3)
    config = bot_config(tiny_config, tmp_path)
    async with running_bot(config, caplog) as h:
        await seed(h, h.emu.student_id, 12)
        record = await h.run("mydata", {}, subcommand="show")
        assert not button(record, NEXT).get("disabled")
        for _ in range(100):
            await asyncio.sleep(0.05)
            if button(record, NEXT).get("disabled"):
                break
    assert button(record, NEXT).get("disabled") and button(record, PREVIOUS).get("disabled")
    assert footer(record).startswith("Page 1 of 2")  # the page itself stays readable
