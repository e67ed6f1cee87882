"""The drawing stage: pictures are drawn after the forward, off the model's lane.

Real tiny models, real drawing processes: `/attention` and `/mask` share the mask model's lane,
so before the stage a `/mask` queued behind a batch of `/attention` waited for every heatmap.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import time

import pytest
from PIL import Image

from core.errors import Overloaded
from core.inference.engine import InferenceEngine
from core.inference.tasks.attention import AttentionRequest
from core.inference.tasks.fill_mask import FillMaskRequest
from core.inference.tasks.nexttoken import NextTokenRequest
from tests.conftest import with_engine

SENTENCE = "The woman went to the bank to deposit money and then she went home."
PICTURES = 12


async def _ready(engine: InferenceEngine) -> None:
    await asyncio.gather(*(engine.registry.get(spec) for spec in engine.registry.specs))


async def test_mask_is_answered_while_pictures_are_still_drawing(tiny_config):
    # One drawing process: twelve heatmaps take seconds; the forwards take milliseconds.
    config = with_engine(tiny_config, picture_workers=1)
    async with InferenceEngine(config) as engine:
        await _ready(engine)
        await engine.submit(AttentionRequest("warm up the drawing process"))
        done: dict[str, float] = {}

        async def timed(name: str, request) -> object:
            result = await engine.submit(request)
            done[name] = time.perf_counter()
            return result

        started = time.perf_counter()
        pictures = [asyncio.create_task(timed(f"attention {i}", AttentionRequest(SENTENCE)))
                    for i in range(PICTURES)]
        await asyncio.sleep(0)  # the attention requests are queued first, on the same lane
        mask = await timed("mask", FillMaskRequest("Paris is the [MASK] of France."))
        still_drawing = engine.pictures.in_flight
        results = await asyncio.gather(*pictures)
    assert mask.fillers
    finished = sorted(done[f"attention {i}"] for i in range(PICTURES))
    print(f"\n/mask answered after {(done['mask'] - started) * 1000:.0f} ms with "
          f"{still_drawing} pictures in flight; the last picture after "
          f"{(finished[-1] - started) * 1000:.0f} ms")
    # The text answer did not wait for the pictures queued before it on its model's lane.
    assert done["mask"] < finished[PICTURES // 2]
    assert still_drawing > PICTURES // 2
    for result in results:
        assert Image.open(io.BytesIO(result.png)).size == (1000, 1000)
        assert result.drawing is None and result.timings.drawing_ms > 0


async def test_pictures_beyond_the_queue_are_refused_as_busy(tiny_config):
    config = with_engine(tiny_config, picture_workers=1, picture_queue_size=2)
    async with InferenceEngine(config) as engine:
        await _ready(engine)
        admitted = [asyncio.create_task(engine.submit(NextTokenRequest("Hello, I am")))
                    for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="busy|many pictures"):
            await engine.submit(AttentionRequest(SENTENCE))
        # A text answer is not refused: only pictures are bounded here.
        assert (await engine.submit(FillMaskRequest("a [MASK] b"))).fillers
        for result in await asyncio.gather(*admitted):
            assert result.png.startswith(b"\x89PNG")
        assert engine.pictures.in_flight == 0
        # Tickets came back: new pictures are admitted again.
        assert (await engine.submit(AttentionRequest(SENTENCE))).png


async def test_a_caller_that_goes_away_gives_its_place_back(tiny_config):
    config = with_engine(tiny_config, picture_workers=1, picture_queue_size=3)
    async with InferenceEngine(config) as engine:
        await _ready(engine)
        for _ in range(3):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(engine.submit(AttentionRequest(SENTENCE)), 0.001)
        deadline = time.monotonic() + 30
        while engine.pictures.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert engine.pictures.in_flight == 0
        assert (await engine.submit(AttentionRequest(SENTENCE))).png


async def test_aclose_stops_the_drawing_processes(tiny_config):
    config = with_engine(tiny_config, picture_workers=2)
    before = {p.pid for p in multiprocessing.active_children()}
    engine = InferenceEngine(config)
    await engine.start()
    await _ready(engine)
    result = await engine.submit(AttentionRequest(SENTENCE))
    assert result.png
    drawers = [p for p in multiprocessing.active_children() if p.pid not in before]
    assert len(drawers) == 2
    await engine.aclose()
    for process in drawers:
        process.join(5)
        assert not process.is_alive()


async def test_warmed_waits_until_every_drawing_process_has_imported_matplotlib(tiny_config):
    """Benchmarks measure after `warmed`: a drawing process still importing takes most of a
    core. Once it returns, every import `start` sent has finished."""
    config = with_engine(tiny_config, picture_workers=2)
    async with InferenceEngine(config) as engine:
        warming = list(engine.pictures._warming)
        assert len(warming) == 2
        await engine.pictures.warmed()
        assert all(f.done() and f.exception() is None for f in warming)
