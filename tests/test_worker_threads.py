"""Which worker thread may use more than one core (`core.inference.worker.WorkerThreads`), and
model loading on one core (`core.inference.models.load_model`).

The protection: torch's OpenMP (libgomp) keeps n - 1 helper threads for life in every thread
that once ran torch on n cores, and once helpers outnumber the cores every forward in the
process slows (benchmarks/RESULTS.md, "Figures behind the code", "One wide worker"). So the
tests count helpers, not only the thread counts the engine hands out.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from core.inference import backends
from core.inference.engine import InferenceEngine
from core.inference.models import Head, load_model
from core.inference.tasks.fill_mask import FillMaskRequest
from core.inference.tasks.generate import GenerateRequest
from core.inference.tasks.qa import QARequest
from core.inference.worker import WorkerThreads
from tests.conftest import with_engine


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


class Probe:
    """A stand-in for `run_batch`: records where it ran and with how many threads, and holds
    its worker until released, so the test decides what runs at the same time."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, int]] = {}
        self.started = {name: threading.Event() for name in "abcd"}
        self.release = {name: threading.Event() for name in "abcd"}

    def __call__(self, name: str, threads: int) -> None:
        self.seen[name] = (threading.get_ident(), threads)
        self.started[name].set()
        assert self.release[name].wait(10), f"{name} never released"


async def _started(probe: Probe, name: str) -> None:
    assert await asyncio.to_thread(probe.started[name].wait, 10), f"{name} never started"


async def test_a_lone_batch_gets_every_core_and_a_second_one_core() -> None:
    workers = WorkerThreads(count=2, cores=2)
    probe = Probe()
    try:
        first = asyncio.create_task(workers.run(probe, "a"))
        await _started(probe, "a")
        second = asyncio.create_task(workers.run(probe, "b"))
        await _started(probe, "b")
        assert probe.seen["a"][1] == 2  # alone: both cores
        assert probe.seen["b"][1] == 1  # beside a running batch: one core
        assert probe.seen["a"][0] != probe.seen["b"][0]
        assert workers.running == 2
        probe.release["a"].set()
        await first
        # The wide worker is free again, but a batch is still running: one core, on the wide one.
        third = asyncio.create_task(workers.run(probe, "c"))
        await _started(probe, "c")
        assert probe.seen["c"] == (probe.seen["a"][0], 1)
        probe.release["b"].set()
        probe.release["c"].set()
        await asyncio.gather(second, third)
        # Alone again, on whichever thread: the wide one, with both cores.
        probe.release["d"].set()
        await workers.run(probe, "d")
        assert probe.seen["d"] == (probe.seen["a"][0], 2)
        assert workers.running == 0
    finally:
        for event in probe.release.values():
            event.set()
        workers.shutdown()


async def test_a_cancelled_batch_holds_its_worker_until_its_thread_is_free() -> None:
    """A thread cannot be stopped: cancelling its caller (shutdown) must not free the wide
    worker's cores for another batch while the first still runs on them."""
    workers = WorkerThreads(count=2, cores=2)
    probe = Probe()
    try:
        first = asyncio.create_task(workers.run(probe, "a"))
        await _started(probe, "a")
        first.cancel()
        await asyncio.sleep(0.05)
        assert not first.done()  # the caller waits for its thread
        assert workers.running == 1
        second = asyncio.create_task(workers.run(probe, "b"))
        await _started(probe, "b")
        assert probe.seen["b"][1] == 1 and probe.seen["b"][0] != probe.seen["a"][0]
        probe.release["a"].set()
        with pytest.raises(asyncio.CancelledError):
            await first
        probe.release["b"].set()
        await second
        assert workers.running == 0
    finally:
        for event in probe.release.values():
            event.set()
        workers.shutdown()


