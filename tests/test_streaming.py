"""/generate written as it thinks: the engine's stream (partial texts at the end of decode
steps, pulled by the reader) and the answer it gives, which must be the unstreamed one."""

from __future__ import annotations

import asyncio

import pytest

from core.inference.tasks.generate import GeneratePartial, GenerateRequest

LONG = 40


def grows(partials: list[GeneratePartial], final: tuple[str, ...]) -> None:
    """Each partial text is a beginning of the final one (a half character aside), longer
    each time."""
    assert partials, "the stream gave no partial text"
    for before, after in zip(partials, partials[1:]):
        assert all(a >= b for a, b in zip(after.new_tokens, before.new_tokens))
        assert after.new_tokens != before.new_tokens
    for partial in partials:
        for text, whole in zip(partial.continuations, final):
            assert whole.startswith(text.rstrip("\ufffd")), (text, whole)


@pytest.mark.parametrize("request_", [
    GenerateRequest("Once upon a time", max_new_tokens=LONG, seed=1234),
    GenerateRequest("Once upon a time", max_new_tokens=LONG, temperature=0),
    GenerateRequest("The cat", max_new_tokens=LONG, seed=7, num_return_sequences=3),
], ids=["seeded", "greedy", "three-samples"])
async def test_streamed_text_is_the_unstreamed_answer(engine, request_):
    whole = await engine.submit(request_)
    stream = engine.stream(request_)
    partials = [partial async for partial in stream]
    streamed = await stream
    assert streamed.continuations == whole.continuations
    assert streamed.new_tokens == whole.new_tokens and streamed.seed == whole.seed
    assert len(partials) >= 3
    assert all(len(p.continuations) == request_.num_return_sequences for p in partials)
    grows(partials, whole.continuations)


async def test_a_stream_in_a_batch_changes_nobody_s_text(engine):
    """Sixteen at once, every other one streamed and read: the same texts as one by one."""
    requests = [GenerateRequest(f"Student {i} wrote", max_new_tokens=20, seed=i)
                for i in range(16)]
    alone = [await engine.submit(r) for r in requests]
    streams = [engine.stream(r) if i % 2 else engine.admit(r) for i, r in enumerate(requests)]

    async def read(stream):
        if isinstance(stream, asyncio.Future):
            return await stream
        async for _ in stream:
            await asyncio.sleep(0)
        return await stream

    together = await asyncio.gather(*(read(s) for s in streams))
    assert [r.continuations for r in together] == [r.continuations for r in alone]
    assert max(r.timings.batch_size for r in together) > 1  # they did share batches


async def test_a_stream_nobody_reads_only_gives_the_answer(engine):
    request = GenerateRequest("Once upon a time", max_new_tokens=10, seed=5)
    stream = engine.stream(request)
    result = await stream
    assert result.continuations == (await engine.submit(request)).continuations
    assert [p async for p in stream] == []  # finished: nothing more to read


async def test_a_task_that_does_not_stream_ends_at_its_result(engine):
    from core.inference.tasks.fill_mask import FillMaskRequest

    stream = engine.stream(FillMaskRequest("Paris is the [MASK].", 3))
    assert [p async for p in stream] == []
    assert (await stream).fillers


# ------------------------------------------------------------------ through Discord

