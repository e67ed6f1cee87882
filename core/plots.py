"""PNG pictures for the teaching commands.

Plain functions, called by `core.pictures`' drawing processes (see there why drawing is a stage
of its own, in processes); a task only describes its picture as a `drawing(...)` call.

Only the object-oriented matplotlib API is used (`Figure` + `FigureCanvasAgg`): pyplot keeps
global figure state and picks a GUI backend, neither of which belongs in a server.
Sizes are fixed in pixels (dpi 100, no tight bounding box) so a picture is predictable on a
phone; fonts are never below 10 pt. Everything a student typed is passed through `_label`, so
a `$` cannot switch on mathtext and a character the font lacks becomes `?` instead of a warning.
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont, get_font

DPI = 100
#: Below this many tokens each attention cell also shows its weight as a number.
_ANNOTATE_CELLS_UP_TO = 12
_LABEL_CHARS = 18
#: Drawing in threads (the fallback, tests, docs) must not interleave figures' font caches.
_RENDER_LOCK = threading.Lock()


def drawing(draw: Callable[..., bytes], *args, **kwargs) -> Callable[[], bytes]:
    """A picture to draw later, in another process: picklable because `draw` is a module
    function of this module and the arguments are plain data (lists, arrays, strings)."""
    return functools.partial(draw, *args, **kwargs)


# Colours that stay distinguishable for the common colour-vision deficiencies (Okabe-Ito).
_BLUE, _ORANGE, _GREEN, _GREY = "#0072B2", "#E69F00", "#009E73", "#999999"


def attention_heatmap(
    labels: Sequence[str], weights: np.ndarray, *, title: str, causal: bool,
    size: tuple[int, int] = (1000, 1000),
) -> bytes:
    """Rows are the tokens that look (queries), columns what they look at (keys)."""
    weights = np.asarray(weights, dtype=float)
    n = len(labels)
    ticks = [_label(t) for t in labels]
    with _RENDER_LOCK:
        fig = _figure(size)
        ax = fig.add_subplot()
        future = np.triu(np.ones((n, n), bool), 1)
        shown = np.ma.masked_where(future, weights) if causal else weights
        cmap = _colormap("viridis", bad="#dddddd")
        image = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=max(float(weights.max()), 1e-9),
                          aspect="auto", interpolation="nearest")
        ax.set_xticks(range(n), ticks, rotation=90, fontsize=_tick_size(n))
        ax.set_yticks(range(n), ticks, fontsize=_tick_size(n))
        ax.set_xlabel("attends to (key)", fontsize=12)
        ax.set_ylabel("token (query)", fontsize=12)
        ax.xaxis.set_ticks_position("top")
        ax.xaxis.set_label_position("top")
        ax.set_title(_label(title, limit=120), fontsize=14, pad=12)
        if n <= _ANNOTATE_CELLS_UP_TO:
            for i in range(n):
                for j in range(n):
                    if causal and j > i:
                        continue
                    value = weights[i, j]
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=10,
                            color="black" if value > 0.6 * weights.max() else "white")
        colorbar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
        colorbar.set_label("attention weight (each row sums to 1)", fontsize=11)
        colorbar.ax.tick_params(labelsize=10)
        if causal:
            fig.supxlabel("Grey cells: a causal model cannot look at later tokens.",
                          fontsize=11, color="#444444")
        return _png(fig)


def similarity_by_layer(
    similarities: Sequence[float], static_similarity: float, *, title: str,
    size: tuple[int, int] = (1000, 800),
) -> bytes:
    """Layer 0 is the embedding layer's output (token + position), then one point per layer."""
    layers = list(range(len(similarities)))
    with _RENDER_LOCK:
        fig = _figure(size)
        ax = fig.add_subplot()
        ax.plot(layers, similarities, marker="o", markersize=8, linewidth=2.5, color=_BLUE,
                label="in context (hidden state after each layer)")
        ax.axhline(static_similarity, color=_ORANGE, linestyle="--", linewidth=2,
                   label=f"static input embedding ({static_similarity:.3f})")
        for x, y in zip(layers, similarities):
            ax.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, 10),
                        ha="center", fontsize=11)
        low = min(0.0, min(similarities, default=0.0), static_similarity)
        ax.set_ylim(low - 0.05, 1.1)
        ax.set_xticks(layers, ["emb"] + [str(i) for i in layers[1:]], fontsize=12)
        ax.tick_params(axis="y", labelsize=12)
        ax.set_xlabel("layer (emb = embeddings + positions)", fontsize=12)
        ax.set_ylabel("cosine similarity", fontsize=12)
        ax.set_title(_label(title, limit=120), fontsize=14)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=11, loc="lower left")
        return _png(fig)


