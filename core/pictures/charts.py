"""PNG pictures for the teaching commands.

Plain functions, called by `core.pictures.stage`' drawing processes (see there why drawing is a
stage
of its own, in processes); a task only describes its picture as a `drawing(...)` call.

Only the object-oriented matplotlib API is used (`Figure` + `FigureCanvasAgg`): pyplot keeps
global figure state and picks a GUI backend, neither of which belongs in a server.
Sizes are fixed in pixels (dpi 100, no tight bounding box) so a picture is predictable on a
phone; fonts are never below 10 pt. Everything a student typed is passed through `label`, so
a `$` cannot switch on mathtext and a character the font lacks becomes `?` instead of a warning.

Words are the catalog's (`core.i18n.tr`), written in the language the drawing runs in
(`core.pictures.stage.drawn_in`); a title handed in is usually a `core.i18n.lazy` message,
rendered there too. Alt texts are lazy messages, written in the reply's language when sent.
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont, get_font
from matplotlib.patches import Patch

from core.i18n import Localised, clipped, join, lazy, number, render, tr

#: The results the activity charts draw, taken by their shape: the tasks import this module to
#: describe their pictures, so importing their classes here would close an import circle.
LogitLensResult = NeighboursResult = Neighbour = QuizReveal = Any

DPI = 100
#: Below this many tokens each attention cell also shows its weight as a number.
_ANNOTATE_CELLS_UP_TO = 12
_LABEL_CHARS = 18
#: About the share of a picture's height its axes get, and a 10 pt label's height in pixels.
_PLOT_SHARE = 0.7
_LABEL_PX = 15
#: Drawing in threads (the fallback, tests, docs) must not interleave figures' font caches.
RENDER_LOCK = threading.Lock()


def drawing(draw: Callable[..., bytes], *args, **kwargs) -> Callable[[], bytes]:
    """A picture to draw later, in another process: picklable because `draw` is a module
    function of this module and the arguments are plain data (lists, arrays, strings)."""
    return functools.partial(draw, *args, **kwargs)


# Colours that stay distinguishable for the common colour-vision deficiencies (Okabe-Ito).
_BLUE, _ORANGE, _GREEN, _GREY = "#0072B2", "#E69F00", "#009E73", "#999999"


def attention_heatmap(
    labels: Sequence[str], weights: np.ndarray, *, title: str | Localised, causal: bool,
    size: tuple[int, int] = (1000, 1000),
) -> bytes:
    """Rows are the tokens that look (queries), columns what they look at (keys).

    The colour scale is fixed at 0 to 1 (a weight is a share of the row): scaled to the data,
    near-uniform attention would look as bright as a head that picks one token.
    """
    weights = np.asarray(weights, dtype=float)
    n = len(labels)
    ticks = [label(t) for t in labels]
    with RENDER_LOCK:
        fig = figure(size)
        ax = fig.add_subplot()
        future = np.triu(np.ones((n, n), bool), 1)
        shown = np.ma.masked_where(future, weights) if causal else weights
        cmap = _colormap("viridis", bad="#dddddd")
        image = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto",
                          interpolation="nearest")
        ax.set_xticks(range(n), ticks, rotation=90, fontsize=_tick_size(n))
        ax.set_yticks(range(n), ticks, fontsize=_tick_size(n))
        ax.set_xlabel(tr("attends to (key)"), fontsize=12)
        ax.set_ylabel(tr("token (query)"), fontsize=12)
        ax.xaxis.set_ticks_position("top")
        ax.xaxis.set_label_position("top")
        ax.set_title(label(render(title), limit=120), fontsize=14, pad=12)
        if n <= _ANNOTATE_CELLS_UP_TO:
            for i in range(n):
                for j in range(n):
                    if causal and j > i:
                        continue
                    value = weights[i, j]
                    # viridis is light above ~0.6: dark digits there, light ones below.
                    ax.text(j, i, str(number(value, "0.00")), ha="center", va="center", fontsize=10,
                            color="black" if value > 0.6 else "white")
        colorbar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
        colorbar.set_label(tr("attention weight, 0 to 1 (each row sums to 1)"), fontsize=11)
        colorbar.ax.tick_params(labelsize=10)
        if causal:
            fig.supxlabel(tr("Grey cells: a causal model cannot look at later tokens."),
                          fontsize=11, color="#444444")
        return png(fig)


def similarity_by_layer(
    similarities: Sequence[float], static_similarity: float, *, title: str | Localised,
    size: tuple[int, int] = (1000, 800),
) -> bytes:
    """Layer 0 is the embedding layer's output (token + position), then one point per layer."""
    layers = list(range(len(similarities)))
    with RENDER_LOCK:
        fig = figure(size)
        ax = fig.add_subplot()
        ax.plot(layers, similarities, marker="o", markersize=8, linewidth=2.5, color=_BLUE,
                label=tr("in context (hidden state after each layer)"))
        ax.axhline(static_similarity, color=_ORANGE, linestyle="--", linewidth=2,
                   label=tr("static input embedding ({similarity})",
                            similarity=number(static_similarity, "0.000")))
        for x, y in zip(layers, similarities):
            ax.annotate(str(number(y, "0.00")), (x, y), textcoords="offset points", xytext=(0, 10),
                        ha="center", fontsize=11)
        low = min(0.0, min(similarities, default=0.0), static_similarity)
        ax.set_ylim(low - 0.05, 1.1)
        ax.set_xticks(layers, [tr("emb")] + [str(i) for i in layers[1:]], fontsize=12)
        ax.tick_params(axis="y", labelsize=12)
        ax.set_xlabel(tr("layer (emb = embeddings + positions)"), fontsize=12)
        ax.set_ylabel(tr("cosine similarity"), fontsize=12)
        ax.set_title(label(render(title), limit=120), fontsize=14)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=11, loc="lower left")
        return png(fig)


