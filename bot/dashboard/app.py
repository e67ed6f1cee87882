"""The dashboard's HTTP side: routes, who may read what, and the headers every answer carries.

Access, step by step:

1. `/logs dashboard` (instructors only, checked by the bot's policy) makes a link
   ``/login?t=<link token>``: HMAC over guild, instructor and expiry (`signing`).
2. Opening it exchanges the link for a session cookie scoped to that guild's pages
   (``Path=<prefix>/g/<guild>/``, HttpOnly, SameSite=Strict, Secure behind https) and moves on to
   a URL without the token. The hop is a 200 page with a meta refresh, not a 303: after a
   navigation that started on discord.com, Chromium withholds SameSite=Strict cookies from
   every redirect of that navigation, so a 303 would land the instructor on a 403.
3. Every ``/g/<guild>/...`` request needs that guild's valid session; a link of server A can
   never show server B (the guild is inside the MAC, and the cookie is only sent to A's path).

Failed attempts (a token or cookie that was presented and is not genuine, expired, or for
another guild) are counted per client; past `MAX_FAILURES` in `FAILURE_WINDOW_S` that client
gets 429 for everything that needs a credential, valid or not, so guessing gains nothing.

Only GET (and HEAD) routes exist: no endpoint can write, and the data connection is read-only
besides (core.storage.dashboard_data). Rows are read, filtered and exported by the query log's
own code (`core.storage.querylog`): the CSV and JSON here are the bytes `/logs export` writes.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from importlib import resources

from aiohttp import web

from bot.dashboard import pages
from bot.dashboard.signing import Grant, Signer
from core.outcomes import STATUS_VALUES
from core.storage.dashboard_data import DashboardData, Window
from core.storage.guild_settings import SettingsStore
from core.storage.querylog import QueryFilter, csv_chunks, json_chunks, reads

log = logging.getLogger(__name__)

MAX_FAILURES = 10
FAILURE_WINDOW_S = 600.0
PAGE_SIZE = 50
COOKIE_PREFIX = "tlm_dashboard_"
SECURITY_HEADERS = {
    # Only this origin: no CDN, no external font, no script at all, no framing, no plugins.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_SPANS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30),
          "90d": timedelta(days=90)}
_DATA = web.AppKey("data", DashboardData)
_SIGNER = web.AppKey("signer", Signer)
_SETTINGS = web.AppKey("settings", SettingsStore)
_LIMITER = web.AppKey("limiter", "FailureLimiter")
_CONTEXT = web.AppKey("context", "DashboardContext")


class BadFilter(ValueError):
    """A query parameter the instructor can fix; its message is shown on the page."""


class FailureLimiter:
    """Failed credential attempts per client in a sliding window."""

    def __init__(self, max_failures: int = MAX_FAILURES,
                 window_s: float = FAILURE_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        times = self._failures.setdefault(client, deque())
        cutoff = self._clock() - self.window_s
        while times and times[0] < cutoff:
            times.popleft()
        return times

    def blocked(self, client: str) -> bool:
        if client not in self._failures:
            return False
        recent = self._recent(client)
        if not recent:
            del self._failures[client]
        return len(recent) >= self.max_failures

    def fail(self, client: str) -> None:
        self._recent(client).append(self._clock())
        if len(self._failures) > 10_000:  # a flood of addresses must not grow memory forever
            oldest = min(self._failures, key=lambda c: self._failures[c][-1])
            del self._failures[oldest]


class DashboardContext:
    """What the pages need besides the data: the classifier report and cooldown default."""

    def __init__(self, *, sentiment_report: Callable[[], str], default_cooldown: str,
                 log_inputs: str, public_path: str, secure_cookies: bool,
                 link_seconds: int) -> None:
        self.sentiment_report = sentiment_report
        self.default_cooldown = default_cooldown
        self.log_inputs = log_inputs
        self.public_path = public_path.rstrip("/")
        self.secure_cookies = secure_cookies
        self.link_seconds = link_seconds


def client_of(request: web.Request) -> str:
    """Who is attempting: the peer, or, when the peer is a reverse proxy on this machine, the
    address that proxy appended last to X-Forwarded-For (the only entry it vouches for)."""
    peer = request.remote or "?"
    try:
        loopback = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        loopback = False
    forwarded = request.headers.get("X-Forwarded-For", "")
    if loopback and forwarded:
        return forwarded.split(",")[-1].strip() or peer
    return peer


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _refused(status: int = 403) -> web.Response:
    if status == 429:
        return _html(pages.notice("Too many attempts",
                                  "Too many invalid links from here. Wait a few minutes, then "
                                  "open a fresh link from /logs dashboard."), 429)
    return _html(pages.notice("Link not valid",
                              "This link is invalid, has expired, or belongs to another server. "
                              "Ask for a new one with /logs dashboard in Discord."), 403)


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every response, errors and aiohttp's own 404/405 included."""
    response.headers.update(SECURITY_HEADERS)
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"


