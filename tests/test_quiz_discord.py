"""/quiz end to end: the real bot, the real core on the tiny models, real SQLite, and the emulated
Discord clicking the card's buttons and submitting the guess modal, across a restart."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from cogs.quiz import CARD_EDIT_INTERVAL_S
from core.inference.tasks.fill_mask import FillMaskRequest
from core.pictures.charts import visible_token
from tests.bot_harness import Harness, bot_config, running_bot
from tests.discord_emulator import DiscordEmulator

pytestmark = pytest.mark.slow

SENTENCE = "The [MASK] sat on the mat."
WORDS = ("cat", "dog", "man", "the", "bird", "it")
NO_COOLDOWN = {"default_cooldown_uses": 0}


async def _models_loaded(h: Harness) -> None:
    registry = h.services.engine.registry
    await asyncio.gather(*(registry.get(spec) for spec in registry.specs))


async def _start(h: Harness, kind: str, options: dict[str, Any], user_id: int) -> dict:
    """Start a quiz; return its card (the channel message the bot posted)."""
    before = len(h.emu.channel_messages)
    record = await h.run("quiz", options, subcommand=kind, user_id=user_id)
    assert record.ephemeral and "started" in record.text, record.text
    [card] = h.emu.channel_messages[before:]
    return h.emu.message(card["id"])


def _custom_ids(message: dict) -> dict[str, dict]:
    return {c["label"]: c for row in message["components"] for c in row["components"]}


async def _guess(h: Harness, card: dict, user_id: int, word: str) -> str:
    """Click Guess, type `word`, submit; the ephemeral answer's text."""
    ids = _custom_ids(h.emu.message(card["id"]))
    click = await h.emu.click(card["id"], ids["Guess"]["custom_id"], user_id=user_id)
    await click.wait_first_response(timeout=10)
    if click.modal is None:  # refused at the click
        await click.wait_done(timeout=10)
        return click.text
    submit = await h.emu.submit_modal(click, {"word": word})
    await submit.wait_done(timeout=30)
    assert submit.ephemeral
    return submit.text


