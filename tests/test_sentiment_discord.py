"""/sentiment end to end: an instructor uploads a CSV, the class gets a new classifier.

Real TLMBot, real cogs, real core with the tiny models, real SQLite, the loopback Discord.
Training runs in the background, so these tests wait for the report by polling what the
emulator recorded. What must hold: only instructors train; a bad file is refused with a reason
and leaves the live classifier alone; a classifier built for other features is never used; one
training at a time; and students keep getting answers while a classifier trains.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np

from core.config import Config
from core.inference.engine import InferenceEngine
from core.sentiment import LabelledData
from core.sentiment.service import SentimentService
from tests.bot_harness import Harness, bot_config, running_bot
from tests.discord_emulator import EPHEMERAL, DiscordEmulator, InteractionRecord

POSITIVE = ["good", "great", "wonderful", "happy", "lovely", "excellent", "nice", "amazing",
            "beautiful", "fun"]
NEGATIVE = ["bad", "awful", "terrible", "sad", "ugly", "boring", "poor", "horrible", "worst",
            "dull"]
REPORT_TITLE = "New sentiment classifier is live"


def reviews() -> list[tuple[str, str]]:
    return ([(f"a {w} movie, really {w}", "positive") for w in POSITIVE]
            + [(f"a {w} movie, really {w}", "negative") for w in NEGATIVE])


def csv_bytes(rows: Sequence[tuple[str, str]], header: str = "text,label") -> bytes:
    return (header + "\n" + "".join(f'"{text}",{label}\n' for text, label in rows)).encode()


@asynccontextmanager
async def sentiment_bot(tiny_config: Config, tmp_path, caplog, *, check_clean: bool = True,
                        **sections: dict[str, Any]) -> AsyncIterator[Harness]:
    """A running bot, cooldowns off, the encoder loaded (so answers never say "loading")."""
    sections["discord"] = {"default_cooldown_uses": 0, **sections.get("discord", {})}
    async with running_bot(bot_config(tiny_config, tmp_path, **sections), caplog,
                           check_clean=check_clean) as h:
        registry = h.services.engine.registry
        await asyncio.gather(*(registry.get(spec) for spec in registry.specs))
        yield h


async def upload(h: Harness, data: bytes, *, filename: str = "reviews.csv",
                 user_id: int | None = None) -> InteractionRecord:
    """/classifier train with `data` attached, by the instructor unless told otherwise."""
    record = await h.emu.invoke("classifier", {}, subcommand="train",
                                user_id=user_id or h.emu.moderator_id,
                                attachments={"data": (filename, data, "text/csv")})
    return await record.wait_done(timeout=10)


async def until(record: InteractionRecord, seen: Callable[[], bool],
                timeout: float = 30) -> InteractionRecord:
    """Poll the emulator's record of an interaction (background work posts follow-ups)."""
    deadline = time.monotonic() + timeout
    while not seen():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting; shown: {record.visible_messages}, "
                               f"errors: {record.errors}")
        await asyncio.sleep(0.02)
    return record


async def trained(h: Harness, data: bytes, **kwargs: Any) -> InteractionRecord:
    """Upload, then wait for the background training's report (or its error) to be posted."""
    record = await upload(h, data, **kwargs)
    return await until(record, lambda: finished(record))


def finished(record: InteractionRecord) -> bool:
    return REPORT_TITLE in embed_titles(record) or "Training failed" in record.text


def embed_titles(record: InteractionRecord) -> list[str]:
    return [e.get("title") or "" for m in record.visible_messages for e in m.get("embeds") or []]


def all_ephemeral(record: InteractionRecord) -> bool:
    shown = record.visible_messages
    return bool(shown) and all(m["flags"] & EPHEMERAL for m in shown)


def cdn_downloads(emu: DiscordEmulator) -> list[str]:
    return [r.path for r in emu.requests if r.method == "GET" and r.path.startswith("/attach")]


async def ask_text(h: Harness, text: str = "a wonderful movie") -> InteractionRecord:
    return await h.run("sentiment", {"text": text}, timeout=10)


# ----------------------------------------------------------------------------- the happy path


