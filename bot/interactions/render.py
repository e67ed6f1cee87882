"""Pure functions from core results to what Discord shows.

Everything a student or a model wrote is untrusted: it may hold `@everyone`, role mentions,
markdown that swallows the rest of the message, or code fences. So every piece of it passes
through `safe` (mentions defused, markdown escaped) or `code` (fences defused), and every
message is cut to Discord's limits here, by construction, rather than hoping it fits.
Mentions are also disabled at the API level (`AllowedMentions.none()`); this is the second lock.

Every word is the message catalog's (`core.i18n.tr`), written in the language the front door
chose for this reply (`Turn.speak`); numbers go through `number` so that Italian reads "0,82".
"""

from __future__ import annotations

import io
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

import discord

from core.i18n import Localised, lazy, ngettext, number, percent, tr
from core.inference.tasks.attention import AttentionResult
from core.inference.tasks.contextsim import ContextSimResult
from core.inference.tasks.explain import HOW_TO_READ, ExplainResult
from core.inference.tasks.fill_mask import FillMaskResult
from core.inference.tasks.generate import GeneratePartial, GenerateRequest, GenerateResult
from core.inference.tasks.logitlens import LogitLensResult
from core.inference.tasks.maskpair import MaskPairResult
from core.inference.tasks.neighbours import NeighboursResult
from core.inference.tasks.nexttoken import NextTokenResult
from core.inference.tasks.qa import QAResult
from core.inference.tasks.tokens import TokensResult
from core.pictures.charts import visible_piece, visible_token
from core.pictures.explain_charts import StepScoresPicture
from core.sentiment.service import SentimentResult
from core.storage.quizzes import Quiz, QuizReveal

# Discord's limits (https://discord.com/developers/docs/resources/message).
CONTENT_LIMIT = 2000
EMBED_DESCRIPTION_LIMIT = 4096
EMBED_FIELD_LIMIT = 1024
EMBED_TOTAL_LIMIT = 6000
EMBED_TITLE_LIMIT = 256

COLOUR = discord.Colour.blurple()
ERROR_COLOUR = discord.Colour.red()


@dataclass
class Reply:
    """One message: what `send`/`edit` receive. `files` are (filename, bytes)."""

    content: str | None = None
    embeds: list[discord.Embed] = field(default_factory=list)
    files: list[tuple[str, bytes]] = field(default_factory=list)
    #: A short line for the query log ("top: capital 0.41").
    summary: str = ""
    #: Alt text per attachment name, for screen readers (Discord's attachment description).
    alt_text: dict[str, str] = field(default_factory=dict)
    #: Buttons sent with the message (`bot.interactions.answers`), or None.
    view: discord.ui.View | None = None

    def discord_files(self) -> list[discord.File]:
        return [
            discord.File(io.BytesIO(data), filename=name,
                         description=self.alt_text.get(name) or None)
            for name, data in self.files
        ]

    def as_text(self) -> str:
        """The same reply as plain text, for `tlm-bot ask` and logs."""
        parts = [self.content or ""]
        for embed in self.embeds:
            parts += [embed.title or "", embed.description or ""]
            parts += [f"{f.name}\n{f.value}" for f in embed.fields]
            if embed.footer and embed.footer.text:
                parts.append(embed.footer.text)
        parts += [f"[attachment: {name}, {len(data)} bytes]" for name, data in self.files]
        return "\n".join(p for p in parts if p).strip()


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """Drop control and bidi-override characters a model or a student may produce."""
    return _CONTROL.sub("", text.replace("\r\n", "\n"))


_MENTION = re.compile(r"@(?=everyone|here|[!&]?\d)")


def defuse_mentions(text: str) -> str:
    """`@everyone`, `@here`, `<@123>`, `<@&123>` with a zero-width space after the `@`.

    Stricter than `discord.utils.escape_mentions`, which only touches ids of 17-20 digits.
    """
    return _MENTION.sub("@\u200b", text)


def safe(text: str, limit: int | None = None) -> str:
    """Untrusted text as inline markdown: no mentions, no formatting, within `limit`."""
    text = defuse_mentions(printable(text))
    text = discord.utils.escape_markdown(text)
    return clip(text, limit) if limit else text


