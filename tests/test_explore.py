"""Pictures you turn in place: /attention, /logitlens and /neighbours answer with one
Components V2 message (picture, words, selects), and a pick re-draws that same message through
the front door. The real bot, tiny models and SQLite against the loopback Discord."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import discord
import pytest

from tests.bot_harness import Harness, running_bot
from tests.discord_emulator import (
    EPHEMERAL,
    IS_COMPONENTS_V2,
    DiscordEmulator,
    InteractionRecord,
    media_urls,
    text_displays,
)
from tests.test_interactions import config_for
from tests.test_reliability import models_ready

SENTENCE = {"text": "Paris is the capital of France."}


async def laid_out(record: InteractionRecord, timeout: float = 30) -> dict[str, Any]:
    """The layout answer of `record` (past the "thinking…" placeholder)."""
    deadline = time.monotonic() + timeout
    while True:
        message = record.message
        if message is not None and message["flags"] & IS_COMPONENTS_V2:
            return message
        if record.errors or (message is not None and message.get("embeds")):
            raise AssertionError(f"no layout: {record.errors or message}")
        if time.monotonic() > deadline:
            raise TimeoutError("no layout answer")
        await asyncio.sleep(0.02)


def selects(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The message's selects by knob letter (tlm:pick:<command>:<knob>:...)."""
    from tests.discord_emulator import flatten_components

    return {c["custom_id"].split(":")[3]: c for c in flatten_components(message["components"])
            if c.get("type") == 3}


def picture(h: Harness, message: dict[str, Any]) -> bytes:
    [attachment] = message["attachments"]
    path = attachment["url"].removeprefix(h.emu.url)
    return h.emu._cdn[path][1]