def paired_bars(
    labels: Sequence[str], values_a: Sequence[float], values_b: Sequence[float], *,
    name_a: str, name_b: str, title: str | Localised, xlabel: str | Localised,
    highlight: Sequence[bool] = (),
    size: tuple[int, int] = (1000, 800),
) -> bytes:
    """Horizontal bar pairs, best at the top; highlighted labels (asked-for targets) in bold."""
    n = len(labels)
    y = np.arange(n)
    height = 0.4
    with RENDER_LOCK:
        fig = figure(size)
        ax = fig.add_subplot()
        bars_a = ax.barh(y - height / 2, values_a, height, color=_BLUE, label=label(name_a, 60))
        bars_b = ax.barh(y + height / 2, values_b, height, color=_ORANGE, label=label(name_b, 60))
        for bars, values in ((bars_a, values_a), (bars_b, values_b)):
            ax.bar_label(bars, labels=[str(number(v, "0.000")) for v in values], padding=3,
                         fontsize=10)
        ax.set_yticks(y, [label(t) for t in labels], fontsize=_tick_size(n, large=13))
        for tick, bold in zip(ax.get_yticklabels(), highlight):
            if bold:
                tick.set_fontweight("bold")
        ax.invert_yaxis()
        top = max([*values_a, *values_b, 1e-9])
        ax.set_xlim(0, top * 1.2)
        ax.tick_params(axis="x", labelsize=11)
        ax.set_xlabel(render(xlabel), fontsize=12)
        ax.set_title(label(render(title), limit=120), fontsize=14)
        ax.legend(fontsize=11, loc="lower right")
        ax.grid(True, axis="x", alpha=0.3)
        return png(fig)


def next_token_bars(
    labels: Sequence[str], model_probs: Sequence[float], scaled_probs: Sequence[float],
    final_probs: Sequence[float], *, title: str | Localised, footnote: str | Localised = "",
    size: tuple[int, int] = (1000, 800),
) -> bytes:
    """Three bars per candidate: the model's distribution, after temperature, after top-k/top-p."""
    n = len(labels)
    y = np.arange(n)
    height = 0.27
    with RENDER_LOCK:
        fig = figure(size)
        ax = fig.add_subplot()
        series = (
            (model_probs, _GREY, tr("model (temperature 1)")),
            (scaled_probs, _BLUE, tr("after temperature")),
            (final_probs, _GREEN, tr("after top-k and top-p: what is sampled")),
        )
        # A value label is 10 pt (about 14 px) high: where three bars of a row are thinner
        # than that, labels of neighbouring bars would overlap, so only the sampled
        # distribution (the last series) is labelled; the text answer has all three numbers.
        bar_px = size[1] * _PLOT_SHARE / max(n, 1) * height
        labelled = series if bar_px >= _LABEL_PX else series[-1:]
        for offset, (values, colour, name) in zip((-height, 0.0, height), series):
            bars = ax.barh(y + offset, values, height, color=colour, label=name)
            if any(values is s[0] for s in labelled):
                ax.bar_label(bars, labels=[str(number(v, "0.000")) if v > 0 else ""
                                           for v in values],
                             padding=2, fontsize=10)
        ax.set_yticks(y, [label(t) for t in labels], fontsize=_tick_size(n, large=13))
        ax.invert_yaxis()
        top = max([*model_probs, *scaled_probs, *final_probs, 1e-9])
        ax.set_xlim(0, min(1.0, top) * 1.2)
        ax.tick_params(axis="x", labelsize=11)
        ax.set_xlabel(tr("probability of being the next token"), fontsize=12)
        ax.set_title(label(render(title), limit=120), fontsize=14)
        ax.legend(fontsize=11, loc="lower right")
        ax.grid(True, axis="x", alpha=0.3)
        if footnote:
            fig.supxlabel(label(render(footnote), limit=150), fontsize=11, color="#444444")
        return png(fig)