def code(text: str, limit: int, lang: str = "") -> str:
    """Untrusted text in a code block that it cannot break out of."""
    # No two backticks may touch: replacing "```" alone turns "`````" into "`\u200b`\u200b```".
    body = re.sub("`(?=`)", "`\u200b", printable(text))
    body = defuse_mentions(body)
    overhead = len(lang) + 8
    return f"```{lang}\n{clip(body, limit - overhead)}\n```"


def bold_input(text: str) -> str:
    """A student's text at the start of an answer, bold: where `input_of` reads it back."""
    return f"**{safe(text)}**"


_BOLD_INPUT = re.compile(r"(?:\*\*\d+\.\*\* )?\*\*((?:\\.|[^\\*])*)\*\*", re.DOTALL)


def input_of(description: str | None) -> str | None:
    """The student's text an answer starts with (`bold_input`), as it was asked; None when
    the answer does not carry it whole.

    Buttons under an answer rerun it with this text: it comes from the message itself, so the
    bot stores no student text for them, whatever `log_inputs` says, and a restart loses
    nothing. `safe` escapes with backslashes and defuses mentions with a zero-width space;
    `printable` removed any zero-width space the student typed, so undoing both is exact.
    """
    match = _BOLD_INPUT.match(description or "")
    if match is None:
        return None
    return _unescape(match.group(1))


def _unescape(shown: str) -> str:
    """Undo `safe`: its backslash escapes and the zero-width space that defuses mentions."""
    return re.sub(r"\\(.)", r"\1", shown.replace("\u200b", ""), flags=re.DOTALL)


_QA_INPUTS = re.compile(
    r"\*\*Q:\*\* ((?:\\.|[^\\])*?)\n\n((?:\\.|[^\\])*?)__\*\*((?:\\.|[^\\])*?)\*\*__(.*)",
    re.DOTALL)


def qa_inputs_of(description: str | None) -> dict[str, str] | None:
    """The question and the context a `/qa` answer shows (`render_qa`), as they were asked;
    None when the answer does not show them whole (a long one is trimmed: the caller compares
    with what was asked). The answer's own `__**` marks are the only unescaped ones."""
    match = _QA_INPUTS.fullmatch(description or "")
    if match is None:
        return None
    question, before, answer, after = (_unescape(part) for part in match.groups())
    return {"question": question, "context": before + answer + after}


def clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "…"


def bar(score: float, width: int = 12) -> str:
    filled = max(0, min(width, round(score * width)))
    return "█" * filled + "░" * (width - filled)


def error_reply(message: str) -> Reply:
    return Reply(embeds=[discord.Embed(description=clip(message, 4000), colour=ERROR_COLOUR)])


def footer(model_id: str, timings) -> str:
    text = tr("model: {model}", model=model_id)
    if timings is not None:
        text += f" · {number(timings.queued_ms + timings.inference_ms, '0')} ms"
        if timings.batch_size > 1:
            text += " " + ngettext("(batched with {n} other)", "(batched with {n} others)",
                                   timings.batch_size - 1)
    return clip(text, 2048)


def render_fill_mask(result: FillMaskResult) -> Reply:
    lines = []
    for rank, filler in enumerate(result.fillers, 1):
        token = safe(filler.token.strip() or repr(filler.token), 60)
        lines.append(f"`{rank:>2}` {bar(filler.score)} **{token}** — "
                     f"{number(filler.score, '0.000')}")
    embed = discord.Embed(
        title=clip(tr("Fillers for {mask}", mask=result.mask_token), EMBED_TITLE_LIMIT),
        description=clip(bold_input(result.text) + "\n\n" + "\n".join(lines), 4000),
        colour=COLOUR,
    )
    best = result.fillers[0]
    embed.add_field(name=tr("Best sentence"), value=safe(best.sequence, EMBED_FIELD_LIMIT),
                    inline=False)
    embed.set_footer(text=footer(result.model_id, result.timings))
    return Reply(embeds=[embed], summary=f"top: {best.token.strip()} {best.score:.3f}")


