"""`/explain` in the core: each answer is what captum computes, complete, finds a planted
signal, does not depend on batching, and never disturbs the other tasks on the same model.

Every model is a tiny checkpoint loaded through the production loader (the engine's registry);
the references run captum's `LayerIntegratedGradients` directly on the model's own embedding
layer, from `input_ids`, as captum's BERT tutorial does - the engine's path (a private tap and
`inputs_embeds`) must give the same numbers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import LayerIntegratedGradients

from core.config import Config
from core.inference.engine import InferenceEngine
from core.inference.models import LOAD_LOCK, Head
from core.inference.tasks.explain import (
    ExplainMaskRequest,
    ExplainNextRequest,
    ExplainQARequest,
    ExplainResult,
    ExplainSentimentRequest,
)
from core.inference.tasks.fill_mask import FillMaskRequest
from core.sentiment.data import LabelledData
from core.sentiment.service import SentimentService
from tests.conftest import with_engine
from tests.tiny_models import TinyModelPaths

STEPS = 32  # the default `[limits] explain_steps`
MASK_TEXT = "The man works as a [MASK] in the city."
NEXT_PROMPT = "Once upon a time there was a king who"
QUESTION, CONTEXT = "Where is Paris?", "Paris is the capital of France, a country in Europe."


def word_scores(tokenizer, text: str, ids: list[int], offsets, token_scores: torch.Tensor,
                sequence: list[int | None] | None = None, which: int = 0) -> list[float]:
    """Per whitespace word of `text`: the scores of the tokens whose first non-space character
    lies in it (the test's own bookkeeping, not the product's)."""
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    sums = [0.0] * len(spans)
    special = set(tokenizer.all_special_ids)
    for position, (token, (start, end)) in enumerate(zip(ids, offsets)):
        if token in special or (sequence is not None and sequence[position] != which):
            continue
        while start < end and text[start].isspace():
            start += 1
        index = next(i for i, (s, e) in enumerate(spans) if start < e)
        sums[index] += float(token_scores[position])
    return sums


def baseline_of(tokenizer, ids: list[int], keep: set[int] = frozenset()) -> torch.Tensor:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    special = set(tokenizer.all_special_ids) | set(keep)
    return torch.tensor([[t if t in special else pad for t in ids]])


def captum_directly(module, forward, ids: list[int], baseline: torch.Tensor
                    ) -> tuple[torch.Tensor, float]:
    method = LayerIntegratedGradients(forward, module.get_input_embeddings())
    attributions, delta = method.attribute(torch.tensor([ids]), baselines=baseline,
                                           n_steps=STEPS, return_convergence_delta=True)
    return attributions.sum(-1)[0].detach(), float(delta[0])


def random_classifier(width: int, seed: int = 3) -> ExplainSentimentRequest:
    rng = np.random.default_rng(seed)
    return ExplainSentimentRequest("", tuple(rng.normal(0, 1, width).tolist()), 0.1,
                                   ("negative", "positive"), "cls")


async def test_each_family_equals_captum_run_directly(engine: InferenceEngine) -> None:
    config = engine.config
    mask_model = await engine.registry.get(config.models.mask)
    causal = await engine.registry.get(config.models.generate)
    qa_model = await engine.registry.get(config.models.qa)
    classifier = dataclasses.replace(random_classifier(32), text="I loved this movie a lot")
    results = await asyncio.gather(
        engine.submit(ExplainMaskRequest(MASK_TEXT)),
        engine.submit(ExplainMaskRequest(MASK_TEXT, target="doctor", versus="nurse")),
        engine.submit(ExplainNextRequest(NEXT_PROMPT)),
        engine.submit(ExplainQARequest(QUESTION, CONTEXT)),
        engine.submit(classifier),
    )
    mask_top, mask_versus, nxt, qa, sentiment = results

    # /explain mask: the top filler's logit, then "doctor" rather than "nurse".
    tok, mlm = mask_model.tokenizer, mask_model.module(Head.MASKED_LM)
    enc = tok(MASK_TEXT.replace("[MASK]", tok.mask_token), return_offsets_mapping=True)
    ids = enc["input_ids"]
    position = ids.index(tok.mask_token_id)
    with torch.no_grad():
        top = int(mlm(input_ids=torch.tensor([ids])).logits[0, position].argmax())
    doctor, nurse = (tok.convert_tokens_to_ids(w) for w in ("doctor", "nurse"))
    for result, score in ((mask_top, lambda lg: lg[:, position, top]),
                          (mask_versus, lambda lg: lg[:, position, doctor]
                           - lg[:, position, nurse])):
        scores, delta = captum_directly(mlm, lambda x, f=score: f(mlm(input_ids=x).logits), ids,
                                        baseline_of(tok, ids, {tok.mask_token_id}))
        expected = word_scores(tok, MASK_TEXT, ids, enc["offset_mapping"], scores)
        assert [w.score for w in result.words] == pytest.approx(expected, abs=1e-5)
        assert result.delta == pytest.approx(delta, abs=1e-5)
    assert "doctor" in mask_versus.prediction and "nurse" in mask_versus.prediction

    # /explain next: GPT-2's likeliest next token.
    tok, lm = causal.tokenizer, causal.module(Head.CAUSAL_LM)
    enc = tok(NEXT_PROMPT, return_offsets_mapping=True)
    ids = enc["input_ids"]
    with torch.no_grad():
        top = int(lm(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
    scores, delta = captum_directly(lm, lambda x: lm(input_ids=x).logits[:, -1, top], ids,
                                    baseline_of(tok, ids))
    expected = word_scores(tok, NEXT_PROMPT, ids, enc["offset_mapping"], scores)
    assert [w.score for w in nxt.words] == pytest.approx(expected, abs=1e-5)
    assert tok.decode([top]).strip() in nxt.prediction

    # /explain qa: start + end logits of the best span (found here by brute force).
    tok, qa_module = qa_model.tokenizer, qa_model.module(Head.QA)
    enc = tok(QUESTION, CONTEXT, return_offsets_mapping=True)
    ids, sequence = enc["input_ids"], enc.sequence_ids()
    with torch.no_grad():
        out = qa_module(input_ids=torch.tensor([ids]))
    p_start, p_end = [torch.where(torch.tensor([s == 1 for s in sequence]), lg[0], -1e9)
                      .softmax(-1) for lg in (out.start_logits, out.end_logits)]
    _, s, e = max((float(p_start[i] * p_end[j]), i, j) for i in range(len(ids))
                  for j in range(i, min(len(ids), i + 30)) if sequence[i] == sequence[j] == 1)
    scores, delta = captum_directly(
        qa_module, lambda x: (lambda o: o.start_logits[:, s] + o.end_logits[:, e])(
            qa_module(input_ids=x)), ids, baseline_of(tok, ids))
    for which, text, passage in ((0, QUESTION, qa.passages[0]), (1, CONTEXT, qa.passages[1])):
        expected = word_scores(tok, text, ids, enc["offset_mapping"], scores, sequence, which)
        assert [w.score for w in passage.words] == pytest.approx(expected, abs=1e-5)

    # /explain sentiment: the classifier's log-odds for its label, through [CLS] pooling.
    tok, encoder = mask_model.tokenizer, mask_model.module(Head.ENCODER)
    enc = tok(classifier.text, return_offsets_mapping=True)
    ids = enc["input_ids"]
    coef = torch.tensor(classifier.coef, dtype=torch.float64)

    def log_odds(x: torch.Tensor) -> torch.Tensor:
        cls = encoder(input_ids=x).last_hidden_state[:, 0].double()
        return cls @ coef + classifier.intercept

    with torch.no_grad():
        sign = 1.0 if float(log_odds(torch.tensor([ids]))[0]) > 0 else -1.0
    scores, delta = captum_directly(encoder, lambda x: sign * log_odds(x), ids,
                                    baseline_of(tok, ids))
    expected = word_scores(tok, classifier.text, ids, enc["offset_mapping"], scores)
    assert [w.score for w in sentiment.words] == pytest.approx(expected, abs=1e-5)
    assert sentiment.prediction.startswith("positive" if sign > 0 else "negative")


async def test_attributions_are_complete_within_the_reported_delta(
        engine: InferenceEngine) -> None:
    """Integrated gradients' own check: the words' scores add up to the change of the score
    from the baseline to the input, less the delta; and the delta is small with the default
    steps (a broken path - wrong baseline, a token left out of the words - fails here)."""
    results: list[ExplainResult] = await asyncio.gather(
        engine.submit(ExplainMaskRequest(MASK_TEXT)),
        engine.submit(ExplainNextRequest(NEXT_PROMPT)),
        engine.submit(ExplainQARequest(QUESTION, CONTEXT)),
        engine.submit(dataclasses.replace(random_classifier(32), text="What a boring film")),
    )
    assert engine.config.limits.explain_steps == STEPS
    for result in results:
        change = result.score - result.baseline_score
        total = sum(w.score for w in result.words)
        assert abs(change) > 1e-4, result.family  # something to explain
        assert total == pytest.approx(change + result.delta, abs=1e-5), result.family
        assert abs(result.delta) < 0.05 * abs(change), result.family
        assert result.steps == STEPS and result.png.startswith(b"\x89PNG")


async def test_tokens_beyond_the_window_are_said(engine: InferenceEngine) -> None:
    context = " ".join(["Paris is the capital of France."] * 40)
    result = await engine.submit(ExplainQARequest(QUESTION, context))
    question, read = result.passages
    assert question.unread_tokens == 0 and read.unread_tokens > 0
    # The words it never read carry no score, and the picture says they were not read.
    assert result.words[-1].score == 0.0
    long_text = " ".join(["good"] * 200)
    sentiment = await engine.submit(dataclasses.replace(random_classifier(32), text=long_text))
    # The sentiment classifier reads the first window, as `/sentiment` does, and says so.
    assert sentiment.passages[0].unread_tokens == 200 + 2 - 128


# ------------------------------------------------------------------------- planted signals

FILLER = ("the a movie film story plot actor music song show book game about with and "
          "it was is this that very".split())


def planted(n: int, words: tuple[str, str], seed: int) -> LabelledData:
    """Sentences of random filler where one word alone decides the label."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.randrange(2)
        sentence = rng.choices(FILLER, k=rng.randint(4, 7))
        sentence.insert(rng.randrange(len(sentence) + 1), words[label])
        texts.append(" ".join(sentence))
        labels.append(label)
    return LabelledData(tuple(texts), tuple(labels), ("negative", "positive"))


