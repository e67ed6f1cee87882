"""/generate with streaming on vs off, side by side: does reading the text as it is written
slow batched generation?

`python -m benchmarks.streaming [--model PATH] [--requests 16] [--new-tokens 30] [--rounds 5]`

Each round runs the same 16 concurrent seeded prompts twice on one engine, in alternating
order: `off` awaits `engine.submit` (today's whole answer), `on` reads `engine.stream` the way
the bot does (one partial text asked for every `--ask-every-s`, 1.0 s like the bot's default,
or 0 for the worst case: a partial text at every decode step). It reports new tokens per second
of each (median of rounds), their ratio, and checks that both gave the same texts. The issue's
bar: `on` within 10% of `off`. Run it on a quiet machine (the load average is printed); the
figures belong in benchmarks/RESULTS.md, not in comments.

`--model` defaults to the real-size random-weight GPT-2 of `benchmarks.models` (no download);
a smoke run can point it at the tiny test model (`python -m tests.tiny_models`' output,
`causal_lm`). The figures go into the `streaming` block of RESULTS.md through
`benchmarks.publish` (refused at a load above 1.5 unless `--record-noisy`), for the default
model only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.publish import NoisyMachine, loadavg, settled_load, write_block

RESULTS = Path(__file__).with_name("RESULTS.md")


async def _read(stream: Any, ask_every_s: float) -> Any:
    """Read a stream as the bot does: ask, wait, ask again."""
    async for _ in stream:
        if ask_every_s:
            await asyncio.wait({stream.future}, timeout=ask_every_s)
    return await stream


async def run(model: str, requests: int, new_tokens: int, rounds: int,
              ask_every_s: float) -> dict[str, Any]:
    from core.config import parse_config
    from core.inference.engine import InferenceEngine
    from core.inference.tasks.generate import GenerateRequest

    config = parse_config({"models": {"mask": model, "qa": model, "generate": model,
                                      "features": model},
                           "engine": {"device": "cpu", "max_generate_batch": requests}})
    asks = [GenerateRequest(f"Student {i} wrote that the", max_new_tokens=new_tokens, seed=i)
            for i in range(requests)]
    rates: dict[str, list[float]] = {"off": [], "on": []}
    texts: dict[str, list[tuple[str, ...]]] = {}
    async with InferenceEngine(config, tasks={"generate"}) as engine:
        await engine.settled()
        await asyncio.gather(*(engine.submit(a) for a in asks[:2]))  # warm up
        for n in range(rounds):
            for mode in (("off", "on") if n % 2 == 0 else ("on", "off")):
                started = time.perf_counter()
                if mode == "off":
                    results = await asyncio.gather(*(engine.submit(a) for a in asks))
                else:
                    results = await asyncio.gather(*(_read(engine.stream(a), ask_every_s)
                                                     for a in asks))
                wall = time.perf_counter() - started
                rates[mode].append(sum(sum(r.new_tokens) for r in results) / wall)
                texts[mode] = [r.continuations for r in results]
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    return {"model": model, "requests": requests, "new_tokens": new_tokens, "rounds": rounds,
            "ask_every_s": ask_every_s, "off_tok_s": off, "on_tok_s": on, "on_vs_off": on / off,
            "same_texts": texts["off"] == texts["on"], "runs": rates, "load": loadavg(),
            "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="the causal LM (default: benchmarks.models' GPT-2)")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ask-every-s", type=float, default=1.0)
    parser.add_argument("--record-noisy", action="store_true",
                        help="write the figures even if the machine was busy (labelled)")
    args = parser.parse_args(argv)
    model = args.model
    if model is None:
        from benchmarks.models import build_models

        model = str(build_models().causal_lm)
    before = settled_load()
    out = asyncio.run(run(model, args.requests, args.new_tokens, args.rounds, args.ask_every_s))
    print(json.dumps(out, indent=2))
    print(f"streaming on: {out['on_tok_s']:.0f} new tok/s, off: {out['off_tok_s']:.0f} "
          f"({out['on_vs_off']:.0%}); same texts: {out['same_texts']}; load {out['load']:.2f}")
    if args.model is None:
        text = "\n".join([
            "## /generate streamed vs whole (`python -m benchmarks.streaming`)",
            "",
            f"{out['requests']} concurrent seeded /generate x {out['new_tokens']} new tokens on "
            "the real-size random-weight GPT-2 (benchmarks/models.py), one engine, alternating "
            f"rounds ({out['rounds']}); `on` reads each stream as the bot does (a partial text "
            f"asked every {out['ask_every_s']:g} s). Load before {before:.2f}, after "
            f"{out['load']:.2f}; {out['cpus']} CPUs.",
            "",
            "| | new tokens/s (median of rounds) |",
            "|---|---:|",
            f"| whole answer (`submit`) | {out['off_tok_s']:.0f} |",
            f"| streamed (`stream`) | {out['on_tok_s']:.0f} |",
            "",
            f"Streamed / whole: {out['on_vs_off']:.0%} (target: within 10%, "
            f"{'met' if out['on_vs_off'] >= 0.9 else 'NOT met'}); same texts: "
            f"{out['same_texts']}.",
        ])
        try:
            write_block(RESULTS, "streaming", text, loads=[before],
                        record_noisy=args.record_noisy)
        except NoisyMachine as refused:
            print(refused)
            return 3
        print(f"wrote {RESULTS}")
    return 0 if out["same_texts"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