def render_qa(result: QAResult) -> Reply:
    before = result.context[: result.start]
    after = result.context[result.end :]
    # Show the answer in its context, trimmed around it so long contexts stay readable.
    window = 700
    if len(before) > window:
        before = "…" + before[-window:]
    if len(after) > window:
        after = after[:window] + "…"
    highlighted = f"{safe(before)}__**{safe(result.answer)}**__{safe(after)}"
    # Titles never ping, but a raw "@everyone" there still reads like one, and titles render
    # markdown: an answer of backticks would open a code span there. Defuse both.
    answer = safe(result.answer)
    embed = discord.Embed(title=clip(tr("Answer: {answer}", answer=answer), EMBED_TITLE_LIMIT),
                          colour=COLOUR)
    embed.description = clip(tr("**Q:** {question}", question=safe(result.question, 400))
                             + f"\n\n{highlighted}", 4000)
    embed.add_field(name=tr("Score"), value=f"{bar(result.score)} {number(result.score, '0.000')}")
    embed.add_field(name=tr("Position"), value=tr("characters {start}–{end}", start=result.start,
                                                 end=result.end))
    if result.windows > 1:
        embed.add_field(name=tr("Windows"), value=tr("context read in {n} overlapping parts",
                                                   n=result.windows))
    embed.set_footer(text=footer(result.model_id, result.timings))
    return Reply(embeds=[embed], summary=f"{result.answer[:80]} {result.score:.3f}")


def generate_knobs(result: GenerateResult) -> str:
    """The knobs a text was made with, in every /generate answer."""
    if result.greedy:
        return tr("greedy (temperature 0: always the likeliest token)")
    return tr("temperature {t} · top_k {k} · top_p {p} · seed {seed}",
             t=number(result.temperature), k=result.top_k, p=number(result.top_p),
             seed=result.seed)


def render_generate(result: GenerateResult) -> Reply:
    blocks = []
    for i, text in enumerate(result.continuations, 1):
        head = f"**{i}.** " if len(result.continuations) > 1 else ""
        blocks.append(f"{head}{bold_input(result.prompt)}{safe(text)}")
    body = "\n\n".join(blocks)
    foot = footer(result.model_id, result.timings) + f" · {generate_knobs(result)}"
    summary = result.continuations[0][:120]
    if len(body) <= EMBED_DESCRIPTION_LIMIT - 10:
        embed = discord.Embed(description=body, colour=COLOUR)
        embed.set_footer(text=foot)
        return Reply(embeds=[embed], summary=summary)
    # Too long for one embed: a short preview plus the full text as a file.
    full = "\n\n".join(
        f"--- {i} ---\n{printable(result.prompt + t)}"
        for i, t in enumerate(result.continuations, 1)
    )
    embed = discord.Embed(description=clip(body, 1500), colour=COLOUR)
    embed.set_footer(text=foot + " · " + tr("full text attached"))
    return Reply(embeds=[embed], files=[("generated.txt", full.encode())], summary=summary)


def render_generate_steps(picture: StepScoresPicture) -> Reply:
    """`/generate picture:True`: the answer as usual (the run asked for), with the picture of
    each new token's probability, rank and step entropy, beside its greedy twin's."""
    reply = render_generate(picture.results[0])
    embed = reply.embeds[0]
    if len(picture.results) > 1:
        greedy = picture.results[1]
        embed.add_field(name=tr("Greedy, for comparison (temperature 0)"),
                        value=clip(bold_input(greedy.prompt) + safe(greedy.continuations[0]),
                                   EMBED_FIELD_LIMIT), inline=False)
    embed.set_image(url="attachment://steps.png")
    return Reply(embeds=[embed], files=[*reply.files, ("steps.png", picture.png)],
                 summary=reply.summary,
                 alt_text={"steps.png": clip(printable(str(picture.alt_text)), 1000)})


WRITING_COLOUR = discord.Colour.light_grey()


def render_generate_partial(request: GenerateRequest, partial: GeneratePartial) -> Reply:
    """/generate while it writes: the text so far (a cursor on each sequence still going),
    grey, no knobs and no buttons; the final answer (`render_generate`) replaces it."""
    blocks = []
    for i, (text, done) in enumerate(zip(partial.continuations, partial.finished), 1):
        head = f"**{i}.** " if len(partial.continuations) > 1 else ""
        blocks.append(f"{head}{bold_input(request.prompt)}{safe(text)}{'' if done else ' ▌'}")
    embed = discord.Embed(description=clip("\n\n".join(blocks), 4000), colour=WRITING_COLOUR)
    embed.set_footer(text="✍️ " + tr("writing… {n} of {total} tokens",
                                     n=max(partial.new_tokens, default=0),
                                     total=request.max_new_tokens))
    return Reply(embeds=[embed])