async def test_a_planted_word_gets_the_largest_sentiment_attribution(
        tiny_config: Config) -> None:
    config = dataclasses.replace(tiny_config, sentiment=dataclasses.replace(
        tiny_config.sentiment, pooling="mean"))
    async with InferenceEngine(config) as engine:
        service = SentimentService(engine, config)
        report = await service.train(planted(240, ("terrible", "wonderful"), seed=5))
        assert report.accuracy > 0.9
        for text, word in (("this movie was wonderful and the music", "wonderful"),
                           ("the plot of this terrible film", "terrible")):
            result = await service.admit_explain(text)
            top = max(result.words, key=lambda w: abs(w.score))
            assert top.word == word, [(w.word, round(w.score, 3)) for w in result.words]
            assert top.score > 0  # it pushed toward the label predicted
            assert result.prediction.startswith(
                "positive" if word == "wonderful" else "negative")


KEYS = {"man": " river", "woman": " money"}  # one token each in the tiny BPE


@pytest.fixture(scope="module")
def keyed_gpt2(tiny_models: TinyModelPaths, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GPT-2 trained until one word of the prompt ("man" or "woman", anywhere among
    filler words) decides its next token (" river" or " money")."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with LOAD_LOCK:
        tokenizer = AutoTokenizer.from_pretrained(tiny_models.causal_lm)
        model = AutoModelForCausalLM.from_pretrained(tiny_models.causal_lm)
    torch.manual_seed(0)
    rng = random.Random(0)
    answers = {key: tokenizer(value)["input_ids"] for key, value in KEYS.items()}
    assert all(len(ids) == 1 for ids in answers.values())
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(300):
        batch, targets = [], []
        for _ in range(16):
            key = rng.choice(list(KEYS))
            words = rng.choices(FILLER, k=6)
            words.insert(rng.randrange(7), key)
            batch.append(tokenizer(" ".join(words))["input_ids"])
            targets.append(answers[key][0])
        width = max(map(len, batch))
        ids = torch.tensor([row + [row[-1]] * (width - len(row)) for row in batch])
        last = torch.tensor([len(row) - 1 for row in batch])
        logits = model(input_ids=ids).logits[torch.arange(len(batch)), last]
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(targets))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    directory = tmp_path_factory.mktemp("keyed-gpt2")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


