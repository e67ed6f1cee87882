"""`/explain mask` on the real-size model, alone and under a `/mask` load:
`python -m benchmarks.explain` (a few minutes; run it on a quiet machine).

The issue's targets (#24): an `/explain mask` of a 25-word sentence answered in <= 2 s on 2
cores with the default `[limits] explain_steps`, and `/mask` p95 changed by no more than 20%
while explanations run. Through the real `InferenceEngine` with the default engine settings and
the random-weight real-size DistilBERT of `benchmarks/models.py` (no download; the cost of a
forward does not depend on the weights).

Three phases, each `--seconds` long:

1. explanations alone, one after another: latency from submit to the answer with its picture,
   and the attribution's own time (the worker's `inference_ms`);
2. the `/mask` load alone: `--clients` students each sending `/mask` again as soon as answered;
3. the same `/mask` load while explanations run one after another.

Writes its block of benchmarks/RESULTS.md (between the "explain" markers; `--out` elsewhere).
`--tiny` runs everything on the test suite's tiny models, for a smoke test of the script only:
its figures say nothing about the targets (write them elsewhere with `--out`).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.harness import engine_config, percentile  # noqa: E402
from benchmarks.publish import NoisyMachine, settled_load, write_block  # noqa: E402
from core.inference.engine import InferenceEngine  # noqa: E402
from core.inference.tasks.explain import ExplainMaskRequest  # noqa: E402
from core.inference.tasks.fill_mask import FillMaskRequest  # noqa: E402

OUTPUT = Path(__file__).with_name("RESULTS.md")
RAW = Path.home() / ".cache" / "tlm-bot-bench" / "explain.json"

#: 25 words, one of them the mask.
SENTENCE = ("After the long meeting about the budget, the tired nurse told everyone that "
            "[MASK] would finally take a short holiday in the mountains next spring.")
MASK_TEXTS = ("Paris is the [MASK] of France.", "The doctor said that [MASK] was late.",
              "I went to the [MASK] to buy some bread.", "The [MASK] barked all night.")


async def explanations(engine: InferenceEngine, seconds: float) -> list[dict]:
    """Explanations one after another for `seconds`: (total, attribution) per answer."""
    done: list[dict] = []
    until = time.perf_counter() + seconds
    while time.perf_counter() < until or not done:
        started = time.perf_counter()
        result = await engine.submit(ExplainMaskRequest(SENTENCE), timeout=600)
        done.append({"total_s": time.perf_counter() - started,
                     "attribution_s": result.timings.inference_ms / 1000,
                     "delta_share": result.relative_delta})
    return done


async def mask_load(engine: InferenceEngine, clients: int, seconds: float) -> list[float]:
    """`clients` students sending /mask in a closed loop for `seconds`: each latency."""
    latencies: list[float] = []
    until = time.perf_counter() + seconds

    async def student(n: int) -> None:
        i = n
        while time.perf_counter() < until:
            started = time.perf_counter()
            await engine.submit(FillMaskRequest(MASK_TEXTS[i % len(MASK_TEXTS)]), timeout=600)
            latencies.append(time.perf_counter() - started)
            i += 1

    await asyncio.gather(*(student(n) for n in range(clients)))
    return latencies


async def measure(config, seconds: float, clients: int) -> dict:
    async with InferenceEngine(config) as engine:
        await engine.settled()
        # Warm up: first forwards, the drawing processes, the explain lane.
        await engine.submit(ExplainMaskRequest(SENTENCE), timeout=600)
        await mask_load(engine, clients, min(2.0, seconds))
        alone = await explanations(engine, seconds)
        load_alone = await mask_load(engine, clients, seconds)
        explaining = asyncio.ensure_future(explanations(engine, seconds))
        load_during = await mask_load(engine, clients, seconds)
        during = await explaining
    return {"alone": alone, "mask_alone": load_alone, "mask_during": load_during,
            "during": during}


def summary(values: list[float]) -> str:
    return (f"{statistics.median(values):.2f} s | {percentile(values, 95):.2f} s | "
            f"{max(values):.2f} s")


def render(raw: dict, *, steps: int, seconds: float, clients: int, load: str, models: str,
           tokens: int) -> str:
    alone, during = raw["alone"], raw["during"]
    p95_alone = percentile(raw["mask_alone"], 95)
    p95_during = percentile(raw["mask_during"], 95)
    change = p95_during / p95_alone - 1 if p95_alone else float("nan")
    worst = max(r["total_s"] for r in alone)
    lines = [
        "## /explain mask: a 25-word sentence, alone and under a /mask load (issue 24)",
        "",
        f"`python -m benchmarks.explain` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"load average {load}, {os.cpu_count()} CPUs; {models}; `explain_steps = {steps}` "
        f"(the default), {tokens} tokens; {clients} /mask students in a closed loop; "
        f"{seconds:g} s per phase. Total = submit to the answer with its picture; "
        "attribution = the worker's time for the integrated gradients.",
        "",
        "| | answers | median | p95 | max |",
        "|---|---:|---:|---:|---:|",
        f"| /explain alone, total | {len(alone)} | {summary([r['total_s'] for r in alone])} |",
        f"| /explain alone, attribution | {len(alone)} | "
        f"{summary([r['attribution_s'] for r in alone])} |",
        f"| /explain under /mask load, total | {len(during)} | "
        f"{summary([r['total_s'] for r in during])} |",
        f"| /mask alone | {len(raw['mask_alone'])} | {summary(raw['mask_alone'])} |",
        f"| /mask while explanations run | {len(raw['mask_during'])} | "
        f"{summary(raw['mask_during'])} |",
        "",
        f"Slowest explanation alone: {worst:.2f} s ({'meets' if worst <= 2 else 'MISSES'} the "
        f"2 s target). /mask p95 {p95_alone:.2f} s alone, {p95_during:.2f} s while "
        f"explanations run: {change:+.0%} ({'meets' if change <= 0.2 else 'MISSES'} the 20% "
        "target). Completeness delta, largest share of the score's change: "
        f"{max(r['delta_share'] for r in alone + during):.1%}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--clients", type=int, default=4, help="/mask students in the load")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    parser.add_argument("--tiny", action="store_true",
                        help="the test suite's tiny models: a smoke test of the script only")
    parser.add_argument("--record-noisy", action="store_true",
                        help="write the figures even if the machine was busy (labelled)")
    args = parser.parse_args()
    before = settled_load()
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            from tests.tiny_models import build_tiny_models

            tiny = build_tiny_models(Path(tmp))
            config = engine_config(tiny)
            models = "TINY test models (a smoke run: these figures mean nothing)"
        else:
            from benchmarks.models import build_models

            config = engine_config(build_models())
            models = "random-weight real-size distilbert-base-cased (benchmarks/models.py)"
        from transformers import AutoTokenizer

        tokens = len(AutoTokenizer.from_pretrained(config.models.mask.id)(SENTENCE)["input_ids"])
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        raw = asyncio.run(measure(config, args.seconds, args.clients))
    if not args.tiny:
        RAW.parent.mkdir(parents=True, exist_ok=True)
        RAW.write_text(json.dumps(raw, indent=1))
    text = render(raw, steps=config.limits.explain_steps, seconds=args.seconds,
                  clients=args.clients, load=load, models=models, tokens=tokens)
    print(text)
    if args.tiny and args.out == OUTPUT:
        print("a --tiny smoke run writes no figures into RESULTS.md (give --out to keep them)")
        return
    try:
        write_block(args.out, "explain", text, loads=[before],
                    record_noisy=args.record_noisy or args.tiny)
    except NoisyMachine as refused:
        print(refused)
        raise SystemExit(3) from None
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