async def test_a_tokenizer_only_batch_costs_no_core() -> None:
    workers = WorkerThreads(count=2, cores=2)
    probe = Probe()
    try:
        tokens = asyncio.create_task(workers.run(probe, "a", uses_cores=False))
        await _started(probe, "a")
        probe.release["b"].set()
        await workers.run(probe, "b")
        assert probe.seen["b"][1] == 2
        probe.release["a"].set()
        await tokens
    finally:
        for event in probe.release.values():
            event.set()
        workers.shutdown()


async def test_an_explicit_torch_threads_setting_wins_on_every_worker() -> None:
    workers = WorkerThreads(count=2, cores=2, fixed_threads=3)
    probe = Probe()
    try:
        first = asyncio.create_task(workers.run(probe, "a"))
        await _started(probe, "a")
        probe.release["b"].set()
        await workers.run(probe, "b")
        probe.release["a"].set()
        await first
        assert probe.seen["a"][1] == probe.seen["b"][1] == 3
    finally:
        for event in probe.release.values():
            event.set()
        workers.shutdown()


def _parallel_matmul(threads: int) -> None:
    """Big enough for torch to open an OpenMP parallel region when it has threads to use."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    a = torch.ones(512, 512)
    for _ in range(3):
        a @ a


async def test_only_one_worker_ever_keeps_openmp_helpers() -> None:
    """Two batches side by side, then each alone, many times: libgomp's helper threads stay
    at one (the wide worker's second core). Seen failing (2-3 helpers) with both workers drawn
    from one pool, as before: whichever thread was idle got every core when alone."""
    before = _os_threads()
    workers = WorkerThreads(count=2, cores=2)
    try:
        for _ in range(5):
            await asyncio.gather(workers.run(_parallel_matmul), workers.run(_parallel_matmul))
            await workers.run(_parallel_matmul)
        helpers = _os_threads() - before - 2  # the two worker threads themselves
        assert helpers == 1
    finally:
        workers.shutdown()


def test_a_model_loads_on_one_core_and_the_caller_keeps_its_threads(
    tiny_models, monkeypatch
) -> None:
    """Loading runs in a thread that lives on (the event loop's default executor): were it to
    use every core, its OpenMP helpers would stay and slow every forward."""
    seen: list[int] = []
    prepare = backends.prepare

    def spy(module, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return prepare(module, *args, **kwargs)

    monkeypatch.setattr(backends, "prepare", spy)
    from core.config import ModelSpec

    def load_in_thread() -> int:
        torch.set_num_threads(2)
        load_model(ModelSpec(str(tiny_models.masked_lm)),
                   frozenset({Head.MASKED_LM, Head.TOKENIZER}))
        return torch.get_num_threads()

    with ThreadPoolExecutor(1) as pool:
        after = pool.submit(load_in_thread).result()
    assert seen == [1]
    assert after == 2


async def test_the_engine_gives_more_than_one_core_to_one_thread_only(
    tiny_config, monkeypatch
) -> None:
    """Through the real engine and its tasks: a mixed burst across three models' lanes, as if
    on two cores. Seen failing with both workers drawn from one pool."""
    import core.inference.engine as engine_module

    monkeypatch.setattr(engine_module, "usable_cores", lambda: 2)
    real = engine_module.run_batch
    wide: set[int] = set()

    def recording(loop, model, batch, threads):
        if threads > 1:
            wide.add(threading.get_ident())
        return real(loop, model, batch, threads)

    monkeypatch.setattr(engine_module, "run_batch", recording)
    config = with_engine(tiny_config, workers=3, torch_threads=0)
    mask = FillMaskRequest("Paris is the [MASK] of France.")
    async with InferenceEngine(config) as engine:
        for _ in range(3):
            await asyncio.gather(
                *(engine.submit(mask) for _ in range(4)),
                engine.submit(GenerateRequest("Once upon a time", max_new_tokens=5, seed=1)),
                engine.submit(QARequest("Where?", "It is in Paris.")),
            )
            await engine.submit(mask)
    assert len(wide) == 1
