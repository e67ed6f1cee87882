"""What Discord shows for the class activities: `/logitlens`, `/neighbours` and a quiz's card.

Pure functions from core results to `Reply`s, with `cogs.render`'s rules: every student or model
string through `safe`/`code`, every message cut to Discord's limits here. The quiz card is one
message edited through its life (open, counting guesses, revealed), so its three states are
drawn by one function each and share the same title and prompt line.
"""

from __future__ import annotations

from datetime import datetime

import discord

from cogs.render import COLOUR, EMBED_FIELD_LIMIT, Reply, _picture, clip, code, footer, safe
from core.pictures.charts import visible_token
from core.storage.quizzes import Quiz, QuizReveal
from core.inference.tasks.logitlens import LogitLensResult
from core.inference.tasks.neighbours import NeighboursResult

CLOSED_COLOUR = discord.Colour.dark_grey()


def render_logitlens(result: LogitLensResult) -> Reply:
    context = result.tokens[result.position - 1]
    answer = visible_token(result.answer.token)
    rows = [f"{'layer':<6} {'top guess':<14} {'p':>6}  {'final':>6} {'rank':>5}"]
    for layer in result.layers:
        name = "emb" if layer.layer == 0 else str(layer.layer)
        top = layer.top[0]
        rows.append(f"{name:<6} {visible_token(top.token)[:14]:<14} {top.prob:6.3f}  "
                    f"{layer.answer_prob:6.3f} {layer.answer_rank:>5}")
    embed = discord.Embed(
        title=clip(f"Logit lens: what each layer would say after “{safe(context, 60)}”", 256),
        colour=COLOUR,
    )
    embed.description = clip(
        f"**{safe(result.prompt, 500)}** …\n"
        f"The model's own next token: **{safe(answer, 60)}** ({result.answer.prob:.1%}). "
        "Each row applies the final layer norm and the output head to that layer's hidden "
        "state; *final* is the probability of the model's own answer there.\n"
        + code("\n".join(rows), 2500), 4000,
    )
    embed.set_footer(text=footer(result.model_id, result.timings))
    first = next((layer.layer for layer in result.layers if layer.answer_rank == 1), None)
    summary = f"answer {answer!r} {result.answer.prob:.3f}, top-1 from layer {first}"
    return _picture(embed, "logitlens.png", result.png, result.alt_text, summary)


def render_neighbours(result: NeighboursResult) -> Reply:
    where = "embeddings" if result.layer == 0 else f"layer {result.layer}/{result.num_layers}"
    shared = {n.token_id for n in result.static} & {n.token_id for n in result.contextual}
    embed = discord.Embed(
        title=clip(f"Neighbours of “{safe(result.word, 60)}” · {where}", 256), colour=COLOUR,
    )
    note = (f"\nThe word is {len(result.pieces)} pieces ({' + '.join(result.pieces)}); "
            "their vectors are averaged." if result.averaged else "")
    embed.description = clip(
        f"**Sentence:** {safe(result.sentence, 800)}{safe(note, 300)}\n"
        "Nearest vocabulary items by cosine similarity; * = in both lists.", 1500,
    )
    for name, neighbours in (("Static embedding (no context)", result.static),
                             (f"In this sentence ({where})", result.contextual)):
        lines = [f"{n.token[:18]:<18} {n.similarity:5.2f}{' *' if n.token_id in shared else ''}"
                 for n in neighbours]
        embed.add_field(name=name, value=code("\n".join(lines), EMBED_FIELD_LIMIT))
    embed.set_footer(text=footer(result.model_id, result.timings))
    kept = len(shared)
    summary = (f"context top: {result.contextual[0].token if result.contextual else '-'}, "
               f"{kept}/{len(result.static)} shared with static")
    return _picture(embed, "neighbours.png", result.png, result.alt_text, summary)


# ------------------------------------------------------------------------------ quiz card

_QUIZ_TITLE = {"mask": "Class quiz: which word hides behind the mask?",
               "next": "Class quiz: what will GPT-2 say next?"}
_QUIZ_ASK = {"mask": "Guess the word the model puts in place of `[MASK]`.",
             "next": "Guess the next token GPT-2 predicts (one word or punctuation mark)."}


