"""Ray Serve backend vs the local engine, side by side in one run.

Run: `python -m benchmarks.ray_serve` (about 10 minutes; writes its RESULTS.md section).

Real-size random-weight DistilBERT/GPT-2 (benchmarks/models.py) on a private loopback Ray
cluster started the way docs/scaling-out.md says (tests/ray_cluster.py: `ray start --head` with the
loopback settings, then `tlm-bot serve`). Measures, on this machine:
- per-request overhead: sequential single `/mask` requests, p50 through Ray minus p50 local;
- 32 concurrent `/mask`: the local engine, Ray with 1 replica, Ray with 2 replicas (the same
  application updated in place from 1 to 2 replicas, one CPU each);
- a mixed burst (mask, qa, generate, tokens at once) local vs Ray.
Writes the "ray" block of benchmarks/RESULTS.md, if the machine was quiet (`benchmarks/publish.py`).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.models import DEFAULT_CACHE, build_models  # noqa: E402
from benchmarks.publish import NoisyMachine, loadavg, settled_load, write_block  # noqa: E402
from core.config import Config  # noqa: E402
from core.inference.engine import InferenceEngine  # noqa: E402
from core.inference.tasks.fill_mask import FillMaskRequest  # noqa: E402
from core.inference.tasks.generate import GenerateRequest  # noqa: E402
from core.inference.tasks.qa import QARequest  # noqa: E402
from core.inference.tasks.tokens import TokensRequest  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")
MASK_TEXTS = [
    f"The {w} student said that the lecture about transformers was [MASK] and long."
    for w in ("first", "second", "tired", "happy", "new", "old", "quiet", "loud")
] * 4
CONTEXT = ("Paris is the capital and largest city of France. It is known for its museums, "
           "its cafes and the river Seine that runs through the middle of the city.")


def with_replicas(config: Config, replicas: int) -> Config:
    ray = dataclasses.replace(config.ray, mask=dataclasses.replace(config.ray.mask,
                                                                   replicas=replicas))
    return dataclasses.replace(config, ray=ray)


def local_of(config: Config, threads: int = 0) -> Config:
    engine = dataclasses.replace(config.engine, backend="local", torch_threads=threads)
    return dataclasses.replace(config, engine=engine)


async def sequential_p50(engine: InferenceEngine, rounds: int) -> float:
    request = FillMaskRequest("Paris is the [MASK] of France.")
    await engine.submit(request)  # warm
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await engine.submit(request)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def noop_p50(engine: InferenceEngine, rounds: int) -> float:
    """Serve's own round trip: a call of the replica's no-op `pid` method through a handle of
    the `/mask` application, as the bot's calls go (the floor under the per-request overhead)."""
    from ray import serve

    spec = engine.config.models.mask
    handle = serve.get_app_handle(engine.remote.plans[spec].name)
    await handle.pid.remote()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await handle.pid.remote()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def burst_wall(engine: InferenceEngine, rounds: int, texts: list[str] = MASK_TEXTS
                     ) -> float:
    await asyncio.gather(*(engine.submit(FillMaskRequest(t)) for t in texts))  # warm
    walls = []
    for _ in range(rounds):
        started = time.perf_counter()
        await asyncio.gather(*(engine.submit(FillMaskRequest(t)) for t in texts))
        walls.append((time.perf_counter() - started) * 1000)
    return statistics.median(walls)


def mixed_requests() -> list:
    return (
        [FillMaskRequest(t) for t in MASK_TEXTS[:16]]
        + [QARequest(f"What is {w} in Paris?", CONTEXT) for w in ("known", "the river", "big")]
        * 2
        + [GenerateRequest(f"Student {i} asked about", max_new_tokens=20, seed=i)
           for i in range(4)]
        + [TokensRequest("Tokenization is unbelievable!")] * 4
    )


async def mixed(engine: InferenceEngine) -> dict:
    requests = mixed_requests()
    await asyncio.gather(*(engine.submit(r) for r in requests))  # warm
    latencies: dict[str, list[float]] = {}
    started = time.perf_counter()

    async def one(request) -> None:
        t = time.perf_counter()
        await engine.submit(request)
        latencies.setdefault(type(request).__name__, []).append((time.perf_counter() - t) * 1000)

    await asyncio.gather(*(one(r) for r in requests))
    wall = (time.perf_counter() - started) * 1000
    return {"wall_ms": wall, **{k: statistics.median(v) for k, v in latencies.items()}}


