"""The class activities through the real bot and the emulated Discord: /logitlens and
/neighbours answer with a picture and one row; the quiz lives in tests/test_quiz_discord.py."""

from __future__ import annotations

import json

from tests.discord_emulator import IS_COMPONENTS_V2, media_urls, text_displays
from tests.test_bot_commands import ask, bot


async def test_logitlens_and_neighbours_answer_with_a_picture_and_one_row(tiny_config, tmp_path,
                                                                          caplog):
    async with bot(tiny_config, tmp_path, caplog) as h:
        lens = await ask(h, "logitlens", {"prompt": "The cat sat on the", "position": 2})
        near = await ask(h, "neighbours", {"word": "bank", "sentence": "We sat on the bank.",
                                           "layer": 1})
        refused = await ask(h, "logitlens", {"prompt": "The cat", "position": 40})
        rows = await h.rows()
    # Picture answers are layout messages (Components V2): the words are text displays.
    lens_message = lens.visible_messages[0]
    assert lens_message["flags"] & IS_COMPONENTS_V2 and not lens.ephemeral
    lens_text = text_displays(lens_message["components"])
    assert lens_text[0].startswith("### Logit lens")
    assert media_urls(lens_message["components"]) == ["attachment://logitlens.png"]
    # One line per layer: the embeddings and the tiny GPT-2's layers.
    assert "\n".join(lens_text).count("\nemb ") == 1
    assert [name for name, _ in lens.files] == ["logitlens.png"]
    assert lens.files[0][1].startswith(b"\x89PNG")
    near_text = text_displays(near.visible_messages[0]["components"])
    assert "bank" in near_text[0] and "layer 1/" in near_text[0]
    assert "**Static embedding (no context)**" in "\n".join(near_text)
    assert [name for name, _ in near.files] == ["neighbours.png"]
    assert refused.ephemeral and "position" in refused.text
    assert [(r["command"], r["status"]) for r in rows] == [
        ("logitlens", "ok"), ("neighbours", "ok"), ("logitlens", "user_error")]
    assert json.loads(rows[0]["options"]) == {"position": 2}
    assert rows[0]["input_text"] == "The cat sat on the"
    assert rows[1]["input_text"] == "bank\nWe sat on the bank."
    assert json.loads(rows[1]["options"]) == {"layer": 1}