def slow_steps(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Each decode step of /generate takes at least `seconds` (the tiny model is too quick
    to watch it write)."""
    import time

    from core.inference.tasks import generate

    choose = generate._choose

    def slowly(*args, **kwargs):
        time.sleep(seconds)
        return choose(*args, **kwargs)

    monkeypatch.setattr(generate, "_choose", slowly)


def versions(emu, record) -> list[tuple[float, str, dict]]:
    """(arrival, description, embed) of each accepted edit of the answer's message."""
    token = record.token
    out = []
    for request in emu.find_requests("PATCH", f"/webhooks/\\d+/{token}/messages/@original"):
        if request.status == 200 and request.json and request.json.get("embeds"):
            embed = request.json["embeds"][0]
            out.append((request.time, embed.get("description") or "", embed))
    return out


def streaming_config(tiny_config, tmp_path, **discord):
    from tests.test_interactions import config_for

    return config_for(tiny_config, tmp_path, **discord)


async def test_a_long_generate_grows_in_place_at_most_once_a_second(
        tiny_config, tmp_path, caplog, monkeypatch):
    """The real default spacing (1 s): at least 3 growing versions before the final one, no two
    edits closer than ~0.8 s; the final one alone has the knobs and the buttons; one row."""
    from tests.bot_harness import running_bot
    from tests.test_interactions import answered, labels
    from tests.test_reliability import models_ready

    slow_steps(monkeypatch, 0.05)  # 100 tokens: about 5 s
    options = {"prompt": "Once upon a time", "max_new_tokens": 100, "seed": 1234}
    async with running_bot(streaming_config(tiny_config, tmp_path), caplog) as h:
        assert h.bot.config.discord.stream_edit_interval_s == 1.0  # the default
        await models_ready(h)
        record = await h.emu.invoke("generate", options)
        await record.wait_first_response()
        final = None
        for _ in range(600):
            shown = record.message
            if shown and shown.get("embeds") and shown["components"]:
                final = shown
                break
            await asyncio.sleep(0.02)
        assert final is not None, "no final answer"
        await answered(record)
        seen = versions(h.emu, record)
        rows = await h.rows()
    *growing, last = seen
    assert len(growing) >= 3, [d for _, d, _ in seen]
    texts = [d.removesuffix(" ▌") for _, d, _ in growing]
    assert all(b.startswith(a.rstrip("\ufffd")) and len(b) > len(a)
               for a, b in zip(texts, texts[1:]))
    assert all(e["footer"]["text"].startswith("✍️ writing…") for _, _, e in growing)
    assert all("seed 1234" in e["footer"]["text"] for _, _, e in [last])
    gaps = [b[0] - a[0] for a, b in zip(seen, seen[1:-1])]
    assert min(gaps) >= 0.8, gaps
    assert "Same seed again" in labels(record)
    assert [(r["command"], r["status"]) for r in rows] == [("generate", "ok")]


async def test_streamed_answer_equals_the_unstreamed_one(tiny_config, tmp_path, caplog,
                                                         monkeypatch):
    """The same seed, streaming on and off: the same final message (greedy, n > 1 too)."""
    from tests.bot_harness import running_bot
    from tests.test_interactions import answered, embed
    from tests.test_reliability import models_ready

    slow_steps(monkeypatch, 0.01)
    asks = [{"prompt": "Once upon a time", "max_new_tokens": 30, "seed": 99},
            {"prompt": "Once upon a time", "max_new_tokens": 30, "temperature": 0.0},
            {"prompt": "The cat", "max_new_tokens": 30, "seed": 3, "num_return_sequences": 3}]
    finals: dict[bool, list[str]] = {}
    counts: dict[bool, int] = {}
    for on in (True, False):
        config = streaming_config(tiny_config, tmp_path / str(on), stream_generate=on,
                                  stream_edit_interval_s=0.1, stream_channel_edits=50,
                                  stream_channel_window_s=1.0)
        async with running_bot(config, caplog) as h:
            await models_ready(h)
            finals[on] = []
            for options in asks:
                record = await answered(await h.emu.invoke("generate", options))
                for _ in range(200):  # past the growing versions to the final one
                    if record.message["components"]:
                        break
                    await asyncio.sleep(0.02)
                finals[on].append(embed(record)["description"])
            counts[on] = len([r for r in h.emu.find_requests("PATCH", "@original")
                              if r.status == 200])
    assert finals[True] == finals[False]
    assert "**3.**" in finals[True][2]
    assert counts[True] > counts[False]  # it did stream


async def test_a_class_generating_at_once_stays_within_the_channel_limit(
        tiny_config, tmp_path, caplog, monkeypatch):
    """30 students in one channel, Discord allowing 10 edits a second there: no 429 storm,
    and every student gets the final text."""
    from tests.bot_harness import running_bot
    from tests.test_reliability import models_ready

    slow_steps(monkeypatch, 0.01)
    config = streaming_config(tiny_config, tmp_path, stream_edit_interval_s=0.2,
                              stream_channel_edits=10, stream_channel_window_s=1.0)
    async with running_bot(config, caplog) as h:
        await models_ready(h)
        h.emu.limit_channel_edits(10, per_s=1.0)
        students = [h.emu.guild.add_member(f"s{i}", roles=["Student"]) for i in range(30)]
        records = await asyncio.gather(*(
            h.emu.invoke("generate", {"prompt": f"Student {i} says", "max_new_tokens": 40,
                                      "seed": i}, user_id=uid)
            for i, uid in enumerate(students)))
        deadline = asyncio.get_running_loop().time() + 120
        while not all(r.message and r.message["components"] for r in records):
            assert asyncio.get_running_loop().time() < deadline, "not everyone got the answer"
            await asyncio.sleep(0.05)
        rows = await h.rows()
        limited = list(h.emu.edit_rate_limited)
        h.emu.limit_channel_edits(None)
    assert len(limited) <= 3, f"{len(limited)} edits answered 429"
    assert all(r.message["embeds"][0]["footer"]["text"].startswith("model:") for r in records)
    assert sorted(r["status"] for r in rows) == ["ok"] * 30


async def test_a_429_delays_the_next_edit_and_loses_no_text(tiny_config, tmp_path, caplog,
                                                            monkeypatch):
    """Discord refuses the first growing edit (429, retry after 3 s, longer than the rest of
    the generation): discord.py waits it out, no edit overtakes it, and the final answer comes
    after it, whole."""
    from tests.bot_harness import running_bot
    from tests.test_interactions import answered, embed
    from tests.test_reliability import models_ready

    slow_steps(monkeypatch, 0.04)
    config = streaming_config(tiny_config, tmp_path, stream_edit_interval_s=0.3)
    options = {"prompt": "Once upon a time", "max_new_tokens": 60, "seed": 8}
    async with running_bot(config, caplog) as h:
        await models_ready(h)
        unstreamed = await h.services.engine.submit(GenerateRequest(
            "Once upon a time", max_new_tokens=60, seed=8))
        h.emu.rate_limit_next(r"/webhooks/\d+/[^/]+/messages/@original", retry_after=3.0)
        record = await h.emu.invoke("generate", options)
        for _ in range(500):
            if record.message and record.message["components"]:
                break
            await asyncio.sleep(0.02)
        await answered(record)
        patches = h.emu.find_requests("PATCH", f"{record.token}/messages/@original")
        rows = await h.rows()
    refused = [r for r in patches if r.status == 429]
    accepted = [r for r in patches if r.status == 200]
    assert len(refused) == 1
    assert accepted[0].time - refused[0].time >= 3.0  # the same edit, retried after the wait
    assert all(r.time >= accepted[0].time for r in accepted)
    from bot.interactions.render import render_generate

    assert embed(record)["description"] == render_generate(unstreamed).embeds[0].description
    assert "seed 8" in embed(record)["footer"]["text"]
    assert [(r["command"], r["status"]) for r in rows] == [("generate", "ok")]
