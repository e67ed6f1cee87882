"""The engine under pressure, with real tiny models, real worker threads and a real event loop:
full queues, callers that leave, timeouts, a model that will not load, shutdown, a task that
crashes on one input, shared weights, and a loop that must stay responsive meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import Config, ModelSpec
from core.errors import (
    EngineClosed,
    InvalidInput,
    ModelUnavailable,
    Overloaded,
    RequestTimeout,
)
from core.inference.engine import InferenceEngine
from core.inference.models import Head, LoadState
from core.inference.tasks.features import FeaturesRequest, FeaturesResult
from core.inference.tasks.fill_mask import FillMaskRequest, FillMaskResult
from core.inference.tasks.generate import GenerateRequest, GenerateResult
from core.inference.tasks.qa import QARequest, QAResult
from core.inference.tasks.tokens import TokensRequest, TokensResult
from tests.conftest import with_engine

MASK = FillMaskRequest("Paris is the [MASK] of France.", top_k=3)


def _with_models(config: Config, **models: object) -> Config:
    return dataclasses.replace(config, models=dataclasses.replace(config.models, **models))


def _long_generate(**options: object) -> GenerateRequest:
    """Long enough (hundreds of decode steps) to still be running a few ms after it starts."""
    return GenerateRequest(
        "Once upon a time", **{"max_new_tokens": 100, "num_return_sequences": 5, "seed": 1,
                               "temperature": 1.0, "top_k": 50, **options}
    )


@contextlib.asynccontextmanager
async def _engine(config: Config) -> AsyncIterator[InferenceEngine]:
    """A started engine whose background loads have all finished (or failed) before the test.

    A load abandoned at close keeps running in its thread; one still running when a later test
    loads a model outside the registry would race it (see the untied-weights test below).
    """
    async with InferenceEngine(config) as engine:
        await _settle_loads(engine)
        yield engine


async def _settle_loads(engine: InferenceEngine) -> None:
    specs = engine.registry.specs
    await asyncio.gather(*(engine.registry.get(s) for s in specs), return_exceptions=True)


async def _wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        assert time.perf_counter() < deadline, "condition never became true"
        await asyncio.sleep(0.001)


# --- admission ----------------------------------------------------------------------------------


async def test_full_queue_is_overloaded_at_once(tiny_config):
    async with _engine(with_engine(tiny_config, queue_size=2)) as engine:
        outcomes = await asyncio.gather(
            *(engine.submit(MASK) for _ in range(10)), return_exceptions=True
        )
        answered = [o for o in outcomes if isinstance(o, FillMaskResult)]
        refused = [o for o in outcomes if isinstance(o, Overloaded)]
        assert len(answered) == 2 and len(refused) == 8
        assert "busy" in refused[0].message
        # Refusal is momentary: once the queue drained, the lane takes requests again.
        assert isinstance(await engine.submit(MASK), FillMaskResult)


async def test_queue_is_per_model(tiny_config):
    """A full /generate queue does not refuse /mask: each model has its own lane."""
    async with _engine(with_engine(tiny_config, queue_size=2)) as engine:
        outcomes = await asyncio.gather(
            *(engine.submit(_long_generate(num_return_sequences=1)) for _ in range(4)),
            engine.submit(MASK), engine.submit(MASK),
            return_exceptions=True,
        )
        assert [type(o) for o in outcomes] == [
            GenerateResult, GenerateResult, Overloaded, Overloaded, FillMaskResult,
            FillMaskResult,
        ]


# --- callers that leave -------------------------------------------------------------------------


async def test_cancelled_waiting_caller_is_skipped(engine):
    await engine.submit(MASK)  # model loaded, lane idle
    texts = [f"The {w} is [MASK]." for w in ("man", "woman", "dog", "cat", "movie", "book")]
    callers = [asyncio.create_task(engine.submit(FillMaskRequest(t))) for t in texts]
    await asyncio.sleep(0)  # every caller is queued, the batcher has not collected yet
    callers[2].cancel()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(outcomes[2], asyncio.CancelledError)
    for text, outcome in zip(texts[:2] + texts[3:], outcomes[:2] + outcomes[3:]):
        assert isinstance(outcome, FillMaskResult) and outcome.text == text
        assert outcome.timings.batch_size == 5  # the cancelled one took no row
    assert isinstance(await engine.submit(MASK), FillMaskResult)


def _hold_masks_saying_held(monkeypatch) -> threading.Event:
    """Fill-mask batches with "held" in a text wait in their worker until the event is set."""
    from core.inference.tasks.fill_mask import FillMaskTask

    release = threading.Event()
    original = FillMaskTask.run_batch

    def held(self, model, requests, emit):
        if any("held" in r.text for r in requests):
            assert release.wait(30), "the test never released the batch"
        return original(self, model, requests, emit)

    monkeypatch.setattr(FillMaskTask, "run_batch", held)
    return release


async def test_callers_that_went_away_free_their_queue_places(tiny_config, monkeypatch):
    """A full queue whose callers left (one cancelled, one timed out) admits new requests while
    their entries still sit in the queue: places are counted for callers still waiting."""

    release = _hold_masks_saying_held(monkeypatch)
    config = with_engine(tiny_config, queue_size=2, max_batch_size=1)
    async with _engine(config) as engine:
        try:
            busy = engine.admit(FillMaskRequest("The held one is [MASK]."))
            lane = engine.lanes[(config.models.mask, None)]
            await _wait_until(lambda: not lane.pending)  # in a worker, holding the lane
            left = [engine.admit(MASK), engine.admit(MASK, timeout=0.05)]
            with pytest.raises(Overloaded):
                engine.admit(MASK)
            left[0].cancel()
            with pytest.raises(RequestTimeout):
                await left[1]
            assert len(lane.pending) == 2  # still queued, but nobody waits for them
            assert engine.queue_state().waiting[str(config.models.mask)] == 0
            admitted = [engine.admit(MASK), engine.admit(MASK)]
            with pytest.raises(Overloaded):
                engine.admit(MASK)
        finally:
            release.set()
        assert isinstance(await busy, FillMaskResult)
        for future in admitted:
            assert isinstance(await future, FillMaskResult)
        assert left[0].cancelled()


async def test_a_waiting_picture_request_knows_its_place_in_line(tiny_config, monkeypatch):
    """A picture request's future is the drawing stage's, not the lane's: its place in line
    (what "in line" shows a student) is still found while it waits, and None once it ran."""
    from core.inference.tasks.attention import AttentionRequest

    release = _hold_masks_saying_held(monkeypatch)
    config = with_engine(tiny_config, max_batch_size=1)
    async with _engine(config) as engine:
        try:
            busy = engine.admit(FillMaskRequest("The held one is [MASK]."))
            lane = engine.lanes[(config.models.mask, None)]
            await _wait_until(lambda: not lane.pending)  # in a worker, holding the lane
            picture = engine.admit(AttentionRequest("Paris is in France."))
            place = engine.queue_place(picture)
            assert place is not None and place.place == 1
        finally:
            release.set()
        assert isinstance(await busy, FillMaskResult)
        assert (await picture).png
        assert engine.queue_place(picture) is None


async def test_an_answered_request_leaves_no_error_behind(engine, caplog):
    """The timer that would stop a request too slow is cancelled by a done callback once it
    is answered: nothing is logged as an error along the way."""
    caplog.set_level(logging.WARNING)
    assert isinstance(await engine.submit(MASK), FillMaskResult)
    await asyncio.sleep(0.01)  # the done callbacks have run
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_cancelled_caller_in_flight_does_not_hurt_its_batch(engine):
    await engine.submit(GenerateRequest("Hello", max_new_tokens=1))
    requests = [_long_generate(seed=s, num_return_sequences=2) for s in range(4)]
    callers = [asyncio.create_task(engine.submit(r)) for r in requests]
    await _wait_until(lambda: not any(engine.lanes[(engine.task_for(r).spec(r), None)].pending
                                      for r in requests))
    await asyncio.sleep(0.01)  # decoding has started
    callers[0].cancel()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(outcomes[0], asyncio.CancelledError)
    alone = await engine.submit(requests[1])
    assert isinstance(outcomes[1], GenerateResult)
    assert outcomes[1].continuations == alone.continuations  # the neighbours were unaffected
    assert all(isinstance(o, GenerateResult) for o in outcomes[1:])


async def test_timeout_gives_request_timeout_and_the_lane_keeps_serving(engine):
    await engine.submit(GenerateRequest("Hello", max_new_tokens=1))
    with pytest.raises(RequestTimeout) as info:
        await engine.submit(_long_generate(), timeout=0.01)
    assert "too long" in info.value.message
    result = await engine.submit(GenerateRequest("Hello", max_new_tokens=5, temperature=0))
    assert result.new_tokens[0] <= 5


async def test_configured_timeout_applies_by_default(tiny_config):
    async with _engine(with_engine(tiny_config, request_timeout_s=0.01)) as engine:
        await engine.submit(GenerateRequest("Hello", max_new_tokens=1), timeout=30)
        with pytest.raises(RequestTimeout):
            await engine.submit(_long_generate())
        assert isinstance(await engine.submit(MASK, timeout=30), FillMaskResult)


# --- model loading ------------------------------------------------------------------------------


async def test_model_that_fails_to_load(tiny_config, tmp_path: Path, caplog):
    missing = ModelSpec(str(tmp_path / "no-such-model"))
    # Loaded on first use, so the first request is queued and waits on the failing load.
    config = _with_models(tiny_config, qa=missing, load_at_start=False)
    async with InferenceEngine(config) as engine:
        question = QARequest("Where is Paris?", "Paris is in France.")
        outcomes = await asyncio.gather(
            engine.submit(question), engine.submit(question), return_exceptions=True
        )
        assert all(isinstance(o, ModelUnavailable) for o in outcomes)
        info = outcomes[0]
        assert "no-such-model" in info.message and "could not be loaded" in info.message
        status = engine.status(question)
        assert status.state is LoadState.FAILED and not status.ready and status.error
        # The other models are unaffected.
        assert isinstance(await engine.submit(MASK), FillMaskResult)
        # Later requests fail fast, naming the reason, without queueing.
        started = time.perf_counter()
        with pytest.raises(ModelUnavailable) as again:
            await engine.submit(question)
        assert time.perf_counter() - started < 0.05
        assert again.value.message == (
            f"The model `{missing}` is not available: {status.error}")
        assert not engine.lanes[(missing, None)].pending
    assert any("could not load" in r.getMessage() for r in caplog.records)


async def test_untied_weights_make_the_model_unavailable_not_silently_broken(
    tiny_config, monkeypatch
):
    """Two threads in transformers' `no_tie_weights` at once leave `tie_weights` a no-op for
    the rest of the process (seen here). This is that leftover state, restored afterwards:
    the registry must refuse the model with a reason, not serve weights left on `meta`."""
    import transformers

    monkeypatch.setattr(transformers.PreTrainedModel, "tie_weights", lambda *a, **k: None)
    # Only the model asked for loads, and its load is over before the patch is undone.
    async with InferenceEngine(_with_models(tiny_config, load_at_start=False)) as engine:
        with pytest.raises(ModelUnavailable, match="meta device"):
            await engine.submit(MASK)
        assert engine.status(MASK).state is LoadState.FAILED


async def test_request_during_load_waits_and_status_reports_loading(tiny_config):
    config = _with_models(tiny_config, load_at_start=False)
    async with InferenceEngine(config) as engine:
        assert engine.status(MASK).state is LoadState.PENDING
        caller = asyncio.create_task(engine.submit(MASK))
        seen = set()
        while not caller.done():
            seen.add(engine.status(MASK).state)
            await asyncio.sleep(0.001)
        assert LoadState.LOADING in seen
        assert isinstance(caller.result(), FillMaskResult)
        status = engine.status(MASK)
        assert status.state is LoadState.READY and status.ready and status.error is None
        assert status.model_id == str(config.models.mask)
        # Only the model asked for was loaded.
        assert engine.status(QARequest("q", "c")).state is LoadState.PENDING


# --- shutdown -----------------------------------------------------------------------------------


async def test_aclose_finishes_the_batch_in_flight_and_fails_the_queue(tiny_config):
    engine = InferenceEngine(with_engine(tiny_config, max_batch_size=1))
    await engine.start()
    await _settle_loads(engine)
    await engine.submit(GenerateRequest("Hello", max_new_tokens=1))
    requests = [_long_generate(seed=s) for s in range(5)]
    callers = [asyncio.create_task(engine.submit(r)) for r in requests]
    lane = engine.lanes[(tiny_config.models.generate, None)]
    await _wait_until(lambda: len(lane.pending) == 4)  # the first is in a worker now
    await engine.aclose()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(outcomes[0], GenerateResult)
    assert outcomes[0].stop_reasons != ("cancelled",) * 5
    for outcome in outcomes[1:]:
        assert isinstance(outcome, EngineClosed) and "restarting" in outcome.message
    with pytest.raises(EngineClosed):
        await engine.submit(MASK)
    await engine.aclose()  # twice is fine


async def test_aclose_while_a_model_is_loading(tiny_config):
    """Shutdown right after the first request started a load: the caller is told, no crash."""
    engine = InferenceEngine(_with_models(tiny_config, load_at_start=False))
    await engine.start()
    caller = asyncio.create_task(engine.submit(MASK))
    await _wait_until(lambda: engine.status(MASK).state is LoadState.LOADING)
    await engine.aclose()
    with pytest.raises(EngineClosed):
        await caller


async def test_submit_before_start_is_refused(tiny_config):
    engine = InferenceEngine(tiny_config)
    with pytest.raises(EngineClosed) as refused:
        await engine.submit(MASK)
    assert refused.value.message == "The bot is restarting. Try again in a minute."
    await engine.aclose()


# --- a task that crashes on one input -----------------------------------------------------------


async def test_a_crash_on_one_input_fails_only_that_request(engine, monkeypatch, caplog):
    task = engine.task_for(MASK)
    original = task.run_batch
    calls = []

    def run_batch(model, requests, emit):
        calls.append(len(requests))
        if any("boom" in r.text for r in requests):
            raise ValueError("boom in the task")
        return original(model, requests, emit)

    monkeypatch.setattr(task, "run_batch", run_batch)
    texts = ["The man is [MASK].", "The woman is [MASK].", "boom [MASK]", "The cat is [MASK]."]
    outcomes = await asyncio.gather(
        *(engine.submit(FillMaskRequest(t)) for t in texts), return_exceptions=True
    )
    assert calls == [4, 1, 1, 1, 1]  # one batch, then retried one by one
    assert isinstance(outcomes[2], ValueError) and "boom" in str(outcomes[2])
    for text, outcome in zip(texts[:2] + texts[3:], outcomes[:2] + outcomes[3:]):
        assert isinstance(outcome, FillMaskResult) and outcome.text == text
    assert isinstance(await engine.submit(MASK), FillMaskResult)
    assert any("retrying one by one" in r.getMessage() for r in caplog.records)


async def test_a_user_error_raised_by_a_task_reaches_the_student(engine, monkeypatch):
    task = engine.task_for(MASK)

    def run_batch(model, requests, emit):
        raise InvalidInput("That mask cannot be filled.")

    monkeypatch.setattr(task, "run_batch", run_batch)
    with pytest.raises(InvalidInput, match="cannot be filled"):
        await engine.submit(MASK)


async def test_a_task_that_forgets_a_request_does_not_hang_it(engine, monkeypatch):
    task = engine.task_for(MASK)
    original = task.run_batch

    def run_batch(model, requests, emit):
        def forget_first(index, outcome):
            if index != 0:
                emit(index, outcome)

        forget_first.wanted = emit.wanted  # the rest of the `Emit` protocol, unchanged
        original(model, requests, forget_first)

    monkeypatch.setattr(task, "run_batch", run_batch)
    with pytest.raises(RuntimeError, match="no result"):
        await engine.submit(MASK, timeout=10)


# --- shared weights -----------------------------------------------------------------------------


async def test_mask_tokens_and_features_share_one_distilbert(engine, tiny_config):
    mask_spec = tiny_config.models.mask
    assert tiny_config.models.features == mask_spec
    for request in (MASK, TokensRequest("Hello"), FeaturesRequest("Hello")):
        assert engine.task_for(request).spec(request) == mask_spec
    # One registry entry per model: mask/tokens/features, qa, generate (and bpe tokens).
    assert sorted(map(str, engine.registry.specs)) == sorted(
        map(str, {mask_spec, tiny_config.models.qa, tiny_config.models.generate})
    )
    loaded = await engine.registry.get(mask_spec)
    assert await engine.registry.get(mask_spec) is loaded
    assert set(loaded.modules) == {Head.MASKED_LM}  # no second copy for the encoder
    encoder = loaded.module(Head.ENCODER)
    assert encoder is loaded.module(Head.MASKED_LM).base_model

    # And features really come from that module.
    result = await engine.submit(FeaturesRequest("a good movie", "cls"))
    batch = loaded.tokenizer(["a good movie"], return_tensors="pt")
    with torch.inference_mode():
        expected = encoder(**batch).last_hidden_state[0, 0].numpy()
    np.testing.assert_allclose(result.vector, expected, atol=1e-5)


# --- timings and concurrency --------------------------------------------------------------------


async def test_timings_are_filled(engine):
    result = await engine.submit(MASK)
    assert result.timings.queued_ms >= 0 and result.timings.inference_ms >= 0
    assert result.timings.batch_size == 1


async def test_forty_mixed_requests_are_all_answered_and_batched(engine):
    requests: list = []
    for i in range(8):
        requests += [
            TokensRequest(f"Hello world number {i}", "wordpiece" if i % 2 else "bpe"),
            FillMaskRequest(f"The {i} man is a [MASK]."),
            QARequest("Where is the bank?", f"The bank {i} is by the river."),
            FeaturesRequest(f"a good movie {i}", "mean" if i % 2 else "cls"),
            GenerateRequest(f"Once upon a time {i}", max_new_tokens=8, seed=i),
        ]
    expected = {TokensRequest: TokensResult, FillMaskRequest: FillMaskResult,
                QARequest: QAResult, FeaturesRequest: FeaturesResult,
                GenerateRequest: GenerateResult}
    results = await asyncio.gather(*(engine.submit(r) for r in requests))
    assert len(results) == 40
    for request, result in zip(requests, results):
        assert isinstance(result, expected[type(request)])
        assert result.timings.batch_size >= 1 and result.timings.queued_ms >= 0
    for kind in expected:
        sizes = [r.timings.batch_size for q, r in zip(requests, results) if type(q) is kind]
        assert max(sizes) > 1, kind.__name__


async def test_event_loop_stays_responsive_during_a_big_generate_batch(engine):
    await engine.submit(GenerateRequest("Hello", max_new_tokens=1))
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            gaps.append(time.perf_counter() - before)

    ticking = asyncio.create_task(ticker())
    results = await asyncio.gather(
        *(engine.submit(_long_generate(seed=s, num_return_sequences=1)) for s in range(16))
    )
    done.set()
    await ticking
    assert max(r.timings.batch_size for r in results) == 16
    assert len(gaps) > 5
    assert max(gaps) < 0.25, f"event loop blocked for {max(gaps) * 1000:.0f} ms"


async def test_tokens_do_not_wait_behind_the_model_s_forward_passes(engine):
    """/tokens has a lane (and a tokenizer copy) of its own, so a long generation on the same
    model does not hold it up, and sharing the model's tokenizer across threads is avoided."""
    generating = asyncio.gather(*(
        engine.submit(GenerateRequest(f"Story {i}", max_new_tokens=100, temperature=0))
        for i in range(8)
    ))
    await asyncio.sleep(0.05)  # the generation batch is running now
    pieces = await engine.submit(TokensRequest("Tokenization while busy", "bpe"))
    assert not generating.done()
    assert pieces.tokens and pieces.timings.queued_ms < 1000
    await generating
    spec = engine.config.models.generate
    own, main = engine.lanes[(spec, "tokens")], engine.lanes[(spec, None)]
    assert own.runner.model.tokenizer is not main.runner.model.tokenizer
    assert own.runner.model.modules is main.runner.model.modules  # the weights are shared
    # Each lane is reported under its own name.
    assert {str(spec), f"{spec} (tokens)"} <= set(engine.queue_state().waiting)