Handler = Callable[[web.Request, Grant], Awaitable[web.StreamResponse]]


def guild_page(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Only with a genuine, unexpired session of this very guild."""

    async def checked(request: web.Request) -> web.StreamResponse:
        limiter = request.app[_LIMITER]
        client = client_of(request)
        try:
            guild_id = int(request.match_info["guild_id"])
        except ValueError:
            raise web.HTTPNotFound() from None
        cookie = request.cookies.get(f"{COOKIE_PREFIX}{guild_id}")
        if cookie is None:
            return _refused()
        if limiter.blocked(client):
            return _refused(429)
        grant = request.app[_SIGNER].verify("session", cookie)
        if grant is None or grant.guild_id != guild_id:
            limiter.fail(client)
            log.warning("dashboard: refused a session cookie for guild %s from %s",
                        guild_id, client)
            return _refused()
        try:
            return await handler(request, grant)
        except BadFilter as exc:
            return _html(pages.notice("Cannot filter like that", str(exc), root="../../"), 400)

    return checked


async def login(request: web.Request) -> web.StreamResponse:
    limiter = request.app[_LIMITER]
    client = client_of(request)
    if limiter.blocked(client):
        return _refused(429)
    grant = request.app[_SIGNER].verify("link", request.query.get("t", ""))
    if grant is None:
        limiter.fail(client)
        log.warning("dashboard: refused a link from %s", client)
        return _refused()
    ctx = request.app[_CONTEXT]
    target = f"g/{grant.guild_id}/"
    response = _html(pages.notice("Opening the dashboard…", "One moment.",
                                  refresh_to=target))
    max_age = max(1, int(grant.expires_at - time.time()))
    response.set_cookie(
        f"{COOKIE_PREFIX}{grant.guild_id}", request.app[_SIGNER].issue("session", grant),
        max_age=max_age, path=f"{ctx.public_path}/g/{grant.guild_id}/", httponly=True,
        samesite="Strict", secure=ctx.secure_cookies or request.secure,
    )
    log.info("dashboard: session opened for guild %s by user %s", grant.guild_id, grant.user_id)
    return response


async def home(request: web.Request) -> web.StreamResponse:
    return _html(pages.notice("tlm-bot dashboard",
                              "Open it with /logs dashboard in your server on Discord."))


async def style(request: web.Request) -> web.StreamResponse:
    css = (resources.files("bot.dashboard") / "static" / "style.css").read_text("utf-8")
    return web.Response(text=css, content_type="text/css", charset="utf-8",
                        headers={"Cache-Control": "max-age=3600"})


# ---------------------------------------------------------------------- parsing filters


def _window(request: web.Request) -> tuple[str, Window]:
    key = request.query.get("range") or "7d"
    if key not in _SPANS:
        raise BadFilter(f"Unknown range {key!r}; use one of {', '.join(_SPANS)}.")
    return key, Window.last(_SPANS[key])


def _day(text: str, name: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.combine(date.fromisoformat(text), dtime(), tzinfo=timezone.utc)
    except ValueError:
        raise BadFilter(f"{name} must be a date like 2026-11-30.") from None


def query_filter(request: web.Request, guild_id: int) -> QueryFilter:
    """The table's filter from the URL; every value is checked before it reaches SQL (where
    it is a bound parameter anyway)."""
    q = request.query
    status = q.get("status") or None
    if status is not None and status not in STATUS_VALUES:
        raise BadFilter(f"Unknown status {status!r}.")
    command = (q.get("command") or "").strip().lstrip("/") or None
    if command is not None and len(command) > 64:
        raise BadFilter("That command name is too long.")
    user = (q.get("user") or "").strip()
    if user and (not user.isdigit() or len(user) > 20):
        raise BadFilter("Student id must be a number (their Discord user id).")
    since = _day(q.get("since", ""), "from")
    until = _day(q.get("until", ""), "until")
    if until is not None:
        until += timedelta(days=1)  # the "until" day is included
    if q.get("range"):
        if q["range"] not in _SPANS:
            raise BadFilter(f"Unknown range {q['range']!r}.")
        start = datetime.now(timezone.utc) - _SPANS[q["range"]]
        since = max(since, start) if since else start
    text = (q.get("q") or "").strip()
    if len(text) > 200:
        raise BadFilter("The search text is limited to 200 characters.")
    return QueryFilter(guild_id=guild_id, user_id=int(user) if user else None, command=command,
                       status=status, since=since, until=until, limit=None, text=text)


def _page_number(request: web.Request) -> int:
    text = request.query.get("page", "1")
    if not text.isdigit() or not 0 < int(text) < 1_000_000:
        raise BadFilter("page must be a positive number.")
    return int(text)


# ---------------------------------------------------------------------- pages


async def _layout(request: web.Request, grant: Grant, **parts: str) -> str:
    """`pages.layout` with the server's name in the header (the bot stores it; no Discord here)."""
    name = await request.app[_DATA].guild_name(grant.guild_id)
    return pages.layout(guild_id=grant.guild_id, guild_name=name, **parts)