def render_tokens(result: TokensResult) -> Reply:
    rows = [f"{'#':>3}  {'id':>6}  " + tr("piece")]
    for i, token in enumerate(result.tokens):
        marks = []
        if token.special:
            marks.append(tr("special"))
        if token.continuation:
            marks.append(tr("sub-word"))
        if token.unknown:
            marks.append(tr("UNKNOWN"))
        shown = visible_piece(token.piece) if result.algorithm == "BPE" else token.piece
        piece = _show_piece(shown)
        note = f"   ({', '.join(marks)})" if marks else ""
        rows.append(f"{i:>3}  {token.id:>6}  {piece}{note}")
    table = "\n".join(rows)
    n_special = sum(t.special for t in result.tokens)
    n_sub = sum(t.continuation for t in result.tokens)
    n_unk = sum(t.unknown for t in result.tokens)
    legend = {
        "WordPiece": tr("`##` marks a piece that continues the previous word; [CLS] and [SEP] "
                       "are special tokens the model adds."),
        "BPE": tr("`␣` marks a piece that starts with a space (GPT-2's own pieces write it "
                 "`Ġ`); GPT-2 adds no special tokens."),
    }.get(result.algorithm, "")
    summary = ngettext(
        "{n} token ({special} special, {sub} sub-word, {unknown} unknown) · {algorithm}",
        "{n} tokens ({special} special, {sub} sub-word, {unknown} unknown) · {algorithm}",
        len(result.tokens), special=n_special, sub=n_sub, unknown=n_unk,
        algorithm=result.algorithm)
    if result.max_length is not None and len(result.tokens) > result.max_length:
        legend += "\n⚠️ " + tr("The model reads at most {n} tokens: it would not see the rest "
                              "of this text.", n=result.max_length)
    embed = discord.Embed(title=tr("{algorithm} tokens", algorithm=result.algorithm),
                          colour=COLOUR)
    embed.set_footer(text=footer(result.model_id, result.timings))
    head = f"{safe(summary)}\n{legend}\n"
    block = code(table, EMBED_DESCRIPTION_LIMIT - len(head) - 10)
    if len(code(table, 10**9)) <= EMBED_DESCRIPTION_LIMIT - len(head) - 10:
        embed.description = head + block
        return Reply(embeds=[embed], summary=summary)
    embed.description = (head + code("\n".join(rows[:40]) + "\n…", 3000) + "\n"
                         + tr("Full table attached."))
    return Reply(embeds=[embed], files=[("tokens.txt", table.encode())], summary=summary)


def _show_piece(piece: str) -> str:
    """Make whitespace and unprintable byte pieces visible instead of blank."""
    shown = "".join(ch if unicodedata.category(ch)[0] not in "CZ" or ch == " " else
                    f"\\u{ord(ch):04x}" for ch in piece)
    return shown if shown.strip() else repr(piece)


def render_sentiment(result: SentimentResult) -> Reply:
    lines = [
        f"{bar(p)} {safe(name, 40)} {number(p, '0.000')}"
        for name, p in zip(result.label_names, result.probabilities)
    ]
    embed = discord.Embed(
        title=clip(f"{safe(result.label, 60)} ({percent(result.probability)})", 256),
        description=clip(bold_input(result.text) + "\n\n" + "\n".join(lines), 4000),
        colour=COLOUR,
    )
    text = (footer(result.model_id, result.timings) + " · "
            + tr("[CLS] features + logistic regression"))
    if result.accuracy is not None:
        text += " · " + tr("held-out accuracy {accuracy}",
                          accuracy=percent(result.accuracy, "0.0%"))
    embed.set_footer(text=clip(text, 2048))
    return Reply(embeds=[embed], summary=f"{result.label} {result.probability:.3f}")


# ------------------------------------------------------------------------ teaching commands


def _picture(embed: discord.Embed, name: str, png: bytes, alt: str | Localised,
             summary: str) -> Reply:
    """An embed showing its PNG, with the alt text (written now, in the reply's language) on
    the attachment."""
    embed.set_image(url=f"attachment://{name}")
    return Reply(embeds=[embed], files=[(name, png)], summary=summary,
                 alt_text={name: clip(printable(str(alt)), 1000)})