class _RecordingRemote:
    """Stands in for the Ray backend at the one place `admit` consults it: which lanes it runs.
    Its runner answers every request with the name of the model it was routed to."""

    def __init__(self) -> None:
        self.routed: list[str] = []

    def state(self, spec):
        return LoadState.READY, None

    def runner(self, spec):
        routed = self.routed

        class Runner:
            slots = 1

            async def ready(self) -> None:
                return None

            async def run(self, batch) -> None:
                for item in batch:
                    routed.append(str(spec))
                    item.future.set_result(f"remote:{spec}")

        return Runner()


async def test_with_a_remote_backend_forwards_go_remote_and_tokens_stay_here(tiny_config):
    """Under `backend = "ray"` the replicas run every model lane; `/tokens` keeps its own lane
    here (its tokenizer is the only thing the bot loads)."""
    async with _engine(tiny_config) as engine:
        engine.remote = _RecordingRemote()
        assert await engine.submit(MASK) == f"remote:{tiny_config.models.mask}"
        pieces = await engine.submit(TokensRequest("Hello there", "wordpiece"))
        assert isinstance(pieces, TokensResult) and pieces.tokens
        assert engine.remote.routed == [str(tiny_config.models.mask)]
        engine.remote = None  # aclose must not stop a backend it never started


