"""The pictures of "why": words shaded by attribution (`/explain`), and per-step scores of a
generation (`/generate picture:True`).

A module beside `charts` (same rules: object-oriented matplotlib only, fixed pixel sizes,
fonts never below 10 pt, every student's text through `charts.label`), so that these pictures
can change without touching the teaching charts.

The attribution picture follows LIT's salience view: the text as typed, one box per word,
shaded on a diverging scale centred on zero (blue: toward the prediction, orange: against;
Okabe-Ito hues, readable with the common colour-vision deficiencies), with a colour bar as the
legend. Words are laid out in a monospaced font, so a line's width is known without asking the
renderer and long texts wrap the same way on every machine.

Words are the catalog's, as in `charts`: drawn in the request's language
(`core.pictures.stage.drawn_in`), titles and notes handed in as lazy messages and rendered here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.colors import LinearSegmentedColormap, Normalize

from core.i18n import Localised, join, lazy, lazy_ngettext, ngettext, number, render, tr
from core.pictures.charts import (
    DPI,
    RENDER_LOCK,
    alt_text,
    drawing,
    figure,
    label,
    png,
    visible_token,
)
from core.pictures.stage import PictureResult

#: Toward the prediction (blue) and against it (orange), through white at zero.
DIVERGING = LinearSegmentedColormap.from_list("toward_against", ["#D55E00", "#FFFFFF", "#0072B2"])

_FONT_PT = 15
#: A monospaced character's advance, in pixels, at `_FONT_PT` (DejaVu Sans Mono: 0.6 em).
_CHAR_PX = _FONT_PT * 0.6 * DPI / 72
_LINE_PX = 34
_MARGIN_PX = 30
_WORD_CHARS = 30

#: (start, end, score) of each word of a passage, in characters of its text.
Words = Sequence[tuple[int, int, float]]
#: A passage's name ("question", a lazy message; "" for the only passage).
Name = str | Localised


def centred_scale(scores: Sequence[float]) -> Normalize:
    """Scores to colours with zero in the middle (white) and the largest magnitude, either
    sign, at the ends: a word against the prediction looks as strong as one toward it with
    the same magnitude, never stronger because the other side happened to be smaller."""
    limit = max([abs(s) for s in scores] + [1e-9])
    return Normalize(-limit, limit)


def attribution_text(passages: Sequence[tuple[Name, str, Words, int]], *,
                     title: str | Localised, footnote: str | Localised, note: str | Localised,
                     width: int = 1000) -> bytes:
    """Each passage (label, text, words, unread tokens) as typed, each word on a box shaded
    by its score; a colour bar centred on zero; `note` says how to read it."""
    norm = centred_scale([s for _, _, words, _ in passages for _, _, s in words])
    limit = norm.vmax
    per_line = max(10, int((width - 2 * _MARGIN_PX) / _CHAR_PX))
    layout: list[list[tuple[int, str, float | None]]] = []  # per line: (column, text, score)
    for passage, text, words, unread in passages:
        name = render(passage)
        line: list[tuple[int, str, float | None]] = []
        if name:
            line.append((0, name.upper() + ":", None))
        column = len(name) + 2 if name else 0
        for start, end, score in words:
            word = label(text[start:end], limit=_WORD_CHARS)
            if column and column + len(word) > per_line:
                layout.append(line)
                line, column = [], 0
            line.append((column, word, score))
            column += len(word) + 1
        if unread:
            more = ngettext("(+{n} token not read: beyond the window)",
                            "(+{n} tokens not read: beyond the window)", unread)
            if column and column + len(more) > per_line:
                layout.append(line)
                line, column = [], 0
            line.append((column, more, None))
        layout.append(line)
    text_px = len(layout) * _LINE_PX
    height = int(text_px + 260)
    with RENDER_LOCK:
        return png(_attribution_figure(layout, norm, limit, text_px, width, height,
                                       title=render(title), footnote=render(footnote),
                                       note=render(note)))


def _attribution_figure(layout: list[list[tuple[int, str, float | None]]], norm: Normalize,
                        limit: float, text_px: int, width: int, height: int, *, title: str,
                        footnote: str, note: str):
    fig = figure((width, height))
    fig.set_layout_engine("none")  # every axes is placed by hand, in pixels
    text_ax = fig.add_axes((0, (height - 60 - text_px) / height, 1, text_px / height))
    text_ax.set_axis_off()
    text_ax.set_xlim(0, width)
    text_ax.set_ylim(text_px, 0)
    for row, line in enumerate(layout):
        y = (row + 0.5) * _LINE_PX
        for column, word, score in line:
            x = _MARGIN_PX + column * _CHAR_PX
            if score is None:
                text_ax.text(x, y, word, family="monospace", fontsize=_FONT_PT - 3,
                             va="center", color="#555555")
                continue
            colour = DIVERGING(norm(score))
            dark = abs(norm(score) - 0.5) > 0.35
            text_ax.text(x, y, word, family="monospace", fontsize=_FONT_PT, va="center",
                         color="white" if dark else "black",
                         bbox={"boxstyle": "square,pad=0.15", "facecolor": colour,
                               "edgecolor": "#BBBBBB", "linewidth": 0.5})
    fig.suptitle(label(title, limit=100), fontsize=15, y=1 - 12 / height, va="top")
    bar_ax = fig.add_axes((0.15, 150 / height, 0.7, 22 / height))
    gradient = np.linspace(-limit, limit, 256)[None, :]
    bar_ax.imshow(gradient, aspect="auto", cmap=DIVERGING, norm=norm,
                  extent=(-limit, limit, 0, 1))
    bar_ax.set_yticks([])
    bar_ax.tick_params(axis="x", labelsize=10)
    bar_ax.set_xlabel(tr("← against the prediction · contribution · toward the prediction →"),
                      fontsize=11)
    fig.text(0.5, 62 / height, label(footnote, limit=140), ha="center", fontsize=10,
             color="#444444")
    fig.text(0.5, 14 / height, _wrapped(note, 130), ha="center", fontsize=10,
             color="#444444")
    return fig


def step_scores(runs: Sequence[tuple[str | Localised, Sequence[str], Sequence[float],
                                     Sequence[int], Sequence[float]]], *,
                title: str | Localised,
                size: tuple[int, int] = (1100, 800)) -> bytes:
    """Per generated token, for each run (name, tokens, probabilities, ranks, entropies):
    its probability (bars), its rank among the candidates (a number on the bar, 1 = the
    likeliest) and the entropy of that step (a line, in bits): where sampling took a risk."""
    with RENDER_LOCK:
        return png(_step_figure(runs, title, size))


def _step_figure(runs, title: str | Localised, size: tuple[int, int]):
    with_width = max(1, len(runs))
    fig = figure(size)
    axes = fig.subplots(with_width, 1, squeeze=False)[:, 0]
    top_entropy = max([e for run in runs for e in run[4]] + [1.0])
    for ax, (name, tokens, probs, ranks, entropies) in zip(axes, runs):
        x = np.arange(len(tokens))
        colours = ["#0072B2" if r == 1 else "#E69F00" for r in ranks]
        bars = ax.bar(x, probs, color=colours)
        ax.bar_label(bars, labels=[f"#{r}" for r in ranks], fontsize=10, padding=1)
        ax.set_ylim(0, 1.15)
        ax.set_ylabel(tr("probability"), fontsize=11)
        ax.set_xticks(x, [label(t, limit=10) for t in tokens], rotation=60, ha="right",
                      fontsize=10 if len(tokens) > 20 else 11)
        ax.set_title(label(render(name), limit=90), fontsize=12)
        twin = ax.twinx()
        twin.plot(x, entropies, color="#009E73", marker="o", markersize=3)
        twin.set_ylim(0, math.ceil(top_entropy * 1.1))
        twin.set_ylabel(tr("entropy (bits)"), fontsize=11, color="#009E73")
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(label(render(title), limit=110), fontsize=14)
    fig.supxlabel(tr("blue: the likeliest token was chosen (#1); orange: a less likely one "
                     "(#rank). Green line: how unsure the model was at that step."), fontsize=10,
                  color="#444444")
    return fig


def step_runs(results: Sequence[Any]) -> list[tuple[Localised, list[str], list[float],
                                                    list[int], list[float]]]:
    """`step_scores`' runs from `GenerateResult`s asked with `step_scores=True` (their first
    sequence each), named by their knobs: pass a greedy and a sampled result side by side."""
    runs = []
    for result in results:
        steps = result.steps[0] if result.steps else ()
        name = (lazy("greedy (temperature 0)") if result.greedy else
                lazy("sampled: temperature {temperature}, top_k {top_k}, top_p {top_p}, "
                     "seed {seed}", temperature=number(result.temperature),
                     top_k=result.top_k, top_p=number(result.top_p), seed=result.seed))
        runs.append((name, [visible_token(s.token) for s in steps],
                     [s.probability for s in steps], [s.rank for s in steps],
                     [s.entropy for s in steps]))
    return runs


@dataclass(frozen=True, kw_only=True)
class StepScoresPicture(PictureResult):
    """`/generate picture:True`: its results (greedy and sampled) and their step-scores
    picture, to be drawn by the drawing stage like any teaching picture."""

    results: tuple[Any, ...] = ()

    @property
    def model_id(self) -> str:
        return self.results[0].model_id if self.results else ""


def step_scores_picture(results: Sequence[Any], prompt: str) -> StepScoresPicture:
    """The picture of `results` (`GenerateResult`s asked with `step_scores=True`), not yet
    drawn: `await engine.pictures.finish(picture, engine.pictures.reserve())` draws it."""
    return StepScoresPicture(
        results=tuple(results),
        drawing=drawing(step_scores, step_runs(results),
                        title=lazy("Each new token after '{prompt}': probability, rank, "
                                   "entropy", prompt=prompt[-50:])),
        alt_text=step_scores_alt_text(results))


def step_scores_alt_text(results: Sequence[Any]) -> Localised:
    """The step-scores picture in words, for the attachment's description (a lazy message,
    written in the reply's language)."""
    parts = []
    for name, tokens, probs, ranks, entropies in step_runs(results):
        risky = [join("", (t, " (#", r, ", p ", number(p, "0.00"), ")"))
                 for t, p, r in zip(tokens, probs, ranks) if r > 1]
        parts.append(lazy_ngettext(
            "{name}: {n} token, mean entropy {entropy} bits; not the likeliest: {risky}.",
            "{name}: {n} tokens, mean entropy {entropy} bits; not the likeliest: {risky}.",
            len(tokens), name=name,
            entropy=number(sum(entropies) / len(entropies) if entropies else 0, "0.00"),
            risky=join(", ", risky[:10]) if risky else lazy("none")))
    return alt_text(join(" ", parts))


def _wrapped(text: str, width: int) -> str:
    lines, line = [], ""
    for word in label(text, limit=600).split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line])