async def test_instructor_trains_then_students_get_answers(tiny_config, tmp_path, caplog):
    async with sentiment_bot(tiny_config, tmp_path, caplog) as h:
        training = await trained(h, csv_bytes(reviews()))
        classifier = h.bot.sentiment.classifier
        answer = await ask_text(h)
        info = await h.run("classifier", {}, subcommand="info", user_id=h.emu.moderator_id)
        rows = await h.rows()

    # Deferred ephemerally, then "Training on N" in its place, then the report as a follow-up.
    assert training.first_response["type"] == 5 and all_ephemeral(training)
    started, report = training.visible_messages
    assert started["content"].startswith("Training on 20 examples.")
    assert embed_titles(training) == [REPORT_TITLE]
    assert classifier is not None and classifier.report is not None
    accuracy = classifier.report.accuracy
    assert re.search(r"^classifier +\d\.\d{3}$", report["embeds"][0]["description"], re.M)
    assert "trained   16 sentences, tested on 4 held out" in report["embeds"][0]["description"]
    assert (tmp_path / "classifier" / "manifest.json").is_file()

    # Everyone may ask; the answer is public and says how good the classifier is.
    assert not answer.ephemeral
    embed = answer.visible_messages[0]["embeds"][0]
    assert re.fullmatch(r"(negative|positive) \(\d+%\)", embed["title"]), embed["title"]
    assert re.search(r"(negative|positive) \d\.\d{3}$", embed["description"], re.M)
    assert f"held-out accuracy {accuracy:.1%}" in embed["footer"]["text"]

    assert all_ephemeral(info)
    assert info.visible_messages[0]["embeds"][0]["title"] == "Sentiment classifier"
    assert "always 'negative'" in info.visible_messages[0]["embeds"][0]["description"]

    # Every interaction leaves one row: training, the answer, and the staff view.
    assert [(r["command"], r["status"], r["user_id"]) for r in rows] == [
        ("classifier train", "ok", h.emu.moderator_id), ("sentiment", "ok", h.emu.student_id),
        ("classifier info", "ok", h.emu.moderator_id)]
    assert rows[0]["output_summary"] == f"accuracy {accuracy:.3f}"
    assert re.fullmatch(r"(negative|positive) \d\.\d{3}", rows[1]["output_summary"])
    assert rows[1]["input_text"] == "a wonderful movie"


# --------------------------------------------------------------------------- refused uploads


async def test_bad_files_are_refused_and_the_live_classifier_stays(tiny_config, tmp_path,
                                                                    caplog):
    async with sentiment_bot(tiny_config, tmp_path, caplog) as h:
        await trained(h, csv_bytes(reviews()))
        first = h.bot.sentiment.classifier
        assert first is not None and first.report is not None
        manifest = (tmp_path / "classifier" / "manifest.json").read_bytes()

        no_label = await upload(h, csv_bytes(reviews(), header="text,mood"))
        one_class = await upload(h, csv_bytes(reviews()[:10]))
        # Parses fine (both classes), but is too small to hold out a test set: this one fails
        # in the background training, after "Training on 3 examples" was already said.
        tiny = await trained(h, csv_bytes(reviews()[:2] + reviews()[-1:]))
        answer = await ask_text(h)
        rows = await h.rows()
        live = h.bot.sentiment.classifier

    assert all_ephemeral(no_label) and "no `label` column" in no_label.text
    assert "reviews.csv" in no_label.text
    assert all_ephemeral(one_class) and "both classes" in one_class.text
    assert "'positive'" in one_class.text
    assert all_ephemeral(tiny) and "Training failed: Too few examples" in tiny.text
    assert "previous classifier is still in use" in tiny.text
    for record in (no_label, one_class, tiny):
        assert REPORT_TITLE not in embed_titles(record)

    assert live is first
    assert (tmp_path / "classifier" / "manifest.json").read_bytes() == manifest
    footer = answer.visible_messages[0]["embeds"][0]["footer"]["text"]
    assert f"held-out accuracy {first.report.accuracy:.1%}" in footer
    assert [(r["command"], r["status"], r["error"]) for r in rows] == [
        ("classifier train", "ok", ""),
        ("classifier train", "user_error", "invalid_input"),
        ("classifier train", "user_error", "invalid_input"),
        ("classifier train", "user_error", "invalid_input"),
        ("sentiment", "ok", ""),
    ]


async def test_a_file_over_the_size_limit_is_refused_before_download(tiny_config, tmp_path,
                                                                      caplog):
    data = csv_bytes(reviews())
    assert len(data) > 200
    async with sentiment_bot(tiny_config, tmp_path, caplog,
                             sentiment={"max_upload_bytes": 200}) as h:
        record = await upload(h, data)
        downloads = cdn_downloads(h.emu)
        rows = await h.rows()
        classifier = h.bot.sentiment.classifier
    assert record.first_response["type"] == 4  # refused at once, no "thinking…"
    assert all_ephemeral(record)
    assert f"That file is {len(data):,} bytes; the limit is 200." in record.text
    assert downloads == []
    assert classifier is None
    assert [(r["command"], r["status"], r["error"]) for r in rows] == [
        ("classifier train", "user_error", "invalid_input")]


