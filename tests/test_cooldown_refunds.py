"""What the front door lets through, checked the way a student meets it: the real bot, tiny
models and SQLite against the loopback Discord, with a cooldown of one use per hour.

- A cooldown limits work done, not tries: an attempt the core never admitted (a bad input, a
  full queue) and an interaction that only opened a form (its submit is counted on its own)
  give the use back, so the student's next valid try is answered.
- With direct messages off, a DM is refused before any model work and still logged.

These tests name no module of the interaction layer, so they hold wherever the gate lives.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest

from core.inference.tasks.fill_mask import FillMaskTask
from tests.bot_harness import Harness, bot_config, running_bot
from tests.discord_emulator import InteractionRecord
from tests.test_interactions import answered, button
from tests.test_quiz_discord import _guess as guess
from tests.test_quiz_discord import _start as start_quiz
from tests.test_reliability import models_ready

ONE_USE = {"default_cooldown_uses": 1, "default_cooldown_seconds": 3600.0}
VALID = {"text": "Paris is the [MASK] of France."}
FILLED = "Fillers for [MASK]"
TOO_FAST = "too fast"


@asynccontextmanager
async def bot(tiny_config, tmp_path, caplog, **sections: dict[str, Any]
              ) -> AsyncIterator[Harness]:
    """The bot with every student command limited to one use per hour, models loaded."""
    sections["discord"] = {**ONE_USE, **sections.get("discord", {})}
    async with running_bot(bot_config(tiny_config, tmp_path, **sections), caplog) as h:
        await models_ready(h)
        yield h


async def done(record: InteractionRecord) -> InteractionRecord:
    await record.wait_done()
    return record


def statuses(rows: list) -> list[tuple[str, str]]:
    return [(r["command"], r["status"]) for r in rows]


async def test_the_cooldown_is_counted(tiny_config, tmp_path, caplog):
    """The premise of the refund tests: a second answered /mask within the hour is refused."""
    async with bot(tiny_config, tmp_path, caplog) as h:
        first = await answered(await h.emu.invoke("mask", VALID))
        assert FILLED in first.text
        second = await done(await h.emu.invoke("mask", VALID))
        assert second.ephemeral and TOO_FAST in second.text
        rows = await h.rows()
    assert statuses(rows) == [("mask", "ok"), ("mask", "cooldown")]


async def test_a_bad_input_gives_the_use_back(tiny_config, tmp_path, caplog):
    async with bot(tiny_config, tmp_path, caplog) as h:
        invalid = await done(await h.emu.invoke("mask", {"text": "no mask token here"}))
        assert invalid.ephemeral and "[MASK]" in invalid.text
        valid = await answered(await h.emu.invoke("mask", VALID))
        assert FILLED in valid.text, valid.text
        rows = await h.rows()
    assert statuses(rows) == [("mask", "user_error"), ("mask", "ok")]


@contextmanager
def held_fill_mask(monkeypatch: pytest.MonkeyPatch, marker: str
                   ) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Fill-mask batches whose text contains `marker` wait in their worker thread until the
    test releases them: (started, release). Released on exit whatever happened."""
    started, release = threading.Event(), threading.Event()
    original = FillMaskTask.run_batch

    def run_batch(self, model, requests, emit):
        if any(marker in r.text for r in requests):
            started.set()
            release.wait(30)
        return original(self, model, requests, emit)

    monkeypatch.setattr(FillMaskTask, "run_batch", run_batch)
    try:
        yield started, release
    finally:
        release.set()


async def test_a_busy_refusal_gives_the_use_back(tiny_config, tmp_path, caplog, monkeypatch):
    # One request in the queue at most, one per batch: a batch in flight plus one waiting
    # request make the queue full.
    with held_fill_mask(monkeypatch, "Held") as (started, release):
        async with bot(tiny_config, tmp_path, caplog,
                       engine={"queue_size": 1, "max_batch_size": 1}) as h:
            emu = h.emu
            running = await emu.invoke("mask", {"text": "Held is the [MASK]."},
                                       user_id=emu.guild.add_member("first", roles=["Student"]))
            assert await asyncio.to_thread(started.wait, 10)
            waiting = await emu.invoke("mask", {"text": "Waiting is the [MASK]."},
                                       user_id=emu.guild.add_member("second", roles=["Student"]))
            assert (await waiting.wait_first_response())["type"] == 5  # admitted: "thinking…"
            busy = await done(await emu.invoke("mask", VALID))
            assert busy.ephemeral and "very busy" in busy.text, busy.text
            release.set()
            await asyncio.gather(answered(running), answered(waiting))
            again = await answered(await emu.invoke("mask", VALID))
            assert FILLED in again.text, again.text
            rows = await h.rows()
    mine = [r["status"] for r in rows if r["user_id"] == emu.student_id]
    assert mine == ["overloaded", "ok"]


async def _open_qa_form(h: Harness) -> InteractionRecord:
    return await h.emu.invoke("qa", {"question": "Where is the tower?"})


async def _open_compare_form(h: Harness) -> InteractionRecord:
    asked = await answered(await h.emu.invoke("mask", VALID))
    return await h.emu.click(asked.message, button(asked, "Compare with…"))


