"""The benchmark harness: workloads, measurement, engines under test, section bookkeeping.

Shared by the sections (`benchmarks/sections.py`) and the report (`benchmarks/report.py`);
`python -m benchmarks.run` ties them together. Why the measurements look the way they do
(same process, alternating rounds, CPU time beside wall time) is in `benchmarks/run.py`.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks.models import SST2, BenchModelPaths  # noqa: E402
from benchmarks.publish import loadavg, settled_load  # noqa: E402,F401

log = logging.getLogger(__name__)

OUTPUT = Path(__file__).with_name("RESULTS.md")
#: Torch threads for the baselines. On this shared box 2 threads slowed a single forward 2.5-9x
#: whenever a neighbour was busy, so 1 is the baselines' safe setting; the /mask section also
#: runs the pipeline at 2 threads, since the engine's auto default uses 2 for a lone batch.
BASELINE_THREADS = 1


# --------------------------------------------------------------------------- workloads


def _sst2(name: str) -> list[str]:
    path = SST2 / name
    if not path.exists():
        raise SystemExit(f"{path} is missing: the benchmarks need ../shared/data/sst2")
    return [row.split("\t")[0] for row in path.read_text(encoding="utf-8").splitlines()]


HAND_MASK = [
    "Paris is the [MASK] of France.",
    "The man works as a [MASK].",
    "The woman works as a [MASK].",
    "I went to the [MASK] to deposit my money.",
    "The movie was really [MASK], I loved every minute of it.",
    "A transformer uses [MASK] to decide which words matter.",
    "She opened the door and saw a [MASK] sitting on the chair.",
    "The students asked the teacher a difficult [MASK] about the lesson.",
]

HAND_PROMPTS = [
    "Once upon a time there was a",
    "The capital of France is",
    "My favourite movie is",
    "In the future, language models will",
]

QUESTIONS = [
    "What was the movie like?", "Who is the film about?", "Why did the critic like it?",
    "What is the story about?",
]


@dataclass
class Workload:
    mask: list[str]
    qa: list[tuple[str, str]]
    features: list[str]
    prompts: list[str]


def make_workload() -> Workload:
    """Realistic inputs from SST-2 sentences; fixed seed, so every run sees the same texts."""
    rng = random.Random(8)
    dev = _sst2("dev.tsv")
    mid = [s for s in dev if 6 <= len(s.split()) <= 20]
    mask = list(HAND_MASK)
    for sentence in rng.sample(mid, 24):
        words = sentence.split()
        choices = [i for i, w in enumerate(words) if w.isalpha()]
        words[rng.choice(choices)] = "[MASK]"
        text = " ".join(words)
        mask.append(text[0].upper() + text[1:])
    qa = []
    for i in range(16):
        context = " ".join(rng.sample(dev, 3 + i % 6))
        qa.append((QUESTIONS[i % len(QUESTIONS)], context))
    features = rng.sample(dev, 32)
    prompts = list(HAND_PROMPTS)
    for sentence in rng.sample(mid, 12):
        words = sentence.split()[: rng.randint(4, 8)]
        text = " ".join(words)
        prompts.append(text[0].upper() + text[1:])
    return Workload(mask, qa, features, prompts)


# --------------------------------------------------------------------------- measurement


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            key, value = line.split(":")
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def children_rss_mb() -> float:
    """VmRSS of this process's child processes (e.g. the engine's picture renderer), in MB."""
    total = 0.0
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS"):
                        total += int(line.split()[1]) / 1024
    return total


Contender = Callable[[], Awaitable[float]]


async def alternate(contenders: dict[str, Contender], rounds: int, *,
                    warmup: bool = True) -> dict[str, dict[str, list[float]]]:
    """Run every contender once per round, rotating the order.

    Each contender returns its wall seconds; the process CPU seconds around it are recorded
    too, because on a shared machine CPU time is the steadier measure of work (a neighbour
    stealing a core stretches wall time, not CPU time). A contender may carry a `scale`
    attribute (it ran a slice of the workload): both figures are multiplied by it.
    """
    names = list(contenders)
    if warmup:
        for name in names:
            await contenders[name]()
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn = contenders[name]
            scale = getattr(fn, "scale", 1.0)
            cpu_started = time.process_time()
            wall[name].append(await fn() * scale)
            cpu[name].append((time.process_time() - cpu_started) * scale)
            log.debug("%s: %.3fs", name, wall[name][-1])
    return {"wall": wall, "cpu": cpu}


class LagProbe:
    """A 10 ms ticker on the event loop; how late each tick wakes is the loop's lag."""

    def __init__(self, period: float = 0.010) -> None:
        self.period = period
        self.lags_ms: list[float] = []
        self._task: asyncio.Task | None = None

    async def _tick(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.period)
            self.lags_ms.append((time.perf_counter() - started - self.period) * 1000)

    def __enter__(self) -> LagProbe:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def summary(self) -> dict[str, float]:
        return {"p50": percentile(self.lags_ms, 50), "p99": percentile(self.lags_ms, 99),
                "max": max(self.lags_ms, default=float("nan")), "ticks": len(self.lags_ms)}