def render_tokens_compare(wordpiece: TokensResult, bpe: TokensResult,
                          *others: TokensResult) -> Reply:
    """WordPiece and BPE side by side - and the config's multilingual tokenizer, if any:
    same text, different cuts."""
    results = (wordpiece, bpe, *others)
    title = " vs ".join(r.algorithm if i < 2 else _model_name(r.model_id)
                        for i, r in enumerate(results))
    embed = discord.Embed(title=clip(title, EMBED_TITLE_LIMIT), colour=COLOUR,
                          description=clip(safe(wordpiece.text, 500), 600))
    for result in results:
        pieces = " ".join(_show_piece(visible_piece(t.piece) if result.algorithm == "BPE"
                                      else t.piece) for t in result.tokens)
        name = (result.algorithm if result in (wordpiece, bpe)
                else f"{result.algorithm} ({_model_name(result.model_id)})")
        embed.add_field(
            name=ngettext("{algorithm}: {n} token", "{algorithm}: {n} tokens",
                          len(result.tokens), algorithm=name),
            value=code(pieces, EMBED_FIELD_LIMIT), inline=False,
        )
    embed.set_footer(text=clip(" vs ".join(r.model_id for r in results), 2048))
    return Reply(embeds=[embed], summary=" / ".join(
        f"{r.algorithm.lower() if i < 2 else 'multilingual'} {len(r.tokens)}"
        for i, r in enumerate(results)) + " tokens")


def _model_name(model_id: str) -> str:
    """A hub id's name ("bert-base-multilingual-cased"), a folder's last part."""
    return model_id.rstrip("/").rsplit("/", 1)[-1]


def render_attention(result: AttentionResult) -> Reply:
    head = (tr("average of all heads") if result.head is None
            else tr("head {head}", head=result.head))
    embed = discord.Embed(
        title=tr("Attention · layer {layer}/{layers} · {head}", layer=result.layer,
                layers=result.num_layers, head=head), colour=COLOUR
    )
    lines = []
    for i, top in enumerate(result.top[:25]):
        targets = ", ".join(f"{result.tokens[j]} {number(w, '0.00')}" for j, w in top)
        lines.append(f"{result.tokens[i]} → {targets}")
    note = (tr("GPT-2 only looks back: the upper triangle is empty (causal mask).") + "\n"
            if result.causal else "")
    embed.description = clip(note + code("\n".join(lines), 3500), 4000)
    embed.set_footer(text=footer(result.model_id, result.timings))
    return _picture(embed, "attention.png", result.png, result.alt_text,
                    f"layer {result.layer} {head}, {len(result.tokens)} tokens")


def render_contextsim(result: ContextSimResult) -> Reply:
    sims = result.layer_similarities
    lines = [tr("static input embedding: {similarity}",
               similarity=number(result.static_similarity, "0.000"))]
    names = [tr("embeddings")] + [tr("layer {layer}", layer=i) for i in range(1, len(sims))]
    lines += [f"{name}: {number(s, '0.000')}" for name, s in zip(names, sims)]
    embed = discord.Embed(
        title=clip(tr("How similar is “{word}” in the two sentences?",
                     word=safe(result.word, 60)), 256),
        colour=COLOUR,
        description=clip(
            f"**A:** {safe(result.sentence_a, 500)}\n**B:** {safe(result.sentence_b, 500)}\n"
            + code("\n".join(lines), 1500)
            + "\n" + tr("The static embedding is the same in both; the layers mix in the "
                       "context."),
            4000,
        ),
    )
    embed.set_footer(text=footer(result.model_id, result.timings))
    return _picture(embed, "contextsim.png", result.png, result.alt_text,
                    f"last layer {sims[-1]:.3f}, static {result.static_similarity:.3f}")


