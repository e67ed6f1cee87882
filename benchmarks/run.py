"""Benchmarks of the inference core against plain transformers: `python -m benchmarks.run`.

Every comparison runs the baseline and the engine in the same process, alternating round by
round (the order rotates), on the same loaded weights, because the target machine is a shared
2-core box whose speed drifts with whatever else runs: a ratio measured minutes apart would mostly
measure the neighbours. Figures are medians with min-max over rounds; the load average before
and after each section is recorded so a noisy figure can be recognised as such.

Models are real-size with random weights (see `benchmarks/models.py`), built once into
~/.cache/tlm-bot-bench. Start-up time and memory are measured in a fresh child process so that
nothing this process loaded counts.

`--quick` (< 2 min) runs fewer rounds and a shorter mixed stream; `--only NAME` runs one section
while iterating. Results go to benchmarks/RESULTS.md (or `--out`).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks.models import DEFAULT_CACHE, SST2, BenchModelPaths, build_models  # noqa: E402

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


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


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
    from core.engine import InferenceEngine

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
    """Record the load average around a section so its noise can be judged."""
    def wrap(fn):
        async def run(*args: Any, **kwargs: Any) -> dict:
            before = loadavg()
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


@section("mask")
async def bench_mask(registry, work: Workload, s: Settings) -> dict:
    import transformers

    from core.models import Head
    from core.tasks.fill_mask import FillMaskRequest

    spec = VARIANTS[0].engine.config.models.mask
    model = await registry.get(spec)
    pipe = transformers.pipeline(
        "fill-mask", model=model.module(Head.MASKED_LM), tokenizer=model.tokenizer, top_k=5,
    )
    texts = [t.replace("[MASK]", model.tokenizer.mask_token) for t in work.mask]

    def requests() -> list:
        return [FillMaskRequest(t, top_k=5) for t in work.mask]

    contenders: dict[str, Contender] = {
        "pipeline one by one": blocking(lambda: [pipe(t) for t in texts]),
        "pipeline(list, batch_size=32)": blocking(lambda: pipe(texts, batch_size=32)),
    }
    if not s.quick:
        contenders["pipeline one by one, 2 threads"] = blocking(
            lambda: [pipe(t) for t in texts], threads=2
        )
        contenders["pipeline(list, batch_size=32), 2 threads"] = blocking(
            lambda: pipe(texts, batch_size=32), threads=2
        )
    variants = VARIANTS if not s.quick else VARIANTS[:1]
    for variant in variants:
        contenders[variant.name] = engine_burst(variant, requests)
    times = await alternate(contenders, s.rounds)
    # Same answers as the pipeline? (top-5 token ids, one request at a time)
    set_threads(1)
    ours = await asyncio.gather(*(VARIANTS[0].engine.submit(r) for r in requests()))
    same = all(
        [f.token_id for f in result.fillers] == [e["token"] for e in pipe(text)]
        for text, result in zip(texts, ours)
    )
    lengths = [len(model.tokenizer(t)["input_ids"]) for t in texts]
    return {"times": times, "requests": len(texts), "same_answers": same,
            "batch_sizes": sorted({r.timings.batch_size for r in ours}),
            "tokens": stats([float(n) for n in lengths])}


@section("qa")
async def bench_qa(registry, work: Workload, s: Settings) -> dict:
    from core.tasks.qa import QARequest

    default = VARIANTS[0]
    task = default.engine.task_for(QARequest("q", "c"))
    model = await registry.get(default.engine.config.models.qa)
    requests = [task.validate(QARequest(q, c)) for q, c in work.qa]
    single: dict[int, Any] = {}

    def one_by_one() -> None:
        for i, request in enumerate(requests):
            out = Collect()
            task.run_batch(model, [request], out)
            single[i] = out.out[0]

    times = await alternate({
        "one by one (QATask, batch 1)": blocking(one_by_one),
        default.name: engine_burst(default, lambda: list(requests)),
    }, s.rounds)
    set_threads(1)
    batched = await asyncio.gather(*(default.engine.submit(r) for r in requests))
    same = all((b.start, b.end) == (single[i].start, single[i].end) for i, b in enumerate(batched))
    lengths = [len(model.tokenizer(q, c)["input_ids"]) for q, c in work.qa]
    return {"times": times, "requests": len(requests), "same_answers": same,
            "tokens": stats([float(n) for n in lengths])}


@section("features")
async def bench_features(registry, work: Workload, s: Settings) -> dict:
    import numpy as np

    from core.tasks.features import FeaturesRequest

    default = VARIANTS[0]
    task = default.engine.task_for(FeaturesRequest("x"))
    model = await registry.get(default.engine.config.models.features)
    requests = [task.validate(FeaturesRequest(t, "cls")) for t in work.features]
    single: dict[int, Any] = {}

    def one_by_one() -> None:
        for i, request in enumerate(requests):
            out = Collect()
            task.run_batch(model, [request], out)
            single[i] = out.out[0]

    times = await alternate({
        "one by one (FeaturesTask, batch 1)": blocking(one_by_one),
        default.name: engine_burst(default, lambda: list(requests)),
    }, s.rounds)
    set_threads(1)
    batched = await asyncio.gather(*(default.engine.submit(r) for r in requests))
    same = all(np.allclose(b.vector, single[i].vector, atol=1e-4) for i, b in enumerate(batched))
    lengths = [len(model.tokenizer(t)["input_ids"]) for t in work.features]
    return {"times": times, "requests": len(requests), "same_answers": same,
            "tokens": stats([float(n) for n in lengths])}


@section("generate")
async def bench_generate(registry, work: Workload, s: Settings) -> dict:
    """16 greedy prompts x 30 new tokens, batched, against `model.generate` one at a time.

    The sequential baseline costs ~2 s a prompt, so each round runs a slice of the prompts
    (consecutive rounds take consecutive slices) and scales its time to all 16; over the full
    run every prompt is generated unbatched once and compared with the batched answer.
    """
    from core.models import Head
    from core.tasks.generate import GenerateRequest

    default = VARIANTS[0]
    model = await registry.get(default.engine.config.models.generate)
    lm, tokenizer = model.module(Head.CAUSAL_LM), model.tokenizer
    prompts = work.prompts[:16]
    new = 30
    expected: dict[int, str] = {}
    cursor = [0]
    per = s.gen_baseline_prompts

    def sequential() -> None:
        for _ in range(per):
            i = cursor[0] % len(prompts)
            cursor[0] += 1
            ids = tokenizer(prompts[i], return_tensors="pt")
            out = lm.generate(**ids, do_sample=False, max_new_tokens=new, min_new_tokens=new,
                              pad_token_id=tokenizer.eos_token_id)
            expected[i] = tokenizer.decode(out[0], skip_special_tokens=True)

    scaled = blocking(sequential)
    scaled.scale = len(prompts) / per  # type: ignore[attr-defined]

    def greedy() -> list:
        return [GenerateRequest(p, max_new_tokens=new, temperature=0) for p in prompts]

    def sampled() -> list:
        return [GenerateRequest(p, max_new_tokens=new, temperature=1.0, top_k=50, seed=i)
                for i, p in enumerate(prompts)]

    contenders = {
        f"model.generate one by one (greedy, time x{len(prompts) / per:g})": scaled,
        f"{default.name}, greedy": engine_burst(default, greedy),
    }
    if not s.quick:
        contenders[f"{default.name}, sampled top_k=50"] = engine_burst(default, sampled)
    times = await alternate(contenders, s.gen_rounds, warmup=False)
    set_threads(1)
    batched = await asyncio.gather(*(default.engine.submit(r) for r in greedy()))
    checked = sorted(expected)
    same = [prompts[i] + batched[i].continuations[0] == expected[i] for i in checked]
    return {"times": times, "requests": len(prompts), "new_tokens": new,
            "identical": all(same), "identical_count": f"{sum(same)}/{len(checked)}",
            "tokens_out": sorted({t for r in batched for t in r.new_tokens}),
            "prompt_tokens": stats([float(len(tokenizer(p)["input_ids"])) for p in prompts])}


def stream_schedule(work: Workload, rate: float, seconds: float, seed: int = 5) -> list:
    """Poisson arrivals: (time, kind, request); same seed, same stream for every variant."""
    from core.tasks.fill_mask import FillMaskRequest
    from core.tasks.generate import GenerateRequest
    from core.tasks.qa import QARequest
    from core.tasks.tokens import TokensRequest

    rng = random.Random(seed)
    kinds = [("mask", 0.40), ("tokens", 0.25), ("qa", 0.20), ("generate", 0.15)]
    at, schedule = 0.0, []
    while True:
        at += rng.expovariate(rate)
        if at >= seconds:
            return schedule
        kind = rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        if kind == "mask":
            request = FillMaskRequest(rng.choice(work.mask), top_k=5)
        elif kind == "tokens":
            request = TokensRequest(rng.choice(work.features), rng.choice(["wordpiece", "bpe"]))
        elif kind == "qa":
            request = QARequest(*rng.choice(work.qa))
        else:
            request = GenerateRequest(rng.choice(work.prompts), max_new_tokens=30,
                                      seed=rng.randrange(2**31))
        schedule.append((at, kind, request))


async def run_stream(variant: Variant, schedule: list) -> dict:
    from core.errors import CoreError as UserError

    set_threads(variant.threads)
    engine = variant.engine
    latencies: dict[str, list[float]] = {}
    refused: list[str] = []
    done_at: list[float] = []
    started = time.perf_counter()

    async def one(at: float, kind: str, request: Any) -> None:
        await asyncio.sleep(max(0.0, started + at - time.perf_counter()))
        t = time.perf_counter()
        try:
            await engine.submit(request)
        except UserError as exc:
            refused.append(type(exc).__name__)
            return
        now = time.perf_counter()
        latencies.setdefault(kind, []).append(now - t)
        done_at.append(now - started)

    with LagProbe() as probe:
        await asyncio.gather(*(one(*item) for item in schedule))
    everything = [x for xs in latencies.values() for x in xs]
    return {
        "p50": percentile(everything, 50), "p95": percentile(everything, 95),
        "p99": percentile(everything, 99), "completed": len(everything),
        "refused": len(refused), "throughput": len(everything) / max(done_at),
        "last_done": max(done_at),
        "by_kind": {k: {"n": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95)}
                    for k, v in sorted(latencies.items())},
        "lag": probe.summary(),
    }


@section("stream")
async def bench_stream(registry, work: Workload, s: Settings) -> dict:
    schedule = stream_schedule(work, s.stream_rate, s.stream_seconds)
    if s.quick:
        order = [VARIANTS[0], NO_BATCHING]
    else:  # the default first and last, to show how far the machine drifted in between
        order = [*VARIANTS, NO_BATCHING, VARIANTS[0]]
    results: dict[str, list[dict]] = {}
    for variant in order:
        log.info("stream: %s", variant.name)
        results.setdefault(variant.name, []).append(await run_stream(variant, schedule))
    counts: dict[str, int] = {}
    for _, kind, _ in schedule:
        counts[kind] = counts.get(kind, 0) + 1
    return {"runs": results, "rate": s.stream_rate, "seconds": s.stream_seconds,
            "arrivals": len(schedule), "mix": counts}


@section("lag")
async def bench_lag(registry, work: Workload, s: Settings) -> dict:
    """Everything at once, twice: the core is saturated, generation included."""
    from core.tasks.features import FeaturesRequest
    from core.tasks.fill_mask import FillMaskRequest
    from core.tasks.generate import GenerateRequest
    from core.tasks.qa import QARequest
    from core.tasks.tokens import TokensRequest

    default = VARIANTS[0]
    set_threads(default.threads)

    def everything() -> list:
        return ([FillMaskRequest(t) for t in work.mask]
                + [QARequest(q, c) for q, c in work.qa]
                + [FeaturesRequest(t) for t in work.features]
                + [TokensRequest(t, "bpe") for t in work.features[:16]]
                + [GenerateRequest(p, max_new_tokens=30, seed=i)
                   for i, p in enumerate(work.prompts[:16])])

    bursts = 1 if s.quick else 2
    with LagProbe() as idle:  # the noise floor: the same ticker with the engine idle
        await asyncio.sleep(2.0)
    pauses: list[tuple[int, float]] = []
    gc_started: list[float] = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], (time.perf_counter() - gc_started[0]) * 1000))

    started = time.perf_counter()
    gc.callbacks.append(on_gc)
    try:
        with LagProbe() as probe:
            for _ in range(bursts):
                await asyncio.gather(*(default.engine.submit(r) for r in everything()))
    finally:
        gc.callbacks.remove(on_gc)
    wall = time.perf_counter() - started
    tracked = len(gc.get_objects())
    collect_started = time.perf_counter()
    gc.collect()
    full_collect_ms = (time.perf_counter() - collect_started) * 1000
    worst = {g: max((ms for gen, ms in pauses if gen == g), default=0.0) for g in (0, 1, 2)}
    return {"lag": probe.summary(), "idle": idle.summary(), "bursts": bursts,
            "requests": len(everything()), "wall": wall, "gc_pauses": len(pauses),
            "gc_worst": worst, "gc_tracked": tracked, "gc_full_ms": full_collect_ms}


# --------------------------------------------------------------------------- start-up child


async def _startup_child(paths: BenchModelPaths, spawned: float) -> dict:
    """In a fresh process: when can the engine take requests, answer, and what does it weigh?"""
    from core.engine import InferenceEngine
    from core.models import LoadState
    from core.tasks.features import FeaturesRequest
    from core.tasks.fill_mask import FillMaskRequest
    from core.tasks.generate import GenerateRequest
    from core.tasks.qa import QARequest
    from core.tasks.tokens import TokensRequest

    out: dict[str, Any] = {}
    out["import_core"] = time.time() - spawned
    async with InferenceEngine(engine_config(paths)) as engine:
        out["ack"] = time.time() - spawned
        states = [engine.registry.state(spec).value for spec in engine.registry.specs]
        out["states_at_ack"] = states
        out["acks_before_loaded"] = all(s != LoadState.READY.value for s in states)
        first = await engine.submit(TokensRequest("Hello world", "wordpiece"))
        out["first_tokens"] = time.time() - spawned
        await engine.submit(FillMaskRequest("Paris is the [MASK] of France."))
        out["first_mask"] = time.time() - spawned
        for spec in engine.registry.specs:
            await engine.registry.get(spec)
        out["all_loaded"] = time.time() - spawned
        out["rss_loaded"], _ = rss_mb()
        await asyncio.gather(
            engine.submit(QARequest("Where?", "In Paris.")),
            engine.submit(FeaturesRequest("a good movie")),
            engine.submit(GenerateRequest("Once upon a time", max_new_tokens=30)),
            engine.submit(TokensRequest("Hello world", "bpe")),
        )
        out["rss_after_each_task"], out["peak_rss"] = rss_mb()
        out["children_rss"] = children_rss_mb()
        out["loaded_specs"] = len(engine.registry.specs)
        model = await engine.registry.get(engine.config.models.mask)
        out["mask_modules"] = sorted(h.value for h in model.modules)
        del first
    return out


def child_startup(spawned: float) -> None:
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(_startup_child(build_models(), spawned))))


def measure_startup(paths: BenchModelPaths) -> dict:
    spawned = time.time()
    # `-c`, not `-m benchmarks.run`: the engine's picture renderer is a `spawn` child, which
    # re-imports a `-m` main module (and with it torch); the bot's `python -m bot` does not.
    code = f"from benchmarks.run import child_startup; child_startup({spawned!r})"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"start-up child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report


def machine_note() -> dict[str, Any]:
    import tokenizers
    import torch
    import transformers

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    return {
        "cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
        "torch_default_threads": torch.get_num_threads(), "python": platform.python_version(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__, "platform": platform.platform(),
    }


def _t(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def _times_table(times: dict[str, dict[str, list[float]]], requests: int, baseline: str,
                 unit: str = "req/s", per: float | None = None) -> list[str]:
    per = requests if per is None else per
    wall, cpu = times["wall"], times["cpu"]
    base, base_cpu = statistics.median(wall[baseline]), statistics.median(cpu[baseline])
    lines = [f"| contender | wall median | wall min-max | {unit} | speed-up (wall) | "
             "CPU s median | speed-up (CPU) |",
             "|---|---|---|---|---|---|---|"]
    for name, values in wall.items():
        st = stats(values)
        c = statistics.median(cpu[name])
        lines.append(
            f"| {name} | {_t(st['median'])} | {_t(st['min'])}-{_t(st['max'])} | "
            f"{per / st['median']:.1f} | **{base / st['median']:.2f}x** | {c:.2f} | "
            f"{base_cpu / c:.2f}x |"
        )
    return lines


def _ratio(times: dict[str, dict[str, list[float]]], baseline: str, ours: str,
           kind: str = "wall") -> float:
    return statistics.median(times[kind][baseline]) / statistics.median(times[kind][ours])


def _defaults_note(mask: dict[str, list[float]], stream: dict[str, list[dict]]) -> list[str]:
    """Which workers / torch_threads default the figures support (computed, not hand-written)."""
    rows = []
    for variant in VARIANTS:
        runs = stream.get(variant.name, [])
        rows.append((variant, statistics.median(mask[variant.name]),
                     statistics.median([run["p50"] for run in runs]),
                     statistics.median([run["p95"] for run in runs])))
    best_mask = min(rows, key=lambda row: row[1])[0].name
    best_p95 = min(rows, key=lambda row: row[3])[0].name
    lines = [
        "## Which default: workers x torch_threads",
        "",
        "| setting | /mask burst median | stream p50 | stream p95 |", "|---|---|---|---|",
    ]
    lines += [f"| {v.name} | {_t(m)} | {_t(p50)} | {_t(p95)} |" for v, m, p50, p95 in rows]
    lines += [
        "",
        f"Fastest /mask burst: {best_mask}; lowest stream p95: {best_p95} (the default's "
        "figure is the median of its runs). A single lane runs one batch at a time, so "
        "`workers` only matters when two models are busy at once (the stream); 2 torch "
        "threads help only while the other core is free, which a shared machine rarely "
        "guarantees: compare the min and median columns of the /mask table.",
    ]
    return lines


def _spread(tokens: dict[str, float]) -> str:
    return f"{tokens['median']:.0f} tokens (median; {tokens['min']:.0f}-{tokens['max']:.0f})"


def _yes(ok: bool) -> str:
    return "**yes**" if ok else "**NO**"


NOTES = """\
## Notes: method, and where the time goes