async def test_a_planted_token_gets_the_largest_next_token_attribution(
        tiny_config: Config, keyed_gpt2: Path) -> None:
    models = dataclasses.replace(tiny_config.models, generate=dataclasses.replace(
        tiny_config.models.generate, id=str(keyed_gpt2)))
    config = dataclasses.replace(tiny_config, models=models)
    async with InferenceEngine(config, tasks={"explain-next"}) as engine:
        for prompt, key in (("the movie was man and very", "man"),
                            ("woman music about the story", "woman")):
            result = await engine.submit(ExplainNextRequest(prompt))
            assert KEYS[key].strip() in result.prediction
            top = max(result.words, key=lambda w: abs(w.score))
            assert top.word == key, [(w.word, round(w.score, 3)) for w in result.words]


# ------------------------------------------------------------------- batching and sharing


async def test_batched_explanations_equal_unbatched(tiny_config: Config) -> None:
    requests = [ExplainMaskRequest(MASK_TEXT), ExplainMaskRequest("Paris is the [MASK]."),
                ExplainMaskRequest("A [MASK] is here.", target="man"),
                ExplainNextRequest("Hello world"), ExplainNextRequest(NEXT_PROMPT),
                ExplainQARequest(QUESTION, CONTEXT), ExplainQARequest("Who?", "The king.")]
    async with InferenceEngine(tiny_config) as engine:
        batched = await asyncio.gather(*(engine.submit(r) for r in requests))
    assert max(r.timings.batch_size for r in batched) > 1
    async with InferenceEngine(with_engine(tiny_config, max_batch_size=1)) as engine:
        single = [await engine.submit(r) for r in requests]
    for one, alone in zip(batched, single):
        assert alone.timings.batch_size == 1
        # As shown (a message with its percentage rounded), in both languages.
        assert one.prediction.render("en") == alone.prediction.render("en")
        assert one.prediction.render("it") == alone.prediction.render("it")
        assert [w.score for w in one.words] == pytest.approx(
            [w.score for w in alone.words], abs=1e-5)


