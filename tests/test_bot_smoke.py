from __future__ import annotations

from tests.bot_harness import bot_config, running_bot


async def test_mask_end_to_end(tiny_config, tmp_path, caplog):
    async with running_bot(bot_config(tiny_config, tmp_path), caplog) as h:
        record = await h.run("mask", {"text": "Paris is the [MASK] of France.", "top_k": 3})
        assert record.first_response["type"] == 5
        assert "Fillers for [MASK]" in record.text
        rows = await h.rows()
        assert [r["status"] for r in rows] == ["ok"]
