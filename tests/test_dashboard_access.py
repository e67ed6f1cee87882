"""The dashboard tried as an attacker would (issue #23): sessions that follow the instructor's
rights, single-use links, moderators ending every session, a failed-attempt limiter that never
refuses valid credentials, crafted parameters, and connections that never finish a request.

The real bot on the loopback Discord hands out the links (`/logs dashboard`); aiohttp's client
and raw sockets play the browser and the attacker.
"""

from __future__ import annotations

import asyncio
import os
import re
import time

import aiohttp
import pytest

from bot.dashboard.app import COOKIE_PREFIX, MAX_FAILURES
from tests.bot_harness import Harness, bot_config, running_bot
from tests.discord_emulator import DiscordEmulator

LINK = re.compile(r"<(http://127\.0\.0\.1:\d+/login\?t=[^>\s]+)>")
#: Ask Discord on every page: the tests do not wait out the default minute.
EVERY_PAGE = {"recheck_rights_s": 0}


def _browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _link(h: Harness, user_id: int, **kwargs) -> str:
    record = await h.run("logs", subcommand="dashboard", user_id=user_id, **kwargs)
    match = LINK.search(record.text)
    assert match, record.text
    return match.group(1)


async def _status(s: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with s.get(url) as r:
        return r.status, await r.text()


# --------------------------------------------------------------------------- rights and epochs


async def test_a_session_lasts_only_as_long_as_the_instructors_rights(tiny_config, tmp_path,
                                                                      caplog):
    config = bot_config(tiny_config, tmp_path, dashboard=EVERY_PAGE)
    async with DiscordEmulator() as emu:
        ta_role = emu.guild.add_role("TA")  # an instructor role without Manage Server
        ta = emu.guild.add_member("ta", roles=["TA"])
        async with running_bot(config, caplog, emulator=emu) as h:
            await h.services.settings.set_instructor_role(emu.guild_id, ta_role)
            g = emu.guild_id
            base = h.services.dashboard.base_url
            pages = f"{base}/g/{g}/queries"

            # An instructor's link opens one session; the same link again is refused, in any
            # browser, with the reason.
            ta_link = await _link(h, ta)
            async with _browser() as ta_browser, _browser() as other:
                assert (await _status(ta_browser, ta_link))[0] == 200
                assert (await _status(ta_browser, pages))[0] == 200
                status, text = await _status(other, ta_link)
                assert status == 403 and "already used" in text
                assert (await _status(other, pages))[0] == 403
                # An instructor is not a moderator: ending sessions is not theirs to do.
                refused = await h.run("logs", subcommand="end-sessions", user_id=ta)
                assert "sessions ended" not in refused.text.lower()
                assert (await _status(ta_browser, pages))[0] == 200

                # The moderator's session, and the instructor losing the role: the next page
                # is refused (and the cookie deleted), the moderator's is not.
                async with _browser() as mod_browser:
                    assert (await _status(mod_browser, await _link(h, emu.moderator_id)))[0] == 200
                    emu.guild.members[ta]["roles"] = []
                    status, text = await _status(ta_browser, pages)
                    assert status == 403 and "no longer an instructor" in text
                    assert not [c for c in ta_browser.cookie_jar
                                if c.key == f"{COOKIE_PREFIX}{g}" and c.value]
                    assert (await _status(mod_browser, pages))[0] == 200

                    # A moderator ends every session and every unused link of the server.
                    unused = await _link(h, emu.moderator_id)
                    ended = await h.run("logs", subcommand="end-sessions",
                                        user_id=emu.moderator_id)
                    assert ended.ephemeral and "has ended" in ended.text
                    status, text = await _status(mod_browser, pages)
                    assert status == 403 and "ended every dashboard session" in text
                    async with _browser() as fresh:
                        assert (await _status(fresh, unused))[0] == 403
                    # A new link works again, until its owner leaves the server.
                    async with _browser() as again:
                        assert (await _status(again, await _link(h, emu.moderator_id)))[0] == 200
                        assert (await _status(again, pages))[0] == 200
                        del emu.guild.members[emu.moderator_id]
                        status, text = await _status(again, pages)
                        assert status == 403 and "no longer an instructor" in text
            rows = await h.rows()
            assert [r["output_summary"] for r in rows if r["command"] == "logs end-sessions"
                    and r["status"] == "ok"] == ["sessions ended"]


async def test_without_discord_to_ask_nobody_is_let_in(tiny_config, tmp_path):
    """Before the bot gives the dashboard its rights check (or with no bot at all), a genuine
    link gets 503, never the data."""
    from bot.compose import DASHBOARD_ONLY, open_services

    async with open_services(bot_config(tiny_config, tmp_path), DASHBOARD_ONLY) as services:
        link = await services.dashboard.link(1, 2)
        async with _browser() as s:
            status, text = await _status(s, link)
            assert status == 503 and "Try again" in text


# --------------------------------------------------------------------------- the limiter


async def test_the_limiter_slows_bad_attempts_only_and_ignores_forged_forwarding(
        tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, dashboard=EVERY_PAGE)
    async with DiscordEmulator() as emu:
        other = emu.add_guild("Other class")
        other.add_channel("general")
        other.add_role("Teacher", 1 << 5)  # Manage Server
        teacher = other.add_member("teacher", roles=["Teacher"])
        async with running_bot(config, caplog, emulator=emu) as h:
            import discord

            h.bot.tree.copy_global_to(guild=discord.Object(other.id))
            await h.bot.tree.sync(guild=discord.Object(other.id))
            base = h.services.dashboard.base_url
            async with _browser() as instructor:
                assert (await _status(instructor, await _link(h, emu.moderator_id)))[0] == 200
                # Bad attempts, each claiming another address: X-Forwarded-For is not trusted
                # (no [dashboard] trusted_proxy), so they all count against this one peer.
                statuses = []
                async with aiohttp.ClientSession() as attacker:
                    for i in range(MAX_FAILURES + 5):
                        async with attacker.get(f"{base}/login?t=1.2.3.4..x{i}", headers={
                                "X-Forwarded-For": f"203.0.113.{i}"}) as r:
                            statuses.append(r.status)
                assert statuses == [403] * MAX_FAILURES + [429] * 5
                # The same address still serves valid credentials: a session cookie, and a
                # fresh link of another server's instructor.
                assert (await _status(instructor, f"{base}/g/{emu.guild_id}/queries"))[0] == 200
                async with _browser() as teacher_browser:
                    link = await _link(h, teacher, guild_id=other.id)
                    assert (await _status(teacher_browser, link))[0] == 200
                    assert (await _status(teacher_browser, f"{base}/g/{other.id}/"))[0] == 200


def test_forwarded_addresses_count_only_from_the_trusted_proxy():
    from aiohttp.test_utils import make_mocked_request

    from bot.dashboard.app import DashboardContext, client_of, make_app
    from bot.dashboard.signing import Signer

    def client(trusted: str | None, peer: str, forwarded: str | None) -> str:
        context = DashboardContext(
            sentiment_report=str, default_cooldown="", log_inputs="none", public_path="",
            secure_cookies=False, link_seconds=60, sessions=None, authorize=None,
            trusted_proxy=trusted)
        app = make_app(None, Signer(b"k" * 32), None, context)
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        request = make_mocked_request("GET", "/login", headers=headers, app=app)
        request = request.clone(remote=peer)
        return client_of(request)

    assert client(None, "127.0.0.1", "203.0.113.9") == "127.0.0.1"
    assert client("127.0.0.1", "127.0.0.1", "198.51.100.1, 203.0.113.9") == "203.0.113.9"
    assert client("10.0.0.0/8", "10.1.2.3", "203.0.113.9") == "203.0.113.9"
    assert client("10.0.0.0/8", "192.0.2.7", "203.0.113.9") == "192.0.2.7"  # not the proxy
    assert client("127.0.0.1", "127.0.0.1", "not an address") == "127.0.0.1"


# --------------------------------------------------------------------------- crafted parameters


async def test_crafted_parameters_answer_400_with_a_line(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path)
    async with running_bot(config, caplog) as h:
        await h.run("tokens", {"text": "one row"})
        g = h.emu.guild_id
        base = f"{h.services.dashboard.base_url}/g/{g}"
        huge = "9" * 20
        probes = {
            "/queries?page=²": "page must be",
            "/queries?user=²": "Student id",
            f"/queries?user={huge}": "Student id",
            "/queries?user=9223372036854775808": "Student id",  # 2**63: past SQLite's integer
            "/students/²": "Student id",
            f"/students/{huge}": "Student id",
            f"/queries.csv?user={huge}": "Student id",
            "/queries.csv?user=²": "Student id",
            f"/queries.json?user={huge}": "Student id",
            "/queries?until=10000-01-01": "until must be a date",
            "/queries?since=2026-02-30": "from must be a date",
        }
        async with _browser() as s:
            assert (await _status(s, await _link(h, h.emu.moderator_id)))[0] == 200
            for path, line in probes.items():
                status, text = await _status(s, base + path)
                assert status == 400 and line in text, (path, status, text[:300])
                assert "Traceback" not in text
            # The last day a date can name is a valid "until" (no end), on the page and the CSV.
            for path in ("/queries?until=9999-12-31", "/queries.csv?until=9999-12-31",
                         "/queries?since=0001-01-01&until=9999-12-31"):
                status, text = await _status(s, base + path)
                assert status == 200 and "one row" in text, (path, status, text[:300])
            # A reader that leaves mid-export (closed tab, cancelled download) is no error.
            from core.storage.querylog import QueryRecord

            for i in range(3000):  # a few MB of export, more than a socket buffer holds
                await h.services.querylog.record(QueryRecord(
                    guild_id=g, channel_id=None, user_id=7, command="tokens", options={},
                    input_text=f"row {i} " + "x" * 1000, status="ok"))
            await h.services.querylog.flush()
            for export in ("queries.csv", "queries.json"):
                for _ in range(3):
                    async with s.get(f"{base}/{export}") as r:
                        assert r.status == 200  # and gone without reading the rows
            await asyncio.sleep(0.2)
            # A cookie that is not ASCII is refused like any forged one.
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as bare:
                async with bare.get(base + "/", headers={
                        "Cookie": f"{COOKIE_PREFIX}{g}=1.2.3.0..²"}) as r:
                    assert r.status == 403
    assert "Error handling request" not in caplog.text  # aiohttp's line for a handler's error


# --------------------------------------------------------------------------- half-sent requests


async def test_connections_that_never_finish_their_headers_are_closed(tiny_config, tmp_path):
    """Slow clients hold no descriptor past the header deadline, and past the cap the oldest
    slow one makes room: a normal request is answered all along."""
    from bot.compose import DASHBOARD_ONLY, open_services

    timeout, cap, slow = 2.0, 40, 120
    config = bot_config(tiny_config, tmp_path, dashboard={"header_timeout_s": timeout,
                                                          "max_connections": cap})
    async with open_services(config, DASHBOARD_ONLY) as services:
        base = services.dashboard.base_url
        host, port = base.removeprefix("http://").split(":")
        fds_before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
        started = time.monotonic()

        async def closed(reader: asyncio.StreamReader) -> float:
            try:
                await asyncio.wait_for(reader.read(), timeout + 5)  # b"" at EOF
            except ConnectionResetError:
                pass
            return time.monotonic() - started

        conns, waits = [], []
        for _ in range(slow):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /g/1/queries HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never ends
            conns.append(writer)
            waits.append(asyncio.create_task(closed(reader)))
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/") as r:
                assert r.status == 200  # served while the slow ones are connected
        await asyncio.sleep(0.2)
        # The cap: long before the deadline, all but `cap` of them were pushed out.
        early = sum(w.done() for w in waits)
        assert time.monotonic() - started < timeout and early >= slow - cap, early
        # The deadline: the rest are closed once it passes.
        times = await asyncio.gather(*waits)
        assert timeout - 0.5 < max(times) < timeout + 3, max(times)
        for writer in conns:
            writer.close()
        await asyncio.sleep(0.05)
        if fds_before:
            assert len(os.listdir("/proc/self/fd")) <= fds_before + 5
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/") as r:
                assert r.status == 200
        print(f"\n{slow} half-sent connections, cap {cap}, deadline {timeout} s: {early} pushed "
              f"out at once, the last closed after {max(times):.2f} s")


@pytest.mark.parametrize("pipelined", [False, True])
async def test_a_kept_alive_connection_is_served_again(tiny_config, tmp_path, pipelined):
    """The deadline restarts with each request on a connection; it never cuts a good one."""
    from bot.compose import DASHBOARD_ONLY, open_services

    config = bot_config(tiny_config, tmp_path, dashboard={"header_timeout_s": 0.5})
    async with open_services(config, DASHBOARD_ONLY) as services:
        host, port = services.dashboard.base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        writer.write(request * 2 if pipelined else request)
        first = await reader.readuntil(b"</html>")
        assert first.startswith(b"HTTP/1.1 200")
        if not pipelined:
            await asyncio.sleep(0.3)
            writer.write(request)
        second = await reader.readuntil(b"</html>")
        assert b"HTTP/1.1 200" in second
        writer.close()


def test_check_config_refuses_a_trusted_proxy_that_is_not_an_address(tiny_models, tmp_path,
                                                                       capsys):
    from bot.cli import EXIT_USER, main
    from tests.conftest import write_tiny_config

    good = write_tiny_config(tmp_path / "good.toml", tiny_models,
                             dashboard={"trusted_proxy": "10.0.0.0/8"})
    assert main(["check-config", str(good)]) == 0
    assert "trusted_proxy = '10.0.0.0/8'" in capsys.readouterr().out
    bad = write_tiny_config(tmp_path / "bad.toml", tiny_models,
                            dashboard={"trusted_proxy": "my-proxy"})
    assert main(["check-config", str(bad)]) == EXIT_USER
    assert "dashboard.trusted_proxy must be an IP address" in capsys.readouterr().err