async def measure(cluster, config: Config, rounds: int) -> dict:
    out: dict = {"load_before": await asyncio.to_thread(settled_load)}
    async with InferenceEngine(local_of(config)) as local:
        await local.settled()  # models loaded, drawing processes done importing
        out["local_seq_p50_ms"] = await sequential_p50(local, rounds * 8)
        out["local_burst_ms"] = await burst_wall(local, rounds)
        out["local_mixed"] = await mixed(local)
    async with InferenceEngine(local_of(config, threads=1)) as local1:
        await local1.settled()
        # The same work as a replica of one CPU (one torch thread): what Ray itself adds.
        out["local1_seq_p50_ms"] = await sequential_p50(local1, rounds * 8)
        out["local1_burst_ms"] = await burst_wall(local1, rounds)
        # Half the burst on one thread: what each of two replicas has to do at best.
        out["local1_half_burst_ms"] = await burst_wall(local1, rounds,
                                                       MASK_TEXTS[:len(MASK_TEXTS) // 2])
    one = with_replicas(config, 1)
    async with InferenceEngine(one) as ray1:
        await ray1.settled()
        out["ray_seq_p50_ms"] = await sequential_p50(ray1, rounds * 8)
        out["ray_noop_p50_ms"] = await noop_p50(ray1, rounds * 8)
        out["ray1_burst_ms"] = await burst_wall(ray1, rounds)
        out["ray_mixed"] = await mixed(ray1)
    two = with_replicas(config, 2)
    started = time.perf_counter()
    await asyncio.to_thread(redeploy, cluster, 2)  # the same application, updated in place
    out["scale_up_s"] = time.perf_counter() - started
    async with InferenceEngine(two) as ray2:
        await ray2.settled()
        out["ray2_burst_ms"] = await burst_wall(ray2, rounds)
    out["load_after"] = loadavg()
    return out


def redeploy(cluster, replicas: int) -> None:
    """`tlm-bot serve` again with `[ray.mask] replicas` changed: Serve updates the app in place.

    A separate process, as an operator would run it (a second deploy from a driver that already
    holds handles failed to pickle Serve's router module)."""
    import subprocess
    import sys

    from core.config import tomllib
    from tests.ray_cluster import toml_text

    raw = tomllib.loads(cluster.config_path.read_text(encoding="utf-8"))
    raw["ray"]["mask"]["replicas"] = replicas
    path = cluster.config_path.with_name(f"config-{replicas}.toml")
    path.write_text(toml_text(raw), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "bot", "--config", str(path), "serve"],
                   env=cluster.env, check=True, capture_output=True, timeout=600)


def render(r: dict, when: str) -> str:
    # Against the local engine on one thread, as the replica (one CPU) runs: the difference is
    # Ray's own cost, not a second core the local engine had.
    same_threads = r["local1_seq_p50_ms"]
    overhead = r["ray_seq_p50_ms"] - same_threads
    ratio = r["ray1_burst_ms"] / r["ray2_burst_ms"]
    noop = ("" if "ray_noop_p50_ms" not in r else
            f"; Serve's own round trip (a no-op call) {r['ray_noop_p50_ms']:.1f} ms")
    half = r.get("local1_half_burst_ms")
    ceiling = "" if not half else (
        f" Half the burst (16 `/mask`) on one thread locally took {half:.0f} ms against "
        f"{r['local1_burst_ms']:.0f} ms for all 32: a batch's cost grows slower than its "
        "size (its weights read once per forward, larger products faster per row), which "
        f"caps two replicas at {r['local1_burst_ms'] / half:.2f}x one on a 32-request burst, "
        "before any Ray cost.")
    lm, rm = r["local_mixed"], r["ray_mixed"]
    rows = "\n".join(
        f"| {name} | {lm.get(name, 0):.0f} | {rm.get(name, 0):.0f} |"
        for name in ("FillMaskRequest", "QARequest", "GenerateRequest", "TokensRequest")
    )
    return f"""## Ray Serve

`python -m benchmarks.ray_serve` ({when}, {platform.machine()}, {os.cpu_count()} cores, load
{r['load_before']:.1f} -> {r['load_after']:.1f}). Real-size random-weight models; a private
loopback Ray cluster (3 logical CPUs on the 2 cores: one per `/mask` replica, half for QA and
GPT-2 each); the local engine in the same process, measured first.

| measurement | local | Ray Serve | target |
|---|---|---|---|
| one `/mask` at a time, p50 | engine auto {r['local_seq_p50_ms']:.1f} ms, \
1 thread {same_threads:.1f} ms | 1 replica of 1 CPU {r['ray_seq_p50_ms']:.1f} ms | \
overhead over 1 thread {overhead:.1f} ms (<= 5 ms){noop} |
| 32 concurrent `/mask`, median of rounds | engine auto {r['local_burst_ms']:.0f} ms, \
1 thread {r['local1_burst_ms']:.0f} ms | 1 replica {r['ray1_burst_ms']:.0f} ms, \
2 replicas {r['ray2_burst_ms']:.0f} ms | 2 replicas / 1 = {ratio:.2f}x (>= 1.7x) |
| mixed burst (16 mask, 6 qa, 4 generate x 20, 4 tokens), wall | {lm['wall_ms']:.0f} ms | \
{rm['wall_ms']:.0f} ms | |

Mixed burst, p50 per command (ms):

| command | local | Ray (1 replica per model) |
|---|---|---|
{rows}

Scaling `/mask` from 1 to 2 replicas in place took {r['scale_up_s']:.0f} s.{ceiling} On one 2-core
machine Ray cannot beat the local engine (the replicas share the same cores, and Ray's own
processes take ~1 GB); it pays when replicas run on more machines than the bot's.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--record-noisy", action="store_true",
                        help="write figures taken at a load above 1.5 anyway, labelled as noisy")
    args = parser.parse_args()
    from tests.ray_cluster import running_cluster

    paths = build_models(DEFAULT_CACHE)
    sizing = {"mask": {"num_cpus": 1, "replicas": 1},
              "qa": {"num_cpus": 0.5}, "generate": {"num_cpus": 0.5}}
    # The shipped engine settings (the tests pin float32; `auto` is the default).
    engine = {"dtype": "auto", "torch_threads": 0, "max_wait_ms": 10.0}
    with running_cluster(paths, num_cpus=3, strace=False, sizing=sizing,
                         engine=engine) as cluster:
        results = asyncio.run(measure(cluster, cluster.config, args.rounds))
    (DEFAULT_CACHE / "ray-serve-results.json").write_text(json.dumps(results, indent=1))
    text = render(results, time.strftime("%Y-%m-%d %H:%M"))
    print(text)
    if not args.no_write:
        try:
            write_block(RESULTS, "ray", text, loads=[results["load_before"]],
                        record_noisy=args.record_noisy)
        except NoisyMachine as exc:
            print(exc)
            return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
