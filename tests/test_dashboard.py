"""The instructor dashboard, end to end: the real bot on the emulated Discord writes rows through
real commands, an instructor asks `/logs dashboard`, and a real Chromium (the OS's, driven by
Playwright) opens the link. HTTP-level attacks (forged and expired links, other servers, rate
limiting, writes) go through aiohttp's client against the same running server.

The browser tests skip where no Chromium is installed (a laptop); CI installs it (.ci/run).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import shutil
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from bot.dashboard.app import COOKIE_PREFIX, MAX_FAILURES, SECURITY_HEADERS, FailureLimiter
from bot.dashboard.signing import SECRET_ENV, Grant, Signer, dashboard_key, new_link_id
from core.storage.dashboard_data import Window
from core.storage.database import Database
from core.storage.querylog import CSV_COLUMNS
from tests.bot_harness import Harness, bot_config, running_bot
from tests.discord_emulator import MANAGE_GUILD, DiscordEmulator

NO_COOLDOWN = {"default_cooldown_uses": 0}
LINK = re.compile(r"<(http://127\.0\.0\.1:\d+/login\?t=[^>\s]+)>")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

try:
    from playwright.async_api import async_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    async_playwright = None

needs_browser = pytest.mark.skipif(
    CHROMIUM is None or async_playwright is None,
    reason="no system Chromium (apt-get install chromium) or no playwright (pip install "
           "playwright): the dashboard's browser tests need both; CI installs them",
)


# --------------------------------------------------------------------------- signing (no I/O)


def forged_variants(token: str) -> list[str]:
    """Tokens an attacker could make from a genuine one without the key; none may verify:
    another guild, user, a later expiry, an older epoch, another link id, a different last
    character of the MAC (always different: the old forgery's "A" was the real one 1 time in
    16), non-ASCII digits and MAC (no exception), and wrong shapes."""
    g, u, e, n, i, mac = token.split(".")
    other_last = "B" if mac.endswith("A") else "A"
    return [f"333.{u}.{e}.{n}.{i}.{mac}", f"{g}.333.{e}.{n}.{i}.{mac}",
            f"{g}.{u}.{int(e) + 9999}.{n}.{i}.{mac}", f"{g}.{u}.{e}.2.{i}.{mac}",
            f"{g}.{u}.{e}.{n}.other.{mac}", f"{g}.{u}.{e}.{n}.{i}.{mac[:-1]}{other_last}",
            f"{g}.{u}.{e}.{n}.{i}.{mac[:-1]}²", f"²{g}.{u}.{e}.{n}.{i}.{mac}",
            f"{g}.{u}.{e}", "", "a.b.c.d.e.f", token + ".x", "1" * 500]


def check_signing_at(signer: Signer, now: datetime) -> Grant:
    grant = Grant(guild_id=111, user_id=222, expires_at=int(now.timestamp()) + 60, epoch=3,
                  link_id="abc_DEF-123")
    token = signer.issue("link", grant)
    assert signer.verify("link", token, now=now) == grant
    # A session cookie is not a link and a link is not a session.
    assert signer.verify("session", token, now=now) is None
    for forged in forged_variants(token):
        assert forged != token
        assert signer.verify("link", forged, now=now) is None, forged
    # Another key does not verify it.
    assert Signer(b"x" * 32).verify("link", token, now=now) is None
    # Expired: refused from the expiry second on.
    assert signer.verify("link", token, now=now + timedelta(seconds=61)) is None
    return grant


def test_signed_tokens_refuse_forgery_expiry_and_the_wrong_purpose():
    check_signing_at(Signer(b"k" * 32), datetime.now(timezone.utc))


def test_a_forged_signature_never_passes_second_by_second():
    """The token changes with the second it is made in (its expiry is part of it). A
    signature's last character carries 4 bits (one of 16 characters), so the old forgery
    ("replace it with A") was the genuine token in 1 second of 16; 200 consecutive seconds
    include such signatures."""
    signer = Signer(b"k" * 32)
    start = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    last_characters = set()
    for second in range(200):
        grant = check_signing_at(signer, start + timedelta(seconds=second))
        last_characters.add(signer.issue("link", grant)[-1])
    assert "A" in last_characters  # the case where the old forgery was the real token


def test_link_ids_are_16_safe_characters_and_a_bad_one_is_refused():
    signer = Signer(b"k" * 32)
    ids = {new_link_id() for _ in range(50)}
    assert len(ids) == 50 and all(re.fullmatch(r"[A-Za-z0-9_-]{16}", i) for i in ids)
    grant = Grant(guild_id=1, user_id=2, expires_at=4_000_000_000, link_id=ids.pop())
    assert signer.verify("link", signer.issue("link", grant)) == grant
    with pytest.raises(ValueError, match=re.escape(
            "a link id is up to 32 characters of [A-Za-z0-9_-]")):
        signer.issue("link", Grant(1, 2, 4_000_000_000, link_id="a.b"))
    for junk in (None, 123, b"1.2.3.4..x"):  # not text: refused, not an exception
        assert signer.verify("link", junk) is None  # type: ignore[arg-type]


def test_a_link_expires_at_exactly_its_expiry_second():
    signer = Signer(b"k" * 32)
    expiry = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    grant = Grant(guild_id=111, user_id=222, expires_at=int(expiry.timestamp()))
    token = signer.issue("session", grant)
    for moment, valid in ((expiry - timedelta(seconds=1), True),
                          (expiry - timedelta(microseconds=1), True),
                          (expiry, False),
                          (expiry + timedelta(microseconds=1), False),
                          (expiry + timedelta(seconds=1), False)):
        assert (signer.verify("session", token, now=moment) == grant) is valid, moment


async def test_the_key_comes_from_the_environment_or_is_kept_in_the_database(tmp_path):
    async with await Database.open(tmp_path / "keys.db") as db:
        secret = "s" * 16  # the shortest accepted
        assert await dashboard_key(db, {SECRET_ENV: f"  {secret}\n"}) == secret.encode()
        for short in ("s" * 15, "  " + "s" * 15 + "  "):
            with pytest.raises(ValueError, match=f"{SECRET_ENV} must be at least 16"):
                await dashboard_key(db, {SECRET_ENV: short})
        assert await db.fetchall("SELECT name FROM secrets") == []  # the environment's wins
        for unset in ({}, {SECRET_ENV: "   "}):
            generated = await dashboard_key(db, unset)
            assert len(generated) == 32 and generated == await dashboard_key(db, {})
        # os.environ is read when no mapping is given.
        os.environ[SECRET_ENV] = secret
        try:
            assert await dashboard_key(db) == secret.encode()
        finally:
            del os.environ[SECRET_ENV]
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Signer(b"k" * 15)
    Signer(b"k" * 16)


def test_failure_limiter_blocks_after_the_limit_and_forgets_after_the_window():
    clock = [0.0]
    limiter = FailureLimiter(max_failures=3, window_s=10, clock=lambda: clock[0])
    for _ in range(3):
        assert not limiter.blocked("a")
        limiter.fail("a")
    assert limiter.blocked("a") and not limiter.blocked("b")
    clock[0] = 10.5
    assert not limiter.blocked("a")


def test_window_buckets_cover_the_range():
    now = datetime(2026, 11, 30, 12, 30, tzinfo=timezone.utc)
    hours = Window.last(timedelta(hours=24), now).buckets()
    assert hours[0] == "2026-11-29T12" and hours[-1] == "2026-11-30T12" and len(hours) == 25
    days = Window.last(timedelta(days=7), now).buckets()
    assert days == [f"2026-11-{d}" for d in range(23, 31)]


# --------------------------------------------------------------------------- the world


async def _wait_rows(h: Harness, count: int, timeout: float = 15) -> list:
    deadline = time.monotonic() + timeout
    while len(rows := await h.rows()) < count:
        assert time.monotonic() < deadline, f"{len(rows)} rows, expected {count}"
        await asyncio.sleep(0.02)
    return rows


async def _answered(h: Harness, name: str, options: dict, **kwargs) -> None:
    record = await h.run(name, options, **kwargs)
    assert record.text, record


async def _link(h: Harness, **kwargs) -> str:
    record = await h.run("logs", subcommand="dashboard", user_id=kwargs.pop(
        "user_id", h.emu.moderator_id), **kwargs)
    assert record.ephemeral, record.text
    match = LINK.search(record.text)
    assert match, record.text
    return match.group(1)


class World:
    """Two servers; the student is in both; rows written through real commands."""

    def __init__(self, emu: DiscordEmulator) -> None:
        self.emu = emu
        self.other = emu.add_guild("Other class")
        self.other_channel = self.other.add_channel("general")
        self.other.add_role("Teacher", MANAGE_GUILD)
        self.other_teacher = self.other.add_member("teacher", roles=["Teacher"])
        self.other.add_member("student", roles=[], user_id=emu.student_id)
        self.classmate = emu.guild.add_member("classmate", roles=["Student"])

    async def fill(self, h: Harness) -> None:
        import discord

        h.bot.tree.copy_global_to(guild=discord.Object(self.other.id))
        await h.bot.tree.sync(guild=discord.Object(self.other.id))
        for text in ("alpha words", "beta words", "gamma <b>bold</b> & co"):
            await _answered(h, "tokens", {"text": text})
        await _answered(h, "tokens", {"text": "classmate text"}, user_id=self.classmate)
        await _answered(h, "mask", {"text": "The cat [MASK] here."})
        await _answered(h, "mask", {"text": "no mask token here"})  # user_error
        await h.run("config", {"command": "tokens"}, subcommand="deny",
                    user_id=self.emu.moderator_id)
        await _answered(h, "tokens", {"text": "denied text"})  # refused
        await h.run("config", {"command": "tokens"}, subcommand="clear",
                    user_id=self.emu.moderator_id)
        await _answered(h, "tokens", {"text": "secret of B"}, guild_id=self.other.id,
                        channel_id=self.other_channel)
        await _wait_rows(h, 10)


async def _db_truth(h: Harness, guild_id: int) -> dict:
    rows = [r for r in await h.rows() if r["guild_id"] == guild_id]
    totals = sorted(r["total_ms"] for r in rows if r["total_ms"] is not None)
    by_command: dict[str, int] = {}
    by_status: dict[str, int] = {}
    for r in rows:
        by_command[r["command"]] = by_command.get(r["command"], 0) + 1
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    return {"rows": rows, "total": len(rows), "by_command": by_command, "by_status": by_status,
            "p50": statistics.median(totals),
            "p95": statistics.quantiles(totals, n=100, method="inclusive")[94]}


# --------------------------------------------------------------------------- HTTP-level checks


def _client(address: str) -> aiohttp.ClientSession:
    """A browser-like client at `address` (the dashboard trusts X-Forwarded-For only from a
    loopback peer, i.e. a reverse proxy on the bot's machine). unsafe: cookies for an IP host."""
    return aiohttp.ClientSession(headers={"X-Forwarded-For": address},
                                 cookie_jar=aiohttp.CookieJar(unsafe=True))


#: The tests' clients stand behind a reverse proxy on this machine (see `_client`).
BEHIND_PROXY = {"trusted_proxy": "127.0.0.1"}


async def test_links_sessions_headers_and_refusals_over_http(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN, dashboard=BEHIND_PROXY)
    async with DiscordEmulator() as emu:
        world = World(emu)
        async with running_bot(config, caplog, emulator=emu, check_clean=False) as h:
            await world.fill(h)
            dashboard = h.services.dashboard
            assert dashboard is not None
            a, b = emu.guild_id, world.other.id
            link_a = await _link(h)
            link_b = await _link(h, user_id=world.other_teacher, guild_id=b)
            base = dashboard.base_url
            # The link is logged as issued; the token itself never reaches the log.
            rows = await _wait_rows(h, 12)
            issued = [r for r in rows if r["command"] == "logs dashboard"]
            assert [r["output_summary"] for r in issued] == ["link issued"] * 2
            token_a = parse_qs(urlsplit(link_a).query)["t"][0]
            assert not any(token_a in " ".join(str(v) for v in tuple(r)) for r in rows)

            # A student cannot get a link: the policy refuses /logs.
            refused = await h.run("logs", subcommand="dashboard")
            assert refused.ephemeral and not LINK.search(refused.text)

            async with _client("198.51.100.1") as s:
                # Exchange: a cookie for A's pages only, and a page without the token.
                async with s.get(link_a, allow_redirects=False) as r:
                    assert r.status == 200
                    body = await r.text()
                    assert 'url=g/%d/' % a in body and token_a not in body
                    cookie = r.cookies[f"{COOKIE_PREFIX}{a}"]
                    assert cookie["httponly"] and cookie["samesite"] == "Strict"
                    assert cookie["path"] == f"/g/{a}/" and not cookie["secure"]
                    for name, value in SECURITY_HEADERS.items():
                        assert r.headers[name] == value
                async with s.get(f"{base}/g/{a}/") as r:
                    assert r.status == 200
                    page = await r.text()
                    assert "Queries" in page and r.headers["Cache-Control"] == "no-store"
                    assert r.headers["Referrer-Policy"] == "no-referrer"
                    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
                # A's session does not open B's pages (no cookie for B's path; a copied one is
                # refused because the guild is inside the MAC).
                async with s.get(f"{base}/g/{b}/queries") as r:
                    assert r.status == 403 and "secret of B" not in await r.text()
                async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as bare:
                    async with bare.get(f"{base}/g/{a}/queries", headers={
                            "Cookie": f"{COOKIE_PREFIX}{a}={cookie.value}"}) as r:
                        assert r.status == 200  # the genuine cookie, sent by hand, works
                    async with bare.get(f"{base}/g/{b}/queries", headers={
                            "Cookie": f"{COOKIE_PREFIX}{b}={cookie.value}"}) as r:
                        assert r.status == 403 and "secret of B" not in await r.text()
                    # A link is not a session cookie.
                    async with bare.get(f"{base}/g/{a}/queries", headers={
                            "Cookie": f"{COOKIE_PREFIX}{a}={token_a}"}) as r:
                        assert r.status == 403
                # No endpoint writes: every other method is refused, and nothing changed.
                before = len(await h.rows())
                for method in ("POST", "PUT", "PATCH", "DELETE"):
                    for path in (f"/g/{a}/", f"/g/{a}/queries", "/login", f"/g/{a}/queries.csv"):
                        async with s.request(method, base + path, data="x") as r:
                            assert r.status == 405, (method, path, r.status)
                            assert r.headers["X-Frame-Options"] == "DENY"
                assert len(await h.rows()) == before
                # Injection attempts in filters are values, not SQL.
                async with s.get(f"{base}/g/{a}/queries",
                                 params={"command": "tokens' OR 1=1 --"}) as r:
                    assert r.status == 200 and "0</span> matching" in await r.text()
                async with s.get(f"{base}/g/{a}/queries", params={"status": "nope"}) as r:
                    assert r.status == 400 and "Unknown status" in await r.text()

            # Other server's link: B's rows only.
            async with _client("198.51.100.2") as s:
                async with s.get(link_b) as r:
                    assert r.status == 200
                    page = await r.text()
                assert "secret of B" not in page  # the overview shows no inputs
                async with s.get(f"{base}/g/{b}/queries") as r:
                    page = await r.text()
                    assert "secret of B" in page
                    assert "alpha words" not in page and "classmate text" not in page
                async with s.get(f"{base}/g/{a}/queries") as r:
                    assert r.status == 403 and "alpha words" not in await r.text()

            # Forged, tampered, expired and wrong-server links: 403 and no data.
            g, u, e, n, i, mac = token_a.split(".")
            expired = await dashboard.link(a, emu.moderator_id, expires_at=int(time.time()) - 1)
            attempts = [
                f"{base}/login?t={b}.{u}.{e}.{n}.{i}.{mac}",            # other server, same MAC
                f"{base}/login?t={g}.{u}.{int(e) + 86400}.{n}.{i}.{mac}",  # a longer life
                f"{base}/login?t={g}.{u}.{e}.{n}.{i}.{'A' * len(mac)}",   # a made-up MAC
                f"{base}/login?t=",                               # nothing
                f"{base}/login?t={token_a}'--",                   # junk appended
                expired,
            ]
            async with _client("198.51.100.3") as s:
                for url in attempts:
                    async with s.get(url, allow_redirects=False) as r:
                        text = await r.text()
                        assert r.status == 403, url
                        assert "Set-Cookie" not in r.headers
                        assert "alpha words" not in text and str(a) not in text.split("·")[0]

            # Rate limit: after MAX_FAILURES bad attempts from one client, its bad attempts get
            # 429; a genuine credential from that very address is still served (an attacker
            # cannot lock an instructor out), and another client's bad attempt is only a 403.
            async with _client("198.51.100.4") as s:
                for _ in range(MAX_FAILURES):
                    async with s.get(f"{base}/login?t=1.2.3.4..bad") as r:
                        assert r.status == 403
                async with s.get(f"{base}/login?t=1.2.3.4..bad") as r:
                    assert r.status == 429 and int(r.headers["Retry-After"]) > 0
                async with s.get(await _link(h)) as r:
                    assert r.status == 200
            async with _client("198.51.100.5") as s:
                async with s.get(f"{base}/login?t=1.2.3.4..bad") as r:
                    assert r.status == 403
    warnings = [r.getMessage() for r in caplog.records if r.name == "bot.dashboard.app"]
    assert any("refused a link" in w for w in warnings)


# --------------------------------------------------------------------------- in a real browser


@needs_browser
async def test_dashboard_in_a_real_browser(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord=NO_COOLDOWN)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with DiscordEmulator() as emu:
        world = World(emu)
        async with running_bot(config, caplog, emulator=emu) as h:
            await world.fill(h)
            a, b = emu.guild_id, world.other.id
            link_a = await _link(h)
            link_b = await _link(h, user_id=world.other_teacher, guild_id=b)
            await _wait_rows(h, 12)
            origin = h.services.dashboard.base_url
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM,
                                                  args=["--no-sandbox"])
                try:
                    await _check_instructor_view(h, browser, link_a, origin, a, shots)
                    await _check_other_server(h, browser, link_b, origin, a, b, shots)
                    await _check_refused_links(h, browser, origin, a, shots)
                    await _check_link_clicked_on_another_site(browser, await _link(h), a)
                finally:
                    await browser.close()
    print(f"screenshots: {shots}")


