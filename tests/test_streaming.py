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