async def test_students_cannot_train(tiny_config, tmp_path, caplog):
    async with sentiment_bot(tiny_config, tmp_path, caplog) as h:
        record = await upload(h, csv_bytes(reviews()), user_id=h.emu.student_id)
        await asyncio.sleep(0.2)  # anything the bot might (wrongly) still do in the background
        downloads = cdn_downloads(h.emu)
        classifier, training = h.bot.sentiment.classifier, h.bot.sentiment.training
        rows = await h.rows()
    assert record.first_response["type"] == 4 and all_ephemeral(record)
    assert "Only" in record.text and "/classifier train" in record.text
    assert "Training on" not in record.text
    assert downloads == [] and classifier is None and not training
    assert not (tmp_path / "classifier").exists()
    assert [(r["command"], r["status"], r["user_id"]) for r in rows] == [
        ("classifier train", "refused", h.emu.student_id)]


# ------------------------------------------------------------------------ encoder mismatch


async def test_a_classifier_for_other_features_is_not_used(tiny_config, tmp_path, caplog):
    # Train and save a classifier on mean-pooled features, outside the bot...
    mean = bot_config(tiny_config, tmp_path, sentiment={"pooling": "mean"})
    async with InferenceEngine(mean) as engine:
        service = SentimentService(engine, mean)
        texts = tuple(text for text, _ in reviews())
        labels = tuple(int(label == "positive") for _, label in reviews())
        await service.train(LabelledData(texts, labels))
    assert (tmp_path / "classifier" / "manifest.json").is_file()

    # ...then start the bot configured for [CLS] pooling on the same directory.
    async with sentiment_bot(tiny_config, tmp_path, caplog, sentiment={"pooling": "cls"}) as h:
        answer = await ask_text(h)
        info = await h.run("classifier", {}, subcommand="info", user_id=h.emu.moderator_id)
        rows = await h.rows()
    assert answer.first_response["type"] == 4 and all_ephemeral(answer)
    text = answer.text
    assert "mean pooling" in text and "cls pooling" in text
    assert "Retrain it with the configured encoder" in text
    assert "/classifier train" in text  # ...and how
    assert "has been trained yet" not in text  # one was, for other features
    assert all_ephemeral(info) and "mean pooling" in info.text
    assert [(r["command"], r["status"], r["error"]) for r in rows] == [
        ("sentiment", "unavailable", "not_ready"), ("classifier info", "unavailable", "not_ready")]
    assert any("sentiment classifier not loaded" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------- background training


async def test_training_runs_in_the_background_one_at_a_time(tiny_config, tmp_path, caplog):
    async with sentiment_bot(tiny_config, tmp_path, caplog) as h:
        service = h.bot.sentiment
        real_featurize = service.featurize
        reached, release = asyncio.Event(), asyncio.Event()

        async def gated_featurize(texts: Sequence[str]) -> np.ndarray:
            reached.set()
            await release.wait()
            return await real_featurize(texts)

        service.featurize = gated_featurize  # type: ignore[method-assign]
        first = await upload(h, csv_bytes(reviews()))
        await asyncio.wait_for(reached.wait(), 10)

        # While the first training waits: a second upload is refused, students get answers.
        second = await upload(h, csv_bytes(reviews()))
        mask = await h.run("mask", {"text": "Paris is the [MASK] of France."}, timeout=10)
        during = await ask_text(h)
        still_training = service.training and not finished(first)

        release.set()
        await until(first, lambda: finished(first))
        after = await ask_text(h)
        rows = await h.rows()

    assert still_training
    assert second.first_response["type"] == 4 and all_ephemeral(second)
    assert "already training" in second.text
    assert not mask.ephemeral and "Fillers for [MASK]" in mask.text
    assert all_ephemeral(during) and "No sentiment classifier has been trained yet" in during.text
    assert embed_titles(first) == [REPORT_TITLE]
    assert not after.ephemeral and "held-out accuracy" in after.text
    assert sorted((r["command"], r["status"], r["error"]) for r in rows) == sorted([
        ("classifier train", "user_error", "invalid_input"),  # the second upload
        ("mask", "ok", ""),
        ("sentiment", "unavailable", "not_ready"),
        ("classifier train", "ok", ""),
        ("sentiment", "ok", ""),
    ])