async def test_mask_answers_are_unchanged_while_explanations_run(tiny_config: Config) -> None:
    """The explain lane runs beside the model's main lane, on the same model object: no hook,
    grad flag or train mode of an explanation may reach a concurrent `/mask` forward."""
    config = dataclasses.replace(with_engine(tiny_config, workers=2), limits=dataclasses.replace(
        tiny_config.limits, explain_steps=256))  # explanations long enough to overlap
    texts = [f"The {w} works as a [MASK] in the city." for w in ("man", "woman", "child")]
    async with InferenceEngine(config) as engine:
        alone = [await engine.submit(FillMaskRequest(t, top_k=5)) for t in texts]
        model = await engine.registry.get(config.models.mask)
        explanations = [asyncio.ensure_future(engine.submit(ExplainMaskRequest(
            " ".join(["the city"] * 20) + " [MASK]."))) for _ in range(3)]
        during = []
        while not all(e.done() for e in explanations):
            during.append(await asyncio.gather(
                *(engine.submit(FillMaskRequest(t, top_k=5)) for t in texts)))
        await asyncio.gather(*explanations)
        overlapped = [r for rs in during for r in rs]
        assert len(during) >= 2  # /mask answers really came while explanations ran
        for answers in during:
            for answer, reference in zip(answers, alone):
                assert [f.token for f in answer.fillers] == [f.token for f in reference.fillers]
                assert [f.score for f in answer.fillers] == pytest.approx(
                    [f.score for f in reference.fillers], abs=1e-6)
        assert overlapped
        for module in model.modules.values():
            assert not module.training
            assert not any(p.requires_grad for p in module.parameters())
            assert all(p.grad is None for p in module.parameters())
            assert not module.get_input_embeddings()._forward_hooks


