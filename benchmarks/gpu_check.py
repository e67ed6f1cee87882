"""GPU check: the engine's equivalence and speed on CUDA, float16 vs float32 (and the CPU).

`python -m benchmarks.gpu_check [--out FILE.json] [--rounds N]` skips with a message (exit 0)
when torch sees no CUDA GPU. Otherwise it builds real-size DistilBERT (768/6/12, vocab 28996)
and GPT-2 (768/12/12, vocab 50257) checkpoints with random weights and the test suite's small
tokenizers (no download: a GPU machine may have no network; the compute is the real
architectures', the vocabulary projection at the mask sees only the tokenizer's ids), then
compares, per placement (cpu float32, cuda float32, cuda float16):
- equivalence with the CPU float32 answers: /mask top-1 filler and probability gap, features
  cosine, /qa spans, greedy /generate text;
- speed: 32 concurrent /mask (wall, median of rounds), 16 concurrent /generate x 30 new tokens
  (new tokens per second).
Figures are printed as a markdown table and written as JSON (`--out`); benchmarks/RESULTS.md
carries the last run's table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

log = logging.getLogger("gpu_check")

MASK_TEXTS = [
    "Paris is the [MASK] of France.", "The cat sat on the [MASK] near the door.",
    "Students in the [MASK] ask the bot questions about words.",
    "A new word can be [MASK] with known pieces.", "The model reads the [MASK] both ways.",
    "I [MASK] to school every day with my friends.", "The [MASK] is a network of layers.",
    "Go, goes, went and gone are forms of one [MASK].",
]
PROMPTS = ["The class", "A model reads the", "Students ask the bot", "Hello there",
           "The network layer", "Words are made of", "Once upon a time", "The lesson is"]
QA = ("What do students ask?",
      "Students in the class ask the bot questions about words and the model answers them.")


def build_models(root: Path):
    """Real-size random-weight checkpoints with the tiny tokenizers (see the docstring)."""
    from transformers import (
        DistilBertConfig,
        DistilBertForMaskedLM,
        DistilBertForQuestionAnswering,
        GPT2Config,
        GPT2LMHeadModel,
    )

    from tests.tiny_models import build_bpe_tokenizer, build_wordpiece_tokenizer

    wordpiece, bpe = build_wordpiece_tokenizer(), build_bpe_tokenizer()
    paths = {}
    torch.manual_seed(0)
    bert = DistilBertConfig(vocab_size=28996, pad_token_id=wordpiece.pad_token_id)
    for name, cls in (("mlm", DistilBertForMaskedLM), ("qa", DistilBertForQuestionAnswering)):
        model = cls(bert)
        model.save_pretrained(root / name)
        wordpiece.save_pretrained(root / name)
        paths[name] = root / name
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50257, bos_token_id=bpe.bos_token_id,
                                      eos_token_id=bpe.eos_token_id))
    gpt2.save_pretrained(root / "gpt2")
    bpe.save_pretrained(root / "gpt2")
    paths["gpt2"] = root / "gpt2"
    return paths


def config_for(paths, device: str, dtype: str):
    from core.config import parse_config

    return parse_config({
        "models": {"mask": str(paths["mlm"]), "features": str(paths["mlm"]),
                   "qa": str(paths["qa"]), "generate": str(paths["gpt2"])},
        "engine": {"device": device, "dtype": dtype, "max_wait_ms": 5.0,
                   "max_batch_size": 32, "max_generate_batch": 16},
    })


async def measure(paths, device: str, dtype: str, rounds: int) -> dict:
    from core.inference.engine import InferenceEngine
    from core.inference.tasks.features import FeaturesRequest
    from core.inference.tasks.fill_mask import FillMaskRequest
    from core.inference.tasks.generate import GenerateRequest
    from core.inference.tasks.qa import QARequest

    if device != "cpu":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    async with InferenceEngine(config_for(paths, device, dtype)) as engine:
        await engine.settled()
        masks = await asyncio.gather(*(engine.submit(FillMaskRequest(t, 5)) for t in MASK_TEXTS))
        feats = await asyncio.gather(*(engine.submit(FeaturesRequest(t.replace("[MASK]", "word")))
                                       for t in MASK_TEXTS))
        qa = await engine.submit(QARequest(*QA))
        greedy = await asyncio.gather(*(engine.submit(
            GenerateRequest(p, max_new_tokens=20, greedy=True)) for p in PROMPTS))

        burst = [MASK_TEXTS[i % len(MASK_TEXTS)] for i in range(32)]
        mask_wall = []
        for _ in range(rounds + 1):  # the first round warms up (CUDA kernels, allocator)
            started = time.perf_counter()
            await asyncio.gather(*(engine.submit(FillMaskRequest(t, 5)) for t in burst))
            mask_wall.append(time.perf_counter() - started)
        gen_wall, new_tokens = [], 0
        for _ in range(rounds + 1):
            started = time.perf_counter()
            out = await asyncio.gather(*(engine.submit(GenerateRequest(
                PROMPTS[i % len(PROMPTS)], max_new_tokens=30, temperature=1.0, top_k=50,
                seed=i)) for i in range(16)))
            gen_wall.append(time.perf_counter() - started)
            new_tokens = sum(sum(r.new_tokens) for r in out)
        peak = (torch.cuda.max_memory_allocated() / 2**20) if device != "cpu" else None
    return {
        "placement": str(engine.placement),
        "top1": [m.fillers[0].token_id for m in masks],
        "probs": [[f.score for f in m.fillers] for m in masks],
        "features": np.stack([f.vector for f in feats]).tolist(),
        "qa": [qa.start, qa.end],
        "greedy": [g.continuations[0] for g in greedy],
        "mask32_s": statistics.median(mask_wall[1:]),
        "mask32_all_s": mask_wall,
        "generate16_s": statistics.median(gen_wall[1:]),
        "generate16_all_s": gen_wall,
        "generate16_new_tokens": new_tokens,
        "peak_gpu_mb": peak,
    }


def compare(reference: dict, got: dict) -> dict:
    a, b = np.array(reference["features"]), np.array(got["features"])
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return {
        "top1_equal": sum(x == y for x, y in zip(reference["top1"], got["top1"])),
        "top1_of": len(reference["top1"]),
        "max_prob_gap": float(np.abs(np.array(reference["probs"]) - np.array(got["probs"])).max()),
        "features_cos_min": float(cos.min()),
        "qa_equal": reference["qa"] == got["qa"],
        "greedy_equal": sum(x == y for x, y in zip(reference["greedy"], got["greedy"])),
        "greedy_of": len(reference["greedy"]),
    }


def table(results: dict[str, dict]) -> str:
    reference = results["cpu float32"]
    lines = [
        "| placement | 32 /mask wall | 16 /generate x 30: new tok/s | top-1 = CPU fp32 | "
        "max prob gap | features cos min | /qa span = | greedy text = | peak GPU MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        c = compare(reference, r)
        tok_s = r["generate16_new_tokens"] / r["generate16_s"]
        peak = f"{r['peak_gpu_mb']:.0f}" if r["peak_gpu_mb"] else "-"
        lines.append(
            f"| {name} | {r['mask32_s'] * 1000:.0f} ms | {tok_s:.0f} | {c['top1_equal']}/"
            f"{c['top1_of']} | {c['max_prob_gap']:.4f} | {c['features_cos_min']:.4f} | "
            f"{'yes' if c['qa_equal'] else 'no'} | {c['greedy_equal']}/{c['greedy_of']} | {peak} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the raw figures here (JSON)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu-only", action="store_true",
                        help="run the CPU placement only (to try the script without a GPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not torch.cuda.is_available() and not args.cpu_only:
        print("gpu_check: skipped: torch sees no CUDA GPU on this machine "
              f"(torch {torch.__version__}, built with CUDA: {torch.version.cuda or 'no'}).")
        return 0
    placements = [("cpu", "float32")]
    if not args.cpu_only:
        placements += [("cuda", "float32"), ("cuda", "float16")]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = build_models(Path(tmp))
        for device, dtype in placements:
            started = time.perf_counter()
            results[f"{device} {dtype}"] = asyncio.run(
                measure(paths, device, dtype, args.rounds if device != "cpu" else 1))
            print(f"{device} {dtype}: done in {time.perf_counter() - started:.0f}s", flush=True)
    machine = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__, "python": sys.version.split()[0],
        "cpu_threads": torch.get_num_threads(),
    }
    import transformers

    machine["transformers"] = transformers.__version__
    print(json.dumps(machine))
    print(table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