def figure(size: tuple[int, int]) -> Figure:
    width, height = size
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _tick_size(count: int, *, large: int = 12) -> int:
    """Fewer labels get bigger text; never below 10 pt."""
    if count <= 15:
        return large
    if count <= 30:
        return 11
    return 10


def _colormap(name: str, *, bad: str):
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad=bad)


def label(text: str, limit: int = _LABEL_CHARS) -> str:
    """Make user text safe to draw: no mathtext, no missing glyphs, not too long."""
    text = text.replace("\n", " ").replace("\t", " ")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    covered = _font_codepoints()
    text = "".join(ch if ord(ch) in covered or ch == " " else "?" for ch in text)
    return text.replace("$", r"\$")


@functools.lru_cache(maxsize=1)
def _font_codepoints() -> frozenset[int]:
    """Characters the default font can draw (DejaVu Sans covers Latin, Greek, Cyrillic...)."""
    font = get_font(findfont(FontProperties()))
    return frozenset(font.get_charmap())


__all__ = ["attention_heatmap", "next_token_bars", "paired_bars", "similarity_by_layer",
           "visible_piece", "visible_token"]


# ---------------------------------------------------------------- class activities
# The logit lens, contextual neighbours and a quiz's reveal: each drawn from its result
# dataclass alone, each with a matching `*_alt_text` for the attachment description.

ALT_TEXT_LIMIT = 1000


def visible_token(token: str) -> str:
    """GPT-2's leading space is part of the token: show it as ␣ (the one convention for a
    space in every answer and picture); escape line breaks; name empty tokens."""
    token = "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in token)
    return "␣" + token[1:] if token.startswith(" ") else (token or "(empty)")


#: Byte-level BPE's own letters for a space and a line break (GPT-2 writes " cat" as "Ġcat").
_BYTE_LEVEL = str.maketrans({"Ġ": " ", "Ċ": "\n"})


def visible_piece(piece: str) -> str:
    """A byte-level BPE piece as `visible_token` shows the text it stands for: `Ġcat` is
    `␣cat`, the same mark `/nexttoken` and `/logitlens` use."""
    return visible_token(piece.translate(_BYTE_LEVEL))


# --------------------------------------------------------------------------- /logitlens

def logit_lens_chart(result: LogitLensResult, size: tuple[int, int] = (1000, 800)) -> bytes:
    """The final answer's probability per layer; each point is labelled with what that layer
    would have said (bold where it already is the final answer)."""
    layers = [layer.layer for layer in result.layers]
    answer = [layer.answer_prob for layer in result.layers]
    best = [layer.top[0].prob for layer in result.layers]
    with RENDER_LOCK:
        fig = figure(size)
        ax = fig.add_subplot()
        ax.plot(layers, best, marker="s", markersize=7, linewidth=1.5, linestyle="--",
                color=_GREY, label=tr("probability of that layer's own top guess"))
        ax.plot(layers, answer, marker="o", markersize=9, linewidth=2.5, color=_BLUE,
                label=tr("probability of the final answer {answer}",
                         answer=label(visible_token(result.answer.token))))
        for layer, top_prob in zip(result.layers, best):
            guess = layer.top[0]
            final = guess.token_id == result.answer.token_id
            ax.annotate(label(visible_token(guess.token), limit=14), (layer.layer, top_prob),
                        textcoords="offset points", xytext=(0, 12), ha="center", fontsize=12,
                        fontweight="bold" if final else "normal",
                        color=_GREEN if final else "#222222")
        top = max([*answer, *best, 1e-9])
        ax.set_ylim(0, min(1.0, top) * 1.25)
        ax.set_xticks(layers, [tr("emb")] + [str(i) for i in layers[1:]],
                      fontsize=_tick_size(len(layers)))
        ax.tick_params(axis="y", labelsize=12)
        ax.set_xlabel(tr("stop after layer (emb = embeddings only); label = that layer's top "
                         "guess"), fontsize=12)
        ax.set_ylabel(tr("probability of the next token"), fontsize=12)
        context = result.tokens[result.position - 1]
        ax.set_title(label(tr("Logit lens: next token after '{context}' (token {position}) in "
                               "'{prompt}'", context=context, position=result.position,
                               prompt=result.prompt), limit=110), fontsize=14)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=11, loc="upper left")
        return png(fig)


