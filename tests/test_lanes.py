"""The lane's own promises, without a model: how long it waits for company, when it stops
waiting, and what it counts as a full queue.

The engine tests (tests/test_engine.py) drive lanes through real models; these drive one
`Lane` directly with a runner that records each batch, so a wait that ends too early or too
late shows as a batch of the wrong size or a batch that came late.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest

from core.config import EngineConfig, LimitsConfig, ModelsConfig
from core.errors import Overloaded
from core.inference.lanes import WAIT_SHARE, Lane, Pending, resolve
from core.inference.tasks.base import Task


@dataclass(frozen=True)
class Echo:
    """A request that costs `rows` rows and is answered with its own `label`."""

    label: str
    rows: int = 1
    group: str = "a"


class EchoTask(Task[Echo, str]):
    """The task declarations a lane reads: rows per request and the batch key."""

    name = "echo"
    request_type = Echo
    needs = {}

    def rows(self, request: Echo) -> int:
        return request.rows

    def batch_key(self, request: Echo) -> str:
        return request.group


class RecordingRunner:
    """Runs every batch at once, answering each caller with its request's label."""

    slots = 1

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.started_at: list[float] = []
        self.streams: list[object] = []

    async def ready(self) -> None:
        return None

    async def run(self, batch: list[Pending]) -> None:
        self.started_at.append(time.perf_counter())
        self.batches.append([item.request.label for item in batch])
        self.streams.extend(item.stream for item in batch)
        for item in batch:
            resolve(item.future, item.request.label)


TASK = EchoTask(ModelsConfig(), LimitsConfig())


async def _lane(**engine) -> tuple[Lane, RecordingRunner]:
    runner = RecordingRunner()
    return Lane("echo", EngineConfig(**engine), runner), runner


async def test_a_full_batch_runs_at_once_without_waiting_out_max_wait():
    """Company is awaited only until the batch is full: a long `max_wait_ms` costs a full
    batch nothing."""
    lane, runner = await _lane(max_batch_size=2, max_wait_ms=5000)
    started = time.perf_counter()
    futures = [lane.put(Echo("one"), TASK), lane.put(Echo("two"), TASK)]
    assert await asyncio.wait_for(asyncio.gather(*futures), 2) == ["one", "two"]
    assert runner.batches == [["one", "two"]]
    assert time.perf_counter() - started < 1.0
    await lane.stop(1)


async def test_the_batcher_waits_for_company_until_the_batch_is_full():
    """Requests that arrive one by one within `max_wait_ms` share the first one's batch, and
    the wait goes on until the batch holds `max_batch_size` of them (not half of it)."""
    lane, runner = await _lane(max_batch_size=4, max_wait_ms=3000)
    futures = []
    for label in "abcd":
        futures.append(lane.put(Echo(label), TASK))
        last_put = time.perf_counter()
        await asyncio.sleep(0.05)
    assert await asyncio.wait_for(asyncio.gather(*futures), 5) == list("abcd")
    assert runner.batches == [list("abcd")]
    # Noticed as soon as it is full, not at the end of the wait.
    assert runner.started_at[0] - last_put < 0.5
    await lane.stop(1)


async def test_a_lone_request_runs_when_max_wait_ends():
    """Without company the first request waits `max_wait_ms`, no less and not much more."""
    lane, runner = await _lane(max_batch_size=8, max_wait_ms=300)
    started = time.perf_counter()
    assert await asyncio.wait_for(lane.put(Echo("alone"), TASK), 5) == "alone"
    waited = runner.started_at[0] - started
    assert 0.28 <= waited < 1.5, waited
    await lane.stop(1)


async def test_other_keys_neither_join_nor_end_the_wait():
    """Requests of another batch key wait for their own batch; they do not count towards the
    first request's batch being full."""
    lane, runner = await _lane(max_batch_size=2, max_wait_ms=400)
    started = time.perf_counter()
    first = lane.put(Echo("a1"), TASK)
    others = [lane.put(Echo(f"b{i}", group="b"), TASK) for i in range(2)]
    await asyncio.wait_for(asyncio.gather(first, *others), 5)
    assert runner.batches[0] == ["a1"]
    assert runner.batches[1] == ["b0", "b1"]
    assert runner.started_at[0] - started >= 0.38  # it waited for company of its own key
    await lane.stop(1)


async def test_a_batch_holds_at_most_its_row_budget():
    """A request for n sequences costs n rows; the batch stops at the row budget, and a
    request bigger than the budget still runs alone."""
    lane, runner = await _lane(max_batch_size=4, max_wait_ms=50)
    futures = [lane.put(Echo("three", rows=3), TASK), lane.put(Echo("two", rows=2), TASK),
               lane.put(Echo("huge", rows=9), TASK)]
    await asyncio.wait_for(asyncio.gather(*futures), 5)
    assert runner.batches == [["three"], ["two"], ["huge"]]
    await lane.stop(1)


async def test_rows_add_up_towards_the_budget():
    lane, runner = await _lane(max_batch_size=4, max_wait_ms=50)
    futures = [lane.put(Echo("one"), TASK), lane.put(Echo("two"), TASK),
                lane.put(Echo("three", rows=3), TASK)]
    await asyncio.wait_for(asyncio.gather(*futures), 5)
    assert runner.batches == [["one", "two"], ["three"]]
    await lane.stop(1)


async def test_a_caller_s_stream_reaches_its_batch():
    """Where partial results go (a streamed /generate) travels with the request."""
    lane, runner = await _lane(max_batch_size=2, max_wait_ms=10)
    stream = object()
    await asyncio.wait_for(asyncio.gather(lane.put(Echo("s"), TASK, stream),
                                          lane.put(Echo("plain"), TASK)), 5)
    assert runner.streams == [stream, None]
    await lane.stop(1)