async def overview(request: web.Request, grant: Grant) -> web.StreamResponse:
    key, window = _window(request)
    ov = await request.app[_DATA].overview(grant.guild_id, window)
    body = pages.overview(ov, range_key=key)
    return _html(await _layout(request, grant, title=f"Overview · {pages.RANGES[key]}",
                               root="../../", base="", active="overview", body=body))


async def queries(request: web.Request, grant: Grant) -> web.StreamResponse:
    f = query_filter(request, grant.guild_id)
    data = request.app[_DATA]
    page = await reads.page(data, f, _page_number(request) - 1, PAGE_SIZE)
    body = pages.queries(page, params=dict(request.query), commands=await data.commands(
        grant.guild_id), text_search=request.app[_CONTEXT].log_inputs == "full")
    return _html(await _layout(request, grant, title="Queries", root="../../", base="",
                               active="queries", body=body))


async def student(request: web.Request, grant: Grant) -> web.StreamResponse:
    text = request.match_info["user_id"]
    if not text.isdigit() or len(text) > 20:
        raise web.HTTPNotFound()
    user_id = int(text)
    key, window = _window(request)
    data = request.app[_DATA]
    view = await data.student(grant.guild_id, user_id, window)
    latest = await reads.page(data, QueryFilter(guild_id=grant.guild_id, user_id=user_id),
                              0, PAGE_SIZE)
    title = f"Student {pages.student_label(user_id, view.name)}"
    return _html(await _layout(request, grant, title=title, root="../../../", base="../",
                               active="", body=pages.student(view, window, latest, range_key=key)))


async def rules(request: web.Request, grant: Grant) -> web.StreamResponse:
    ctx = request.app[_CONTEXT]
    settings = await request.app[_SETTINGS].get(grant.guild_id)
    body = pages.rules(settings, default_cooldown=ctx.default_cooldown,
                       sentiment_report=ctx.sentiment_report())
    return _html(await _layout(request, grant, title="Rules", root="../../", base="",
                               active="rules", body=body))


async def _stream(request: web.Request, chunks: AsyncIterator[bytes],
                  headers: dict[str, str]) -> web.StreamResponse:
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


async def export_csv(request: web.Request, grant: Grant) -> web.StreamResponse:
    rows = reads.iter_rows(request.app[_DATA], query_filter(request, grant.guild_id))
    return await _stream(request, csv_chunks(rows), {
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="queries-{grant.guild_id}.csv"'})


async def export_json(request: web.Request, grant: Grant) -> web.StreamResponse:
    rows = reads.iter_rows(request.app[_DATA], query_filter(request, grant.guild_id))
    return await _stream(request, json_chunks(rows), {
        "Content-Type": "application/json; charset=utf-8",
        "Content-Disposition": f'inline; filename="queries-{grant.guild_id}.json"'})


def make_app(data: DashboardData, signer: Signer, settings: SettingsStore,
             context: DashboardContext, limiter: FailureLimiter | None = None
             ) -> web.Application:
    app = web.Application(client_max_size=16 * 1024)  # nothing is ever uploaded
    app[_DATA] = data
    app[_SIGNER] = signer
    app[_SETTINGS] = settings
    app[_CONTEXT] = context
    app[_LIMITER] = limiter or FailureLimiter()
    app.on_response_prepare.append(_headers)
    app.router.add_get("/", home)
    app.router.add_get("/login", login)
    app.router.add_get("/static/style.css", style)
    app.router.add_get("/g/{guild_id}/", guild_page(overview))
    app.router.add_get("/g/{guild_id}/queries", guild_page(queries))
    app.router.add_get("/g/{guild_id}/queries.csv", guild_page(export_csv))
    app.router.add_get("/g/{guild_id}/queries.json", guild_page(export_json))
    app.router.add_get("/g/{guild_id}/students/{user_id}", guild_page(student))
    app.router.add_get("/g/{guild_id}/rules", guild_page(rules))
    return app
