"""/quiz mask and /quiz next: the whole class guesses, then the model's answer is revealed.

The quiz itself (storage, one open quiz per channel, guesses under `log_inputs`, the tally) is
`core.storage.quizzes`; this cog is its Discord side: the public card with its two buttons, the
guess
modal, the timers, and the card's edits.

Why the card is a channel message of its own (the instructor gets an ephemeral "started"): a
quiz may run an hour and its card is edited until the end, while an interaction's token dies
after 15 minutes. The bot edits its own message through the channel, whenever.

Restart safety: the buttons are `discord.ui.DynamicItem`s whose custom_id carries the quiz id
(`tlm:quiz:guess:12`), registered with `bot.add_dynamic_items`, so a click on a card posted
before a restart still reaches this cog; the timers are re-armed from `QuizStore.open_quizzes()`
in `cog_load` (a quiz that ended while the bot was down is revealed at once).

Every click and every modal submit goes through the same gate as a slash command (direct
messages, moderator rules, pause, cooldown: a guess is a student use of `/quiz`) and ends in
the front door (`bot.interactions.turn.enter`), which sends the one reply and writes the one row
(`quiz guess`,
`quiz reveal`; the guessed word is the row's input text, so `log_inputs` applies to it).
A Guess click that opens the modal writes no row of its own: the modal's submit is that
guess's row (a refused or failed click is logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.interactions.host import Host
from bot.interactions.language import server_language
from bot.interactions.names import actor_of_member
from bot.interactions.render import (
    Reply,
    render_quiz_failed,
    render_quiz_open,
    render_quiz_reveal,
    safe,
)
from bot.interactions.turn import FORM_OPENED, Action, Answer, Turn, enter, options_of
from core import i18n
from core.errors import CoreError, InvalidInput, Overloaded, ServiceError
from core.i18n import lazy, tr
from core.outcomes import outcome_of_error
from core.pictures import charts
from core.pictures.charts import quiz_reveal_alt_text, quiz_reveal_chart
from core.storage.quizzes import (
    DEFAULT_SECONDS,
    MAX_GUESS_CHARS,
    MAX_PROMPT_CHARS,
    MAX_SECONDS,
    MIN_SECONDS,
    REVEAL_TOP_K,
    NewQuiz,
    Quiz,
    QuizClosed,
    QuizNotFound,
    QuizStore,
    check_new_quiz,
    model_request,
)

log = logging.getLogger(__name__)

#: The card's guess count is edited at most this often while guesses arrive (Discord's edit
#: rate limit is about 5 per 5 s per channel; one card must not use it all).
CARD_EDIT_INTERVAL_S = 2.0
#: The rule name a guess is checked against: the class's part in `/quiz`.
POLICY_NAME = "quiz"
GUESS_COMMAND = "quiz guess"
REVEAL_COMMAND = "quiz reveal"
#: How often a reveal retries when the core is busy, and how long it waits between tries.
REVEAL_TRIES = 5
REVEAL_RETRY_S = 3.0

GUESS_ID = r"tlm:quiz:guess:(?P<quiz_id>[0-9]+)"
REVEAL_ID = r"tlm:quiz:reveal:(?P<quiz_id>[0-9]+)"
MODAL_ID = "tlm:quiz:modal:{quiz_id}"
MODAL_RE = re.compile(r"tlm:quiz:modal:(?P<quiz_id>[0-9]+)")
WORD_FIELD = "word"

ENDED = lazy("This quiz has ended.")


class CannotPostCard(ServiceError):
    """The bot may not post in the channel (a permission overwrite); the instructor can fix it."""

    code = "cannot_post"
    status = "unavailable"


class NotYourQuiz(CoreError):
    """Somebody other than the quiz's instructor or a moderator pressed "Reveal now"."""

    code = "not_quiz_owner"
    status = "refused"


class NotThisChannelsQuiz(CoreError):
    """A quiz button or form whose quiz lives in another channel or server (a forged id)."""

    code = "other_channel"
    status = "refused"


# ------------------------------------------------------------------------------ components