async def test_the_queue_limit_counts_callers_still_waiting():
    """A full lane refuses at once; cancelling its callers frees their places although their
    entries are still queued."""
    lane, _ = await _lane(max_batch_size=1, max_wait_ms=10, queue_size=2)
    lane.runner.ready = asyncio.Event().wait  # the model never becomes ready: nothing drains
    waiting = [lane.put(Echo("x"), TASK), lane.put(Echo("y"), TASK)]
    assert lane.waiting() == 2
    with pytest.raises(Overloaded):
        lane.put(Echo("z"), TASK)
    for future in waiting:
        future.cancel()
    assert len(lane.pending) == 2 and lane.waiting() == 0
    admitted = lane.put(Echo("z"), TASK)
    assert lane.waiting() == 1 and not admitted.done()
    assert [p.live for p in lane.pending] == [False, False, True]
    lane.batcher.cancel()


async def test_an_answered_caller_no_longer_counts_as_live():
    lane, _ = await _lane(max_batch_size=1, max_wait_ms=10)
    future = lane.put(Echo("x"), TASK)
    assert await asyncio.wait_for(future, 5) == "x"
    assert not Pending(Echo("y"), TASK, "a", future).live
    await lane.stop(1)


def _slow(runner: RecordingRunner, seconds: float) -> list[float]:
    """Make each of `runner`'s batches take `seconds`; returns when each batch was sent."""
    real_run = runner.run
    sent_at: list[float] = []

    async def slow_run(batch: list[Pending]) -> None:
        sent_at.append(time.perf_counter())
        await asyncio.sleep(seconds)
        await real_run(batch)

    runner.run = slow_run
    return sent_at


async def test_a_lone_request_waits_at_most_a_share_of_the_lane_s_batch_time():
    """Once the lane knows its batches take ~0.2 s, a request alone waits for company at most a
    quarter of that (`WAIT_SHARE`), not the whole `max_wait_ms`, while requests have been
    coming closer together than half a batch time (here: a full batch at once)."""
    lane, runner = await _lane(max_batch_size=8, max_wait_ms=400)
    sent_at = _slow(runner, 0.2)
    burst = [lane.put(Echo(f"first{i}"), TASK) for i in range(8)]
    await asyncio.wait_for(asyncio.gather(*burst), 5)
    while lane.batch_seconds is None:  # set once the batch returns
        await asyncio.sleep(0.01)
    started = time.perf_counter()
    assert await asyncio.wait_for(lane.put(Echo("alone"), TASK), 5) == "alone"
    waited = sent_at[1] - started
    assert 0.2 * WAIT_SHARE * 0.8 <= waited < 0.2 * WAIT_SHARE + 0.1, waited
    assert lane.company_wait() <= WAIT_SHARE * lane.batch_seconds
    await lane.stop(1)


async def test_a_sparse_request_is_sent_at_once():
    """Requests further apart than a batch time seldom find company: the next one is sent at
    once, not after a share of the batch time (issue 26, one /mask alone)."""
    lane, runner = await _lane(max_batch_size=8, max_wait_ms=400)
    sent_at = _slow(runner, 0.2)
    for label in ("one", "two"):  # 0.4 s wait, 0.2 s batch, 0.3 s apart: gaps > half of it
        assert await asyncio.wait_for(lane.put(Echo(label), TASK), 5) == label
        await asyncio.sleep(0.3)
    assert lane.arrival_gap > lane.batch_seconds
    started = time.perf_counter()
    assert await asyncio.wait_for(lane.put(Echo("alone"), TASK), 5) == "alone"
    assert sent_at[-1] - started < 0.02, sent_at[-1] - started
    await lane.stop(1)


@pytest.mark.parametrize("gap, expected", [
    (None, WAIT_SHARE * 0.2),  # no arrivals measured yet: wait
    (0.05, WAIT_SHARE * 0.2),  # four requests a batch time: wait a share of it
    (0.099, WAIT_SHARE * 0.2),
    (0.1, WAIT_SHARE * 0.2),  # exactly two a batch time: still worth the wait
    (0.101, 0.0),  # under two a batch time, as one student's back-to-back requests: send
    (0.15, 0.0),
    (0.3, 0.0),
])
async def test_the_wait_for_company_by_how_often_requests_come(gap, expected):
    """The rule's table, with a batch time of 0.2 s: company is worth waiting for only while
    more than two requests come per batch time."""
    lane, _ = await _lane(max_batch_size=8, max_wait_ms=400)
    lane.batch_seconds, lane.arrival_gap = 0.2, gap
    assert lane.company_wait() == pytest.approx(expected)
    await lane.stop(1)


async def test_the_time_between_arrivals_is_smoothed_over_the_last_few():
    """`arrival_gap` follows the arrivals (70% the old estimate, 30% the newest gap): three
    requests 50 ms apart read ~50 ms, and a fourth 200 ms later moves it to ~95 ms, not to
    200 ms (one pause in a busy class does not end the waiting)."""
    lane, _ = await _lane(max_batch_size=8, max_wait_ms=10)
    lane.runner.ready = asyncio.Event().wait  # nothing drains: only arrivals are measured
    for gap in (None, 0.05, 0.05):
        if gap:
            await asyncio.sleep(gap)
        lane.put(Echo("x"), TASK)
    assert 0.045 <= lane.arrival_gap <= 0.07, lane.arrival_gap
    await asyncio.sleep(0.2)
    lane.put(Echo("x"), TASK)
    assert 0.085 <= lane.arrival_gap <= 0.115, lane.arrival_gap
    lane.batcher.cancel()
