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
    SPEC_PATH,
    DiscordEmulator,
    message_is_empty,
    validate_command_json,
    validate_message,
)

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop (deprecated in 3.11) for voice, which we never use.
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    from discord import app_commands
    from discord.ext import commands

log = logging.getLogger(__name__)


class ProbeBot(commands.Bot):
    """A bot with a few representative commands; `outcomes` holds what handlers caught."""

    def __init__(self) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.05)
        self.outcomes: dict[str, asyncio.Future[Any]] = {}
        self._add_commands()

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


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator() as emulator:
        with emulator.patch_discord():
            yield emulator


@pytest.fixture
async def bot(emu: DiscordEmulator, caplog: pytest.LogCaptureFixture) -> AsyncIterator[ProbeBot]:
    caplog.set_level(logging.INFO, logger="discord")
    probe = ProbeBot()
    await probe.login(emu.token)
    runner = asyncio.create_task(probe.connect())
    await emu.wait_ready()
    await asyncio.wait_for(probe.wait_until_ready(), 5)
    probe.tree.copy_global_to(guild=discord.Object(emu.guild_id))
    await probe.tree.sync(guild=discord.Object(emu.guild_id))
    yield probe
    await probe.close()
    await asyncio.wait_for(runner, 5)
    assert emu.unhandled == []
    assert emu.violations == []
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
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


@pytest.mark.skipif(not SPEC_PATH.is_file(), reason="Discord OpenAPI spec not available")
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