def render_maskpair(result: MaskPairResult) -> Reply:
    embed = discord.Embed(title=tr("Two sentences, one {mask}", mask=result.mask_token),
                          colour=COLOUR)
    embed.description = clip(
        f"**A:** {safe(result.sentence_a, 400)}\n**B:** {safe(result.sentence_b, 400)}", 1000
    )
    token = tr("token")
    rows = [f"{token:<14} {'A':>6} {'B':>6} {'B-A':>7}"]
    for row in result.rows[:20]:
        token = printable(row.token.strip() or repr(row.token))[:14]
        mark = " *" if row.target else ""
        rows.append(f"{token:<14} {number(row.prob_a, '0.000'):>6} "
                    f"{number(row.prob_b, '0.000'):>6} "
                    f"{number(row.difference, '+0.000;-0.000'):>7}{mark}")
    embed.add_field(name=tr("Probabilities (* = your targets)"), value=code("\n".join(rows), 1024),
                    inline=False)
    embed.set_footer(text=footer(result.model_id, result.timings))
    top_a = result.fillers_a[0].token.strip() if result.fillers_a else ""
    top_b = result.fillers_b[0].token.strip() if result.fillers_b else ""
    return _picture(embed, "maskpair.png", result.png, result.alt_text, f"A: {top_a} / B: {top_b}")


def render_nexttoken(result: NextTokenResult) -> Reply:
    knobs = (tr("greedy (temperature 0)") if result.greedy else
             tr("temperature {t} · top_k {k} · top_p {p}", t=number(result.temperature),
               k=result.top_k, p=number(result.top_p)))
    embed = discord.Embed(title=tr("What could GPT-2 say next?"), colour=COLOUR)
    token, model, scaled, final = tr("token"), tr("model"), tr("scaled"), tr("final")
    rows = [f"{token:<14} {model:>6} {scaled:>6} {final:>6}"]
    for c in result.candidates:
        token = printable(visible_token(c.token))[:14]
        rows.append(f"{token:<14} {number(c.model_prob, '0.000'):>6} "
                    f"{number(c.scaled_prob, '0.000'):>6} {number(c.final_prob, '0.000'):>6}")
    embed.description = clip(
        f"**{safe(result.prompt, 500)}** …\n{knobs}\n"
        + ngettext("{n} token can be sampled; it holds {mass} of the model's probability.",
                   "{n} tokens can be sampled; they hold {mass} of the model's probability.",
                   result.kept, mass=percent(result.kept_model_mass, "0.0%"))
        + "\n" + code("\n".join(rows), 2000), 4000,
    )
    embed.set_footer(text=footer(result.model_id, result.timings))
    best = result.candidates[0].token if result.candidates else ""
    return _picture(embed, "nexttoken.png", result.png, result.alt_text,
                    f"top: {best!r}, kept {result.kept}")


def render_explain(result: ExplainResult) -> Reply:
    """The picture (words shaded by contribution) and, in text, the words that counted most
    with their numbers: for screen readers, and for students who copy them."""
    embed = discord.Embed(title=clip(tr("Why {prediction}?",
                                        prediction=safe(str(result.prediction), 120)),
                                     EMBED_TITLE_LIMIT), colour=COLOUR)
    lines = [f"`{w.score:+.3g}` {safe(w.word, 60)}" for w in result.top_words(8)]
    unread = [tr("⚠️ {n} tokens of the {part} were beyond the model's window: not read, so not "
                 "scored.", n=p.unread_tokens, part=p.label or tr("text"))
              for p in result.passages if p.unread_tokens]
    how = str(HOW_TO_READ)
    embed.description = clip(
        tr("Words that counted most for the {score} (+ toward, − against):",
           score=safe(str(result.score_name), 120))
        + "\n" + "\n".join(lines) + "\n\n" + "\n".join(unread)
        + ("\n" if unread else "") + f"*{how}*", 4000)
    change = result.score - result.baseline_score
    share = (" " + tr("({share} of the change)", share=percent(abs(result.delta) / abs(change),
                                                               "0.0%")) if change else "")
    embed.set_footer(text=clip(
        footer(result.model_id, result.timings) + " · "
        + tr("integrated gradients, {steps} steps, baseline: {baseline} · completeness delta "
             "{delta}", steps=result.steps, baseline=result.baseline,
             delta=format(result.delta, "+.2g")) + share, 2048))
    top = result.top_words(1)
    return _picture(embed, "explain.png", result.png, result.alt_text,
                    f"{result.family}: {result.prediction}"
                    + (f", top {top[0].word} {top[0].score:+.3f}" if top else ""))


# ------------------------------------------------------------------ class activities
# `/logitlens`, `/neighbours` and a quiz's card (one message edited through its life: open,
# counting guesses, revealed), with the same rules as above.