async def _check_instructor_view(h, browser, link: str, origin: str, guild: int,
                                 shots: Path) -> None:
    truth = await _db_truth(h, guild)
    context = await browser.new_context(viewport={"width": 1280, "height": 900},
                                        accept_downloads=True)
    requests: list[str] = []
    console: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    page = await context.new_page()
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    await page.goto(link)
    await page.wait_for_url(f"{origin}/g/{guild}/")
    assert "t=" not in page.url
    [cookie] = await context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # The overview's numbers are the database's.
    async def stat(key: str) -> str:
        return (await page.locator(f'[data-stat="{key}"]').inner_text()).strip()

    assert await stat("total") == f"{truth['total']:,}"
    shown = {await c.get_attribute("data-command-count"): int(await c.inner_text())
             for c in await page.locator("[data-command-count]").all()}
    assert shown == truth["by_command"]
    shown = {await c.get_attribute("data-status-count"): int(await c.inner_text())
             for c in await page.locator("[data-status-count]").all()}
    assert shown == truth["by_status"]
    share = {s: n / truth["total"] for s, n in truth["by_status"].items()}
    assert await stat("user_error_rate") == f"{share['user_error']:.1%}"
    assert await stat("refusal_rate") == f"{share['refused']:.1%}"
    # Percentiles come from whole-millisecond histograms: within a millisecond of the exact ones.
    for key in ("p50", "p95"):
        shown_ms = float((await stat(key)).removesuffix(" ms").replace(",", ""))
        assert abs(shown_ms - truth[key]) <= 1.0, (key, shown_ms, truth[key])
    assert await page.locator("svg.chart").count() == 2
    await page.screenshot(path=str(shots / "overview.png"), full_page=True)

    # A filter narrows the table to exactly the matching rows.
    await page.click("nav >> text=Queries")
    await page.wait_for_url(re.compile(r".*/queries$"))
    all_rows = await page.locator("#queries tbody tr[data-row-id]").count()
    assert all_rows == truth["total"]
    await page.select_option("select[name=command]", "tokens")
    await page.select_option("select[name=status]", "ok")
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r".*command=tokens.*"))
    expected = sorted((r["id"] for r in truth["rows"]
                       if r["command"] == "tokens" and r["status"] == "ok"), reverse=True)
    ids = [int(x) for x in await page.locator("#queries tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.rowId)")]
    assert ids == expected and 0 < len(ids) < all_rows
    assert await stat("matching") == str(len(expected))
    # Text search (inputs are stored in full here); markup in a student's input stays text.
    await page.fill("input[name=q]", "<b>BOLD</b>")
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r".*q=.*"))
    assert await page.locator("#queries tbody tr[data-row-id]").count() == 1
    assert await page.locator("#queries b").count() == 0
    assert "gamma <b>bold</b> & co" in await page.locator("#queries").inner_text()
    await page.fill("input[name=q]", "")
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r".*command=tokens.*"))
    await page.screenshot(path=str(shots / "queries.png"), full_page=True)

    # The CSV download holds exactly the filtered rows, in the export's format.
    async with page.expect_download() as info:
        await page.click("#export-csv")
    download = await info.value
    assert download.suggested_filename == f"queries-{guild}.csv"
    raw = Path(await download.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the export's format (tests/test_exports.py)
    parsed = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert list(parsed[0]) == list(CSV_COLUMNS)
    assert [int(r["id"]) for r in parsed] == expected
    assert {r["guild_id"] for r in parsed} == {f'="{guild}"'}
    by_id = {r["id"]: r for r in truth["rows"]}
    for cells in parsed:
        row = by_id[int(cells["id"])]
        assert cells["input_text"] == row["input_text"] and cells["created_at"] == row["created_at"]
    # And the JSON view of the same filter.
    response = await page.request.get(f"{origin}/g/{guild}/queries.json?command=tokens&status=ok")
    assert [r["id"] for r in json.loads(await response.text())] == expected

    # A student's page.
    await page.goto(f"{origin}/g/{guild}/students/{h.emu.student_id}")
    mine = [r for r in truth["rows"] if r["user_id"] == h.emu.student_id]
    assert await stat("total") == str(len(mine))
    assert await page.locator("#queries tbody tr[data-row-id]").count() == len(mine)
    await page.screenshot(path=str(shots / "student.png"), full_page=True)

    # Rules: what /config show says, read-only.
    await page.click("nav >> text=Rules")
    text = await page.locator("main").inner_text()
    assert "none: every command is allowed everywhere" in text
    assert "No classifier" in text or "classifier" in text.lower()
    assert await page.locator("form").count() == 0

    # Nothing outside this origin was ever requested, and CSP never had to block anything.
    assert requests and all(u.startswith(origin + "/") for u in requests), requests
    assert not [c for c in console if "Content Security Policy" in c], console

    # A 390 px phone: every page fits without scrolling sideways.
    phone = await browser.new_context(viewport={"width": 390, "height": 844},
                                      device_scale_factor=2, is_mobile=True, has_touch=True)
    await phone.add_cookies(await context.cookies())
    small = await phone.new_page()
    for path in ("", "queries", "queries?command=tokens", f"students/{h.emu.student_id}",
                 "rules"):
        await small.goto(f"{origin}/g/{guild}/{path}")
        width = await small.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
    await small.goto(f"{origin}/g/{guild}/")
    await small.screenshot(path=str(shots / "overview-phone.png"), full_page=True)
    await phone.close()
    await context.close()


async def _check_other_server(h, browser, link_b: str, origin: str, a: int, b: int,
                              shots: Path) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(link_b)
    await page.wait_for_url(f"{origin}/g/{b}/")
    await page.goto(f"{origin}/g/{b}/queries")
    text = await page.locator("main").inner_text()
    assert "secret of B" in text
    for secret in ("alpha words", "beta words", "classmate text", "denied text"):
        assert secret not in text
    response = await page.goto(f"{origin}/g/{a}/")
    assert response.status == 403
    body = await page.locator("body").inner_text()
    assert "alpha words" not in body and "Link not valid" in body
    await page.screenshot(path=str(shots / "other-server-refused.png"))
    await context.close()


async def _check_refused_links(h, browser, origin: str, guild: int, shots: Path) -> None:
    dashboard = h.services.dashboard
    expired = await dashboard.link(guild, h.emu.moderator_id, expires_at=int(time.time()) - 1)
    good = await dashboard.link(guild, h.emu.moderator_id)
    g, u, e, n, i, mac = parse_qs(urlsplit(good).query)["t"][0].split(".")
    forged = f"{origin}/login?t={g}.{u}.{e}.{n}.{i}.{mac[::-1]}"
    context = await browser.new_context()
    page = await context.new_page()
    for url in (expired, forged):
        response = await page.goto(url)
        assert response.status == 403
        assert "Link not valid" in await page.locator("body").inner_text()
        assert await context.cookies() == []
        response = await page.goto(f"{origin}/g/{guild}/queries")
        assert response.status == 403
        assert "alpha words" not in await page.content()
    await page.goto(expired)
    await page.screenshot(path=str(shots / "expired-link.png"))
    await context.close()


async def _check_link_clicked_on_another_site(browser, link: str, guild: int) -> None:
    """Instructors click the link inside Discord: a navigation that starts on another site.
    Chromium withholds SameSite=Strict cookies from every redirect of such a navigation, so
    the token-free hop must be a page of our own (meta refresh), not a 303 (bot.dashboard.app).
    "localhost" and "127.0.0.1" are different sites, so a page on localhost plays Discord."""
    from aiohttp import web

    async def discord_page(request: web.Request) -> web.Response:
        return web.Response(text=f'<a id="go" href="{link}">dashboard</a>',
                            content_type="text/html")

    app = web.Application()
    app.router.add_get("/", discord_page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"http://localhost:{runner.addresses[0][1]}/")
        await page.click("#go")
        await page.wait_for_url(re.compile(rf".*/g/{guild}/$"))
        assert await page.locator('[data-stat="total"]').count() == 1
        await context.close()
    finally:
        await runner.cleanup()


async def test_dashboard_off_says_so(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, dashboard={"enabled": False})
    async with running_bot(config, caplog) as h:
        assert h.services.dashboard is None
        record = await h.run("logs", subcommand="dashboard", user_id=h.emu.moderator_id)
        assert record.ephemeral and "not running" in record.text


async def test_dashboard_key_survives_a_restart(tiny_config, tmp_path):
    from bot.compose import Assembly, open_services

    async def instructor(guild_id: int, user_id: int) -> bool:
        return True  # no Discord here: this test is about the key

    config = bot_config(tiny_config, tmp_path)
    async with open_services(config, Assembly(engine="now")) as services:
        link = await services.dashboard.link(1, 2)
    async with open_services(config, Assembly(engine="now")) as services:
        services.dashboard.authorize = instructor
        base = services.dashboard.base_url
        moved = base + "/login?" + urlsplit(link).query
        async with aiohttp.ClientSession() as s, s.get(moved, allow_redirects=False) as r:
            assert r.status == 200  # the same key, read back from the database
        rows = await services.db.fetchall("SELECT name FROM secrets")
        assert [r["name"] for r in rows] == ["dashboard"]


# --------------------------------------------------------------------------- roll-ups stay exact


async def test_rollups_equal_the_rows_after_inserts_updates_and_deletes(tmp_path):
    """The overview reads triggers' roll-ups (migration V3); whatever writes the log (group
    commit, feedback updates, retention purge, /mydata delete), they must equal the rows."""
    from core.storage.database import Database
    from core.storage.querylog import QueryLog, QueryRecord

    now = datetime.now(timezone.utc)
    async with await Database.open(tmp_path / "r.db") as db, QueryLog(db) as querylog:
        for i in range(300):
            assert await querylog.record(QueryRecord(
                guild_id=(1, 2, None)[i % 3], channel_id=None, user_id=10 + i % 7,
                command=("mask", "tokens")[i % 2], options={}, input_text=f"t{i}",
                status=("ok", "ok", "user_error", "failed")[i % 4],
                total_ms=None if i % 5 == 0 else 3.7 * i * i, user_name=f"n{i % 7}",
                created_at=now - timedelta(hours=i)))
        async with db.transaction() as conn:
            await conn.execute("UPDATE queries SET feedback = 1 WHERE id % 4 = 0")
            await conn.execute("UPDATE queries SET feedback = -1 WHERE id % 9 = 0")
        await querylog.delete_user(1, 12)
        assert await querylog.purge(now + timedelta(days=80)) > 0

        async def both(rollup: str, raw: str) -> None:
            got = [tuple(r) for r in await db.fetchall(rollup)]
            want = [tuple(r) for r in await db.fetchall(raw)]
            assert got == want and want

        await both(
            "SELECT guild_id, hour, command, status, feedback, n FROM dash_counts "
            "ORDER BY 1, 2, 3, 4, 5",
            "SELECT guild_id, substr(created_at, 1, 13), command, status, coalesce(feedback, 0), "
            "COUNT(*) FROM queries WHERE guild_id IS NOT NULL GROUP BY 1, 2, 3, 4, 5 "
            "ORDER BY 1, 2, 3, 4, 5")
        await both(
            "SELECT guild_id, hour, user_id, n FROM dash_users ORDER BY 1,2,3",
            "SELECT guild_id, substr(created_at, 1, 13), user_id, COUNT(*) FROM queries "
            "WHERE guild_id IS NOT NULL GROUP BY 1,2,3 ORDER BY 1,2,3")
        latency = await db.fetchall("SELECT guild_id, period, ms, n FROM dash_latency")
        rows = await db.fetchall(
            "SELECT guild_id, created_at, total_ms FROM queries WHERE guild_id IS NOT NULL "
            "AND total_ms IS NOT NULL")
        want: dict[tuple, int] = {}
        for r in rows:
            x = int(r["total_ms"] + 0.5)  # SQLite rounds halves away from zero
            ms = x if x < 1000 else int(str(x)[:3]) * 10 ** (len(str(x)) - 3)
            for period in (r["created_at"][:13], r["created_at"][:10]):
                key = (r["guild_id"], period, ms)
                want[key] = want.get(key, 0) + 1
        assert {(r["guild_id"], r["period"], r["ms"]): r["n"] for r in latency} == want
