"""The benchmark sections: each measures one workload against its baseline and returns raw
figures (rendered by `benchmarks/report.py`). Registered in `SECTIONS` for `--only`.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import asyncio  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks.models import BenchModelPaths, build_models  # noqa: E402

log = logging.getLogger(__name__)
from benchmarks.harness import (  # noqa: E402
    NO_BATCHING,
    VARIANTS,
    Collect,
    Contender,
    LagProbe,
    Settings,
    Variant,
    Workload,
    alternate,
    blocking,
    children_rss_mb,
    engine_burst,
    engine_config,
    percentile,
    rss_mb,
    section,
    set_threads,
    stats,
)


@section("mask")
async def bench_mask(registry, work: Workload, s: Settings) -> dict:
    import transformers

    from core.inference.models import Head
    from core.inference.tasks.fill_mask import FillMaskRequest

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
    same = [sum(
        [f.token_id for f in result.fillers] == [e["token"] for e in pipe(text)]
        for text, result in zip(texts, ours)
    ), len(texts)]
    lengths = [len(model.tokenizer(t)["input_ids"]) for t in texts]
    return {"times": times, "requests": len(texts), "same_answers": same,
            "batch_sizes": sorted({r.timings.batch_size for r in ours}),
            "tokens": stats([float(n) for n in lengths])}


@section("qa")
async def bench_qa(registry, work: Workload, s: Settings) -> dict:
    from core.inference.tasks.qa import QARequest

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
    same = [sum((b.start, b.end) == (single[i].start, single[i].end)
                for i, b in enumerate(batched)), len(batched)]
    lengths = [len(model.tokenizer(q, c)["input_ids"]) for q, c in work.qa]
    return {"times": times, "requests": len(requests), "same_answers": same,
            "tokens": stats([float(n) for n in lengths])}


@section("features")
async def bench_features(registry, work: Workload, s: Settings) -> dict:
    import numpy as np

    from core.inference.tasks.features import FeaturesRequest

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
    cosine = [float(np.dot(b.vector, single[i].vector)
                    / (np.linalg.norm(b.vector) * np.linalg.norm(single[i].vector)))
              for i, b in enumerate(batched)]
    same = [sum(c >= 0.999 for c in cosine), len(batched)]
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
    from core.inference.models import Head
    from core.inference.tasks.generate import GenerateRequest

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
    from core.inference.tasks.fill_mask import FillMaskRequest
    from core.inference.tasks.generate import GenerateRequest
    from core.inference.tasks.qa import QARequest
    from core.inference.tasks.tokens import TokensRequest

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
    from core.inference.tasks.features import FeaturesRequest
    from core.inference.tasks.fill_mask import FillMaskRequest
    from core.inference.tasks.generate import GenerateRequest
    from core.inference.tasks.qa import QARequest
    from core.inference.tasks.tokens import TokensRequest

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
    from core.inference.engine import InferenceEngine
    from core.inference.models import LoadState
    from core.inference.tasks.features import FeaturesRequest
    from core.inference.tasks.fill_mask import FillMaskRequest
    from core.inference.tasks.generate import GenerateRequest
    from core.inference.tasks.qa import QARequest
    from core.inference.tasks.tokens import TokensRequest

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
    code = f"from benchmarks.sections import child_startup; child_startup({spawned!r})"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"start-up child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])



SECTIONS = {"mask": bench_mask, "qa": bench_qa, "features": bench_features,
            "generate": bench_generate, "stream": bench_stream, "lag": bench_lag}