CLOSED_COLOUR = discord.Colour.dark_grey()


def render_logitlens(result: LogitLensResult) -> Reply:
    context = result.tokens[result.position - 1]
    answer = visible_token(result.answer.token)
    layer_, guess, final, rank = tr("layer"), tr("top guess"), tr("final"), tr("rank")
    rows = [f"{layer_:<6} {guess:<14} {'p':>6}  {final:>6} {rank:>5}"]
    for layer in result.layers:
        name = tr("emb") if layer.layer == 0 else str(layer.layer)
        top = layer.top[0]
        rows.append(f"{name:<6} {visible_token(top.token)[:14]:<14} "
                    f"{number(top.prob, '0.000'):>6}  {number(layer.answer_prob, '0.000'):>6} "
                    f"{layer.answer_rank:>5}")
    embed = discord.Embed(
        title=clip(tr("Logit lens: what each layer would say after “{context}”",
                     context=safe(context, 60)), 256),
        colour=COLOUR,
    )
    embed.description = clip(
        f"**{safe(result.prompt, 500)}** …\n"
        + tr("The model's own next token: **{answer}** ({p}). Each row applies the final layer "
            "norm and the output head to that layer's hidden state; *final* is the probability "
            "of the model's own answer there.", answer=safe(answer, 60),
            p=percent(result.answer.prob, "0.0%"))
        + "\n" + code("\n".join(rows), 2500), 4000,
    )
    embed.set_footer(text=footer(result.model_id, result.timings))
    first = next((layer.layer for layer in result.layers if layer.answer_rank == 1), None)
    summary = f"answer {answer!r} {result.answer.prob:.3f}, top-1 from layer {first}"
    return _picture(embed, "logitlens.png", result.png, result.alt_text, summary)


def render_neighbours(result: NeighboursResult) -> Reply:
    where = (tr("embeddings") if result.layer == 0
             else tr("layer {layer}/{layers}", layer=result.layer, layers=result.num_layers))
    shared = {n.token_id for n in result.static} & {n.token_id for n in result.contextual}
    embed = discord.Embed(
        title=clip(tr("Neighbours of “{word}” · {where}", word=safe(result.word, 60),
                     where=where), 256), colour=COLOUR,
    )
    note = ("\n" + tr("The word is {n} pieces ({pieces}); their vectors are averaged.",
                     n=len(result.pieces), pieces=" + ".join(result.pieces))
            if result.averaged else "")
    embed.description = clip(
        tr("**Sentence:** {sentence}", sentence=safe(result.sentence, 800)) + safe(note, 300)
        + "\n" + tr("Nearest vocabulary items by cosine similarity; * = in both lists."), 1500,
    )
    for name, neighbours in ((tr("Static embedding (no context)"), result.static),
                             (tr("In this sentence ({where})", where=where), result.contextual)):
        lines = [f"{n.token[:18]:<18} {number(n.similarity, '0.00'):>5}"
                 f"{' *' if n.token_id in shared else ''}"
                 for n in neighbours]
        embed.add_field(name=name, value=code("\n".join(lines), EMBED_FIELD_LIMIT))
    embed.set_footer(text=footer(result.model_id, result.timings))
    kept = len(shared)
    summary = (f"context top: {result.contextual[0].token if result.contextual else '-'}, "
               f"{kept}/{len(result.static)} shared with static")
    return _picture(embed, "neighbours.png", result.png, result.alt_text, summary)


# ------------------------------------------------------------------------------ quiz card

_QUIZ_TITLE = {"mask": lazy("Class quiz: which word hides behind the mask?"),
               "next": lazy("Class quiz: what will GPT-2 say next?")}
_QUIZ_ASK = {"mask": lazy("Guess the word the model puts in place of `[MASK]`."),
             "next": lazy("Guess the next token GPT-2 predicts (one word or punctuation mark).")}


def _prompt_line(quiz: Quiz) -> str:
    if quiz.kind == "next":
        return f"**{safe(quiz.prompt, 1000)}** …"
    return f"**{safe(quiz.prompt, 1000)}**"


def _timestamp(moment: datetime, style: str) -> str:
    return f"<t:{int(moment.timestamp())}:{style}>"