- **Baseline threads.** Baselines run with 1 torch thread. On this shared 2-core machine a
  2-thread forward slowed 2.5-9x whenever a neighbour was busy (30 greedy GPT-2 tokens: 2.3 s at
  1 thread, 19.6 s at 2 threads, load average 5). The engine's default (`torch_threads = 0`,
  auto) gives a batch both cores only while no other batch runs, so the /mask targets are also
  checked against the pipeline at 2 threads, and count as met only if both ratios clear them.
- **CPU column.** Process CPU seconds around each contender. A neighbour stealing a core
  stretches wall time but not CPU time, so when the two speed-up columns disagree, the CPU one
  is the steadier estimate of the work saved (2-thread rows include spin-waiting).
- **Where the time goes** (cProfile of `run_batch` at 1 thread): a /mask batch of 32 spends
  ~97% in the encoder's Linear layers; tokenising and decoding fillers are ~1-2%. The batched
  path runs near one core's peak, so what is left to win is fewer FLOPs, i.e. less padding:
  rows of similar length now share a forward (`length_groups` in `core/tasks/padding.py`, used by
  /qa, /mask and features; measured in CPU time: QA 1.6x, features 1.5x, /mask 1.15x over one
  batch padded to the longest). One-by-one forwards are partly bound by streaming the weights
  (~170 MB for DistilBERT's encoder, ~500 MB for GPT-2), which is what batching amortises;
  how much that costs depends on the neighbours' memory traffic, so the ratios move with the
  machine's load.
- **/qa** contexts of ~120 tokens already give each forward ~120 rows per matrix multiply, so
  one-by-one QA is compute-bound and batching has little to amortise; a 1.8x gain needs short
  contexts. Before length grouping, one batch padded to the longest context was slower than
  one by one.
- **/generate**: a batch-16 decode step spends ~55% in GPT-2's Conv1D matmuls, ~28% in the
  50257-way output projection, ~4% concatenating the KV cache; sampling within top-k adds
  little over greedy (compare the two engine rows).
- **Event-loop lag.** A watchdog thread that dumped every thread's stack whenever the loop was
  >12 ms late caught the loop waiting in `select` while both workers were inside torch Linear
  layers (GIL released): the rare spikes are the OS not scheduling the loop thread while two
  single-threaded workers and the neighbours fill both cores, not Python work on the loop. The
  other stall is the garbage collector: a generation-2 collection walks every tracked object
  (transformers and torch leave ~400k) and stops the loop for its whole length (the figure
  above); `gc.freeze()` once the models are loaded takes them out of its reach (measured:
  a full collection then takes ~0 ms instead of ~180 ms).
- **Memory**: weights are memory-mapped from safetensors and paged in on first use, so RSS
  right after loading understates; the figure after one request of every kind is the real one.
"""


def render(r: dict[str, Any], s: Settings, total: float) -> str:
    m = r["machine"]
    head = [
        "# Inference core benchmarks",
        "",
        f"Generated by `python -m benchmarks.run{' --quick' if s.quick else ''}` in "
        f"{total:.0f} s on {r['finished_at']}. Real-size models with random "
        "weights (`benchmarks/models.py`): DistilBERT (768/6/12, vocab 28996) for /mask, "
        "/tokens and features, a second DistilBERT with a QA head, GPT-2 (768/12/12, vocab "
        "50257). Baselines and the engine run in the same process, alternating, on the same "
        f"weights; baselines use {BASELINE_THREADS} torch thread unless marked (see why below). "
        "Times are medians over rounds with min-max.",
        "",
        f"**Machine:** {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), torch "
        f"default threads {m['torch_default_threads']}; Python {m['python']}, torch {m['torch']}, "
        f"transformers {m['transformers']}, tokenizers {m['tokenizers']}; {m['platform']}.",
        f"**Noise:** the machine is shared with other jobs; the 1-minute load average is shown "
        f"per section (2.0 = both cores busy before we start). Start: {r['load_start']:.2f}, "
        f"end: {r['load_end']:.2f}.",
        "",
    ]
    out: list[str] = []
    targets: list[tuple[str, str, bool]] = []

    if "mask" in r:
        x = r["mask"]
        ours = VARIANTS[0].name
        one = _ratio(x["times"], "pipeline one by one", ours)
        batch = _ratio(x["times"], "pipeline(list, batch_size=32)", ours)
        one_cpu = _ratio(x["times"], "pipeline one by one", ours, "cpu")
        batch_cpu = _ratio(x["times"], "pipeline(list, batch_size=32)", ours, "cpu")
        # The default engine may use 2 threads for a lone batch, so it is also held against the
        # pipeline at 2 threads: the target counts as met only against the faster baseline.
        one2 = _ratio(x["times"], "pipeline one by one, 2 threads", ours)
        batch2 = _ratio(x["times"], "pipeline(list, batch_size=32), 2 threads", ours)
        targets += [
            ("32 concurrent /mask vs pipeline one by one",
             f"{one:.1f}x wall, {one_cpu:.1f}x CPU; vs the 2-thread pipeline {one2:.1f}x "
             "(>= 6x)", min(one, one2) >= 6),
            ("32 concurrent /mask vs pipeline(list, batch_size=32)",
             f"{batch:.2f}x wall, {batch_cpu:.2f}x CPU; vs the 2-thread pipeline {batch2:.2f}x "
             "(>= 1.5x)", min(batch, batch2) >= 1.5),
        ]
        out += [
            f"## /mask: {x['requests']} concurrent requests arriving together",
            "",
            f"Sentences of {x['tokens']['median']:.0f} tokens (median; "
            f"{x['tokens']['min']:.0f}-{x['tokens']['max']:.0f}), top_k=5. "
            f"{x['tokens']['n']:.0f} requests per round, {s.rounds} rounds + 1 warm-up. "
            f"Engine batch sizes seen: {x['batch_sizes']}. Same top-5 token ids as the pipeline "
            f"one by one: {_yes(x['same_answers'])}. Load average {x['load_before']:.2f} -> "
            f"{x['load_after']:.2f}.",
            "",
            *_times_table(x["times"], x["requests"], "pipeline one by one"),
            "",
        ]
    for key, target, baseline, title, what in (
        ("qa", 1.8, "one by one (QATask, batch 1)", "QA batched vs one by one",
         lambda x: (f"## /qa: {x['requests']} concurrent questions",
                    f"Question + context of {_spread(x['tokens'])}. Baseline: our QATask called "
                    "with one request at a time on the main thread (transformers 5 has no QA "
                    f"pipeline). Same spans: {_yes(x['same_answers'])}.")),
        ("features", 3.5, "one by one (FeaturesTask, batch 1)", "features batched vs one by one",
         lambda x: (f"## features (sentiment): {x['requests']} concurrent texts",
                    f"SST-2 sentences of {_spread(x['tokens'])}, [CLS] pooling. Same vectors "
                    f"(atol 1e-4): {_yes(x['same_answers'])}.")),
    ):
        if key not in r:
            continue
        x = r[key]
        ratio = _ratio(x["times"], baseline, VARIANTS[0].name)
        cpu = _ratio(x["times"], baseline, VARIANTS[0].name, "cpu")
        targets.append((title, f"{ratio:.2f}x wall, {cpu:.2f}x CPU (>= {target}x)",
                        min(ratio, cpu) >= target))
        heading, description = what(x)
        out += [
            heading,
            "",
            f"{description} Load {x['load_before']:.2f} -> {x['load_after']:.2f}.",
            "",
            *_times_table(x["times"], x["requests"], baseline),
            "",
        ]
    if "generate" in r:
        x = r["generate"]
        names = list(x["times"]["wall"])
        ratio = _ratio(x["times"], names[0], names[1])
        cpu = _ratio(x["times"], names[0], names[1], "cpu")
        targets.append(("16 concurrent /generate vs sequential",
                        f"{ratio:.1f}x wall, {cpu:.1f}x CPU (>= 5x)", min(ratio, cpu) >= 5))
        targets.append(("greedy batched output identical to unbatched",
                        f"{x['identical_count']} prompts", x["identical"]))
        tokens = x["requests"] * x["new_tokens"]
        out += [
            f"## /generate: {x['requests']} concurrent prompts x {x['new_tokens']} new tokens",
            "",
            f"Prompts of {x['prompt_tokens']['median']:.0f} tokens (median; "
            f"{x['prompt_tokens']['min']:.0f}-{x['prompt_tokens']['max']:.0f}). Baseline: "
            "`model.generate(do_sample=False, min_new_tokens=30, max_new_tokens=30)` one prompt "
            f"at a time; each round runs {s.gen_baseline_prompts} prompts and its time is scaled "
            f"to {x['requests']}. {s.gen_rounds} rounds, no warm-up round. New tokens per "
            f"answer: {x['tokens_out']}. Greedy batched text identical to unbatched "
            f"`generate`: {_yes(x['identical'])} ({x['identical_count']} prompts checked). "
            f"Load {x['load_before']:.2f} -> {x['load_after']:.2f}.",
            "",
            *_times_table(x["times"], tokens, names[0], unit="new tok/s"),
            "",
        ]
    if "stream" in r:
        x = r["stream"]
        out += [
            f"## Mixed stream: Poisson arrivals at {x['rate']:g} req/s for {x['seconds']:g} s",
            "",
            f"{x['arrivals']} requests, mix {x['mix']} (/generate: 30 new tokens, top_k=50 "
            "sampling; /qa and /mask inputs as above). The same arrival schedule for every "
            "setting; latency is submit -> answer. Throughput = answered / time of the last "
            "answer. 'no batching' is the engine with max_batch_size=1 and one worker: the "
            "one-request-at-a-time bot. Event-loop lag is a 10 ms ticker during the stream. "
            f"Load {x['load_before']:.2f} -> {x['load_after']:.2f}.",
            "",
            "| setting | run | p50 | p95 | p99 | answered/refused | throughput | mask p50 | "
            "qa p50 | tokens p50 | generate p50 | loop lag p99 / max |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, runs in x["runs"].items():
            for i, run in enumerate(runs):
                k = run["by_kind"]

                def p50(kind: str, k: dict = k) -> str:
                    return _t(k[kind]["p50"]) if kind in k else "-"

                out.append(
                    f"| {name} | {i + 1} | {_t(run['p50'])} | {_t(run['p95'])} | "
                    f"{_t(run['p99'])} | {run['completed']}/{run['refused']} | "
                    f"{run['throughput']:.2f} req/s | {p50('mask')} | {p50('qa')} | "
                    f"{p50('tokens')} | {p50('generate')} | {run['lag']['p99']:.1f} / "
                    f"{run['lag']['max']:.1f} ms |"
                )
        out.append("")
    if "mask" in r and "stream" in r and not s.quick:
        out += _defaults_note(r["mask"]["times"]["wall"], r["stream"]["runs"]) + [""]
    if "lag" in r:
        x = r["lag"]
        lag = x["lag"]
        stream_lags = [run["lag"] for runs in r.get("stream", {}).get("runs", {}).values()
                       for run in runs]
        worst_p99 = max([lag["p99"]] + [sl["p99"] for sl in stream_lags])
        worst_max = max([lag["max"]] + [sl["max"] for sl in stream_lags])
        targets.append(("event-loop lag while saturated (incl. generation), p99 / max",
                        f"{lag['p99']:.1f} / {lag['max']:.1f} ms (<= 20 / 100)",
                        lag["p99"] <= 20 and lag["max"] <= 100))
        out += [
            "## Event-loop lag while the core is saturated",
            "",
            f"{x['bursts']} burst(s) of {x['requests']} requests submitted at once (32 /mask, "
            "16 /qa, 32 features, 16 /tokens, 16 /generate x 30 tokens), default engine, "
            f"{x['wall']:.1f} s in all. A 10 ms `asyncio.sleep` ticker: p50 {lag['p50']:.1f} ms, "
            f"p99 {lag['p99']:.1f} ms, max {lag['max']:.1f} ms late over {lag['ticks']} ticks. "
            f"Worst over this and every stream run: p99 {worst_p99:.1f} ms, max "
            f"{worst_max:.1f} ms. Noise floor (same ticker, engine idle, 2 s just before): p99 "
            f"{x['idle']['p99']:.1f} ms, max {x['idle']['max']:.1f} ms. Load "
            f"{x['load_before']:.2f} -> {x['load_after']:.2f}.",
            "",
            f"Garbage collection during the bursts: {x['gc_pauses']} collections, the longest "
            f"per generation (0/1/2): {x['gc_worst'][0]:.1f} / {x['gc_worst'][1]:.1f} / "
            f"{x['gc_worst'][2]:.1f} ms. With the models loaded the collector tracks "
            f"{x['gc_tracked']:,} objects and a full collection took {x['gc_full_ms']:.0f} ms: "
            "a generation-2 collection, which Python runs on its own from time to time, stops "
            "the event loop that long (see the notes).",
            "",
        ]
    if "startup" in r:
        x = r["startup"]
        total = x["peak_rss"] + x["children_rss"]
        targets.append(("RSS with all default models loaded",
                        f"{x['peak_rss']:.0f} MB peak + {x['children_rss']:.0f} MB children "
                        "(<= 1536 MB)", total <= 1536))
        targets.append(("acknowledges before models finish loading",
                        f"ack {x['ack']:.2f} s, all loaded {x['all_loaded']:.2f} s",
                        x["acks_before_loaded"] and x["ack"] < x["all_loaded"]))
        out += [
            "## Start-up and memory (fresh child process)",
            "",
            "| moment (seconds since the process was spawned) | s |",
            "|---|---|",
            f"| imports done (Python, torch, transformers, core) | {x['import_core']:.2f} |",
            f"| engine constructed and started, accepting submits ('ready to acknowledge'; "
            f"{(x['ack'] - x['import_core']) * 1000:.0f} ms after the imports) | {x['ack']:.2f} |",
            f"| first answer (/tokens wordpiece, needs the DistilBERT checkpoint) | "
            f"{x['first_tokens']:.2f} |",
            f"| first /mask answer | {x['first_mask']:.2f} |",
            f"| all models loaded | {x['all_loaded']:.2f} |",
            "",
            f"Model states when the engine started accepting: {x['states_at_ack']}. "
            f"RSS with all models loaded: {x['rss_loaded']:.0f} MB; after one request of every "
            f"kind: {x['rss_after_each_task']:.0f} MB (peak {x['peak_rss']:.0f} MB), plus "
            f"{x['children_rss']:.0f} MB in child processes (the picture renderer). "
            f"{x['loaded_specs']} checkpoints are loaded for 5 tasks: /mask, /tokens (wordpiece) "
            "and features share one DistilBERT (modules loaded for it: "
            f"{x['mask_modules']}; the encoder is its `base_model`), /tokens bpe uses GPT-2's "
            "tokenizer. A separate encoder copy for features would add ~250 MB.",
            "",
        ]
    summary = ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    summary += [f"| {name} | {value} | {_yes(ok)} |" for name, value, ok in targets]
    return "\n".join(head + summary + [""] + out) + "\n" + NOTES


# --------------------------------------------------------------------------- main


SECTIONS = {"mask": bench_mask, "qa": bench_qa, "features": bench_features,
            "generate": bench_generate, "stream": bench_stream, "lag": bench_lag}


async def run_all(paths: BenchModelPaths, s: Settings, only: str | None) -> dict[str, Any]:
    work = make_workload()
    results: dict[str, Any] = {}
    variants = VARIANTS + [NO_BATCHING]
    async with started_engines(paths, variants) as registry:
        for name, bench in SECTIONS.items():
            if only in (None, name):
                results[name] = await bench(registry, work, s)
    return results


def _int_keys(obj: dict) -> dict:
    """JSON turned int keys (e.g. GC generations) into strings; turn them back."""
    return {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in obj.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (< 2 min)")
    parser.add_argument("--only", choices=[*SECTIONS, "startup"], help="run one section")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the table from the last run's raw figures")
    args = parser.parse_args(argv)
    if args.render_only:
        saved = json.loads((DEFAULT_CACHE / "last-results.json").read_text(),
                           object_hook=_int_keys)
        s = Settings(**saved.pop("settings"))
        args.out.write_text(render(saved, s, saved.pop("seconds")), encoding="utf-8")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("core").setLevel(logging.WARNING)
    started = time.perf_counter()
    load_start = loadavg()
    paths = build_models()
    if args.quick:
        s = Settings(quick=True, rounds=2, gen_rounds=1, gen_baseline_prompts=4,
                     stream_seconds=8, stream_rate=6)
    else:
        s = Settings(quick=False, rounds=5, gen_rounds=2, gen_baseline_prompts=8,
                     stream_seconds=20, stream_rate=6)
    results: dict[str, Any] = {"machine": machine_note(), "load_start": load_start}
    if args.only in (None, "startup"):
        log.info("section startup ...")
        results["startup"] = measure_startup(paths)
    if args.only != "startup":
        results.update(asyncio.run(run_all(paths, s, args.only)))
    seconds = time.perf_counter() - started
    results.update(finished_at=time.strftime("%Y-%m-%d %H:%M"), load_end=loadavg())
    text = render(results, s, seconds)
    args.out.write_text(text, encoding="utf-8")
    results.update(settings=dataclasses.asdict(s), seconds=seconds)
    # Raw figures next to the models, not in the repo: handy for a re-render or a diff.
    (DEFAULT_CACHE / "last-results.json").write_text(json.dumps(results, indent=1, default=str))
    print(text)


if __name__ == "__main__":
    main()