async def _card_shows(h: Harness, card_id: str, text: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = h.emu.message(card_id)
        shown = json.dumps(message["embeds"])
        if text in shown:
            return message
        if time.monotonic() > deadline:
            raise TimeoutError(f"the card never showed {text!r}: {shown}")
        await asyncio.sleep(0.05)


async def test_a_class_of_thirty_guesses_across_a_restart_and_sees_the_reveal(
        tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN)
    async with DiscordEmulator() as emu:
        guild = emu.guild
        muted_role = guild.add_role("Muted")
        students = [guild.add_member(f"student{i}", roles=["Student"]) for i in range(30)]
        muted = guild.add_member("muted", roles=["Student", muted_role])
        teacher = emu.moderator_id
        first_words = {uid: WORDS[i % len(WORDS)] for i, uid in enumerate(students)}

        async with running_bot(config, caplog, emulator=emu) as h:
            await _models_loaded(h)
            # Only instructors start a quiz, unless a moderator allows it.
            denied = await h.run("quiz", {"sentence": SENTENCE}, subcommand="mask",
                                 user_id=students[0])
            assert denied.ephemeral and "Only instructors" in denied.text
            why = await h.run("config", {"command": "quiz", "user": students[0]},
                              subcommand="why", user_id=teacher)
            assert "activity command" in why.text and "refused" in why.text
            card = await _start(h, "mask", {"sentence": SENTENCE, "seconds": 600}, teacher)
            assert "Class quiz" in card["embeds"][0]["title"]
            # One open quiz per channel.
            again = await h.run("quiz", {"prompt": "Once upon a"}, subcommand="next",
                                user_id=teacher)
            assert again.ephemeral and "already running" in again.text

            answers = await asyncio.gather(*(_guess(h, card, uid, first_words[uid])
                                             for uid in students))
            assert all("Your guess is in" in a for a in answers), answers
            await _card_shows(h, card["id"], "30 students")
            # 30 guesses, a handful of edits: at most one every CARD_EDIT_INTERVAL_S.
            edits = [r.time for r in emu.find_requests("PATCH", f"/messages/{card['id']}$")]
            assert 1 <= len(edits) < 30
            assert all(b - a >= CARD_EDIT_INTERVAL_S - 0.05 for a, b in zip(edits, edits[1:]))

            # A member a rule denies, and everyone while paused, cannot guess.
            await h.run("config", {"command": "quiz", "role": muted_role}, subcommand="deny",
                        user_id=teacher)
            assert "turned off" in await _guess(h, card, muted, "cat")
            await h.run("config", {"paused": True}, subcommand="pause", user_id=teacher)
            assert "paused" in await _guess(h, card, students[0], "cat")
            await h.run("config", {"paused": False}, subcommand="pause", user_id=teacher)
            # A word that is not one word is refused with a hint.
            assert "one word" in await _guess(h, card, students[1], "two words")
            # Two forms open at once are answered each (discord.py alone would keep one).
            ids = _custom_ids(h.emu.message(card["id"]))
            forms = [await h.emu.click(card["id"], ids["Guess"]["custom_id"], user_id=uid)
                     for uid in students[10:13]]
            for form in forms:
                await form.wait_first_response(timeout=10)
            for form in forms[:2]:
                done = await h.emu.submit_modal(form, {"word": first_words[form.user_id]})
                await done.wait_done(timeout=10)
                assert "Your guess changed to" in done.text
                await h.rows()  # the submit's handling has finished entirely
            open_form = forms[2]  # submitted after the restart


        # A restart in the middle: the guesses, the card's buttons and its timer survive.
        async with running_bot(config, caplog, emulator=emu) as h:
            await _models_loaded(h)
            changed = {uid: "cat" for uid in students[:10]}
            answers = await asyncio.gather(*(_guess(h, card, uid, w)
                                             for uid, w in changed.items()))
            assert all("changed to" in a for a in answers), answers
            final = {**first_words, **changed}
            late_form = await h.emu.submit_modal(open_form, {"word": "cat"})
            await late_form.wait_done(timeout=10)
            assert "changed to" in late_form.text
            final[open_form.user_id] = "cat"

            # Only the instructor who started it (or a moderator) can reveal it.
            ids = _custom_ids(h.emu.message(card["id"]))
            nope = await h.emu.click(card["id"], ids["Reveal now"]["custom_id"],
                                     user_id=students[2])
            await nope.wait_done(timeout=10)
            assert nope.ephemeral and "Only the instructor" in nope.text
            # A modal opened before the end and submitted after it is told the quiz ended.
            late = await h.emu.click(card["id"], ids["Guess"]["custom_id"], user_id=students[3])
            await late.wait_first_response(timeout=10)
            reveal = await h.emu.click(card["id"], ids["Reveal now"]["custom_id"],
                                       user_id=teacher)
            await reveal.wait_done(timeout=60)
            assert reveal.ephemeral and "Revealed" in reveal.text
            late_submit = await h.emu.submit_modal(late, {"word": "dog"})
            await late_submit.wait_done(timeout=10)
            assert "has ended" in late_submit.text

            revealed = await _card_shows(h, card["id"], "revealed")
            embed = revealed["embeds"][0]
            assert all(c["disabled"] for c in _custom_ids(revealed).values())
            assert embed["image"]["url"] == "attachment://quiz.png"
            tally = next(f for f in embed["fields"] if f["name"].startswith("The class's"))
            assert tally["name"] == "The class's guesses (30)"
            counts: dict[str, int] = {}
            for word in final.values():
                counts[word] = counts.get(word, 0) + 1
            for word, n in counts.items():
                assert f"**{word}** × {n}" in tally["value"], (word, n, tally["value"])
            assert "<@" not in tally["value"]  # names hidden: show_names was off

            # The reveal lists the model's own fillers for the sentence, best first.
            fillers = (await h.services.engine.submit(FillMaskRequest(SENTENCE, top_k=3))).fillers
            assert "model says" in embed["description"]
            assert f" 1 {visible_token(fillers[0].token)}" in embed["description"]

            # /mydata delete takes a student's guess with their rows.
            done = await h.run("mydata", {"confirm": True}, subcommand="delete",
                               user_id=students[4])
            assert "and 1 quiz guess about you" in done.text, done.text
            stored = await h.services.quizzes.guesses(int(card["embeds"][0]["footer"]["text"]
                                                          .split()[1]))
            assert len(stored) == 29 and students[4] not in {g.user_id for g in stored}
            rows = await h.rows()

    guesses = [r for r in rows if r["command"] == "quiz guess"]
    statuses = [r["status"] for r in guesses]
    # 30 guesses, 2 + 1 + 10 changes; /mydata delete took student 4's two rows.
    assert statuses.count("ok") == 43 - 2
    assert students[4] not in {r["user_id"] for r in rows}
    assert {"refused", "paused", "user_error"} <= set(statuses)
    assert {r["input_text"] for r in guesses if r["status"] == "ok"} <= set(WORDS)
    starts = [r for r in rows if r["command"] == "quiz mask"]
    assert [r["status"] for r in starts] == ["refused", "ok"]
    assert starts[1]["input_text"] == SENTENCE
    assert [r["status"] for r in rows if r["command"] == "quiz reveal"] == ["refused", "ok"]


async def test_a_quiz_that_ended_while_the_bot_was_down_is_revealed_at_start(
        tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN,
                        database={"log_inputs": "hashed"})
    async with DiscordEmulator() as emu:
        teacher = emu.moderator_id
        async with running_bot(config, caplog, emulator=emu) as h:
            await _models_loaded(h)
            card = await _start(h, "next", {"prompt": "Once upon a", "seconds": 10,
                                            "show_names": True}, teacher)
            assert "Your guess is in" in await _guess(h, card, emu.student_id, "time")
            quiz = (await h.services.quizzes.open_quizzes())[0]
        await asyncio.sleep(max(0.0, quiz.seconds_left()) + 0.2)
        async with running_bot(config, caplog, emulator=emu) as h:
            revealed = await _card_shows(h, card["id"], "revealed", timeout=60)
            embed = revealed["embeds"][0]
            tally = next(f for f in embed["fields"] if f["name"].startswith("The class's"))
            assert tally["name"] == "The class's guesses (1)"
            assert f"<@{emu.student_id}>" in tally["value"]  # show_names
            assert await h.services.quizzes.open_quizzes() == []
            for _ in range(100):  # the reveal forgets right after the card's edit
                forgotten = await h.services.quizzes.get(quiz.id)
                if forgotten is not None and forgotten.prompt == "":
                    break
                await asyncio.sleep(0.05)
            assert forgotten.prompt == "" and await h.services.quizzes.guesses(quiz.id) == []
            rows = await h.rows()
    # log_inputs = "hashed": the guessed word is nowhere in the rows or the guesses table, not
    # even as a digest (one word's digest is reversed by hashing a word list).
    [row] = [r for r in rows if r["command"] == "quiz guess"]
    assert row["input_text"] == "" and "time" not in row["options"]
