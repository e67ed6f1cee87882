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
while iterating. Results go to the `core` block of benchmarks/RESULTS.md (or `--out`).

Layout: `benchmarks/harness.py` (workloads, measurement, engines), `benchmarks/sections.py`
(one function per section), `benchmarks/report.py` (markdown; each script owns one block of
RESULTS.md), this file (the command line).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks.models import DEFAULT_CACHE, BenchModelPaths, build_models  # noqa: E402

log = logging.getLogger(__name__)
from benchmarks.harness import (  # noqa: E402
    NO_BATCHING,
    OUTPUT,
    VARIANTS,
    Settings,
    make_workload,
    started_engines,
)
from benchmarks.publish import NoisyMachine, loadavg, settled_load, write_block  # noqa: E402
from benchmarks.report import machine_note, render  # noqa: E402
from benchmarks.sections import SECTIONS, child_startup, measure_startup  # noqa: E402,F401


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


def section_loads(results: dict[str, Any]) -> list[float]:
    """The settled load before each section in `results` (what the publishing gate reads)."""
    return [x["load_before"] for x in results.values()
            if isinstance(x, dict) and "load_before" in x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (< 2 min)")
    parser.add_argument("--only", choices=[*SECTIONS, "startup"], help="run one section")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the table from the last run's raw figures")
    parser.add_argument("--record-noisy", action="store_true",
                        help="write figures taken at a load above 1.5 anyway, labelled as noisy")
    args = parser.parse_args(argv)
    if args.render_only:
        saved = json.loads((DEFAULT_CACHE / "last-results.json").read_text(),
                           object_hook=_int_keys)
        s = Settings(**saved.pop("settings"))
        return publish(args, render(saved, s, saved.pop("seconds")), section_loads(saved))
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
        before = settled_load()
        results["startup"] = measure_startup(paths) | {"load_before": before}
    if args.only != "startup":
        results.update(asyncio.run(run_all(paths, s, args.only)))
    seconds = time.perf_counter() - started
    results.update(finished_at=time.strftime("%Y-%m-%d %H:%M"), load_end=loadavg())
    text = render(results, s, seconds)
    loads = section_loads(results)
    results.update(settings=dataclasses.asdict(s), seconds=seconds)
    # Raw figures next to the models, not in the repo: handy for a re-render or a diff.
    (DEFAULT_CACHE / "last-results.json").write_text(json.dumps(results, indent=1, default=str))
    print(text)
    return publish(args, text, loads)


def publish(args: argparse.Namespace, text: str, loads: list[float]) -> int:
    try:
        write_block(args.out, "core", text, loads=loads, record_noisy=args.record_noisy)
    except NoisyMachine as exc:
        print(exc)
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