def paired_bars(
    labels: Sequence[str], values_a: Sequence[float], values_b: Sequence[float], *,
    name_a: str, name_b: str, title: str, xlabel: str, highlight: Sequence[bool] = (),
    size: tuple[int, int] = (1000, 800),
) -> bytes:
    """Horizontal bar pairs, best at the top; highlighted labels (asked-for targets) in bold."""
    n = len(labels)
    y = np.arange(n)
    height = 0.4
    with _RENDER_LOCK:
        fig = _figure(size)
        ax = fig.add_subplot()
        bars_a = ax.barh(y - height / 2, values_a, height, color=_BLUE, label=_label(name_a, 60))
        bars_b = ax.barh(y + height / 2, values_b, height, color=_ORANGE, label=_label(name_b, 60))
        for bars in (bars_a, bars_b):
            ax.bar_label(bars, fmt="%.3f", padding=3, fontsize=10)
        ax.set_yticks(y, [_label(t) for t in labels], fontsize=_tick_size(n, large=13))
        for tick, bold in zip(ax.get_yticklabels(), highlight):
            if bold:
                tick.set_fontweight("bold")
        ax.invert_yaxis()
        top = max([*values_a, *values_b, 1e-9])
        ax.set_xlim(0, top * 1.2)
        ax.tick_params(axis="x", labelsize=11)
        ax.set_xlabel(xlabel, fontsize=12)
        ax.set_title(_label(title, limit=120), fontsize=14)
        ax.legend(fontsize=11, loc="lower right")
        ax.grid(True, axis="x", alpha=0.3)
        return _png(fig)


def next_token_bars(
    labels: Sequence[str], model_probs: Sequence[float], scaled_probs: Sequence[float],
    final_probs: Sequence[float], *, title: str, footnote: str = "",
    size: tuple[int, int] = (1000, 800),
) -> bytes:
    """Three bars per candidate: the model's distribution, after temperature, after top-k/top-p."""
    n = len(labels)
    y = np.arange(n)
    height = 0.27
    with _RENDER_LOCK:
        fig = _figure(size)
        ax = fig.add_subplot()
        series = (
            (model_probs, _GREY, "model (temperature 1)"),
            (scaled_probs, _BLUE, "after temperature"),
            (final_probs, _GREEN, "after top-k and top-p: what is sampled"),
        )
        for offset, (values, colour, name) in zip((-height, 0.0, height), series):
            bars = ax.barh(y + offset, values, height, color=colour, label=name)
            ax.bar_label(bars, labels=[f"{v:.3f}" if v > 0 else "" for v in values],
                         padding=2, fontsize=10)
        ax.set_yticks(y, [_label(t) for t in labels], fontsize=_tick_size(n, large=13))
        ax.invert_yaxis()
        top = max([*model_probs, *scaled_probs, *final_probs, 1e-9])
        ax.set_xlim(0, min(1.0, top) * 1.2)
        ax.tick_params(axis="x", labelsize=11)
        ax.set_xlabel("probability of being the next token", fontsize=12)
        ax.set_title(_label(title, limit=120), fontsize=14)
        ax.legend(fontsize=11, loc="lower right")
        ax.grid(True, axis="x", alpha=0.3)
        if footnote:
            fig.supxlabel(_label(footnote, limit=150), fontsize=11, color="#444444")
        return _png(fig)


def _figure(size: tuple[int, int]) -> Figure:
    width, height = size
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
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


def _label(text: str, limit: int = _LABEL_CHARS) -> str:
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


__all__ = ["attention_heatmap", "next_token_bars", "paired_bars", "similarity_by_layer"]