def _prompt_line(quiz: Quiz) -> str:
    if quiz.kind == "next":
        return f"**{safe(quiz.prompt, 1000)}** …"
    return f"**{safe(quiz.prompt, 1000)}**"


def _timestamp(moment: datetime, style: str) -> str:
    return f"<t:{int(moment.timestamp())}:{style}>"


def render_quiz_open(quiz: Quiz, guesses: int) -> Reply:
    """The card while guesses are taken: the prompt, when it ends, how many have guessed."""
    embed = discord.Embed(title=_QUIZ_TITLE[quiz.kind], colour=COLOUR)
    embed.description = clip(
        f"{_prompt_line(quiz)}\n\n{_QUIZ_ASK[quiz.kind]} Press **Guess**; you may change your "
        f"guess until the end.\nEnds {_timestamp(quiz.ends_at, 'R')} "
        f"({_timestamp(quiz.ends_at, 'T')}).", 4000,
    )
    embed.add_field(name="Guesses", value=_guess_count(guesses))
    embed.set_footer(text=f"quiz {quiz.id} · names "
                          + ("shown" if quiz.show_names else "hidden") + " at the reveal")
    return Reply(embeds=[embed], summary=f"quiz {quiz.id} open, {guesses} guesses")


def _guess_count(count: int) -> str:
    return "nobody yet" if count == 0 else f"{count} student{'s' if count != 1 else ''}"


def render_quiz_reveal(quiz: Quiz, reveal: QuizReveal, png: bytes = b"",
                       alt_text: str = "") -> Reply:
    """The card after the end: the model's top-k, the class's words, the matches; the chart
    (`core.charts.quiz_reveal_chart`) when it could be drawn."""
    embed = discord.Embed(title=clip(_QUIZ_TITLE[quiz.kind] + " · revealed", 256),
                          colour=CLOSED_COLOUR)
    rows = [f"{'#':>2} {'model says':<14} {'p':>6} {'class':>5}"]
    for c in reveal.candidates:
        rows.append(f"{c.rank:>2} {visible_token(c.token)[:14]:<14} {c.prob:6.3f} "
                    f"{c.class_count:>5}")
    total = reveal.total_guesses
    if total:
        first = reveal.candidates[0].token if reveal.candidates else ""
        result_line = (f"**{reveal.matched_first} of {total}** guessed the model's first choice "
                       f"(**{safe(visible_token(first), 40)}**); {reveal.matched_top_k} guessed a "
                       f"word in its top {len(reveal.candidates)}.")
    else:
        result_line = "Nobody guessed."
    embed.description = clip(f"{_prompt_line(quiz)}\n\n{result_line}\n"
                             + code("\n".join(rows), 1200), 4000)
    tally = []
    for entry in reveal.tally[:15]:
        mark = f" (model #{entry.model_rank})" if entry.model_rank else ""
        line = f"**{safe(entry.label, 40)}** × {entry.count}{mark}"
        if reveal.show_names and entry.user_ids:
            line += ": " + ", ".join(f"<@{uid}>" for uid in entry.user_ids[:20])
        tally.append(line)
    if len(reveal.tally) > 15:
        tally.append(f"… and {len(reveal.tally) - 15} more words")
    embed.add_field(name=f"The class's guesses ({total})",
                    value=clip("\n".join(tally) or "none", EMBED_FIELD_LIMIT), inline=False)
    embed.set_footer(text=clip(f"quiz {quiz.id} · model: {reveal.model_id}", 2048))
    summary = f"quiz {quiz.id}: {reveal.matched_first}/{total} matched the first choice"
    if png:
        return _picture(embed, "quiz.png", png, alt_text, summary)
    return Reply(embeds=[embed], summary=summary)


def render_quiz_failed(quiz: Quiz, message: str) -> Reply:
    """The card when the model could not answer at the end (it keeps the guesses)."""
    embed = discord.Embed(title=clip(_QUIZ_TITLE[quiz.kind] + " · ended", 256),
                          colour=CLOSED_COLOUR,
                          description=clip(f"{_prompt_line(quiz)}\n\n{message}", 4000))
    embed.set_footer(text=f"quiz {quiz.id}")
    return Reply(embeds=[embed], summary=f"quiz {quiz.id} ended without a reveal")
