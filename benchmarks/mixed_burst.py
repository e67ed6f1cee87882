"""A mixed burst through the engine: do text answers wait for somebody's picture?

`python -m benchmarks.mixed_burst` (about a minute; `--requests/--students/--seconds` to vary).

Replays the burst of the picture issue (#16): 300 requests from 100 students within 10 s,
a realistic mix of text commands (`/tokens`, `/mask`, `/qa`, `/generate`) and teaching
commands that draw a picture (`/attention`, `/contextsim`, `/maskpair`, `/nexttoken`), through
the real `InferenceEngine` with the test suite's tiny models (built into a temporary folder) and
the default engine settings. Arrival times are uniform at random over the window (seeded).
Reports per command: answered, refused as busy, p50/p95/max latency from submit to answer
(pictures included), and whether `/mask` p95 <= 2 s (the issue's target).

Before the drawing stage (pictures drawn inside the forward's worker, one picture process), the
same burst through the emulated Discord gave `/mask` p50 25 s and `/attention` 31 s (#16).
Measured with the stage (seed 1), on the shared 2-core machine while other jobs ran:

| command | answered / busy, load 5 | p50 | p95 | answered / busy, load 12 | p50 | p95 |
|---|---|---|---|---|---|---|
| /mask | 74 / 0 | 0.02 s | 0.04 s | 74 / 0 | 0.78 s | 1.51 s |
| /tokens | 50 / 0 | 0.01 s | 0.03 s | 50 / 0 | 0.52 s | 1.44 s |
| /qa | 32 / 0 | 0.02 s | 0.04 s | 32 / 0 | 1.00 s | 1.58 s |
| /generate | 20 / 0 | 0.17 s | 0.23 s | 20 / 0 | 4.71 s | 6.27 s |
| /attention | 17 / 15 | 32.8 s | 60.8 s | 5 / 27 | 55.4 s | 66.4 s |
| /contextsim | 14 / 15 | 31.3 s | 61.4 s | 5 / 24 | 47.1 s | 94.5 s |
| /maskpair | 26 / 12 | 18.7 s | 61.4 s | 16 / 22 | 92.1 s | 106 s |
| /nexttoken | 18 / 7 | 23.1 s | 57.6 s | 6 / 19 | 82.4 s | 111 s |

(The load-5 run used `picture_queue_size = 64`, the load-12 run the default 32.) `/mask` p95
meets the 2 s target in both. Pictures are the bottleneck: one costs 0.2-0.6 s of CPU to draw
(1000x1000 px, constrained layout), so ~150 of them in 10 s are ~60 CPU-seconds on 2 cores; the
bounded queue turns the excess into an immediate "busy" instead of an ever longer wait.
Cheaper drawing (smaller figures, no constrained layout) is the next lever, not measured here.

"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from core.config import parse_config  # noqa: E402
from core.errors import Overloaded  # noqa: E402
from core.inference.engine import InferenceEngine  # noqa: E402
from core.inference.tasks.attention import AttentionRequest  # noqa: E402
from core.inference.tasks.contextsim import ContextSimRequest  # noqa: E402
from core.inference.tasks.fill_mask import FillMaskRequest  # noqa: E402
from core.inference.tasks.generate import GenerateRequest  # noqa: E402
from core.inference.tasks.maskpair import MaskPairRequest  # noqa: E402
from core.inference.tasks.nexttoken import NextTokenRequest  # noqa: E402
from core.inference.tasks.qa import QARequest  # noqa: E402
from core.inference.tasks.tokens import TokensRequest  # noqa: E402

MASK_P95_TARGET_S = 2.0

#: (command, weight, request maker): a class session, text commands the most common.
MIX: tuple[tuple[str, int, Any], ...] = (
    ("mask", 25, lambda i: FillMaskRequest(f"Student {i} thinks the [MASK] is shy.")),
    ("tokens", 15, lambda i: TokensRequest(f"Tokenization number {i} is unbelievable!")),
    ("qa", 12, lambda i: QARequest("Where is the bank?",
                                   f"Case {i}: the bank is by the river in the old town.")),
    ("generate", 8, lambda i: GenerateRequest(f"Once upon a time {i}", max_new_tokens=20)),
    ("attention", 12, lambda i: AttentionRequest(f"The woman went to the bank number {i}.")),
    ("contextsim", 10, lambda i: ContextSimRequest(
        "bank", f"He sat by the river bank {i}.", "She paid money into the bank.")),
    ("maskpair", 10, lambda i: MaskPairRequest(
        "The man works as a [MASK].", f"The woman {i} works as a [MASK].")),
    ("nexttoken", 8, lambda i: NextTokenRequest(f"Hello, I am student {i} and", top_k=10)),
)


def schedule(requests: int, students: int, seconds: float,
             seed: int) -> list[tuple[float, str, Any]]:
    rng = random.Random(seed)
    names = [name for name, _, _ in MIX]
    weights = [weight for _, weight, _ in MIX]
    makers = {name: make for name, _, make in MIX}
    plan = []
    for i in range(requests):
        name = rng.choices(names, weights)[0]
        student = i % students
        plan.append((rng.uniform(0, seconds), name, makers[name](f"{student}-{i}")))
    return sorted(plan, key=lambda item: item[0])


async def replay(engine: InferenceEngine, plan: list[tuple[float, str, Any]]) -> dict:
    latencies: dict[str, list[float]] = defaultdict(list)
    busy: dict[str, int] = defaultdict(int)
    failed: dict[str, int] = defaultdict(int)
    start = time.perf_counter()

    async def one(at: float, name: str, request: Any) -> None:
        await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
        sent = time.perf_counter()
        try:
            await engine.submit(request)
        except Overloaded:
            busy[name] += 1
        except Exception:  # noqa: BLE001 - counted and reported, never hidden
            failed[name] += 1
        else:
            latencies[name].append(time.perf_counter() - sent)

    await asyncio.gather(*(one(*item) for item in plan))
    return {"latencies": latencies, "busy": busy, "failed": failed,
            "wall_s": time.perf_counter() - start}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def report(result: dict, args: argparse.Namespace) -> str:
    lines = [
        f"Mixed burst: {args.requests} requests from {args.students} students in "
        f"{args.seconds:g} s (seed {args.seed}), tiny models, default engine settings; "
        f"done after {result['wall_s']:.1f} s; load average {os.getloadavg()[0]:.1f}.",
        "",
        "| command | answered | busy | failed | p50 | p95 | max |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, _, _ in MIX:
        values = result["latencies"].get(name, [])
        lines.append(
            f"| /{name} | {len(values)} | {result['busy'].get(name, 0)} | "
            f"{result['failed'].get(name, 0)} | {percentile(values, 50):.2f} s | "
            f"{percentile(values, 95):.2f} s | {max(values, default=float('nan')):.2f} s |"
        )
    mask_p95 = percentile(result["latencies"].get("mask", []), 95)
    verdict = "met" if mask_p95 <= MASK_P95_TARGET_S else "NOT met"
    lines += ["", f"/mask p95 {mask_p95:.2f} s: target <= {MASK_P95_TARGET_S:g} s {verdict}."]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> str:
    from bot.compose import ASK, open_services
    from tests.tiny_models import build_tiny_models  # the test suite's offline checkpoints

    with tempfile.TemporaryDirectory(prefix="tlm-burst-") as folder:
        paths = build_tiny_models(Path(folder))
        config = parse_config({"models": {
            "mask": str(paths.masked_lm), "qa": str(paths.qa),
            "generate": str(paths.causal_lm), "features": str(paths.masked_lm),
        }})
        # Built as the bot builds its services (bot.compose), minus Discord and the web view.
        async with open_services(config, ASK) as services:
            engine = services.engine
            await engine.settled()
            # Warm every lane and the drawing processes, as a running bot would be.
            for _, _, make in MIX:
                await engine.submit(make("warm-up"))
            plan = schedule(args.requests, args.students, args.seconds, args.seed)
            result = await replay(engine, plan)
    return report(result, args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    text = asyncio.run(run(args))
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
