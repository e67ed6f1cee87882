"""Class activities' numbers on the tiny offline models: the logit lens and contextual neighbours.

Each number is checked against what it means: the lens at the last layer *is* the model's own
next-token distribution, a token's static embedding is its own nearest neighbour, contextual
neighbours move with the sentence while static ones do not.
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from PIL import Image

from core.errors import InputTooLong, InvalidInput
from core.inference.models import Head
from core.inference.tasks.logitlens import LogitLensRequest, lens_distributions
from core.inference.tasks.neighbours import NeighboursRequest
from core.inference.tasks.nexttoken import NextTokenRequest
from core.pictures import charts

PROMPT = "The capital of France is"


# --- /logitlens -------------------------------------------------------------------------------

async def test_logit_lens_last_layer_is_the_models_own_next_token_distribution(engine):
    model = await engine.registry.get(engine.config.models.generate)
    # A private copy with a non-trivial final norm: the tiny model's freshly initialised ln_f
    # (weight 1, bias 0) is idempotent, so norming the last state twice would go unnoticed.
    lm = copy.deepcopy(model.module(Head.CAUSAL_LM))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        lm.transformer.ln_f.weight.copy_(torch.rand(lm.config.n_embd, generator=generator) + 0.5)
        lm.transformer.ln_f.bias.copy_(torch.randn(lm.config.n_embd, generator=generator))
    ids = model.tokenizer(PROMPT)["input_ids"]
    for index in (len(ids) - 1, 1):
        lens = lens_distributions(lm, ids, index)
        assert lens.shape == (lm.config.n_layer + 1, lm.config.vocab_size)
        own = lm(torch.tensor([ids])).logits[0, index].float().softmax(-1)
        torch.testing.assert_close(lens[-1], own, atol=1e-5, rtol=0)
        # The earlier layers are real, different guesses, each a distribution.
        assert (lens[0] - own).abs().max() > 1e-4
        torch.testing.assert_close(lens.sum(-1), torch.ones(len(lens)), atol=1e-5, rtol=0)
    # The trap the hooks avoid: transformers' last hidden state is already normed.
    normed_again = lm.transformer.ln_f(
        lm.transformer(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0, -1])
    again = lm.lm_head(normed_again).softmax(-1)
    assert (again - lens_distributions(lm, ids, len(ids) - 1)[-1]).abs().max() > 1e-4


async def test_logit_lens_result_agrees_with_nexttoken(engine):
    result = await engine.submit(LogitLensRequest(PROMPT))
    nexttoken = await engine.submit(NextTokenRequest(PROMPT))
    best = nexttoken.candidates[0]
    assert result.answer.token_id == best.token_id and result.answer.token == best.token
    assert result.answer.prob == pytest.approx(best.model_prob, abs=1e-5)
    assert result.num_layers == 2 and [layer.layer for layer in result.layers] == [0, 1, 2]
    last = result.layers[-1]
    assert last.answer_rank == 1 and last.top[0] == result.answer
    assert last.answer_prob == pytest.approx(best.model_prob, abs=1e-5)
    for layer in result.layers:
        probs = [g.prob for g in layer.top]
        assert probs == sorted(probs, reverse=True) and len(probs) == 3
        assert layer.answer_rank >= 1
        assert (layer.answer_rank == 1) == (layer.top[0].token_id == result.answer.token_id)
    assert result.position == len(result.tokens)


async def test_logit_lens_position_reads_an_earlier_token(engine):
    last = await engine.submit(LogitLensRequest(PROMPT))
    second = await engine.submit(LogitLensRequest(PROMPT, position=2))
    assert second.position == 2 and second.tokens == last.tokens
    assert second.layers != last.layers
    # Reading position 2 is the same as the lens over the first two tokens only.
    prefix = await engine.submit(LogitLensRequest(last.tokens[0] + " " + last.tokens[1]))
    if prefix.tokens == last.tokens[:2]:
        assert [g.token_id for g in prefix.layers[-1].top] == [
            g.token_id for g in second.layers[-1].top]


async def test_logit_lens_refuses_clearly(engine):
    with pytest.raises(InvalidInput, match="counts tokens from 1"):
        await engine.submit(LogitLensRequest(PROMPT, position=0))
    with pytest.raises(InvalidInput, match="goes from 1 to"):
        await engine.submit(LogitLensRequest(PROMPT, position=99))
    with pytest.raises(InputTooLong, match="at most"):
        await engine.submit(LogitLensRequest("word " * 200))


# --- /neighbours ------------------------------------------------------------------------------

async def test_static_embedding_is_its_own_nearest_neighbour(engine):
    for word in ("bank", "river", "money", "dog"):
        result = await engine.submit(NeighboursRequest(word, f"I saw the {word} today."))
        assert result.pieces == (word,) and not result.averaged
        assert result.static[0].token == word
        assert result.static[0].similarity == pytest.approx(1.0, abs=1e-5)
        sims = [n.similarity for n in result.static]
        assert sims == sorted(sims, reverse=True) and len(sims) == 10


async def test_contextual_neighbours_move_with_the_sentence(engine):
    river = await engine.submit(NeighboursRequest("bank", "We sat on the bank of the river."))
    money = await engine.submit(NeighboursRequest("bank", "She put her money in the bank."))
    assert river.static == money.static  # the same input embedding, whatever the sentence
    assert river.contextual != money.contextual
    assert river.layer == river.num_layers == 2
    model = await engine.registry.get(engine.config.models.mask)
    specials = set(model.tokenizer.all_special_tokens)
    for result in (river, money):
        assert not {n.token for n in result.contextual + result.static} & specials


async def test_layer_zero_is_close_to_the_static_embedding(engine):
    result = await engine.submit(NeighboursRequest("bank", "She went to the bank.", layer=0,
                                                   top_k=3))
    assert result.layer == 0 and len(result.contextual) == 3
    # Embeddings + position + layer norm: not identical, but the word itself is still nearest.
    assert result.contextual[0].token == "bank"


async def test_word_split_into_pieces_is_averaged(engine):
    model = await engine.registry.get(engine.config.models.mask)
    word = "tokenization"
    pieces = model.tokenizer.tokenize(word)
    assert len(pieces) > 1, pieces
    result = await engine.submit(NeighboursRequest(word, f"We learn {word} today."))
    assert result.averaged and list(result.pieces) == pieces
    # The static vector is the mean of the pieces' embeddings: check one similarity by hand.
    table = model.module(Head.MASKED_LM).base_model.get_input_embeddings().weight
    mean = table[model.tokenizer.convert_tokens_to_ids(pieces)].mean(0)
    best = result.static[0]
    expected = torch.nn.functional.cosine_similarity(mean, table[best.token_id], dim=0)
    assert best.similarity == pytest.approx(float(expected), abs=1e-5)


async def test_neighbours_refuse_clearly(engine):
    with pytest.raises(InvalidInput, match="is not a word of the sentence"):
        await engine.submit(NeighboursRequest("cat", "The dog barked."))
    with pytest.raises(InvalidInput, match="has 2 layers"):
        await engine.submit(NeighboursRequest("dog", "The dog barked.", layer=3))
    with pytest.raises(InvalidInput, match="one word"):
        await engine.submit(NeighboursRequest("the dog", "The dog barked."))
    with pytest.raises(InvalidInput, match="top_k"):
        await engine.submit(NeighboursRequest("dog", "The dog barked.", top_k=0))


# --- pictures ---------------------------------------------------------------------------------

def _png_size(png: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    image.load()  # decodes every pixel: a truncated file fails here
    return image.size


async def test_activity_pictures_are_drawn_from_the_results_alone(engine, tmp_path):
    lens = await engine.submit(LogitLensRequest("$5 日本 " + PROMPT))
    neighbours = await engine.submit(NeighboursRequest("tokenization", "We learn tokenization."))
    # Drawable after a round trip through pickle: what a drawing process receives.
    lens, neighbours = pickle.loads(pickle.dumps((lens, neighbours)))
    assert _png_size(charts.logit_lens_chart(lens)) == (1000, 800)
    assert _png_size(charts.neighbours_chart(neighbours)) == (1100, 800)
    # What the engine's drawing stage runs (or has already run: then `png` is filled in).
    assert _png_size(lens.png or lens.drawing()) == (1000, 800)
    assert _png_size(neighbours.png or neighbours.drawing()) == (1100, 800)
    assert lens.alt_text == charts.logit_lens_alt_text(lens)
    assert neighbours.alt_text == charts.neighbours_alt_text(neighbours)
    text = charts.logit_lens_alt_text(lens)
    assert f"The final answer is {charts.visible_token(lens.answer.token)}" in text
    assert "layer 2:" in text and len(text) <= 1000
    text = charts.neighbours_alt_text(neighbours)
    assert "mean of its pieces" in text and neighbours.static[0].token in text


def test_visible_token_shows_gpt2_spaces():
    assert charts.visible_token(" Paris") == "␣Paris"
    assert charts.visible_token("\n") == "\\n"
    assert charts.visible_token("") == "(empty)"