async def test_attention_picks_redraw_the_same_message(tiny_config, tmp_path, caplog):
    async with running_bot(config_for(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        first = await h.emu.invoke("attention", SENTENCE)
        message = await laid_out(first)
        assert not message["content"] and not message["embeds"] and not first.ephemeral
        assert media_urls(message["components"]) == ["attachment://attention.png"]
        texts = text_displays(message["components"])
        assert texts[0].startswith("### Attention · layer") and "average of all heads" in texts[0]
        assert texts[1] == "**Paris is the capital of France.**"  # read back by a pick
        menus = selects(message)
        assert set(menus) == {"l", "h", "o"}
        heads = [o["value"] for o in menus["h"]["options"]]
        assert heads[0] == "0" and len(heads) >= 3  # "average" and every head
        assert [o.get("default") for o in menus["h"]["options"]][0] is True
        before = picture(h, message)

        picked = await h.emu.select(message, menus["h"]["custom_id"], ["1"])
        await picked.wait_done()
        assert picked.first_response is not None and picked.first_response["type"] in (6, 7)
        assert picked.ack_latency is not None and picked.ack_latency < 3
        now = h.emu.message(message["id"])  # the same message, re-drawn
        assert now["flags"] & IS_COMPONENTS_V2
        assert "head 1" in text_displays(now["components"])[0]
        assert picture(h, now) != before
        assert [o["value"] for o in selects(now)["h"]["options"] if o.get("default")] == ["1"]

        token = await h.emu.select(now, selects(now)["o"]["custom_id"], ["2"])
        await token.wait_done()
        now = h.emu.message(message["id"])
        assert "(token 2) looks most at:" in "\n".join(text_displays(now["components"]))
        assert "head 1" in text_displays(now["components"])[0]  # the other knobs stay

        # Another student may look but not turn: refused, logged, the message unchanged.
        classmate = h.emu.guild.add_member("classmate", roles=["Student"])
        refused = await h.emu.select(now, selects(now)["l"]["custom_id"], ["1"],
                                     user_id=classmate)
        await refused.wait_done()
        assert refused.ephemeral and "Only the student who asked" in refused.text
        assert h.emu.message(message["id"]) == now
        rows = await h.rows()
    seen = [(r["command"], r["status"], json.loads(r["options"]).get("via"), r["user_id"])
            for r in rows]
    assert seen == [("attention", "ok", None, h.emu.student_id),
                    ("attention", "ok", "select:h", h.emu.student_id),
                    ("attention", "ok", "select:o", h.emu.student_id),
                    ("attention", "refused", "select:l", classmate)]
    assert json.loads(rows[1]["options"])["head"] == 1
    assert rows[1]["input_text"] == SENTENCE["text"]
    assert h.emu.violations == []


async def test_logitlens_and_neighbours_picks(tiny_config, tmp_path, caplog):
    async with running_bot(config_for(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        lens = await laid_out(await h.emu.invoke("logitlens", {"prompt": "The cat sat on the"}))
        [position] = selects(lens).values()
        title = text_displays(lens["components"])[0]
        picked = await h.emu.select(lens, position["custom_id"], ["2"])
        await picked.wait_done()
        now = h.emu.message(lens["id"])
        assert text_displays(now["components"])[0] != title  # read after another token
        [position] = selects(now).values()
        assert [o["value"] for o in position["options"] if o.get("default")] == ["2"]

        near = await laid_out(await h.emu.invoke(
            "neighbours", {"word": "bank", "sentence": "We sat on the bank."}))
        [layer] = selects(near).values()
        assert [o["value"] for o in layer["options"]][0] == "0"
        picked = await h.emu.select(near, layer["custom_id"], ["0"])
        await picked.wait_done()
        assert "embeddings" in text_displays(h.emu.message(near["id"])["components"])[0]
        sim = await laid_out(await h.emu.invoke("contextsim", {
            "word": "bank", "sentence_a": "We sat on the bank.", "sentence_b": "The bank paid."}))
        [layer] = selects(sim).values()
        picked = await h.emu.select(sim, layer["custom_id"], ["0"])
        await picked.wait_done()
        assert "At the embeddings, the two vectors have similarity" in "\n".join(
            text_displays(h.emu.message(sim["id"])["components"]))
        rows = await h.rows()
    assert [(r["command"], json.loads(r["options"]).get("via"), r["status"]) for r in rows] == [
        ("logitlens", None, "ok"), ("logitlens", "select:x", "ok"),
        ("neighbours", None, "ok"), ("neighbours", "select:l", "ok"),
        ("contextsim", None, "ok"), ("contextsim", "select:l", "ok")]
    assert json.loads(rows[1]["options"])["position"] == 2
    assert rows[3]["input_text"] == "bank\nWe sat on the bank."


async def test_picks_work_after_a_restart_and_grey_out_when_expired(tiny_config, tmp_path,
                                                                    caplog):
    async with DiscordEmulator() as emu:
        config = config_for(tiny_config, tmp_path)
        async with running_bot(config, caplog, emulator=emu) as h:
            await models_ready(h)
            first = await emu.invoke("attention", SENTENCE)
            message = await laid_out(first)
        async with running_bot(config, caplog, emulator=emu) as h:  # a new process
            await models_ready(h)
            picked = await emu.select(message, selects(message)["h"]["custom_id"], ["2"])
            await picked.wait_done()
            assert "head 2" in text_displays(emu.message(message["id"])["components"])[0]
        short = config_for(tiny_config, tmp_path, button_max_age_hours=0.001)
        now = emu.message(message["id"])
        asked = int(selects(now)["l"]["custom_id"].split(":")[4])
        while time.time() - discord.utils.snowflake_time(asked).timestamp() < 3.7:
            await asyncio.sleep(0.1)
        async with running_bot(short, caplog, emulator=emu) as h:
            expired = await emu.select(now, selects(now)["l"]["custom_id"], ["1"])
            await expired.wait_done()
            assert expired.ephemeral and "expired" in expired.text
            for _ in range(100):
                if all(s.get("disabled") for s in selects(emu.message(message["id"])).values()):
                    break
                await asyncio.sleep(0.02)
            greyed = emu.message(message["id"])
            assert all(s.get("disabled") for s in selects(greyed).values())
            assert media_urls(greyed["components"]) == media_urls(now["components"])
            rows = await h.rows()
    assert [(r["command"], r["status"]) for r in rows] == [
        ("attention", "ok"), ("attention", "ok"), ("attention", "expired")]
    assert not first.ephemeral and not message["flags"] & EPHEMERAL


@pytest.mark.slow
async def test_tlm_bot_run_turns_a_picture_and_again_after_a_restart(tiny_models, tmp_path):
    """The real entry point: /attention answers with the V2 flag and selects; another head
    re-draws the same message with another picture (acknowledged within 3 s); after a restart
    of `tlm-bot run` the same select still works, and a classmate's pick is refused."""
    from tests.conftest import write_tiny_config
    from tests.test_bot_subprocess import ENTRY_POINT, tlm_bot_run

    if not ENTRY_POINT.exists():
        pytest.skip("tlm-bot is not installed in this venv")
    async with DiscordEmulator() as emu:
        config = write_tiny_config(
            tmp_path / "config.toml", tiny_models,
            discord={"dev_guild": emu.guild_id, "default_cooldown_uses": 0})

        def cdn(message: dict[str, Any]) -> bytes:
            [attachment] = message["attachments"]
            return emu._cdn[attachment["url"].removeprefix(emu.url)][1]

        async with tlm_bot_run(emu, config, tmp_path / "bot.log") as proc:
            first = await emu.invoke("attention", SENTENCE)
            message = await laid_out(first, timeout=90)
            assert set(selects(message)) == {"l", "h", "o"}
            before = cdn(message)
            picked = await emu.select(message, selects(message)["h"]["custom_id"], ["1"])
            await picked.wait_done(timeout=60)
            assert picked.ack_latency is not None and picked.ack_latency < 3
            after = emu.message(message["id"])
            assert "head 1" in text_displays(after["components"])[0] and cdn(after) != before
        assert proc.returncode == 0
        async with tlm_bot_run(emu, config, tmp_path / "bot2.log") as proc:
            await emu.wait_gateway("READY", 2, timeout=90)  # the new process, not the old one
            now = emu.message(message["id"])
            again = await emu.select(now, selects(now)["h"]["custom_id"], ["2"])
            await again.wait_done(timeout=60)
            assert "head 2" in text_displays(emu.message(message["id"])["components"])[0]
            classmate = emu.guild.add_member("classmate", roles=["Student"])
            now = emu.message(message["id"])
            refused = await emu.select(now, selects(now)["l"]["custom_id"], ["1"],
                                       user_id=classmate)
            await refused.wait_done(timeout=30)
            assert refused.ephemeral and "Only the student who asked" in refused.text
        assert proc.returncode == 0
        assert emu.violations == [] and emu.unhandled == []