def test_the_picture_shades_words_on_a_scale_centred_on_zero() -> None:
    """Toward (blue) and against (orange) at equal strength look equally strong, and a word
    that did nothing stays white: the scale is symmetric around zero whatever the scores."""
    import io

    from matplotlib.image import imread

    from core.pictures.explain_charts import DIVERGING, attribution_text, centred_scale

    assert DIVERGING(0.5)[:3] == pytest.approx((1.0, 1.0, 1.0), abs=0.01)
    scale = centred_scale([2.0, -0.5, 0.0])
    assert (scale(0.0), scale(2.0), scale(-0.5)) == pytest.approx((0.5, 1.0, 0.375))
    text = "good bad plain"
    data = attribution_text([("", text, [(0, 4, 2.0), (5, 8, -2.0), (9, 14, 0.0)], 3)],
                            title="Why positive?", footnote="f", note="how to read")
    pixels = imread(io.BytesIO(data))[..., :3]
    blue = np.all(np.abs(pixels - np.array([0x00, 0x72, 0xB2]) / 255) < 0.02, axis=-1).sum()
    orange = np.all(np.abs(pixels - np.array([0xD5, 0x5E, 0x00]) / 255) < 0.02, axis=-1).sum()
    assert blue > 200 and orange > 200
    assert abs(blue - orange) < 0.5 * max(blue, orange)  # the two boxes shaded alike, mirrored


def _drawn_words(monkeypatch: pytest.MonkeyPatch, drawing, language: str) -> str:
    """Every text a drawing puts on its figure, drawn here (not in a drawing process) in
    `language` as the drawing stage would (`drawn_in`)."""
    from matplotlib.text import Text

    from core.pictures import explain_charts
    from core.pictures.stage import drawn_in

    figures = []
    monkeypatch.setattr(explain_charts, "png", lambda fig: figures.append(fig) or b"")
    drawn_in(language, drawing)
    return "\n".join(t.get_text() for t in figures[0].findobj(Text))