class GuessButton(discord.ui.DynamicItem[discord.ui.Button], template=GUESS_ID):
    def __init__(self, quiz_id: int, *, disabled: bool = False) -> None:
        super().__init__(discord.ui.Button(
            label=tr("Guess"), emoji="✍️", style=discord.ButtonStyle.primary, disabled=disabled,
            custom_id=f"tlm:quiz:guess:{quiz_id}"))
        self.quiz_id = quiz_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str], /) -> GuessButton:
        return cls(int(match["quiz_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        await _cog(interaction).guess_clicked(interaction, self.quiz_id)


class RevealButton(discord.ui.DynamicItem[discord.ui.Button], template=REVEAL_ID):
    def __init__(self, quiz_id: int, *, disabled: bool = False) -> None:
        super().__init__(discord.ui.Button(
            label=tr("Reveal now"), style=discord.ButtonStyle.secondary, disabled=disabled,
            custom_id=f"tlm:quiz:reveal:{quiz_id}"))
        self.quiz_id = quiz_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button,
                             match: re.Match[str], /) -> RevealButton:
        return cls(int(match["quiz_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        await _cog(interaction).reveal_clicked(interaction, self.quiz_id)


def guess_modal(quiz: Quiz) -> discord.ui.Modal:
    """The one-word form. It is answered by `QuizCog.on_interaction` from its custom_id alone,
    not by this object: discord.py keeps open modals by custom_id only, so the modals of 30
    students of one quiz would replace one another there (and the first submit would drop the
    others), and a modal opened before a restart would find nothing. Stopped before it is sent,
    discord.py does not keep it at all."""
    modal = discord.ui.Modal(title=tr("Your guess"), custom_id=MODAL_ID.format(quiz_id=quiz.id))
    modal.add_item(discord.ui.TextInput(
        label=tr("Your guess (one word)"), custom_id=WORD_FIELD, min_length=1,
        max_length=MAX_GUESS_CHARS, placeholder=tr("e.g. dog")))
    modal.stop()
    return modal


def submitted_values(data: Any) -> dict[str, str]:
    """A modal submit's text inputs by custom_id (in action rows, or in labels)."""
    values: dict[str, str] = {}
    for top in (data or {}).get("components") or []:
        children = top.get("components") or ([top["component"]] if "component" in top else [])
        for child in children:
            if "custom_id" in child and isinstance(child.get("value"), str):
                values[child["custom_id"]] = child["value"]
    return values


def card_view(quiz_id: int, *, open_: bool = True) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(GuessButton(quiz_id, disabled=not open_))
    view.add_item(RevealButton(quiz_id, disabled=not open_))
    return view


def _cog(interaction: discord.Interaction) -> QuizCog:
    cog = interaction.client.get_cog(QuizCog.__cog_name__)  # type: ignore[attr-defined]
    assert isinstance(cog, QuizCog)
    return cog


@dataclass(frozen=True)
class _RevealPicture:
    """What `PictureStage.finish` draws: the chart as a picklable `drawing`."""

    drawing: Any
    png: bytes = b""
    timings: Any = None


# ------------------------------------------------------------------------------ the cog


@app_commands.guild_only()
class QuizCog(commands.GroupCog, group_name="quiz", group_extras={"kind": "activity"}):
    """Class quizzes: everyone guesses, then the model's answer is revealed."""

    def __init__(self, bot: Host) -> None:
        self.bot = bot
        self._timers: dict[int, asyncio.Task[None]] = {}
        self._finishing: set[asyncio.Task[None]] = set()
        self._refreshing: dict[int, asyncio.Task[None]] = {}
        self._refresh_again: set[int] = set()
        self._last_edit: dict[int, float] = {}
        #: quiz id -> the language its card was posted in (it keeps it to the reveal).
        self._languages: dict[int, str] = {}
        self._card_locks: dict[int, asyncio.Lock] = {}
        super().__init__()

    @property
    def store(self) -> QuizStore:
        return self.bot.quizzes

    async def cog_load(self) -> None:
        """Re-arm the timers of the quizzes that were open when the bot stopped."""
        for quiz in await self.store.open_quizzes():
            self._arm(quiz)
        if self._timers:
            log.info("re-armed %d open quiz timer(s)", len(self._timers))

    async def cog_unload(self) -> None:
        for task in self._timers.values():
            task.cancel()
        for task in self._refreshing.values():
            task.cancel()
        pending = [*self._timers.values(), *self._refreshing.values(), *self._finishing]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # -------------------------------------------------------------------------- starting

    @app_commands.command(name="mask")
    async def mask(
        self,
        interaction: discord.Interaction,
        sentence: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
        seconds: app_commands.Range[int, MIN_SECONDS, MAX_SECONDS] = DEFAULT_SECONDS,
        show_names: bool = False,
    ) -> None:
        """Everyone guesses the hidden word, then the model's fillers are revealed.

        Args:
            sentence: A sentence with one [MASK], e.g. "The [MASK] barked at the mailman."
            seconds: How long guesses are taken.
            show_names: Show who guessed what at the reveal (default: counts only).
        """
        await self._start(interaction, "mask", sentence, seconds, show_names, "sentence")

    @app_commands.command(name="next")
    async def next_token(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
        seconds: app_commands.Range[int, MIN_SECONDS, MAX_SECONDS] = DEFAULT_SECONDS,
        show_names: bool = False,
    ) -> None:
        """Everyone guesses GPT-2's next token, then its odds are revealed.

        Args:
            prompt: The text so far, e.g. "Once upon a"
            seconds: How long guesses are taken.
            show_names: Show who guessed what at the reveal (default: counts only).
        """
        await self._start(interaction, "next", prompt, seconds, show_names, "prompt")

    async def _start(self, interaction: discord.Interaction, kind: str, prompt: str,
                     seconds: int, show_names: bool, text_option: str) -> None:
        async def body(turn: Turn) -> Answer:
            if interaction.guild_id is None or interaction.channel_id is None:
                raise InvalidInput(lazy("A quiz runs in a server channel."))
            new = check_new_quiz(NewQuiz(
                interaction.guild_id, interaction.channel_id, kind,  # type: ignore[arg-type]
                prompt, interaction.user.id, seconds, show_names))
            self.bot.engine.validate(model_request(kind, new.prompt, self._top_k()))
            quiz = await self.store.create(new)
            try:
                message = await self._post_card(interaction, quiz)
                await self.store.set_message(quiz.id, message.id)
            except BaseException:
                await self.store.close(quiz.id)  # no card: free the channel
                raise
            self._arm(quiz)
            ends = f"<t:{int(quiz.ends_at.timestamp())}:R>"  # Discord writes it in each language
            return Answer(Reply(content=tr("Quiz {id} started: it ends {when}. Press **Reveal "
                                           "now** on the card to end it early.", id=quiz.id,
                                           when=ends),
                                summary=f"quiz {quiz.id} {kind}, {seconds} s"), ephemeral=True)

        await enter(interaction, Action(Turn.of(interaction).command, body, kind="activity",
                                        policy=POLICY_NAME, options=options_of(interaction),
                                        input_text=prompt, input_options=(text_option,)))

    async def _post_card(self, interaction: discord.Interaction, quiz: Quiz) -> discord.Message:
        channel = interaction.channel
        if not isinstance(channel, discord.abc.Messageable):
            channel = self.bot.get_partial_messageable(quiz.channel_id)
        self._languages[quiz.id] = await server_language(
            self.bot.settings, interaction.guild_id, interaction.guild_locale)
        with i18n.using(await self._card_language(quiz)):
            card, view = render_quiz_open(quiz, 0), card_view(quiz.id)
        try:
            return await channel.send(embeds=card.embeds, view=view)
        except discord.Forbidden:
            raise CannotPostCard(lazy(
                "I can't post the quiz card in this channel: give tlm-bot the View Channel, "
                "Send Messages and Embed Links permissions here, then start it again."
            )) from None

    async def _card_language(self, quiz: Quiz) -> str:
        """A card is public: the server's language (`server_language`) when it was posted,
        whoever started it, kept until its reveal; for a quiz re-armed after a restart, the
        server's language now."""
        if quiz.id in self._languages:
            return self._languages[quiz.id]
        guild = self.bot.get_guild(quiz.guild_id)
        return await server_language(self.bot.settings, quiz.guild_id,
                                     guild.preferred_locale if guild is not None else None)

    def _top_k(self) -> int:
        return min(REVEAL_TOP_K, self.bot.config.limits.max_mask_top_k)

    # -------------------------------------------------------------------------- guessing

    async def guess_clicked(self, interaction: discord.Interaction, quiz_id: int) -> None:
        async def body(turn: Turn) -> object:
            quiz = await self._open_quiz(quiz_id, interaction)
            await interaction.response.send_modal(guess_modal(quiz))
            return FORM_OPENED  # the submit writes this guess's row

        await enter(interaction, Action(GUESS_COMMAND, body, policy=POLICY_NAME,
                                        options={"quiz": quiz_id}))

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Guess modal submits, by custom_id (see `guess_modal`), whenever it was opened."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        match = MODAL_RE.fullmatch(str((interaction.data or {}).get("custom_id", "")))
        if match is not None:
            word = submitted_values(interaction.data).get(WORD_FIELD, "")
            await self.guess_submitted(interaction, int(match["quiz_id"]), word)

    async def guess_submitted(self, interaction: discord.Interaction, quiz_id: int,
                              word: str) -> None:
        async def body(turn: Turn) -> Answer:
            await self._open_quiz(quiz_id, interaction)
            receipt = await self.store.guess(
                quiz_id, interaction.user.id, word,
                user_name=getattr(interaction.user, "display_name", "") or "")
            self._count_changed(quiz_id)
            content = (tr("Your guess changed to **{word}**. You may change it until the quiz "
                          "ends.", word=safe(receipt.word, 60)) if receipt.changed else
                       tr("Your guess is in: **{word}**. You may change it until the quiz "
                          "ends.", word=safe(receipt.word, 60)))
            return Answer(Reply(content=content,
                                summary=f"quiz {quiz_id} guess " + ("changed" if receipt.changed
                                                                     else "new")),
                          ephemeral=True)

        await enter(interaction, Action(GUESS_COMMAND, body, policy=POLICY_NAME,
                                        options={"quiz": quiz_id, "guess": word},
                                        input_text=word, input_options=("guess",),
                                        dictionary_words=True))

    async def _quiz_here(self, quiz_id: int, interaction: discord.Interaction) -> Quiz:
        """The quiz, if it belongs to the channel (and server) the interaction comes from: a
        custom_id is the client's to forge, so a quiz of server A is never acted on from B."""
        quiz = await self.store.get(quiz_id)
        if quiz is None:
            raise QuizNotFound(lazy("This quiz no longer exists."))
        if (quiz.guild_id, quiz.channel_id) != (interaction.guild_id, interaction.channel_id):
            raise NotThisChannelsQuiz(lazy("That quiz belongs to another channel."))
        return quiz

    async def _open_quiz(self, quiz_id: int, interaction: discord.Interaction) -> Quiz:
        quiz = await self._quiz_here(quiz_id, interaction)
        if not quiz.is_open or quiz.seconds_left() <= 0:
            raise QuizClosed(ENDED)
        return quiz

    # -------------------------------------------------------------------------- the card

    def _count_changed(self, quiz_id: int) -> None:
        """Edit the card's count soon: at most every `CARD_EDIT_INTERVAL_S`, and once more
        after the last guess of a burst."""
        if quiz_id in self._refreshing:
            self._refresh_again.add(quiz_id)
            return
        task = asyncio.create_task(self._refresh_card(quiz_id))
        self._refreshing[quiz_id] = task
        task.add_done_callback(lambda _: self._refreshing.pop(quiz_id, None))

    async def _refresh_card(self, quiz_id: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                wait = self._last_edit.get(quiz_id, -1e9) + CARD_EDIT_INTERVAL_S - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._refresh_again.discard(quiz_id)
                async with self._card_lock(quiz_id):
                    quiz = await self.store.get(quiz_id)
                    if quiz is None or not quiz.is_open:
                        return  # the reveal owns the card now
                    count = await self.store.count(quiz_id)
                    with i18n.using(await self._card_language(quiz)):
                        card, view = render_quiz_open(quiz, count), card_view(quiz_id)
                    await self._edit_card(quiz, card, view)
                    self._last_edit[quiz_id] = loop.time()
                if quiz_id not in self._refresh_again:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:  # a count that is a little stale is no reason to stop the quiz
            log.warning("could not update quiz %d's card", quiz_id, exc_info=True)

    def _card_lock(self, quiz_id: int) -> asyncio.Lock:
        return self._card_locks.setdefault(quiz_id, asyncio.Lock())

    async def _edit_card(self, quiz: Quiz, card: Reply, view: discord.ui.View | None) -> None:
        if quiz.message_id is None:
            return
        message = self.bot.get_partial_messageable(
            quiz.channel_id, guild_id=quiz.guild_id).get_partial_message(quiz.message_id)
        await message.edit(embeds=card.embeds, attachments=card.discord_files(), view=view)

    # -------------------------------------------------------------------------- the end

    async def reveal_clicked(self, interaction: discord.Interaction, quiz_id: int) -> None:
        async def body(turn: Turn) -> Answer:
            quiz = await self._quiz_here(quiz_id, interaction)
            if not quiz.is_open:
                raise QuizClosed(ENDED)
            actor = actor_of_member(interaction.user)
            if interaction.user.id != quiz.creator_id and not actor.is_moderator:
                raise NotYourQuiz(lazy("Only the instructor who started this quiz, or a "
                                       "moderator, can reveal it."))
            await interaction.response.defer(ephemeral=True, thinking=True)
            revealed = await self.finish(quiz_id)
            return Answer(Reply(content=tr("Revealed.") if revealed else str(ENDED),
                                summary=f"quiz {quiz_id} revealed"), ephemeral=True)

        await enter(interaction, Action(REVEAL_COMMAND, body, policy=POLICY_NAME,
                                        options={"quiz": quiz_id}))

    def _arm(self, quiz: Quiz) -> None:
        if quiz.id not in self._timers:
            task = asyncio.create_task(self._end_after(quiz))
            self._timers[quiz.id] = task
            task.add_done_callback(lambda _: self._timers.pop(quiz.id, None))

    async def _end_after(self, quiz: Quiz) -> None:
        await asyncio.sleep(quiz.seconds_left())
        # From here the reveal runs to its end even if the cog unloads: a closed quiz whose
        # card never showed the answer would be lost.
        task = asyncio.create_task(self._finish_logged(quiz.id))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish_logged(self, quiz_id: int) -> None:
        try:
            await self.finish(quiz_id)
        except Exception:
            log.exception("quiz %d: the reveal failed", quiz_id)

    async def finish(self, quiz_id: int) -> bool:
        """Close the quiz and show the reveal on its card. False if it was already closed
        (a timer and a click raced: exactly one of them reveals)."""
        with self.bot.handling():
            quiz, closed_now = await self.store.close(quiz_id)
            if not closed_now:
                return False
            timer = self._timers.pop(quiz_id, None)
            if timer is not None and timer is not asyncio.current_task():
                timer.cancel()
            with i18n.using(await self._card_language(quiz)):
                card = await self._reveal_card(quiz)
                view = card_view(quiz_id, open_=False)
            async with self._card_lock(quiz_id):
                try:
                    await self._edit_card(quiz, card, view)
                except discord.NotFound:  # someone deleted the card: nothing to show it on
                    log.info("quiz %d: its card was deleted; the reveal is not shown", quiz_id)
            await self.store.forget_after_reveal(quiz_id)  # hashed/none: no guess, no prompt
            self._card_locks.pop(quiz_id, None)
            self._last_edit.pop(quiz_id, None)
            self._languages.pop(quiz_id, None)
            log.info("quiz %d revealed", quiz_id)
            return True

    async def _reveal_card(self, quiz: Quiz) -> Reply:
        """The model's answer beside the class's guesses; the card says so if the model could
        not answer (the guesses stay stored either way)."""
        request = model_request(quiz.kind, quiz.prompt, self._top_k())
        for attempt in range(REVEAL_TRIES):
            try:
                result = await self.bot.engine.submit(request)
                break
            except Overloaded:
                if attempt == REVEAL_TRIES - 1:
                    return render_quiz_failed(quiz, lazy(
                        "The bot was too busy to reveal the model's answer. Start the quiz "
                        "again to see it."))
                await asyncio.sleep(REVEAL_RETRY_S)
            except Exception as exc:
                log.warning("quiz %d: no reveal", quiz.id, exc_info=True)
                return render_quiz_failed(quiz, outcome_of_error(exc).message)
        reveal = await self.store.reveal(quiz, result, top_k=self._top_k())
        png = b""
        with contextlib.suppress(Overloaded):
            ticket = self.bot.engine.pictures.reserve()
            picture = await self.bot.engine.pictures.finish(
                _RevealPicture(charts.drawing(quiz_reveal_chart, reveal)), ticket)
            png = picture.png
        return render_quiz_reveal(quiz, reveal, png, quiz_reveal_alt_text(reveal))


async def setup(bot: Host) -> None:
    bot.add_dynamic_items(GuessButton, RevealButton)
    await bot.add_cog(QuizCog(bot))


async def teardown(bot: Host) -> None:
    bot.remove_dynamic_items(GuessButton, RevealButton)