# --- latency at low load ----------------------------------------------------------------------

async def test_a_lone_request_waits_for_company_only_a_share_of_a_forward(tiny_config):
    """`max_wait_ms` bounds the wait, and so does a quarter of the lane's batch time: once the
    lane knows its forwards take a few ms, a lone request no longer sits out the whole window."""
    config = dataclasses.replace(tiny_config, engine=dataclasses.replace(
        tiny_config.engine, max_wait_ms=400.0))
    async with _engine(config) as engine:
        started = time.perf_counter()
        await engine.submit(MASK)  # the lane has no batch time yet: the configured window
        assert time.perf_counter() - started >= 0.4
        lane = next(iter(engine.lanes.values()))
        await _wait_until(lambda: lane.batch_seconds is not None)  # set once the batch returns
        assert lane.batch_seconds < 0.2
        alone = []
        for _ in range(3):
            started = time.perf_counter()
            await engine.submit(MASK)
            alone.append(time.perf_counter() - started)
        assert min(alone) < 0.2, alone
        assert lane.company_wait() <= 0.25 * lane.batch_seconds
        # Requests that arrive together still share a forward.
        results = await asyncio.gather(*(engine.submit(FillMaskRequest(f"A [MASK] {i}.", 3))
                                         for i in range(4)))
        assert {r.timings.batch_size for r in results} == {4}
