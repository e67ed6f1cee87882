"""The Discord emulator against the real discord.py client.

These pin the emulator's fidelity: if an unmodified discord.py bot can log in, sync, answer,
retry and resume against it, and the Discord rules bite where Discord's would, later bot tests
can trust what it records.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
import time
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.discord_emulator import (
    NO_SPEC,
    SPEC_PATH,
    DiscordEmulator,
    message_is_empty,
    validate_autocomplete,
    validate_command_json,
    validate_components,
    validate_message,
    validate_modal,
)

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop (deprecated in 3.11) for voice, which we never use.
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    from discord import app_commands
    from discord.ext import commands

log = logging.getLogger(__name__)


FRUITS = ["apple", "apricot", "banana", "cherry"]


class VoteView(discord.ui.View):
    """A classic per-message view: clicks edit the message in place (callback type 7)."""

    def __init__(self) -> None:
        super().__init__(timeout=None)
        self.votes = 0

    @discord.ui.button(label="Up", custom_id="vote:up", style=discord.ButtonStyle.primary)
    async def up(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.votes += 1
        await interaction.response.edit_message(content=f"votes: {self.votes}", view=self)

    @discord.ui.button(label="Close", custom_id="vote:close")
    async def close(self, interaction: discord.Interaction,
                    button: discord.ui.Button[Any]) -> None:
        for item in self.children:
            if isinstance(item, discord.ui.Button):
                item.disabled = True
        await interaction.response.edit_message(content=f"closed at {self.votes}", view=self)
        self.stop()


class RateButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"rate:(?P<score>\d)"):
    """A restart-safe button: discord.py rebuilds it from the clicked message's custom_id."""

    def __init__(self, score: int) -> None:
        super().__init__(discord.ui.Button(label=f"{score} stars", custom_id=f"rate:{score}"))
        self.score = score

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: Any) -> RateButton:
        return cls(int(match["score"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()  # type 6: nothing visible changes yet
        await interaction.edit_original_response(content=f"rated {self.score}", view=None)
        await interaction.followup.send(f"thanks for {self.score}", ephemeral=True)


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    """The classic layout: each text input in its own action row."""

    comment: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Comment", custom_id="comment", max_length=50)
    email: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Email", custom_id="email", required=False)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            f"got {self.comment.value!r} from {self.email.value or 'anon'}", ephemeral=True)


class AskModal(discord.ui.Modal, title="Ask"):
    """The newer layout: a type 18 label holding the text input."""

    question: discord.ui.Label[Any] = discord.ui.Label(
        text="Question", component=discord.ui.TextInput(
            custom_id="question", style=discord.TextStyle.paragraph))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        assert isinstance(self.question.component, discord.ui.TextInput)
        await interaction.response.edit_message(
            content=f"Q: {self.question.component.value}", view=None)


class AskView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Ask", custom_id="ask:open")
    async def open(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        await interaction.response.send_modal(AskModal())


class ProbeBot(commands.Bot):
    """A bot with a few representative commands; `outcomes` holds what handlers caught."""

    def __init__(self) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.05)
        self.outcomes: dict[str, asyncio.Future[Any]] = {}
        self._add_commands()
        self._add_component_commands()

    async def setup_hook(self) -> None:
        self.add_dynamic_items(RateButton)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Skip discord.py's 5 s pause before a re-IDENTIFY (it protects real Discord's limits)."""

    def outcome(self, name: str) -> asyncio.Future[Any]:
        return self.outcomes.setdefault(name, asyncio.get_running_loop().create_future())

    def _add_commands(self) -> None:
        tree = self.tree

        @tree.command(name="echo", description="Repeat some text")
        async def echo(interaction: discord.Interaction, text: str,
                       times: app_commands.Range[int, 1, 5] = 1) -> None:
            await interaction.response.send_message(
                " ".join([text] * times), allowed_mentions=discord.AllowedMentions.none())

        @tree.command(name="think", description="Defer, then answer with an embed")
        async def think(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            await asyncio.sleep(0.05)
            embed = discord.Embed(title="Result", description="forty-two")
            embed.add_field(name="score", value="0.93")
            await interaction.followup.send(embed=embed)

        @tree.command(name="file", description="Send a file")
        async def file(interaction: discord.Interaction) -> None:
            attachment = discord.File(io.BytesIO(b"col\n1\n"), filename="data.csv")
            await interaction.response.send_message("here", file=attachment)

        @tree.command(name="secret", description="Reply only to the caller")
        async def secret(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("only you", ephemeral=True)

        @tree.command(name="slow", description="Answer after a delay")
        async def slow(interaction: discord.Interaction, seconds: float) -> None:
            await asyncio.sleep(seconds)
            try:
                await interaction.response.send_message("late")
            except discord.HTTPException as exc:
                self.outcome("slow").set_result(exc)

        @tree.command(name="long", description="Try an over-long message first")
        async def long(interaction: discord.Interaction) -> None:
            try:
                await interaction.response.send_message("x" * 2001)
            except discord.HTTPException as exc:
                self.outcome("long").set_result(exc)
                await interaction.response.send_message("shorter")

        @tree.command(name="upload", description="Describe an uploaded file")
        async def upload(interaction: discord.Interaction, doc: discord.Attachment,
                         who: discord.Member | None = None) -> None:
            data = await doc.read()
            name = who.display_name if who else None
            await interaction.response.send_message(
                f"{doc.filename}: {len(data)} bytes, {doc.content_type}, who={name}")

        @tree.command(name="announce", description="Post to the channel")
        async def announce(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True)
            assert isinstance(interaction.channel, discord.TextChannel)
            await interaction.channel.send("Hello class")
            await interaction.followup.send("posted", ephemeral=True)

        @tree.command(name="progress", description="Edit the deferred reply twice")
        async def progress(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await interaction.edit_original_response(content="50%")
            chart = discord.File(io.BytesIO(b"PNG"), filename="chart.png")
            await interaction.edit_original_response(content="done", attachments=[chart])

        admin = app_commands.Group(name="admin", description="Instructor tools")

        @admin.command(name="stats", description="Show stats")
        async def stats(interaction: discord.Interaction, verbose: bool = False) -> None:
            perms = interaction.permissions.manage_guild
            await interaction.response.send_message(f"manage={perms} verbose={verbose}")

        tree.add_command(admin)

    def _add_component_commands(self) -> None:
        """Buttons, selects, modals, autocomplete and a message context menu."""
        tree = self.tree

        @tree.command(name="vote", description="A message with vote buttons")
        async def vote(interaction: discord.Interaction, private: bool = False) -> None:
            await interaction.response.send_message("votes: 0", view=VoteView(),
                                                    ephemeral=private)

        @tree.command(name="rate", description="Restart-safe rating buttons")
        async def rate(interaction: discord.Interaction) -> None:
            view = discord.ui.View(timeout=None)
            view.add_item(RateButton(1)).add_item(RateButton(5))
            await interaction.response.send_message("rate me", view=view)

        @tree.command(name="flavour", description="A select menu")
        async def flavour(interaction: discord.Interaction) -> None:
            view = discord.ui.View(timeout=None)
            menu: discord.ui.Select[Any] = discord.ui.Select(
                custom_id="flavour", max_values=2,
                options=[discord.SelectOption(label=f) for f in FRUITS])

            async def picked(inner: discord.Interaction) -> None:
                await inner.response.edit_message(content=" + ".join(menu.values), view=None)

            menu.callback = picked  # type: ignore[method-assign]
            view.add_item(menu)
            await interaction.response.send_message("pick", view=view)

        @tree.command(name="poll", description="A button that edits its message by channel")
        async def poll(interaction: discord.Interaction) -> None:
            view = discord.ui.View(timeout=None)
            button: discord.ui.Button[Any] = discord.ui.Button(label="Close",
                                                               custom_id="poll:close")

            async def close(inner: discord.Interaction) -> None:
                await inner.response.defer()
                assert inner.message is not None
                await inner.message.edit(content="poll closed", view=None)

            button.callback = close  # type: ignore[method-assign]
            view.add_item(button)
            await interaction.response.send_message("poll open", view=view)

        @tree.command(name="feedback", description="Open a form")
        async def feedback(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(FeedbackModal())

        @tree.command(name="askbox", description="A button that opens a form")
        async def askbox(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("ask away", view=AskView())

        async def fruit_choices(interaction: discord.Interaction,
                                current: str) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=f, value=f) for f in FRUITS if f.startswith(current)]

        @tree.command(name="pick", description="Autocompleted fruit")
        @app_commands.autocomplete(fruit=fruit_choices)
        async def pick(interaction: discord.Interaction, fruit: str, count: int = 1) -> None:
            await interaction.response.send_message(f"{count} {fruit}")

        async def too_many(interaction: discord.Interaction,
                           current: str) -> list[app_commands.Choice[str]]:
            choices = [app_commands.Choice(name=f"n{i}", value=f"v{i}") for i in range(26)]
            try:
                await interaction.response.autocomplete(choices)
            except discord.HTTPException as exc:
                self.outcome("too_many").set_result(exc)
            return []  # discord.py then answers with no choices

        @tree.command(name="many", description="Autocomplete with too many choices")
        @app_commands.autocomplete(word=too_many)
        async def many(interaction: discord.Interaction, word: str) -> None:
            await interaction.response.send_message(word)

        @tree.context_menu(name="Count words")
        async def count_words(interaction: discord.Interaction, message: discord.Message) -> None:
            await interaction.response.send_message(
                f"{len(message.content.split())} words by {message.author.display_name}",
                ephemeral=True)

        @tree.command(name="badbutton", description="A button whose custom_id is too long")
        async def badbutton(interaction: discord.Interaction) -> None:
            view = discord.ui.View(timeout=None)
            view.add_item(discord.ui.Button(label="x", custom_id="x" * 101))
            try:
                await interaction.response.send_message("button", view=view)
            except discord.HTTPException as exc:
                self.outcome("badbutton").set_result(exc)
                await interaction.response.send_message("no button")

        @tree.command(name="badmodal", description="A modal whose title is too long")
        async def badmodal(interaction: discord.Interaction) -> None:
            try:
                await interaction.response.send_modal(FeedbackModal(title="t" * 46))
            except discord.HTTPException as exc:
                self.outcome("badmodal").set_result(exc)
                await interaction.response.send_message("no modal")


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator() as emulator:
        with emulator.patch_discord():
            yield emulator


@pytest.fixture
async def bot(emu: DiscordEmulator, caplog: pytest.LogCaptureFixture) -> AsyncIterator[ProbeBot]:
    caplog.set_level(logging.INFO, logger="discord")
    async with emu.connected(ProbeBot()) as probe:
        yield probe
    assert emu.unhandled == []
    assert emu.violations == []
    # caplog.records would hold only this teardown's records: read every phase's.
    errors = [r.getMessage() for phase in ("setup", "call", "teardown")
              for r in caplog.get_records(phase) if r.levelno >= logging.ERROR]
    assert errors == []


async def raw(emu: DiscordEmulator, method: str, path: str, **kwargs: Any) -> tuple[int, str, Any]:
    """A request a real bot would not make, to probe a rule directly: (status, type, body)."""
    headers = {"Authorization": f"Bot {emu.token}"}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, emu.api_url + path, headers=headers, **kwargs) as resp:
            body = await resp.json(content_type=None) if resp.status != 204 else None
            return resp.status, resp.headers.get("Content-Type", ""), body


async def test_login_and_sync_are_recorded_and_valid(emu: DiscordEmulator, bot: ProbeBot) -> None:
    paths = [(r.method, r.path) for r in emu.requests]
    assert ("GET", "/users/@me") in paths
    assert ("GET", "/oauth2/applications/@me") in paths
    synced = emu.synced_commands[emu.guild_id]
    assert {c["name"] for c in synced} >= {"echo", "think", "file", "secret", "admin"}
    for command in synced:
        assert validate_command_json(command) == [], command
    assert emu.gateway_log[:2] == ["IDENTIFY", "READY"]
    assert bot.get_guild(emu.guild_id) is not None
    status, content_type, body = await raw(emu, "GET", "/users/@me")
    assert (status, content_type) == (200, "application/json")
    assert body["id"] == str(emu.application_id)


async def test_reply_with_options_and_allowed_mentions(emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("echo", {"text": "hi", "times": 3})
    await record.wait_done(5)
    assert record.text == "hi hi hi"
    assert record.first_response is not None and record.first_response["type"] == 4
    assert record.first_response["data"]["allowed_mentions"] == {"parse": []}
    assert not record.ephemeral
    assert record.ack_latency is not None and 0 <= record.ack_latency < 2.0


async def test_defer_then_followup_replaces_thinking_message(
        emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("think")
    first = await record.wait_first_response()
    assert first["type"] == 5
    thinking_id = record.original["id"] if record.original else None
    await record.wait_done(5)
    assert [m["id"] for m in record.visible_messages] == [thinking_id]
    assert record.followups[0]["embeds"][0]["title"] == "Result"
    assert "forty-two" in record.text and "score: 0.93" in record.text


async def test_edits_of_the_deferred_reply(emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("progress")
    await record.wait_done(5)
    await asyncio.wait_for(_until(lambda: len(record.edits) == 2), 5)
    assert [e["content"] for e in record.edits] == ["50%", "done"]
    [message] = record.visible_messages
    assert message["content"] == "done" and message["edited_timestamp"] is not None
    assert [a["filename"] for a in message["attachments"]] == ["chart.png"]
    assert record.files == [("chart.png", b"PNG")]
    status, _, body = await raw(emu, "GET", f"/webhooks/{emu.application_id}/{record.token}"
                                "/messages/@original")
    assert (status, body["content"]) == (200, "done")
    emu.token_ttl_s = 0.0
    status, _, body = await raw(emu, "GET", f"/webhooks/{emu.application_id}/{record.token}"
                                "/messages/@original")
    assert (status, body["code"]) == (401, 50027)
    assert len(emu.violations) == 1 and "expired" in emu.violations[0]
    emu.violations.clear()


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def test_file_is_recorded_and_served(emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("file")
    await record.wait_done(5)
    assert record.files == [("data.csv", b"col\n1\n")]
    [message] = record.visible_messages
    async with aiohttp.ClientSession() as session:
        async with session.get(message["attachments"][0]["url"]) as resp:
            assert await resp.read() == b"col\n1\n"


async def test_ephemeral_reply(emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("secret")
    await record.wait_done(5)
    assert record.ephemeral
    assert record.text == "only you"


async def test_channel_message_and_ephemeral_defer(emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("announce")
    await record.wait_done(5)
    assert [m["content"] for m in emu.channel_messages] == ["Hello class"]
    assert emu.channel_messages[0]["channel_id"] == str(emu.channel_id)
    assert record.ephemeral and record.text == "posted"


async def test_subcommand_sees_member_permissions(emu: DiscordEmulator, bot: ProbeBot) -> None:
    moderator = await emu.invoke("admin", {"verbose": True}, subcommand="stats",
                                 user_id=emu.moderator_id)
    student = await emu.invoke("admin", subcommand="stats")
    await moderator.wait_done(5)
    await student.wait_done(5)
    assert moderator.text == "manage=True verbose=True"
    assert student.text == "manage=False verbose=False"


async def test_attachment_and_member_options(emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("upload", {"who": emu.moderator_id},
                              attachments={"doc": ("notes.txt", b"abc", "text/plain")})
    await record.wait_done(5)
    assert record.text == "notes.txt: 3 bytes, text/plain, who=instructor"


async def test_invoke_refuses_what_the_discord_client_would(
        emu: DiscordEmulator, bot: ProbeBot) -> None:
    with pytest.raises(ValueError, match="times"):
        await emu.invoke("echo", {"text": "a", "times": 9})
    with pytest.raises(ValueError, match="required"):
        await emu.invoke("echo", {})
    with pytest.raises(LookupError):
        await emu.invoke("nope")


async def test_late_first_response_gets_unknown_interaction(
        emu: DiscordEmulator, bot: ProbeBot) -> None:
    emu.respond_deadline_s = 0.2
    record = await emu.invoke("slow", {"seconds": 0.4})
    exc = await asyncio.wait_for(bot.outcome("slow"), 5)
    assert isinstance(exc, discord.NotFound) and exc.code == 10062
    assert record.first_response is None
    assert len(emu.violations) == 1 and "deadline" in emu.violations[0]
    emu.violations.clear()


async def test_second_first_response_is_rejected(emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("secret")
    await record.wait_done(5)
    status, content_type, body = await raw(
        emu, "POST", f"/interactions/{record.id}/{record.token}/callback",
        json={"type": 4, "data": {"content": "again"}})
    assert (status, content_type, body["code"]) == (400, "application/json", 40060)
    assert emu.violations == [f"POST /interactions/{record.id}/{record.token}/callback: "
                              "second initial response"]
    emu.violations.clear()


async def test_message_limits_are_enforced(emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("long")
    exc = await asyncio.wait_for(bot.outcome("long"), 5)
    assert isinstance(exc, discord.HTTPException) and exc.code == 50035
    assert "In content: Must be 2000 or fewer" in str(exc)
    await record.wait_done(5)
    assert record.text == "shorter"
    assert len(emu.violations) == 1
    emu.violations.clear()


async def test_rate_limits_are_retried(emu: DiscordEmulator, bot: ProbeBot) -> None:
    emu.rate_limit_next(r"^/interactions/\d+/[^/]+/callback$", retry_after=0.2)
    emu.rate_limit_next(r"^/channels/\d+/messages$", retry_after=0.1, global_=True)
    echo = await emu.invoke("echo", {"text": "a"})
    await echo.wait_done(5)
    callbacks = emu.find_requests("POST", r"^/interactions/")
    assert [r.status for r in callbacks] == [429, 200]
    assert callbacks[1].time - callbacks[0].time >= 0.2
    announce = await emu.invoke("announce")
    await announce.wait_done(5)
    posts = emu.find_requests("POST", r"^/channels/")
    assert [r.status for r in posts] == [429, 200]
    assert [m["content"] for m in emu.channel_messages] == ["Hello class"]


async def test_slow_discord_still_serves(emu: DiscordEmulator, bot: ProbeBot) -> None:
    emu.set_response_delay(r"/callback$", 0.3)
    record = await emu.invoke("echo", {"text": "slowly"})
    await record.wait_done(5)
    answered_after = time.monotonic() - record.dispatched_at
    assert record.text == "slowly"
    assert answered_after >= 0.3
    # The deadline is judged on arrival, before Discord's own slowness.
    assert record.ack_latency is not None and record.ack_latency <= answered_after - 0.25


async def test_reconnect_resumes_and_keeps_serving(emu: DiscordEmulator, bot: ProbeBot) -> None:
    await emu.send_reconnect()
    await emu.wait_gateway("RESUMED")
    record = await emu.invoke("echo", {"text": "back"})
    await record.wait_done(5)
    assert record.text == "back"
    assert emu.gateway_log.count("IDENTIFY") == 1


async def test_resumable_invalid_session_resumes(emu: DiscordEmulator, bot: ProbeBot) -> None:
    await emu.invalidate_session(resumable=True)
    await emu.wait_gateway("RESUMED")
    record = await emu.invoke("echo", {"text": "same session"})
    await record.wait_done(5)
    assert record.text == "same session"


async def test_dropped_connection_replays_missed_events(
        emu: DiscordEmulator, bot: ProbeBot) -> None:
    await emu.drop_connection()
    record = await emu.invoke("echo", {"text": "buffered"})  # sent while the bot is away
    await emu.wait_gateway("RESUMED")
    await record.wait_done(5)
    assert record.text == "buffered"


async def test_invalid_session_reidentifies(emu: DiscordEmulator, bot: ProbeBot) -> None:
    await emu.invalidate_session(resumable=False)
    await emu.wait_ready()
    record = await emu.invoke("echo", {"text": "fresh"})
    await record.wait_done(5)
    assert record.text == "fresh"
    assert emu.gateway_log.count("IDENTIFY") == 2


async def test_autosharded_bot_uses_gateway_bot(emu: DiscordEmulator) -> None:
    intents = discord.Intents.none()
    intents.guilds = True
    client = commands.AutoShardedBot(command_prefix="!", intents=intents, guild_ready_timeout=0.05)
    await client.login(emu.token)
    runner = asyncio.create_task(client.connect())
    try:
        await asyncio.wait_for(client.wait_until_ready(), 5)
        assert emu.find_requests("GET", r"^/gateway/bot$")
        assert client.get_guild(emu.guild_id) is not None
    finally:
        await client.close()
        await asyncio.wait_for(runner, 5)
    assert emu.unhandled == []


async def test_unknown_routes_are_reported(emu: DiscordEmulator) -> None:
    status, content_type, body = await raw(emu, "GET", "/guilds/1/bans")
    assert (status, content_type) == (404, "application/json")
    assert emu.unhandled == ["GET /guilds/1/bans"]


async def test_sync_rejects_invalid_commands(emu: DiscordEmulator) -> None:
    bad = [{"name": "Bad Name", "description": "x", "type": 1}]
    status, _, body = await raw(emu, "PUT", f"/applications/{emu.application_id}/commands",
                                json=bad)
    assert (status, body["code"]) == (400, 50035)
    assert emu.synced_commands == {}
    assert any("lowercase" in v for v in emu.violations)


async def test_wrong_token_fails_login(emu: DiscordEmulator) -> None:
    client = discord.Client(intents=discord.Intents.none())
    try:
        with pytest.raises(discord.LoginFailure):
            await client.login("wrong")
    finally:
        await client.close()


def test_validate_command_json_rules() -> None:
    def opt(name: str, required: bool = False, **extra: Any) -> dict[str, Any]:
        return {"type": 3, "name": name, "description": "d", "required": required, **extra}

    good = {"name": "ask", "description": "Ask", "type": 1, "options": [opt("q", True), opt("k")]}
    assert validate_command_json(good) == []
    cases = {
        "lowercase": {**good, "name": "Ask"},
        "description must be 1-100": {**good, "description": "x" * 101},
        "before optional": {**good, "options": [opt("k"), opt("q", True)]},
        "26 options": {**good, "options": [opt(f"o{i}") for i in range(26)]},
        "26 choices": {**good, "options": [
            opt("c", choices=[{"name": str(i), "value": str(i)} for i in range(26)])]},
        "max 4000": {**good, "options": [opt(f"o{i}", description="d" * 100, choices=[
            {"name": "n" * 100, "value": "v" * 100} for _ in range(25)]) for i in range(2)]},
        "mixed": {**good, "options": [opt("q"), {"type": 1, "name": "s", "description": "d"}]},
    }
    for expected, command in cases.items():
        problems = validate_command_json(command)
        assert any(expected in p for p in problems), (expected, problems)


@pytest.mark.skipif(not SPEC_PATH.is_file(), reason=NO_SPEC)
def test_validate_command_json_uses_the_spec() -> None:
    command = {"name": "ask", "description": "Ask", "type": 1,
               "options": [{"type": 3, "name": "q", "description": "d", "max_length": 7000}]}
    problems = validate_command_json(command)
    assert problems and all("spec:" in p for p in problems), problems
    assert validate_command_json({**command, "options": [{**command["options"][0],
                                                          "max_length": 100}]}) == []


def test_validate_message_limits() -> None:
    embed = {"description": "d" * 4097, "fields": [{"name": "n", "value": "v" * 1025}] * 26}
    problems = validate_message({"content": "x" * 2001, "embeds": [embed] * 11}, n_files=11)
    fields = {p.split(":")[0] for p in problems}
    assert {"content", "embeds", "embeds.0.description", "embeds.0.fields",
            "embeds.0.fields.0.value", "attachments"} <= fields
    assert validate_message({"content": "ok", "embeds": [{"title": "t"}]}) == []
    assert message_is_empty({"content": "  "}) and not message_is_empty({}, n_files=1)


# ----- components, modals, autocomplete and context menus


def _violation(emu: DiscordEmulator, text: str) -> None:
    """Exactly one recorded violation, mentioning `text`; cleared for the fixture's check."""
    assert len(emu.violations) == 1 and text in emu.violations[0], emu.violations
    emu.violations.clear()


async def test_message_context_menu_sees_the_message(emu: DiscordEmulator, bot: ProbeBot) -> None:
    message = emu.add_message(content="Paris is the capital")
    assert emu.message(message["id"]) is message
    status, _, body = await raw(emu, "GET",
                                f"/channels/{message['channel_id']}/messages/{message['id']}")
    assert (status, body["content"], body["author"]["id"]) == (
        200, "Paris is the capital", str(emu.student_id))
    record = await emu.invoke_message_command("Count words", message, user_id=emu.moderator_id)
    await record.wait_done(5)
    assert record.text == "4 words by student" and record.ephemeral
    data = record.payload["data"]
    assert (data["type"], data["target_id"]) == (3, message["id"])
    assert data["resolved"]["messages"][message["id"]]["content"] == "Paris is the capital"
    with pytest.raises(LookupError):
        await emu.invoke_message_command("echo", message)  # a slash command, not a menu
    with pytest.raises(LookupError):
        await emu.invoke("Count words")


async def test_button_click_updates_the_message_in_place(
        emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("vote")
    await record.wait_done(5)
    assert [(c["label"], c["custom_id"]) for c in record.components] == [
        ("Up", "vote:up"), ("Close", "vote:close")]
    message = record.message
    assert message is not None
    for expected in ("votes: 1", "votes: 2"):
        click = await emu.click(message, "vote:up")
        await click.wait_done(5)
        assert click.first_response is not None and click.first_response["type"] == 7
        assert click.message is not None and click.message["id"] == message["id"]
        assert emu.message(message["id"])["content"] == expected
    assert click.payload["data"] == {"custom_id": "vote:up", "component_type": 2}
    assert click.payload["message"]["content"] == "votes: 1"  # what the user clicked on
    close = await emu.click(message["id"], "vote:close")
    await close.wait_done(5)
    assert emu.message(message["id"])["content"] == "closed at 2"
    assert all(c["disabled"] for c in close.components)
    with pytest.raises(ValueError, match="disabled"):
        await emu.click(message, "vote:up")
    with pytest.raises(ValueError, match="no component"):
        await emu.click(message, "vote:down")


async def test_ephemeral_buttons_belong_to_their_viewer(
        emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("vote", {"private": True}, user_id=emu.moderator_id)
    await record.wait_done(5)
    assert record.message is not None
    with pytest.raises(ValueError, match="ephemeral"):
        await emu.click(record.message, "vote:up", user_id=emu.student_id)
    click = await emu.click(record.message, "vote:up")  # the viewer, by default
    await click.wait_done(5)
    assert click.user_id == emu.moderator_id and click.text == "votes: 1"


async def test_dynamic_item_defer_update_then_edit_and_follow_up(
        emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("rate")
    await record.wait_done(5)
    assert record.message is not None
    click = await emu.click(record.message, "rate:5")
    first = await click.wait_first_response()
    assert first["type"] == 6
    await click.wait_done(5)
    await asyncio.wait_for(_until(lambda: len(click.followup_messages) == 1), 5)
    rated = emu.message(record.message["id"])
    assert (rated["content"], rated["components"]) == ("rated 5", [])
    assert record.text == "rated 5"  # the same message, seen from the command's record
    thanks = click.followup_messages[0]
    assert thanks["content"] == "thanks for 5" and thanks["id"] != rated["id"]


async def test_clicks_keep_the_deadline_and_the_single_acknowledgement(
        emu: DiscordEmulator, bot: ProbeBot, caplog: pytest.LogCaptureFixture) -> None:
    record = await emu.invoke("vote")
    await record.wait_done(5)
    assert record.message is not None
    click = await emu.click(record.message, "vote:up")
    await click.wait_done(5)
    status, _, body = await raw(emu, "POST", f"/interactions/{click.id}/{click.token}/callback",
                                json={"type": 6})
    assert (status, body["code"]) == (400, 40060)
    _violation(emu, "second initial response")
    emu.respond_deadline_s = 0.0
    late = await emu.click(record.message, "vote:up")
    await asyncio.wait_for(_until(lambda: bool(late.errors)), 5)
    assert late.errors[0]["code"] == 10062 and late.first_response is None
    assert emu.message(record.message["id"])["content"] == "votes: 1"  # the late edit is lost
    _violation(emu, "deadline")
    await asyncio.wait_for(_until(lambda: any(
        "Ignoring exception in view" in r.getMessage() for r in caplog.records)), 5)
    caplog.clear()  # discord.py logs the refused edit; that is the point here


async def test_component_message_edited_through_the_channel(
        emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("poll")
    await record.wait_done(5)
    assert record.message is not None
    click = await emu.click(record.message, "poll:close")
    await click.wait_first_response()
    path = f"/channels/{emu.channel_id}/messages/{record.message['id']}"
    await asyncio.wait_for(_until(lambda: bool(emu.find_requests("PATCH", path))), 5)
    assert emu.message(record.message["id"])["content"] == "poll closed"
    assert record.components == []
    message = emu.add_message(content="a student's words")
    status, _, body = await raw(emu, "PATCH", f"/channels/{emu.channel_id}/messages/"
                                f"{message['id']}", json={"content": "rewritten"})
    assert (status, body["code"]) == (403, 50005)
    _violation(emu, "another user's message")
    status, _, _ = await raw(emu, "DELETE", path)
    assert status == 204 and record.message is None
    with pytest.raises(KeyError):
        emu.message(message["id"] + "0")


async def test_select_menu(emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("flavour")
    await record.wait_done(5)
    assert record.message is not None
    with pytest.raises(ValueError, match="between 1 and 2"):
        await emu.select(record.message, "flavour", ["apple", "banana", "cherry"])
    with pytest.raises(ValueError, match="options"):
        await emu.select(record.message, "flavour", ["kiwi"])
    picked = await emu.select(record.message, "flavour", ["apple", "cherry"])
    await picked.wait_done(5)
    assert emu.message(record.message["id"])["content"] == "apple + cherry"


async def test_modal_from_a_command(emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("feedback")
    first = await record.wait_first_response()
    assert first["type"] == 9 and record.modal is not None
    assert record.modal["title"] == "Feedback" and record.message is None
    assert [c["type"] for c in record.modal["components"]] == [1, 1]  # classic rows
    for values, error in (({"comment": "x" * 51}, "length 51"), ({}, "required"),
                          ({"comment": "ok", "phone": "1"}, "no fields")):
        with pytest.raises(ValueError, match=error):
            await emu.submit_modal(record, values)
    with pytest.raises(ValueError, match="shown to"):
        await emu.submit_modal(record, {"comment": "ok"}, user_id=emu.moderator_id)
    submitted = await emu.submit_modal(record, {"comment": "nice"})
    await submitted.wait_done(5)
    assert submitted.text == "got 'nice' from anon" and submitted.ephemeral
    assert submitted.payload["data"]["components"][1] == {"type": 1, "components": [
        {"type": 4, "custom_id": "email", "value": ""}]}
    with pytest.raises(ValueError, match="already submitted"):
        await emu.submit_modal(record, {"comment": "again"})


async def test_modal_from_a_button_updates_the_buttons_message(
        emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("askbox")
    await record.wait_done(5)
    assert record.message is not None
    click = await emu.click(record.message, "ask:open")
    await click.wait_first_response()
    assert click.modal is not None and click.modal["components"][0]["type"] == 18  # a label
    submitted = await emu.submit_modal(click, {"Question": "Why is the sky blue?"})  # label
    await submitted.wait_done(5)
    assert submitted.payload["message"]["id"] == record.message["id"]
    assert submitted.payload["data"]["components"][0]["component"]["value"] == (
        "Why is the sky blue?")
    assert emu.message(record.message["id"])["content"] == "Q: Why is the sky blue?"
    assert submitted.message is not None and submitted.message["id"] == record.message["id"]


async def test_autocomplete_returns_the_bots_choices(emu: DiscordEmulator, bot: ProbeBot) -> None:
    choices = await emu.autocomplete("pick", {"fruit": "ap"}, focused="fruit")
    assert choices == [{"name": "apple", "value": "apple"}, {"name": "apricot", "value": "apricot"}]
    record = emu.interactions[-1]
    assert record.payload["type"] == 4 and record.first_response is not None
    assert record.payload["data"]["options"] == [
        {"name": "fruit", "type": 3, "value": "ap", "focused": True}]
    assert len(await emu.autocomplete("pick", {"count": 2}, focused="fruit")) == len(FRUITS)
    with pytest.raises(ValueError, match="no autocomplete"):
        await emu.autocomplete("pick", {"count": "1"}, focused="count")


# ----- the rules for components, modals, autocomplete and context menus, end to end


async def test_custom_id_over_100_characters_is_refused(
        emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("badbutton")
    exc = await asyncio.wait_for(bot.outcome("badbutton"), 5)
    assert isinstance(exc, discord.HTTPException) and exc.code == 50035
    await record.wait_done(5)
    assert record.text == "no button"
    _violation(emu, "custom_id: Must be between 1 and 100")


async def test_modal_title_over_45_characters_is_refused(
        emu: DiscordEmulator, bot: ProbeBot) -> None:
    record = await emu.invoke("badmodal")
    exc = await asyncio.wait_for(bot.outcome("badmodal"), 5)
    assert isinstance(exc, discord.HTTPException) and exc.code == 50035
    await record.wait_done(5)
    assert record.modal is None and record.text == "no modal"
    _violation(emu, "data.title")


async def test_26_autocomplete_choices_are_refused(emu: DiscordEmulator, bot: ProbeBot) -> None:
    assert await emu.autocomplete("many", {"word": "a"}, focused="word") == []
    exc = await asyncio.wait_for(bot.outcome("too_many"), 5)
    assert isinstance(exc, discord.HTTPException) and exc.code == 50035
    _violation(emu, "data.choices: Must be 25 or fewer")


async def test_six_action_rows_are_refused(emu: DiscordEmulator, bot: ProbeBot) -> None:
    row = {"type": 1, "components": [{"type": 2, "style": 1, "label": "b", "custom_id": "b"}]}
    rows = [{**row, "components": [{**row["components"][0], "custom_id": f"b{i}"}]}
            for i in range(6)]
    status, _, body = await raw(emu, "POST", f"/channels/{emu.channel_id}/messages",
                                json={"content": "rows", "components": rows})
    assert (status, body["code"]) == (400, 50035)
    _violation(emu, "components: Must be 5 or fewer")
    status, _, _ = await raw(emu, "POST", f"/channels/{emu.channel_id}/messages",
                             json={"content": "rows", "components": rows[:5]})
    assert status == 200


async def test_six_message_commands_are_refused(emu: DiscordEmulator) -> None:
    menus = [{"name": f"Menu {i}", "type": 3} for i in range(6)]
    path = f"/applications/{emu.application_id}/guilds/{emu.guild_id}/commands"
    status, _, body = await raw(emu, "PUT", path, json=menus)
    assert (status, body["code"]) == (400, 50035)
    _violation(emu, "more than 5 message commands")
    status, _, body = await raw(emu, "PUT", path, json=menus[:5] + [
        {"name": "Menu 0", "type": 2}, {"name": "ask", "description": "Ask", "type": 1}])
    assert status == 200, body


async def test_callback_types_must_fit_the_interaction(emu: DiscordEmulator, bot: ProbeBot) -> None:
    emu.respond_deadline_s = 0.3
    record = await emu.invoke("slow", {"seconds": 0.6})  # answers too late: room to probe
    url = f"/interactions/{record.id}/{record.token}/callback"
    status, _, body = await raw(emu, "POST", url, json={"type": 7, "data": {"content": "x"}})
    assert (status, body["code"]) == (400, 50035)
    _violation(emu, "not valid for interaction type 2")
    await asyncio.wait_for(bot.outcome("slow"), 5)
    emu.violations.clear()  # the deadline, which /slow breaks on purpose


def test_validate_component_rules() -> None:
    def button(custom_id: str, label: str = "b") -> dict[str, Any]:
        return {"type": 2, "style": 1, "label": label, "custom_id": custom_id}

    def select(custom_id: str) -> dict[str, Any]:
        return {"type": 3, "custom_id": custom_id, "options": [{"label": "a", "value": "a"}]}

    good = [{"type": 1, "components": [button("a"), button("b")]},
            {"type": 1, "components": [select("c")]}]
    assert validate_components(good) == []
    cases = {
        "custom_id: Must be between 1 and 100": [{"type": 1, "components": [button("x" * 101)]}],
        "cannot be duplicated": [{"type": 1, "components": [button("a"), button("a")]}],
        "components: Must be 5 or fewer": [{"type": 1, "components": [button(f"{i}")]}
                                           for i in range(6)],
        "components.0.components: Must be between 1 and 5": [
            {"type": 1, "components": [button(f"{i}") for i in range(6)]}],
        "select menu fills its whole row": [{"type": 1, "components": [select("s"),
                                                                       button("b")]}],
        "label: Must be 80 or fewer": [{"type": 1, "components": [button("a", "l" * 81)]}],
        "must be action rows": [button("a")],
    }
    for expected, components in cases.items():
        problems = validate_components(components)
        assert any(expected in p for p in problems), (expected, problems)
    six_rows = cases["components: Must be 5 or fewer"]
    assert validate_components(six_rows, components_v2=True) == []  # v2 lays out up to 40
    assert validate_message({"content": "x", "components": cases["must be action rows"]})


def test_validate_modal_and_autocomplete_rules() -> None:
    def text(custom_id: str, **extra: Any) -> dict[str, Any]:
        return {"type": 4, "custom_id": custom_id, "style": 1, "label": "L", **extra}

    good = {"title": "Ask", "custom_id": "m", "components": [
        {"type": 1, "components": [text("q", max_length=4000)]},
        {"type": 18, "label": "Why", "component": {**text("w"), "label": None}}]}
    good["components"][1]["component"].pop("label")
    assert validate_modal(good) == []
    cases = {
        "data.title": {**good, "title": "t" * 46},
        "data.components: Must be between 1 and 5": {
            **good, "components": [{"type": 1, "components": [text(f"{i}")]} for i in range(6)]},
        "label: Must be between 1 and 45": {**good, "components": [
            {"type": 1, "components": [text("q", label="l" * 46)]}]},
        "max_length: Must be between 1 and 4000": {**good, "components": [
            {"type": 1, "components": [text("q", max_length=4001)]}]},
        "placeholder: Must be between 0 and 100": {**good, "components": [
            {"type": 1, "components": [text("q", placeholder="p" * 101)]}]},
        "value: Must be between 0 and 4000": {**good, "components": [
            {"type": 1, "components": [text("q", value="v" * 4001)]}]},
        "custom_id: Must be between 1 and 100": {**good, "custom_id": "m" * 101},
    }
    for expected, modal in cases.items():
        problems = validate_modal(modal)
        assert any(expected in p for p in problems), (expected, problems)
    assert validate_autocomplete({"choices": [{"name": "n", "value": "v"}] * 25}) == []
    for expected, choice in (
            ("name: Must be between 1 and 100", {"name": "", "value": "v"}),
            ("value: Must be between 0 and 100", {"name": "n", "value": "v" * 101})):
        assert any(expected in p for p in validate_autocomplete({"choices": [choice]}))
    assert validate_autocomplete({"choices": [{"name": "n", "value": 10 ** 9}]}) == []


def test_context_menu_names_follow_their_own_rules() -> None:
    assert validate_command_json({"name": "Explain This", "type": 3}) == []
    assert validate_command_json({"name": "Who Is", "type": 2}) == []
    assert any("1-32" in p for p in validate_command_json({"name": "M" * 33, "type": 3}))
    assert any("lowercase" in p for p in validate_command_json(
        {"name": "Explain This", "description": "d", "type": 1}))


SUBPROCESS_BOT = """
import discord, discord.http

client = discord.Client(intents=discord.Intents.none(), guild_ready_timeout=0.05)

@client.event
async def on_ready():
    print(discord.http.Route.BASE, client.user.id, flush=True)
    await client.close()

client.run("test-token", log_handler=None)
"""


@pytest.mark.slow
async def test_subprocess_bot_reaches_the_emulator(emu: DiscordEmulator, tmp_path: Path) -> None:
    # Only env() points the child at the emulator: patch_discord() covers this process alone.
    env = {**os.environ, **emu.env()}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SUBPROCESS_BOT, env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    assert stdout.decode().split() == [emu.api_url, str(emu.application_id)]
    assert emu.gateway_log[:2] == ["IDENTIFY", "READY"]
    assert emu.unhandled == []
