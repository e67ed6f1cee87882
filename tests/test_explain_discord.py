"""`/explain` and the "Why?" button in Discord: the real bot, tiny models and SQLite against the
loopback Discord. A "Why?" click runs the matching explanation on the text read back from the
answer, through the same front door as any click: gated by the rules of `explain`, by the
pause, and logged as the explain command it ran (`via: button:why`)."""

from __future__ import annotations

import json

from tests.bot_harness import running_bot
from tests.test_interactions import answered, click, config_for, embed, labels
from tests.test_reliability import models_ready

QUESTION, CONTEXT = "Where is Paris?", "Paris is the capital of France, in Europe."


async def test_explain_commands_answer_with_a_picture_and_their_top_words(
        tiny_config, tmp_path, caplog):
    async with running_bot(config_for(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        mask = await answered(await h.emu.invoke(
            "explain", {"text": "The nurse said that [MASK] was late.", "target": "he",
                        "versus": "she"}, subcommand="mask"))
        shown = embed(mask)
        assert shown["title"] == "Why “he” rather than “she” at [MASK]?"
        assert "nurse" in shown["description"] and "not what causes what" in shown[
            "description"]
        assert "completeness delta" in shown["footer"]["text"]
        assert mask.visible_messages[0]["attachments"][0]["filename"] == "explain.png"
        qa = await answered(await h.emu.invoke(
            "explain", {"question": QUESTION, "context": CONTEXT}, subcommand="qa"))
        assert embed(qa)["title"].startswith("Why “")
        # A rule on `explain` covers every family of it.
        await h.services.settings.set_rule(h.emu.guild_id, "guild", h.emu.guild_id,
                                           "explain", False)
        denied = await h.run("explain next", {"prompt": "Once upon a time"})
        assert denied.ephemeral and "explain" in denied.text
        rows = await h.rows()
    assert [(r["command"], r["status"]) for r in rows] == [
        ("explain mask", "ok"), ("explain qa", "ok"), ("explain next", "refused")]
    assert rows[1]["input_text"] == f"{QUESTION}\n---\n{CONTEXT}"


async def test_why_buttons_explain_the_same_input_through_the_front_door(
        tiny_config, tmp_path, caplog):
    text = "Paris is the [MASK] of France."
    async with running_bot(config_for(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        mask = await answered(await h.emu.invoke("mask", {"text": text}))
        assert "Why?" in labels(mask)
        why = await answered(await click(h, mask, "Why?"))
        assert not why.ephemeral and embed(why)["title"].startswith("Why “")
        assert why.visible_messages[0]["attachments"]  # the picture
        qa = await answered(await h.emu.invoke("qa", {"question": QUESTION, "context": CONTEXT}))
        qa_why = await answered(await click(h, qa, "Why?"))
        assert "QUESTION" not in embed(qa_why)["description"]  # the words, not the labels
        odds = await answered(await h.emu.invoke("nexttoken", {"prompt": "Once upon a time"}))
        next_why = await answered(await click(h, odds, "Why?"))
        assert embed(next_why)["title"].endswith(" next?") or "next" in embed(next_why)["title"]
        # Gated like any click: the rules of `explain`, then the pause.
        await h.services.settings.set_rule(h.emu.guild_id, "guild", h.emu.guild_id,
                                           "explain", False)
        denied = await click(h, mask, "Why?")
        assert denied.ephemeral and "explain" in denied.text
        await h.services.settings.set_rule(h.emu.guild_id, "guild", h.emu.guild_id,
                                           "explain", None)
        await h.services.settings.set_paused(h.emu.guild_id, True)
        paused = await click(h, qa, "Why?")
        assert paused.ephemeral and "paused" in paused.text.lower()
        rows = await h.rows()
    assert [(r["command"], r["status"], json.loads(r["options"]).get("via")) for r in rows] == [
        ("mask", "ok", None), ("explain mask", "ok", "button:why"),
        ("qa", "ok", None), ("explain qa", "ok", "button:why"),
        ("nexttoken", "ok", None), ("explain next", "ok", "button:why"),
        ("explain mask", "refused", "button:why"), ("explain qa", "paused", "button:why")]
    # The texts were read back from the answers whole: the rows hold what was asked.
    assert rows[1]["input_text"] == text
    assert rows[3]["input_text"] == f"{QUESTION}\n---\n{CONTEXT}"
    assert rows[5]["input_text"] == "Once upon a time"


async def test_no_why_button_when_the_answer_does_not_show_the_text_whole(
        tiny_config, tmp_path, caplog):
    """A context longer than the answer shows (it is trimmed around the answer) cannot be
    read back: no button, rather than an explanation of another text."""
    context = "Paris is the capital of France. " + "It is a big city with many parks. " * 60
    async with running_bot(config_for(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        qa = await answered(await h.emu.invoke("qa", {"question": QUESTION, "context": context}))
        assert "Why?" not in labels(qa)


async def test_why_under_sentiment_explains_the_live_classifier(tiny_config, tmp_path, caplog):
    from tests.test_sentiment_discord import ask_text, csv_bytes, reviews, sentiment_bot, trained

    async with sentiment_bot(tiny_config, tmp_path, caplog) as h:
        await trained(h, csv_bytes(reviews()))
        asked = await answered(await ask_text(h, "a wonderful movie"))
        label = embed(asked)["title"].split(" (")[0]
        why = await answered(await click(h, asked, "Why?"))
        assert embed(why)["title"].startswith(f"Why {label} (")  # the label it answered
        assert "log-odds" in embed(why)["description"]
        rows = await h.rows()
    assert [(r["command"], r["status"]) for r in rows][-2:] == [
        ("sentiment", "ok"), ("explain sentiment", "ok")]
    assert rows[-1]["input_text"] == "a wonderful movie"


async def test_generate_picture_shows_step_scores_beside_a_greedy_run(
        tiny_config, tmp_path, caplog):
    options = {"prompt": "Once upon a time", "max_new_tokens": 6, "seed": 3, "picture": True}
    async with running_bot(config_for(tiny_config, tmp_path), caplog) as h:
        await models_ready(h)
        asked = await answered(await h.emu.invoke("generate", options))
        shown = embed(asked)
        assert shown["description"].startswith("**Once upon a time**")
        assert shown["fields"][0]["name"] == "Greedy, for comparison (temperature 0)"
        attachment = asked.visible_messages[0]["attachments"][0]
        assert attachment["filename"] == "steps.png"
        assert "seed 3" in shown["footer"]["text"]
        # Its buttons repeat the run asked for (same seed: the same text, without a picture).
        again = await answered(await click(h, asked, "Same seed again"))
        assert embed(again)["description"] == shown["description"]
        rows = await h.rows()
    assert [(r["command"], r["status"]) for r in rows] == [("generate", "ok")] * 2
    assert json.loads(rows[0]["options"])["picture"] is True
