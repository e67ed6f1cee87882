"""Pictures and their descriptions for the class activities: the logit lens, contextual
neighbours and a quiz's reveal.

Each picture is drawn from its result dataclass alone (plain, picklable data), so it can be
drawn wherever drawing happens: in a drawing process after the forward (`core.plots.drawing(
logit_lens_chart, result)`), in a thread, or for the README. Each has a matching `*_alt_text`
for the attachment description (screen readers, and the text answer when pictures are off).
The drawing conventions (fixed pixel sizes, fonts >= 10 pt, colour-blind-safe colours, every
student string through `_label`) are `core.plots`' and reuse its helpers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.plots import (  # the shared drawing conventions
    _BLUE,
    _GREEN,
    _GREY,
    _ORANGE,
    _RENDER_LOCK,
    _figure,
    _label,
    _png,
    _tick_size,
)

if TYPE_CHECKING:  # the tasks import this module to describe their pictures
    from core.quiz import QuizReveal
    from core.tasks.logitlens import LogitLensResult
    from core.tasks.neighbours import Neighbour, NeighboursResult

ALT_TEXT_LIMIT = 1000


def visible_token(token: str) -> str:
    """GPT-2's leading space is part of the token: show it as ␣; name empty tokens."""
    token = "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in token)
    return "␣" + token[1:] if token.startswith(" ") else (token or "(empty)")


# --------------------------------------------------------------------------- /logitlens

def logit_lens_chart(result: LogitLensResult, size: tuple[int, int] = (1000, 800)) -> bytes:
    """The final answer's probability per layer; each point is labelled with what that layer
    would have said (bold where it already is the final answer)."""
    layers = [layer.layer for layer in result.layers]
    answer = [layer.answer_prob for layer in result.layers]
    best = [layer.top[0].prob for layer in result.layers]
    with _RENDER_LOCK:
        fig = _figure(size)
        ax = fig.add_subplot()
        ax.plot(layers, best, marker="s", markersize=7, linewidth=1.5, linestyle="--",
                color=_GREY, label="probability of that layer's own top guess")
        ax.plot(layers, answer, marker="o", markersize=9, linewidth=2.5, color=_BLUE,
                label="probability of the final answer "
                      f"{_label(visible_token(result.answer.token))}")
        for layer, top_prob in zip(result.layers, best):
            guess = layer.top[0]
            final = guess.token_id == result.answer.token_id
            ax.annotate(_label(visible_token(guess.token), limit=14), (layer.layer, top_prob),
                        textcoords="offset points", xytext=(0, 12), ha="center", fontsize=12,
                        fontweight="bold" if final else "normal",
                        color=_GREEN if final else "#222222")
        top = max([*answer, *best, 1e-9])
        ax.set_ylim(0, min(1.0, top) * 1.25)
        ax.set_xticks(layers, ["emb"] + [str(i) for i in layers[1:]],
                      fontsize=_tick_size(len(layers)))
        ax.tick_params(axis="y", labelsize=12)
        ax.set_xlabel("stop after layer (emb = embeddings only); label = that layer's top guess",
                      fontsize=12)
        ax.set_ylabel("probability of the next token", fontsize=12)
        context = result.tokens[result.position - 1]
        ax.set_title(_label(f"Logit lens: next token after '{context}' (token {result.position}) "
                            f"in '{result.prompt}'", limit=110), fontsize=14)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=11, loc="upper left")
        return _png(fig)


def logit_lens_alt_text(result: LogitLensResult) -> str:
    steps = "; ".join(
        f"{'embeddings' if layer.layer == 0 else f'layer {layer.layer}'}: "
        f"{visible_token(layer.top[0].token)} (final answer {layer.answer_prob:.3f}, "
        f"rank {layer.answer_rank})"
        for layer in result.layers
    )
    return _clip(
        f"Line chart: what each layer of {result.model_id} would predict after token "
        f"{result.position} ('{result.tokens[result.position - 1]}'). The final answer is "
        f"{visible_token(result.answer.token)} ({result.answer.prob:.3f}). {steps}."
    )


# --------------------------------------------------------------------------- /neighbours

def neighbours_chart(result: NeighboursResult, size: tuple[int, int] = (1100, 800)) -> bytes:
    """Two lists side by side: static embedding neighbours, contextual neighbours at a layer.
    Items in both lists are orange, so what the context changed stands out in blue."""
    shared = {n.token_id for n in result.static} & {n.token_id for n in result.contextual}
    where = "embeddings" if result.layer == 0 else f"layer {result.layer} of {result.num_layers}"
    with _RENDER_LOCK:
        fig = _figure(size)
        axes = fig.subplots(1, 2, sharex=True)
        panels = ((axes[0], result.static, "static input embedding (no context)"),
                  (axes[1], result.contextual, f"in this sentence, {where}"))
        for ax, neighbours, heading in panels:
            _neighbour_bars(ax, neighbours, shared)
            ax.set_title(heading, fontsize=13)
            ax.set_xlabel("cosine similarity", fontsize=12)
        pieces = " + ".join(result.pieces)
        note = f" (mean of pieces {pieces})" if result.averaged else ""
        fig.suptitle(_label(f"Nearest vocabulary items to '{result.word}'{note}", limit=110),
                     fontsize=14)
        fig.supxlabel(_label(f"Sentence: {result.sentence}", limit=140), fontsize=11,
                      color="#444444")
        return _png(fig)


