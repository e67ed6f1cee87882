"""The pictures read right: a fixed attention scale with the weights in the cells, a legend for
/neighbours' colours, /nexttoken's value labels apart, and one mark (␣) for a space.

The charts are drawn for real; `_png` is wrapped to keep the finished figure, so a test looks
at what matplotlib laid out (colour limits, texts and their extents on the canvas) rather than
at pixels.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from core.pictures import charts


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list:
    drawn = []
    png = charts.png

    def keep(fig):
        drawn.append(fig)
        return png(fig)

    monkeypatch.setattr(charts, "png", keep)
    return drawn


def test_attention_uses_a_fixed_0_to_1_scale_and_numbers_in_short_sentences(figures):
    labels = ["The", "cat", "sat", "."]
    uniform = np.full((4, 4), 0.25)
    charts.attention_heatmap(labels, uniform, title="uniform", causal=False)
    (fig,) = figures
    heatmap = fig.axes[0]
    # Near-uniform attention stays dark: its colour is that of 0.25 on a 0-1 scale.
    assert heatmap.images[0].get_clim() == (0.0, 1.0)
    assert "0 to 1" in fig.axes[1].get_ylabel()  # the colour bar says the range
    numbers = [t.get_text() for t in heatmap.texts]
    assert numbers == ["0.25"] * 16
    assert {t.get_color() for t in heatmap.texts} == {"white"}  # light digits on dark cells

    figures.clear()
    long = [f"w{i}" for i in range(30)]
    charts.attention_heatmap(long, np.full((30, 30), 1 / 30), title="long", causal=False)
    assert len(figures[0].axes[0].texts) == 0  # too many cells for readable numbers


def test_neighbours_has_a_legend_for_its_two_colours(figures):
    from core.inference.tasks.neighbours import Neighbour, NeighboursResult

    static = (Neighbour(1, "bank", 1.0), Neighbour(2, "banks", 0.6))
    contextual = (Neighbour(1, "bank", 0.7), Neighbour(3, "river", 0.4))
    charts.neighbours_chart(NeighboursResult(
        model_id="m", word="bank", sentence="We sat on the bank.", pieces=("bank",), layer=2,
        num_layers=2, contextual=contextual, static=static))
    (fig,) = figures
    (legend,) = fig.legends
    entries = {text.get_text(): handle.get_facecolor()
               for text, handle in zip(legend.get_texts(), legend.legend_handles)}
    assert set(entries) == {"in both lists", "in this list only"}
    # The legend's colours are the bars' colours: "bank" is in both lists, "river" is not.
    bars = {label.get_text(): patch.get_facecolor() for label, patch in
            zip(fig.axes[1].get_yticklabels(), fig.axes[1].patches)}
    assert entries["in both lists"] == bars["bank"]
    assert entries["in this list only"] == bars["river"]


@pytest.mark.parametrize("count", [3, 10, 15, 20])
def test_nexttoken_value_labels_never_overlap(figures, count):
    rng = np.random.default_rng(count)
    probs = np.sort(rng.dirichlet(np.ones(count)))[::-1]
    charts.next_token_bars([f"␣tok{i}" for i in range(count)], probs, probs * 0.9, probs * 1.1,
                           title="t")
    (fig,) = figures
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_text()]
    assert boxes
    overlapping = [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]
    assert not overlapping, f"{len(overlapping)} pairs of value labels overlap"
    if count <= 3:
        assert len(boxes) == 3 * count  # room for every bar's number


def test_a_space_is_shown_as_the_same_mark_everywhere(tiny_models):
    from transformers import AutoTokenizer

    from core.inference.tasks.attention import token_labels

    assert charts.visible_piece("Ġcat") == charts.visible_token(" cat") == "␣cat"
    assert charts.visible_piece("Ċ") == "\\n"
    gpt2 = AutoTokenizer.from_pretrained(tiny_models.causal_lm)
    labels = token_labels(gpt2, gpt2(" The capital of")["input_ids"])
    assert labels[-1] == "␣of" and all("Ġ" not in label for label in labels), labels
    bert = AutoTokenizer.from_pretrained(tiny_models.masked_lm)
    assert token_labels(bert, bert("tokenization", add_special_tokens=False)["input_ids"])[1:] \
        == tuple(bert.tokenize("tokenization"))[1:]  # `##` pieces stay: they are the lesson