async def _open_mask_a_word_form(h: Harness) -> InteractionRecord:
    posted = h.emu.add_message(content="The Eiffel Tower is in Paris.",
                               author_id=h.emu.moderator_id)
    return await h.emu.invoke_message_command("Mask a word", posted)


#: Interactions that only open a form -> (what the form's submit sends, the command it runs,
#: what its answer shows, that command's own options for a direct try).
FORMS = {
    "slash /qa without context": (
        _open_qa_form, {"text": "The Eiffel Tower is in Paris."}, "qa", "Answer: ",
        {"question": "Where?", "context": "In Paris."}),
    "button Compare with…": (
        _open_compare_form, {"text": "Rome is the [MASK]."}, "maskpair",
        "Two sentences, one [MASK]", {"sentence_a": "A [MASK].", "sentence_b": "B [MASK]."}),
    "right-click Mask a word": (
        _open_mask_a_word_form, {"text": "Paris"}, "mask", "[MASK]", VALID),
}


@pytest.mark.parametrize("form", list(FORMS))
async def test_opening_a_form_gives_the_use_back_and_its_submit_is_answered(
        tiny_config, tmp_path, caplog, form):
    open_form, values, runs, shown, direct = FORMS[form]
    async with bot(tiny_config, tmp_path, caplog) as h:
        opened = await open_form(h)
        await opened.wait_first_response()
        assert opened.modal is not None, opened.text
        submitted = await answered(await h.emu.submit_modal(opened, values))
        assert not submitted.ephemeral and shown in submitted.text, submitted.text
        # The submit used the one use: the command itself is now refused.
        again = await done(await h.emu.invoke(runs, direct))
        assert again.ephemeral and TOO_FAST in again.text, again.text
        rows = await h.rows()
    assert statuses(rows)[-2:] == [(runs, "ok"), (runs, "cooldown")]
    # The submit's row says how it came (the form) and holds the text typed into it.
    # (The right-click's input is the message with the typed word masked.)
    form_row = rows[-2]
    typed = values["text"].replace("Paris", "[MASK]") if runs == "mask" else values["text"]
    assert json.loads(form_row["options"]).get("via"), form_row["options"]
    assert typed in form_row["input_text"], form_row["input_text"]


async def test_the_quiz_guess_form_gives_the_use_back(tiny_config, tmp_path, caplog):
    async with bot(tiny_config, tmp_path, caplog) as h:
        card = await start_quiz(h, "mask", {"sentence": "The [MASK] sat here ."},
                                h.emu.moderator_id)  # an instructor: no cooldown
        # The click opens the form (its use given back), the submit is counted...
        assert "Your guess is in" in await guess(h, card, h.emu.student_id, "dog")
        # ...so the next click is refused at once.
        assert TOO_FAST in await guess(h, card, h.emu.student_id, "cat")


async def test_own_data_and_help_stay_reachable_when_everything_is_off(tiny_config, tmp_path,
                                                                       caplog):
    """A member needs /mydata and /help exactly when the moderators turned commands off."""
    async with bot(tiny_config, tmp_path, caplog) as h:
        emu = h.emu
        await h.run("config", {"command": "*"}, subcommand="deny", user_id=emu.moderator_id)
        await h.run("config", {"paused": True}, subcommand="pause", user_id=emu.moderator_id)
        paused = "The moderators have paused the bot"
        refused = await done(await emu.invoke("mask", VALID))
        assert refused.ephemeral and paused in refused.text
        for name, sub, title in (("mydata", "show", "Your data"),
                                 ("help", None, "tlm-bot: what you can do here"),
                                 ("mydata", "show", "Your data")):  # no cooldown either
            record = await h.run(name, {}, subcommand=sub)
            assert record.ephemeral and record.text.startswith(title), record.text
        rows = await h.rows()
    assert [s for c, s in statuses(rows) if c in ("mydata show", "help")] == ["ok"] * 3


async def test_a_direct_message_is_refused_before_any_model_work(tiny_config, tmp_path, caplog,
                                                                 monkeypatch):
    batches: list[int] = []
    original = FillMaskTask.run_batch

    def run_batch(self, model, requests, emit):
        batches.append(len(requests))
        return original(self, model, requests, emit)

    monkeypatch.setattr(FillMaskTask, "run_batch", run_batch)
    async with bot(tiny_config, tmp_path, caplog, discord={"allow_dms": False}) as h:
        record = await done(await h.emu.invoke("mask", VALID, dm=True))
        assert record.ephemeral, record.text
        assert "tlm-bot only answers in a server, not in direct messages." in record.text
        assert record.first_response["type"] == 4  # no "thinking…" ever shown
        rows = await h.rows()
        # The same student in the server is answered (the refusal was the DM's, not theirs).
        served = await answered(await h.emu.invoke("mask", VALID))
        assert FILLED in served.text
    assert batches == [1]  # only the server's request reached the model
    [row] = rows
    assert (row["guild_id"], row["command"], row["status"]) == (None, "mask", "refused")