def _neighbour_bars(ax, neighbours: tuple[Neighbour, ...], shared: set[int]) -> None:
    n = len(neighbours)
    y = np.arange(n)
    values = [nb.similarity for nb in neighbours]
    colours = [_ORANGE if nb.token_id in shared else _BLUE for nb in neighbours]
    bars = ax.barh(y, values, color=colours)
    ax.bar_label(bars, fmt="%.2f", padding=3, fontsize=10)
    ax.set_yticks(y, [_label(nb.token) for nb in neighbours], fontsize=_tick_size(n, large=13))
    ax.invert_yaxis()
    ax.set_xlim(min(0.0, *values) - 0.05 if values else 0, 1.15)
    ax.tick_params(axis="x", labelsize=11)
    ax.grid(True, axis="x", alpha=0.3)


def neighbours_alt_text(result: NeighboursResult) -> str:
    def listed(neighbours: tuple[Neighbour, ...]) -> str:
        return ", ".join(f"{n.token} {n.similarity:.2f}" for n in neighbours)

    note = f" (the mean of its pieces {' + '.join(result.pieces)})" if result.averaged else ""
    return _clip(
        f"Nearest vocabulary items to '{result.word}'{note}. Static embedding: "
        f"{listed(result.static)}. In the sentence at layer {result.layer}: "
        f"{listed(result.contextual)}."
    )


# --------------------------------------------------------------------------- /quiz reveal

def quiz_reveal_chart(reveal: QuizReveal, size: tuple[int, int] = (1200, 800)) -> bytes:
    """Left: the model's top-k with probabilities. Right: the class's guesses by count, green
    where the word is in the model's top-k (its rank in the label), grey where it is not."""
    with _RENDER_LOCK:
        fig = _figure(size)
        left, right = fig.subplots(1, 2)
        n = len(reveal.candidates)
        y = np.arange(n)
        probs = [c.prob for c in reveal.candidates]
        bars = left.barh(y, probs, color=_BLUE)
        left.bar_label(bars, labels=[f"{c.prob:.3f}" + (f"  ({c.class_count} guessed)"
                                                          if c.class_count else "")
                                     for c in reveal.candidates], padding=3, fontsize=10)
        left.set_yticks(y, [f"{c.rank}. {_label(visible_token(c.token))}"
                            for c in reveal.candidates], fontsize=_tick_size(n, large=13))
        left.invert_yaxis()
        left.set_xlim(0, max([*probs, 1e-9]) * 1.5)
        left.set_xlabel("model probability", fontsize=12)
        left.set_title("The model's top choices", fontsize=13)
        left.grid(True, axis="x", alpha=0.3)

        shown = reveal.tally[:15]
        m = len(shown)
        y = np.arange(m)
        counts = [e.count for e in shown]
        colours = [_GREEN if e.model_rank is not None else _GREY for e in shown]
        bars = right.barh(y, counts, color=colours)
        right.bar_label(bars, padding=3, fontsize=11)
        right.set_yticks(y, [_label(e.label) + (f" (#{e.model_rank})" if e.model_rank else "")
                             for e in shown], fontsize=_tick_size(m, large=13))
        right.invert_yaxis()
        right.set_xlim(0, max([*counts, 1]) * 1.25)
        right.xaxis.get_major_locator().set_params(integer=True)
        right.set_xlabel("students", fontsize=12)
        hidden = len(reveal.tally) - m
        right.set_title("The class's guesses" + (f" (top 15 of {len(reveal.tally)})"
                                                 if hidden else ""), fontsize=13)
        right.grid(True, axis="x", alpha=0.3)
        if not shown:
            right.text(0.5, 0.5, "nobody guessed", transform=right.transAxes, ha="center",
                       fontsize=14, color="#444444")
        fig.suptitle(_label(reveal.prompt, limit=100), fontsize=14)
        fig.supxlabel(
            f"{reveal.total_guesses} guesses; {reveal.matched_first} matched the model's first "
            f"choice, {reveal.matched_top_k} are in its top {len(reveal.candidates)} (green).",
            fontsize=12, color="#444444")
        return _png(fig)


def quiz_reveal_alt_text(reveal: QuizReveal) -> str:
    model = ", ".join(f"{visible_token(c.token)} {c.prob:.3f}" for c in reveal.candidates)
    tally = ", ".join(
        f"{e.label} {e.count}" + (f" (model #{e.model_rank})" if e.model_rank else "")
        for e in reveal.tally
    )
    return _clip(
        f"Quiz reveal. The model's top choices: {model}. The class's guesses "
        f"({reveal.total_guesses}): {tally or 'none'}. {reveal.matched_first} matched the "
        f"model's first choice."
    )


def _clip(text: str, limit: int = ALT_TEXT_LIMIT) -> str:
    """Discord caps an attachment description at 1024 characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