async def test_an_explanation_and_its_picture_speak_the_requests_language(
        engine: InferenceEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drawn in Italian, the picture's title, passage names, colour bar, footnote and how-to-
    read are the catalog's Italian (numbers with a decimal comma), as are the prediction, the
    score's name, the baseline and the alt text; the same result drawn in English is English."""
    from core.i18n import number
    from core.inference.tasks.explain import _with_picture

    mask, qa = await asyncio.gather(engine.submit(ExplainMaskRequest(MASK_TEXT)),
                                    engine.submit(ExplainQARequest(QUESTION, CONTEXT)))
    italian = _drawn_words(monkeypatch, _with_picture(mask).drawing, "it")
    english = _drawn_words(monkeypatch, _with_picture(mask).drawing, "en")
    delta = number(mask.delta, "+@@;-@@")
    assert "Perché “" in italian and "al posto di [MASK] (" in italian
    assert "← contro la previsione · contributo · verso la previsione →" in italian
    assert "il logit di “" in italian and "passi, delta " + delta.render("it") in italian
    assert "," in delta.render("it") and "Le parole in blu" in italian
    assert not any(word in italian for word in ("Why", "against", "logit of", "Blue words"))
    assert "Why “" in english and "against the prediction" in english
    assert "steps, delta " + delta.render("en") in english and "Perché" not in english
    assert mask.score_name.render("it").startswith("il logit di “")
    assert mask.baseline.render("it").startswith("ogni parola sostituita da ")
    assert str(mask.alt_text.render("it")).startswith(
        "Il testo con ogni parola colorata secondo il suo contributo per il logit di “")
    qa_italian = _drawn_words(monkeypatch, _with_picture(qa).drawing, "it")
    assert "DOMANDA:" in qa_italian and "CONTESTO:" in qa_italian
    assert qa.score_name.render("it") == "i logit di inizio + fine della risposta"


# ------------------------------------------------------------------ /generate step scores


async def test_generate_step_scores_are_the_models_probability_rank_and_entropy(
        engine: InferenceEngine) -> None:
    from core.inference.tasks.generate import GenerateRequest
    from core.pictures.explain_charts import step_runs, step_scores, step_scores_picture

    prompt = "Once upon a time"
    greedy, sampled, plain = await asyncio.gather(
        engine.submit(GenerateRequest(prompt, max_new_tokens=6, temperature=0,
                                      step_scores=True)),
        engine.submit(GenerateRequest(prompt, max_new_tokens=6, temperature=1.5, seed=7,
                                      step_scores=True)),
        engine.submit(GenerateRequest(prompt, max_new_tokens=6, temperature=1.5, seed=7)))
    assert plain.steps == () and sampled.continuations == plain.continuations  # no side effect
    causal = await engine.registry.get(engine.config.models.generate)
    tok, lm = causal.tokenizer, causal.module(Head.CAUSAL_LM)
    for result in (greedy, sampled):
        ids = tok(prompt)["input_ids"]
        new = tok(prompt + result.continuations[0])["input_ids"][len(ids):]
        assert len(result.steps[0]) == len(new) == result.new_tokens[0]
        with torch.no_grad():
            logits = lm(input_ids=torch.tensor([ids + new])).logits[0, len(ids) - 1:-1]
        probs = logits.softmax(-1)
        for step, token, p in zip(result.steps[0], new, probs, strict=True):
            assert step.probability == pytest.approx(float(p[token]), abs=1e-5)
            assert step.rank == int((p > p[token]).sum()) + 1
            entropy = float(-(p * p.log()).sum() / np.log(2))
            assert step.entropy == pytest.approx(entropy, abs=1e-4)
    assert all(s.rank == 1 for s in greedy.steps[0])
    png = step_scores(step_runs([greedy, sampled]), title=f"After '{prompt}'")
    assert png.startswith(b"\x89PNG")
    # Drawn by the drawing stage, as the bot would: the lane never waits for it.
    picture = await engine.pictures.finish(step_scores_picture([greedy, sampled], prompt),
                                           engine.pictures.reserve())
    assert picture.png.startswith(b"\x89PNG") and picture.results == (greedy, sampled)
    assert "greedy" in picture.alt_text and "sampled" in picture.alt_text
    italian = picture.alt_text.render("it")
    assert "campionato: temperatura 1,5" in italian and "entropia media" in italian


async def test_a_cpu_fast_path_model_says_it_cannot_explain(tiny_models, tmp_path) -> None:
    """int8 layers have no gradients: the student is told why, nothing crashes."""
    from core.config import parse_config
    from core.errors import ModelUnavailable
    from tests.conftest import tiny_config_dict

    raw = tiny_config_dict(tiny_models)
    raw["models"]["mask"] = {"id": raw["models"]["mask"], "quantize": "int8"}
    raw["engine"]["device"] = "cpu"
    config = parse_config(raw, base_dir=tmp_path)
    async with InferenceEngine(config, tasks={"explain-mask"}) as engine:
        with pytest.raises(ModelUnavailable, match="fast path"):
            await engine.submit(ExplainMaskRequest(MASK_TEXT))


async def test_chunked_steps_give_the_same_answer(tiny_config: Config, monkeypatch) -> None:
    """Long inputs run their steps in chunks (memory); the answer must not change."""
    from core.inference.tasks import explain

    async with InferenceEngine(tiny_config, tasks={"explain-next"}) as engine:
        whole = await engine.submit(ExplainNextRequest(NEXT_PROMPT))
        monkeypatch.setattr(explain, "TOKENS_PER_CHUNK", 40)  # a few steps per chunk
        chunked = await engine.submit(ExplainNextRequest(NEXT_PROMPT))
    assert [w.score for w in chunked.words] == pytest.approx(
        [w.score for w in whole.words], abs=1e-5)
    assert chunked.delta == pytest.approx(whole.delta, abs=1e-5)


async def test_each_lane_beside_a_model_has_its_own_tokenizer(engine: InferenceEngine) -> None:
    """`/tokens`, `/explain mask` and `/explain sentiment` all read DistilBERT beside its main
    lane, at the same time: one tokenizer shared by two threads fails when one truncates."""
    from core.inference.tasks.tokens import TokensRequest

    await asyncio.gather(
        engine.submit(TokensRequest("Hello world", "wordpiece")),
        engine.submit(ExplainMaskRequest(MASK_TEXT)),
        engine.submit(dataclasses.replace(random_classifier(32), text="A fine film")),
        engine.submit(FillMaskRequest(MASK_TEXT)))
    spec = engine.config.models.mask
    tokenizers = [lane.runner.model.tokenizer for (s, _), lane in engine.lanes.items()
                  if s == spec]
    assert len(tokenizers) == 4 and len({id(t) for t in tokenizers}) == 4
