"""The teaching commands' numbers and pictures, on the tiny offline models.

Pictures are checked by decoding the PNG and reading its size; the numbers are checked against
what they mean (attention rows are distributions, a word is identical to itself, /maskpair is
/mask, the sampling knobs keep exactly what they promise) and against the other tasks.
"""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import InputTooLong, InvalidInput
from core.inference.models import Head
from core.inference.tasks.attention import AttentionRequest
from core.inference.tasks.contextsim import ContextSimRequest
from core.inference.tasks.fill_mask import FillMaskRequest
from core.inference.tasks.generate import GenerateRequest
from core.inference.tasks.maskpair import MaskPairRequest
from core.inference.tasks.nexttoken import NextTokenRequest, next_token_distribution
from core.pictures import charts

SENTENCE = "The woman went to the bank to deposit money."


def _png_size(png: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    image.load()  # decodes every pixel: a truncated file fails here
    return image.size


# --- /attention -------------------------------------------------------------------------------

async def test_attention_rows_are_distributions_and_average_is_mean_of_heads(engine):
    results = await asyncio.gather(*(
        engine.submit(AttentionRequest(SENTENCE, "mask", layer=1, head=head))
        for head in (None, 1, 2)
    ))
    average, *heads = results
    n = len(average.tokens)
    assert average.tokens[0] == "[CLS]" and average.tokens[-1] == "[SEP]"
    assert average.num_heads == 2 and average.layer == 1 and not average.causal
    for result in results:
        assert result.weights.shape == (n, n)
        np.testing.assert_allclose(result.weights.sum(axis=1), 1.0, atol=1e-5)
        assert (result.weights >= 0).all()
    np.testing.assert_allclose(average.weights, np.mean([h.weights for h in heads], axis=0),
                               atol=1e-6)
    assert not np.allclose(heads[0].weights, heads[1].weights)
    # Each token's line names what it attends to most, best first.
    for row, best in zip(average.weights, average.top):
        assert best[0] == (int(row.argmax()), pytest.approx(float(row.max())))
        assert [w for _, w in best] == sorted((w for _, w in best), reverse=True)
    assert _png_size(average.png) == (1000, 1000)
    assert "layer 1" in average.alt_text


async def test_gpt2_attention_is_causal(engine):
    result = await engine.submit(AttentionRequest(SENTENCE, "generate", head=2))
    n = len(result.tokens)
    assert result.causal and result.layer == result.num_layers and result.head == 2
    assert result.tokens[:3] == ("The", "␣woman", "␣went")  # GPT-2 pieces, spaces as ␣
    np.testing.assert_allclose(result.weights.sum(axis=1), 1.0, atol=1e-5)
    assert (result.weights[np.triu_indices(n, 1)] == 0).all()
    assert (np.diag(result.weights) > 0).all()
    assert result.top[0] == ((0, pytest.approx(1.0)),)  # the first token can only see itself
    assert _png_size(result.png) == (1000, 1000)


async def test_attention_leaves_the_shared_model_as_it_was(engine, tiny_config):
    before = await engine.submit(FillMaskRequest("Paris is the [MASK] of France."))
    await engine.submit(AttentionRequest("Paris is the capital of France.", "mask"))
    after = await engine.submit(FillMaskRequest("Paris is the [MASK] of France."))
    assert [(f.token_id, f.score) for f in after.fillers] == [
        (f.token_id, f.score) for f in before.fillers
    ]
    model = await engine.registry.get(tiny_config.models.mask)
    assert model.module(Head.MASKED_LM).config._attn_implementation == "sdpa"


async def test_attention_refuses_what_it_cannot_draw(engine):
    with pytest.raises(InvalidInput, match="2 layers"):
        await engine.submit(AttentionRequest(SENTENCE, "mask", layer=3))
    with pytest.raises(InvalidInput, match="2 heads"):
        await engine.submit(AttentionRequest(SENTENCE, "generate", head=5))
    with pytest.raises(InputTooLong, match="readable up to 40"):
        await engine.submit(AttentionRequest("the cat " * 30, "mask"))
    with pytest.raises(InvalidInput, match="counts from 1"):
        engine.validate(AttentionRequest(SENTENCE, "mask", layer=0))
    with pytest.raises(InvalidInput, match="`model`"):
        engine.validate(AttentionRequest(SENTENCE, "bert"))  # type: ignore[arg-type]


# --- /contextsim ------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["mask", "generate"])
async def test_a_word_is_identical_to_itself_at_every_layer(engine, model):
    result = await engine.submit(ContextSimRequest("bank", SENTENCE, SENTENCE, model))
    assert len(result.layer_similarities) == 3  # embeddings + 2 layers
    assert result.layer_similarities == pytest.approx([1.0] * 3, abs=1e-5)
    assert result.static_similarity == pytest.approx(1.0, abs=1e-6)
    assert _png_size(result.png) == (1000, 800)


async def test_context_changes_the_vector_but_not_the_embedding(engine):
    result = await engine.submit(ContextSimRequest(
        "tokenization", "The tokenization of words.", "I like tokenization a lot and more.",
    ))
    assert result.pieces_a == result.pieces_b == ("token", "##iz", "##ation")
    assert result.static_similarity == pytest.approx(1.0, abs=1e-6)
    assert all(s < 0.9999 for s in result.layer_similarities)
    assert all(-1 <= s <= 1 for s in result.layer_similarities)


async def test_contextsim_finds_words_case_insensitively_and_refuses_missing_ones(engine):
    result = await engine.submit(ContextSimRequest("THE", "The river is long.", "I saw the sea."))
    assert result.pieces_a == ("The",) and result.pieces_b == ("the",)
    assert result.static_similarity < 0.999  # a cased model: two different tokens
    with pytest.raises(InvalidInput, match="sentence B"):
        await engine.submit(ContextSimRequest("bank", SENTENCE, "The banks were closed."))
    with pytest.raises(InvalidInput, match="one word"):
        engine.validate(ContextSimRequest("river bank", SENTENCE, SENTENCE))


# --- /maskpair --------------------------------------------------------------------------------

async def test_maskpair_probabilities_are_those_of_mask(engine):
    a, b = "The man works as a [MASK].", "The woman works as a <mask>."
    pair, swapped, mask_a, mask_b = await asyncio.gather(
        engine.submit(MaskPairRequest(a, b, top_k=4, targets="doctor, nurse")),
        engine.submit(MaskPairRequest(b, a, top_k=2)),
        engine.submit(FillMaskRequest(a, top_k=4)),
        engine.submit(FillMaskRequest(b, top_k=4)),
    )
    assert pair.timings.batch_size == 2  # both pairs in one padded forward
    assert swapped.fillers_a == pair.fillers_b[:2] and swapped.fillers_b == pair.fillers_a[:2]
    for mine, theirs in ((pair.fillers_a, mask_a.fillers), (pair.fillers_b, mask_b.fillers)):
        assert [(f.token_id, f.token, f.sequence) for f in mine] == [
            (f.token_id, f.token, f.sequence) for f in theirs
        ]
        assert [f.score for f in mine] == pytest.approx([f.score for f in theirs], abs=1e-6)
    by_id = {row.token_id: row for row in pair.rows}
    for filler in pair.fillers_a:
        assert by_id[filler.token_id].prob_a == pytest.approx(filler.score, abs=1e-7)
    for filler in pair.fillers_b:
        assert by_id[filler.token_id].prob_b == pytest.approx(filler.score, abs=1e-7)
    targets = [row for row in pair.rows if row.target]
    assert sorted(row.token for row in targets) == ["doctor", "nurse"]
    for row in pair.rows:
        assert row.difference == pytest.approx(row.prob_b - row.prob_a)
    assert [max(r.prob_a, r.prob_b) for r in pair.rows] == sorted(
        (max(r.prob_a, r.prob_b) for r in pair.rows), reverse=True
    )
    assert _png_size(pair.png) == (1000, 800)


async def test_maskpair_refuses_bad_targets_and_sentences(engine):
    ok = "The man works as a [MASK]."
    with pytest.raises(InvalidInput, match="`xyzzyq` is not a single token"):
        await engine.submit(MaskPairRequest(ok, ok, targets=("doctor", "xyzzyq")))
    with pytest.raises(InvalidInput, match="^Sentence B: .*no \\[MASK\\]"):
        engine.validate(MaskPairRequest(ok, "The woman works."))
    with pytest.raises(InvalidInput, match="at most 10"):
        engine.validate(MaskPairRequest(ok, ok, targets=" ".join(f"w{i}" for i in range(11))))


# --- /nexttoken -------------------------------------------------------------------------------

def test_next_token_knobs_keep_exactly_what_they_promise():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(500, generator=generator) * 3
    scaled, final = next_token_distribution(logits, 1.0, 500, 1.0)
    torch.testing.assert_close(scaled, logits.softmax(-1))
    torch.testing.assert_close(final, scaled)
    for k in (1, 7, 50):
        _, final = next_token_distribution(logits, 0.7, k, 1.0)
        assert float(final.sum()) == pytest.approx(1.0, abs=1e-6)
        assert int((final > 0).sum()) == k
        assert set(final.nonzero().flatten().tolist()) == set(logits.topk(k).indices.tolist())
    for p in (0.05, 0.5, 0.9):
        scaled, final = next_token_distribution(logits, 1.3, 500, p)
        kept = scaled[final > 0].sort(descending=True).values
        assert float(kept.sum()) >= p  # reaches p ...
        assert float(kept[:-1].sum()) < p  # ... and no smaller set does
        assert float(final.sum()) == pytest.approx(1.0, abs=1e-6)
    hotter, _ = next_token_distribution(logits, 2.0, 500, 1.0)
    colder, _ = next_token_distribution(logits, 0.5, 500, 1.0)
    assert float(colder.max()) > float(scaled.max()) > float(hotter.max())
    greedy, final = next_token_distribution(logits, 0.0, 5, 0.5)
    assert int(final.argmax()) == int(logits.argmax()) and float(final.sum()) == 1.0


async def test_nexttoken_matches_what_generate_samples(engine):
    prompt = "The capital of France is"
    result = await engine.submit(NextTokenRequest(prompt, temperature=0.8, top_k=3))
    assert result.kept == 3 and not result.greedy
    assert sum(1 for c in result.candidates if c.final_prob > 0) == 3
    assert sum(c.final_prob for c in result.candidates) == pytest.approx(1.0, abs=1e-6)
    model_probs = [c.model_prob for c in result.candidates]
    assert model_probs == sorted(model_probs, reverse=True)
    kept = {c.token for c in result.candidates if c.final_prob > 0}
    samples = await asyncio.gather(*(
        engine.submit(GenerateRequest(prompt, max_new_tokens=1, temperature=0.8, top_k=3, seed=s))
        for s in range(12)
    ))
    for sample in samples:
        if sample.stop_reasons[0] == "eos":
            assert "<|endoftext|>" in kept
        else:
            assert sample.continuations[0] in kept
    assert _png_size(result.png) == (1000, 800)
    assert "3 tokens can be sampled" in result.alt_text

    greedy = await engine.submit(NextTokenRequest(prompt, temperature=0))
    assert greedy.greedy and greedy.kept == 1
    assert greedy.candidates[0].final_prob == 1.0


# --- pictures ---------------------------------------------------------------------------------

def test_pictures_survive_odd_labels():
    """`$` would start mathtext and CJK is missing from the font (a warning, so an error here)."""
    labels = ["$x$", "日本", "a" * 40, "$", "\n"]
    weights = np.full((5, 5), 0.2)
    assert _png_size(charts.attention_heatmap(labels, weights, title="$5 日本", causal=False)) == (
        1000, 1000)
    png = charts.paired_bars(labels, [0.1] * 5, [0.2] * 5, name_a="$a", name_b="日", title="t",
                            xlabel="p", highlight=[True] * 5)
    assert _png_size(png) == (1000, 800)
    png = charts.next_token_bars(labels, [0.2] * 5, [0.2] * 5, [0.0] * 5, title="$", footnote="$")
    assert _png_size(png) == (1000, 800)