class Collect:
    """An `Emit` for calling a task's `run_batch` directly (the one-by-one baselines)."""

    def __init__(self) -> None:
        self.out: dict[int, Any] = {}

    def __call__(self, index: int, outcome: Any) -> None:
        self.out[index] = outcome

    def wanted(self, index: int) -> bool:
        return True


# --------------------------------------------------------------------------- engines


def engine_config(paths: BenchModelPaths, **engine: Any):
    from core.config import parse_config

    return parse_config({
        "models": {"mask": str(paths.masked_lm), "qa": str(paths.qa),
                   "generate": str(paths.causal_lm), "features": str(paths.masked_lm)},
        "engine": engine,
    })


@dataclass
class Variant:
    name: str
    workers: int
    threads: int
    max_batch_size: int = 32
    engine: Any = field(default=None, repr=False)


VARIANTS = [
    Variant("engine w2 auto (default)", 2, 0),
    Variant("engine w2 t1", 2, 1),
    Variant("engine w1 t1", 1, 1),
    Variant("engine w2 t2", 2, 2),
    Variant("engine w1 t2", 1, 2),
]
NO_BATCHING = Variant("no batching (w1 t1, batch 1)", 1, 1, max_batch_size=1)


@contextlib.asynccontextmanager
async def started_engines(paths: BenchModelPaths, variants: list[Variant]):
    """Start one engine per variant, all sharing the first one's registry (one set of weights).

    Replacing `registry` is a benchmark-only shortcut: the variants differ only in engine
    settings, and loading 1 GB of weights per variant would cost memory and minutes.
    """
    from core.inference.engine import InferenceEngine

    async with contextlib.AsyncExitStack() as stack:
        registry = None
        for variant in variants:
            engine = InferenceEngine(engine_config(
                paths, workers=variant.workers, torch_threads=variant.threads,
                max_batch_size=variant.max_batch_size,
            ))
            if registry is None:
                registry = engine.registry
            else:
                engine.registry = registry
            await stack.enter_async_context(engine)
            variant.engine = engine
        for spec in registry.specs:
            await registry.get(spec)
        yield registry


def set_threads(n: int) -> None:
    """Pin torch's threads; 0 (the engine's auto setting) leaves the choice to the engine."""
    import torch

    if n:
        torch.set_num_threads(n)


def engine_burst(variant: Variant, make_requests: Callable[[], list]) -> Contender:
    async def run() -> float:
        set_threads(variant.threads)  # torch's setting is process-wide: re-assert it
        requests = make_requests()
        started = time.perf_counter()
        await asyncio.gather(*(variant.engine.submit(r) for r in requests))
        return time.perf_counter() - started
    return run


def blocking(fn: Callable[[], None], threads: int = BASELINE_THREADS) -> Contender:
    """A baseline runs on the main thread, exactly as a script calling transformers would."""
    async def run() -> float:
        import torch

        set_threads(threads)
        started = time.perf_counter()
        with torch.inference_mode():
            fn()
        return time.perf_counter() - started
    return run


# --------------------------------------------------------------------------- sections


@dataclass
class Settings:
    quick: bool
    rounds: int
    gen_rounds: int
    gen_baseline_prompts: int
    stream_seconds: float
    stream_rate: float


def section(name: str):
    """Record the load average around a section so its noise can be judged (before: settled,
    the neighbours' load that `benchmarks.publish.write_block` gates on; after: ours too)."""
    def wrap(fn):
        async def run(*args: Any, **kwargs: Any) -> dict:
            before = await asyncio.to_thread(settled_load)
            started = time.perf_counter()
            log.info("section %s ...", name)
            result = await fn(*args, **kwargs)
            result["load_before"], result["load_after"] = before, loadavg()
            result["section_seconds"] = time.perf_counter() - started
            log.info("section %s done in %.0fs", name, result["section_seconds"])
            return result
        run.__name__ = name
        return run
    return wrap