def render_quiz_open(quiz: Quiz, guesses: int) -> Reply:
    """The card while guesses are taken: the prompt, when it ends, how many have guessed."""
    embed = discord.Embed(title=str(_QUIZ_TITLE[quiz.kind]), colour=COLOUR)
    embed.description = clip(
        f"{_prompt_line(quiz)}\n\n{_QUIZ_ASK[quiz.kind]} "
        + tr("Press **Guess**; you may change your guess until the end.") + "\n"
        + tr("Ends {relative} ({time}).", relative=_timestamp(quiz.ends_at, "R"),
            time=_timestamp(quiz.ends_at, "T")), 4000,
    )
    embed.add_field(name=tr("Guesses"), value=_guess_count(guesses))
    embed.set_footer(text=(tr("quiz {id} · names shown at the reveal", id=quiz.id)
                           if quiz.show_names else
                           tr("quiz {id} · names hidden at the reveal", id=quiz.id)))
    return Reply(embeds=[embed], summary=f"quiz {quiz.id} open, {guesses} guesses")


def _guess_count(count: int) -> str:
    return (tr("nobody yet") if count == 0
            else ngettext("{n} student", "{n} students", count))


def render_quiz_reveal(quiz: Quiz, reveal: QuizReveal, png: bytes = b"",
                       alt_text: str | Localised = "") -> Reply:
    """The card after the end: the model's top-k, the class's words, the matches; the chart
    (`core.charts.quiz_reveal_chart`) when it could be drawn."""
    embed = discord.Embed(title=clip(f"{_QUIZ_TITLE[quiz.kind]} · " + tr("revealed"), 256),
                          colour=CLOSED_COLOUR)
    says, klass = tr("model says"), tr("class")
    rows = [f"{'#':>2} {says:<14} {'p':>6} {klass:>5}"]
    for c in reveal.candidates:
        rows.append(f"{c.rank:>2} {visible_token(c.token)[:14]:<14} "
                    f"{number(c.prob, '0.000'):>6} {c.class_count:>5}")
    total = reveal.total_guesses
    if total:
        first = reveal.candidates[0].token if reveal.candidates else ""
        result_line = tr("**{first} of {total}** guessed the model's first choice (**{word}**); "
                        "{top_k} guessed a word in its top {k}.", first=reveal.matched_first,
                        total=total, word=safe(visible_token(first), 40),
                        top_k=reveal.matched_top_k, k=len(reveal.candidates))
    else:
        result_line = tr("Nobody guessed.")
    embed.description = clip(f"{_prompt_line(quiz)}\n\n{result_line}\n"
                             + code("\n".join(rows), 1200), 4000)
    tally = []
    for entry in reveal.tally[:15]:
        mark = " " + tr("(model #{rank})", rank=entry.model_rank) if entry.model_rank else ""
        line = f"**{safe(entry.label, 40)}** × {entry.count}{mark}"
        if reveal.show_names and entry.user_ids:
            line += ": " + ", ".join(f"<@{uid}>" for uid in entry.user_ids[:20])
        tally.append(line)
    if len(reveal.tally) > 15:
        tally.append("… " + ngettext("and {n} more word", "and {n} more words",
                                     len(reveal.tally) - 15))
    embed.add_field(name=tr("The class's guesses ({n})", n=total),
                    value=clip("\n".join(tally) or tr("none"), EMBED_FIELD_LIMIT), inline=False)
    embed.set_footer(text=clip(tr("quiz {id} · model: {model}", id=quiz.id,
                                 model=reveal.model_id), 2048))
    summary = f"quiz {quiz.id}: {reveal.matched_first}/{total} matched the first choice"
    if png:
        return _picture(embed, "quiz.png", png, alt_text, summary)
    return Reply(embeds=[embed], summary=summary)


def render_quiz_failed(quiz: Quiz, message: str | Localised) -> Reply:
    """The card when the model could not answer at the end (it keeps the guesses)."""
    embed = discord.Embed(title=clip(f"{_QUIZ_TITLE[quiz.kind]} · " + tr("ended"), 256),
                          colour=CLOSED_COLOUR,
                          description=clip(f"{_prompt_line(quiz)}\n\n{message}", 4000))
    embed.set_footer(text=tr("quiz {id}", id=quiz.id))
    return Reply(embeds=[embed], summary=f"quiz {quiz.id} ended without a reveal")