def logit_lens_alt_text(result: LogitLensResult) -> Localised:
    steps = join("; ", (
        lazy("{where}: {guess} (final answer {p}, rank {rank})",
             where=lazy("embeddings") if layer.layer == 0 else lazy("layer {layer}",
                                                                   layer=layer.layer),
             guess=visible_token(layer.top[0].token), p=number(layer.answer_prob, "0.000"),
             rank=layer.answer_rank)
        for layer in result.layers
    ))
    return alt_text(lazy(
        "Line chart: what each layer of {model} would predict after token {position} "
        "('{token}'). The final answer is {answer} ({p}). {steps}.",
        model=result.model_id, position=result.position,
        token=result.tokens[result.position - 1],
        answer=visible_token(result.answer.token),
        p=number(result.answer.prob, "0.000"), steps=steps))


# --------------------------------------------------------------------------- /neighbours

def neighbours_chart(result: NeighboursResult, size: tuple[int, int] = (1100, 800)) -> bytes:
    """Two lists side by side: static embedding neighbours, contextual neighbours at a layer.
    Items in both lists are orange, so what the context changed stands out in blue."""
    shared = {n.token_id for n in result.static} & {n.token_id for n in result.contextual}
    where = (tr("embeddings") if result.layer == 0
             else tr("layer {layer} of {layers}", layer=result.layer, layers=result.num_layers))
    with RENDER_LOCK:
        fig = figure(size)
        axes = fig.subplots(1, 2, sharex=True)
        panels = ((axes[0], result.static, tr("static input embedding (no context)")),
                  (axes[1], result.contextual, tr("in this sentence, {where}", where=where)))
        for ax, neighbours, heading in panels:
            _neighbour_bars(ax, neighbours, shared)
            ax.set_title(heading, fontsize=13)
            ax.set_xlabel(tr("cosine similarity"), fontsize=12)
        fig.legend(handles=[Patch(color=_ORANGE, label=tr("in both lists")),
                            Patch(color=_BLUE, label=tr("in this list only"))],
                   loc="upper right", fontsize=11, ncols=2)
        pieces = " + ".join(result.pieces)
        title = (tr("Nearest vocabulary items to '{word}' (mean of pieces {pieces})",
                    word=result.word, pieces=pieces) if result.averaged else
                 tr("Nearest vocabulary items to '{word}'", word=result.word))
        fig.suptitle(label(title, limit=110), fontsize=14)
        fig.supxlabel(label(tr("Sentence: {sentence}", sentence=result.sentence), limit=140),
                      fontsize=11,
                      color="#444444")
        return png(fig)


def _neighbour_bars(ax, neighbours: tuple[Neighbour, ...], shared: set[int]) -> None:
    n = len(neighbours)
    y = np.arange(n)
    values = [nb.similarity for nb in neighbours]
    colours = [_ORANGE if nb.token_id in shared else _BLUE for nb in neighbours]
    bars = ax.barh(y, values, color=colours)
    ax.bar_label(bars, labels=[str(number(v, "0.00")) for v in values], padding=3, fontsize=10)
    ax.set_yticks(y, [label(nb.token) for nb in neighbours], fontsize=_tick_size(n, large=13))
    ax.invert_yaxis()
    ax.set_xlim(min(0.0, *values) - 0.05 if values else 0, 1.15)
    ax.tick_params(axis="x", labelsize=11)
    ax.grid(True, axis="x", alpha=0.3)


