"""The query log, moderator rules, instructor review and privacy, through the loopback Discord.

Everything goes the way a user's click would: the emulator dispatches the slash command, the
real bot (real cogs, policy, SQLite) answers, and the test reads what the user saw and what the
database holds. Rows are recorded right after the answer is sent, so tests wait for rows
instead of racing them.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import time
from datetime import datetime, timedelta, timezone

from core.storage.querylog import CSV_COLUMNS, QueryRecord, unescape_csv_cell
from tests.bot_harness import Harness, bot_config, running_bot
from tests.discord_emulator import MANAGE_GUILD, DiscordEmulator, InteractionRecord

NO_COOLDOWN = {"default_cooldown_uses": 0}


async def wait_rows(h: Harness, count: int, timeout: float = 15) -> list:
    deadline = time.monotonic() + timeout
    while len(rows := await h.rows()) < count:
        assert time.monotonic() < deadline, f"{len(rows)} rows, expected {count}"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # a row too many would show up now
    rows = await h.rows()
    assert len(rows) == count, [(r["command"], r["status"]) for r in rows]
    return rows


async def staff(h: Harness, name: str, sub: str, options: dict | None = None, *,
                user_id: int | None = None, **kwargs) -> InteractionRecord:
    """A moderator (or `user_id`) runs /name sub; staff answers are always ephemeral."""
    record = await h.run(name, options, subcommand=sub, user_id=user_id or h.emu.moderator_id,
                         **kwargs)
    assert record.ephemeral, record.text
    return record


async def refused(h: Harness, name: str, options: dict | None = None, **kwargs) -> str:
    record = await h.run(name, options, **kwargs)
    assert record.ephemeral and record.first_response["type"] == 4, record.text
    return record.text


async def answered(h: Harness, name: str, options: dict | None = None, **kwargs) -> str:
    record = await h.run(name, options, **kwargs)
    assert not record.ephemeral and record.first_response["type"] == 5, record.text
    return record.text


# --------------------------------------------------------------------------- one row per outcome


async def test_every_outcome_logs_exactly_one_row(tiny_config, tmp_path, caplog):
    # queue_size 1 and a 300 ms batching window: a burst overflows the queue.
    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN,
                        engine={"queue_size": 1, "max_wait_ms": 300.0})
    async with running_bot(config, caplog, check_clean=False) as h:
        emu = h.emu
        assert "tokens" in await answered(h, "tokens", {"text": "hello world"})
        assert "[MASK]" in await refused(h, "mask", {"text": "no mask token here"})
        await staff(h, "config", "deny", {"command": "tokens"})
        assert "turned off" in await refused(h, "tokens", {"text": "denied"})
        await staff(h, "config", "clear", {"command": "tokens"})
        rows = await wait_rows(h, 5)
        assert [(r["command"], r["status"]) for r in rows] == [
            ("tokens", "ok"), ("mask", "user_error"), ("config deny", "ok"),
            ("tokens", "refused"), ("config clear", "ok")]
        assert rows[1]["error"] == "invalid_input" and rows[3]["error"] == "refused"

        burst = [await emu.invoke("mask", {"text": f"Burst {i} is [MASK]."}) for i in range(6)]
        await asyncio.gather(*(r.wait_done() for r in burst))
        busy = [r for r in burst if "busy" in r.text]
        assert busy and all(r.ephemeral for r in busy)
        rows = (await wait_rows(h, 11))[5:]
        statuses = sorted(r["status"] for r in rows)
        assert statuses == sorted(["overloaded"] * len(busy) + ["ok"] * (6 - len(busy)))
        assert sorted(r["input_text"] for r in rows) == [f"Burst {i} is [MASK]." for i in range(6)]

        # Failed: the acknowledgement arrives after Discord's deadline (a stalled bot).
        emu.respond_deadline_s = 0.0
        late = await emu.invoke("tokens", {"text": "too late"})
        row = (await wait_rows(h, 12))[-1]
        emu.respond_deadline_s = 3.0
        assert (row["status"], row["error"], row["input_text"]) == (
            "failed", "NotFound", "too late")
        assert late.visible_messages == [] and late.errors
        # The bot keeps serving (another model's lane: the abandoned request above holds the
        # only queue slot of its lane until its 300 ms batching window ends).
        assert "BPE" in await answered(h, "tokens", {"text": "fine again", "model": "bpe"})
        await wait_rows(h, 13)
    assert emu.unhandled == []
    assert emu.violations and all("first response" in v for v in emu.violations)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["/tokens failed"]


async def test_200_concurrent_commands_make_200_rows(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN, engine={"queue_size": 256})
    async with running_bot(config, caplog) as h:
        commits_before = h.services.db.commit_count
        records = [await h.emu.invoke("tokens", {"text": f"concurrent {i}"}) for i in range(200)]
        await asyncio.gather(*(r.wait_done(timeout=60) for r in records))
        assert all("tokens" in r.text and not r.ephemeral for r in records)
        rows = await wait_rows(h, 200)
        assert sorted(r["input_text"] for r in rows) == sorted(f"concurrent {i}"
                                                                for i in range(200))
        assert {r["status"] for r in rows} == {"ok"}
        # Group commit: rows that arrive together share a commit.
        assert h.services.db.commit_count - commits_before < 200


# --------------------------------------------------------------------------- moderator rules


async def test_rules_precedence_pause_and_moderator_only(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN)
    async with DiscordEmulator() as emu:
        guild = emu.guild
        quiet, lab = guild.add_channel("quiet"), guild.add_channel("lab")
        ta_role = guild.add_role("TA")  # no permissions at all
        outsider = guild.add_member("outsider")  # only @everyone
        ta = guild.add_member("ta", roles=["TA", "Student"])
        async with running_bot(config, caplog, emulator=emu) as h:
            student = emu.student_id
            tokens = {"text": "rules"}

            # A student denied in one channel and allowed in another.
            await staff(h, "config", "deny", {"command": "*", "channel": quiet})
            assert "turned off in <#" in await refused(h, "tokens", tokens, channel_id=quiet)
            assert "tokens" in await answered(h, "tokens", tokens, channel_id=emu.channel_id)
            # Within a level, the exact command beats "*".
            await staff(h, "config", "allow", {"command": "tokens", "channel": quiet})
            assert "tokens" in await answered(h, "tokens", tokens, channel_id=quiet)
            assert "turned off" in await refused(h, "mask", {"text": "A [MASK]."},
                                                 channel_id=quiet)

            # Server-wide deny; a role allow beats it; a channel allow beats it too.
            await staff(h, "config", "deny", {"command": "tokens"})
            await staff(h, "config", "allow", {"command": "tokens", "role": emu.student_role_id})
            assert "tokens" in await answered(h, "tokens", tokens, user_id=student)
            assert "in this server" in await refused(h, "tokens", tokens, user_id=outsider)
            await staff(h, "config", "allow", {"command": "tokens", "channel": lab})
            assert "tokens" in await answered(h, "tokens", tokens, user_id=outsider,
                                              channel_id=lab)
            # A channel deny beats the role allow.
            await staff(h, "config", "deny", {"command": "tokens", "channel": lab})
            assert "turned off in <#" in await refused(h, "tokens", tokens, user_id=student,
                                                       channel_id=lab)
            why = await staff(h, "config", "why", {"command": "tokens", "user": student,
                                                   "channel": lab})
            assert "refused" in why.text and "channel rule" in why.text

            # The pause switch: students stop, staff do not, and it comes back.
            await staff(h, "config", "pause", {"paused": True})
            assert "paused" in await refused(h, "tokens", tokens, user_id=student)
            # (Rules still apply to staff: #quiet allows /tokens, the server denies it.)
            assert "tokens" in await answered(h, "tokens", tokens, user_id=emu.moderator_id,
                                              channel_id=quiet)
            await staff(h, "config", "pause", {"paused": False})
            assert "tokens" in await answered(h, "tokens", tokens, user_id=student)

            # Moderator-only: the emulator does not apply Discord's default_member_permissions
            # gate, as if a server admin had removed it; the bot's own check must refuse.
            text = await refused(h, "config", {"paused": True}, subcommand="pause",
                                 user_id=student)
            assert "Only moderators" in text
            assert (await h.services.settings.get(emu.guild_id)).paused is False
            # An instructor role grants /logs, never /config.
            await staff(h, "config", "instructor", {"role": ta_role})
            assert "Recent queries" in (await staff(h, "logs", "recent", user_id=ta)).text
            assert "Only moderators" in await refused(
                h, "config", {"command": "*"}, subcommand="deny", user_id=ta)
            assert "Only instructors" in await refused(h, "logs", subcommand="recent",
                                                       user_id=student)
            assert guild.permissions_of(ta) & MANAGE_GUILD == 0

            rows = await wait_rows(h, 25)
            refusals = [r for r in rows if r["status"] == "refused"]
            assert [(r["command"], r["user_id"]) for r in refusals] == [
                ("tokens", student), ("mask", student), ("tokens", outsider),
                ("tokens", student), ("config pause", student),
                ("config deny", ta), ("logs recent", student)]
            paused = [r for r in rows if r["status"] == "paused"]
            assert [(r["command"], r["user_id"], r["error"]) for r in paused] == [
                ("tokens", student, "paused")]
            assert all(r["status"] == "ok" for r in rows if r not in refusals + paused)


# --------------------------------------------------------------------------- review and privacy


TRICKY = ['=HYPERLINK("http://x")', '-1, "quoted"\nsecond line', "plain text", "'already"]


def _csv_rows(data: bytes) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    return list(reader)


def _as_db(cell: str, column: str, value: object) -> object:
    """A CSV cell read back as the value the database holds."""
    if value is None:
        assert cell == ""
        return None
    if isinstance(value, float):
        return float(cell)
    if isinstance(value, int):
        return int(unescape_csv_cell(cell))
    return unescape_csv_cell(cell)


async def test_guild_isolation_export_mydata_and_retention(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN)
    async with DiscordEmulator() as emu:
        other = emu.add_guild("Other class")  # before the bot connects: announced at READY
        other_channel = other.add_channel("general")
        other.add_role("Teacher", MANAGE_GUILD)
        other_teacher = other.add_member("teacher", roles=["Teacher"])
        # The same student is in both servers.
        other.add_member("student", roles=[], user_id=emu.student_id)
        classmate = emu.guild.add_member("classmate", roles=["Student"])
        async with running_bot(config, caplog, emulator=emu) as h:
            import discord

            h.bot.tree.copy_global_to(guild=discord.Object(other.id))
            await h.bot.tree.sync(guild=discord.Object(other.id))
            student, a, b = emu.student_id, emu.guild_id, other.id

            for text in TRICKY:
                await answered(h, "tokens", {"text": text})
            await answered(h, "tokens", {"text": "classmate text"}, user_id=classmate)
            await answered(h, "tokens", {"text": "secret of B"}, guild_id=b,
                           channel_id=other_channel)
            rows = await wait_rows(h, 6)

            # Each server's instructors see their own rows only.
            seen_a = (await staff(h, "logs", "recent", {"since": "all"})).text
            seen_b = (await staff(h, "logs", "recent", {"since": "all"}, guild_id=b,
                                  user_id=other_teacher)).text
            assert "plain text" in seen_a and "secret of B" not in seen_a
            assert "secret of B" in seen_b and "plain text" not in seen_b
            stats_b = (await staff(h, "logs", "stats", user_id=other_teacher, guild_id=b)).text
            assert "**2** queries" in stats_b  # B's /tokens and B's /logs recent
            rows = await wait_rows(h, 9)

            # The export parses back to exactly this server's rows.
            export = await staff(h, "logs", "export")
            [(name, data)] = export.files
            assert name == f"queries-{a}.csv" and "6 rows." in export.text, export.text
            exported = _csv_rows(data)
            in_a = [r for r in rows if r["guild_id"] == a]
            assert len(exported) == len(in_a) == 6
            by_id = {int(r["id"]): r for r in exported}
            for row in in_a:
                cells = by_id[row["id"]]
                assert {c: _as_db(cells[c], c, row[c]) for c in CSV_COLUMNS} == {
                    c: row[c] for c in CSV_COLUMNS}
            assert {by_id[r["id"]]["input_text"] for r in in_a if r["command"] == "tokens"} >= {
                "'" + TRICKY[0], "'" + TRICKY[1], "plain text", "''already"}

            # /mydata delete erases this student's rows in this server, and nothing else.
            done = await h.run("mydata", {"confirm": True}, subcommand="delete")
            assert done.ephemeral and "4 query-log rows" in done.text
            left = await h.rows()
            assert not [r for r in left if r["user_id"] == student and r["guild_id"] == a]
            assert [r["input_text"] for r in left if r["user_id"] == student] == ["secret of B"]
            assert len(left) == len(rows) + 1 - 4  # + the export's own row
            shown = await h.run("mydata", subcommand="show")
            assert shown.ephemeral and "Nothing is stored about you here" in shown.text

            # Retention: this server keeps 7 days, the other one the default 90.
            await staff(h, "config", "retention", {"days": 7})
            now = datetime.now(timezone.utc)
            querylog = h.services.querylog
            for guild_id, days in ((a, 10), (a, 3), (b, 10), (b, 100)):
                assert await querylog.record(QueryRecord(
                    guild_id=guild_id, channel_id=None, user_id=classmate, command="tokens",
                    options={}, input_text=f"{guild_id}-{days}", status="ok",
                    created_at=now - timedelta(days=days)))
            assert await querylog.purge() == 2
            kept = {r["input_text"] for r in await h.rows()}
            assert {f"{a}-3", f"{b}-10"} <= kept
            assert not {f"{a}-10", f"{b}-100"} & kept
            assert "plain text" not in kept and "classmate text" in kept
            [retention] = [r for r in await h.rows() if r["command"] == "config retention"]
            assert json.loads(retention["options"]) == {"days": 7}


async def test_threads_and_voice_chats_follow_channel_rules(tiny_config, tmp_path, caplog):
    """A thread follows its parent channel's rules unless it has its own; a voice channel's
    text chat and a thread can be named in /config."""
    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN)
    async with DiscordEmulator() as emu:
        guild = emu.guild
        general = guild.add_channel("general")
        thread = guild.add_thread(general, "homework help")
        voice = guild.add_channel("lecture hall", type=2)
        tokens = {"text": "threads"}
        async with running_bot(config, caplog, emulator=emu) as h:
            await staff(h, "config", "deny", {"command": "*", "channel": general})
            assert "turned off" in await refused(h, "tokens", tokens, channel_id=thread)
            # The thread's own rule beats its parent's.
            allowed = await staff(h, "config", "allow", {"command": "tokens", "channel": thread})
            assert "allowed" in allowed.text, allowed.text
            assert "tokens" in await answered(h, "tokens", tokens, channel_id=thread)
            assert "turned off" in await refused(h, "tokens", tokens, channel_id=general)
            # A voice channel's text chat can be named too.
            await staff(h, "config", "deny", {"command": "tokens", "channel": voice})
            assert "turned off" in await refused(h, "tokens", tokens, channel_id=voice)
            why = await staff(h, "config", "why", {"command": "mask", "channel": thread})
            assert "refused" in why.text and f"<#{general}>" in why.text