def neighbours_alt_text(result: NeighboursResult) -> Localised:
    def listed(neighbours: tuple[Neighbour, ...]) -> Localised:
        return join(", ", (join(" ", (n.token, number(n.similarity, "0.00")))
                           for n in neighbours))

    heading = (lazy("Nearest vocabulary items to '{word}' (the mean of its pieces {pieces}).",
                    word=result.word, pieces=" + ".join(result.pieces)) if result.averaged
               else lazy("Nearest vocabulary items to '{word}'.", word=result.word))
    return alt_text(lazy(
        "{heading} Static embedding: {static}. In the sentence at layer {layer}: "
        "{contextual}.", heading=heading, static=listed(result.static),
        layer=result.layer, contextual=listed(result.contextual)))


# --------------------------------------------------------------------------- /quiz reveal

def quiz_reveal_chart(reveal: QuizReveal, size: tuple[int, int] = (1200, 800)) -> bytes:
    """Left: the model's top-k with probabilities. Right: the class's guesses by count, green
    where the word is in the model's top-k (its rank in the label), grey where it is not."""
    with RENDER_LOCK:
        fig = figure(size)
        left, right = fig.subplots(1, 2)
        n = len(reveal.candidates)
        y = np.arange(n)
        probs = [c.prob for c in reveal.candidates]
        bars = left.barh(y, probs, color=_BLUE)
        left.bar_label(bars, labels=[str(number(c.prob, "0.000")) + (
            "  " + tr("({n} guessed)", n=c.class_count) if c.class_count else "")
            for c in reveal.candidates], padding=3, fontsize=10)
        left.set_yticks(y, [f"{c.rank}. {label(visible_token(c.token))}"
                            for c in reveal.candidates], fontsize=_tick_size(n, large=13))
        left.invert_yaxis()
        left.set_xlim(0, max([*probs, 1e-9]) * 1.5)
        left.set_xlabel(tr("model probability"), fontsize=12)
        left.set_title(tr("The model's top choices"), fontsize=13)
        left.grid(True, axis="x", alpha=0.3)

        shown = reveal.tally[:15]
        m = len(shown)
        y = np.arange(m)
        counts = [e.count for e in shown]
        colours = [_GREEN if e.model_rank is not None else _GREY for e in shown]
        bars = right.barh(y, counts, color=colours)
        right.bar_label(bars, padding=3, fontsize=11)
        right.set_yticks(y, [label(e.label) + (f" (#{e.model_rank})" if e.model_rank else "")
                             for e in shown], fontsize=_tick_size(m, large=13))
        right.invert_yaxis()
        right.set_xlim(0, max([*counts, 1]) * 1.25)
        right.xaxis.get_major_locator().set_params(integer=True)
        right.set_xlabel(tr("students"), fontsize=12)
        hidden = len(reveal.tally) - m
        right.set_title(tr("The class's guesses (top 15 of {n})", n=len(reveal.tally)) if hidden
                        else tr("The class's guesses"), fontsize=13)
        right.grid(True, axis="x", alpha=0.3)
        if not shown:
            right.text(0.5, 0.5, tr("nobody guessed"), transform=right.transAxes, ha="center",
                       fontsize=14, color="#444444")
        fig.suptitle(label(reveal.prompt, limit=100), fontsize=14)
        fig.supxlabel(
            tr("{total} guesses; {first} matched the model's first choice, {top_k} are in its "
               "top {k} (green).", total=reveal.total_guesses, first=reveal.matched_first,
               top_k=reveal.matched_top_k, k=len(reveal.candidates)),
            fontsize=12, color="#444444")
        return png(fig)


def quiz_reveal_alt_text(reveal: QuizReveal) -> Localised:
    model = join(", ", (join(" ", (visible_token(c.token), number(c.prob, "0.000")))
                        for c in reveal.candidates))
    tally = join(", ", (
        lazy("{word} {count} (model #{rank})", word=e.label, count=e.count, rank=e.model_rank)
        if e.model_rank else f"{e.label} {e.count}"
        for e in reveal.tally
    ))
    return alt_text(lazy(
        "Quiz reveal. The model's top choices: {model}. The class's guesses ({total}): "
        "{tally}. {first} matched the model's first choice.", model=model,
        total=reveal.total_guesses, tally=tally if reveal.tally else lazy("none"),
        first=reveal.matched_first))


def alt_text(message: Localised) -> Localised:
    """Discord caps an attachment description at 1024 characters."""
    return clipped(message, ALT_TEXT_LIMIT)