"""The dashboard's HTTP side: routes, who may read what, and the headers every answer carries.

Access, step by step:

1. `/logs dashboard` (instructors only, checked by the bot's policy) makes a link
   ``/login?t=<link token>``: HMAC over guild, instructor, expiry, the guild's session epoch and
   a one-time link id (`signing`).
2. Opening it exchanges the link, once, for a session cookie scoped to that guild's pages
   (``Path=<prefix>/g/<guild>/``, HttpOnly, SameSite=Strict, Secure behind https) and moves on to
   a URL without the token. The hop is a 200 page with a meta refresh, not a 303: after a
   navigation that started on discord.com, Chromium withholds SameSite=Strict cookies from
   every redirect of that navigation, so a 303 would land the instructor on a 403.
3. Every ``/g/<guild>/...`` request needs that guild's valid session; a link of server A can
   never show server B (the guild is inside the MAC, and the cookie is only sent to A's path).
4. Every request, the exchange included, also asks whether the grant still holds
   (`bot.dashboard.access`): the guild's epoch (`/logs end-sessions` moves it on) and the
   instructor's rights in Discord (still a member, still an instructor). Losing either ends
   the session; when Discord cannot be asked, the answer is 503, never the data.

Failed attempts (a token or cookie that was presented and is not genuine, expired, or for
another guild) are counted per client; past `MAX_FAILURES` in `FAILURE_WINDOW_S` that client's
*bad* attempts get 429. A valid credential is always served: an attacker sharing (or faking)
an instructor's address cannot lock the instructor out, and guessing an HMAC gains nothing
anyway. The client is the TCP peer; X-Forwarded-For counts only from `[dashboard]
trusted_proxy`.

Every parameter is checked before use; a bad one answers 400 with a line, never a traceback.

Only GET (and HEAD) routes exist: no endpoint can write (the exchange records the link's use
and nothing else), and the data connection is read-only besides (core.storage.dashboard_data).
Rows are read, filtered and exported by the query log's own code (`core.storage.querylog`): the
CSV and JSON here are the bytes `/logs export` writes.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from importlib import resources

from aiohttp import web

from bot.dashboard import pages
from bot.dashboard.access import Authorize, RightsUnknown, Sessions
from bot.dashboard.signing import Grant, Signer
from core import i18n
from core.i18n import lazy, tr
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


#: The largest id SQLite stores as an integer (Discord's snowflakes stay far below it).
MAX_ID = 2**63 - 1
_ID = re.compile(r"[0-9]{1,19}")


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
        # The last `max_failures` are all the verdict needs: memory stays bounded per client.
        times = self._failures.setdefault(client, deque(maxlen=self.max_failures))
        cutoff = self._clock() - self.window_s
        while times and times[0] < cutoff:
            times.popleft()
        return times

    def retry_after(self, client: str) -> int:
        """Seconds until the oldest counted failure of `client` leaves the window."""
        recent = self._recent(client)
        return max(1, int(recent[0] + self.window_s - self._clock()) + 1) if recent else 1

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
    """What the pages need besides the data: the classifier report and cooldown default, and
    what decides whether a grant still holds (`sessions`, `authorize`)."""

    def __init__(self, *, sentiment_report: Callable[[], str], default_cooldown: str,
                 log_inputs: str, public_path: str, secure_cookies: bool,
                 link_seconds: int, sessions: Sessions, authorize: Authorize,
                 trusted_proxy: str | None = None) -> None:
        self.sentiment_report = sentiment_report
        self.default_cooldown = default_cooldown
        self.log_inputs = log_inputs
        self.public_path = public_path.rstrip("/")
        self.secure_cookies = secure_cookies
        self.link_seconds = link_seconds
        self.sessions = sessions
        self.authorize = authorize
        self.trusted_proxy = (ipaddress.ip_network(trusted_proxy, strict=False)
                              if trusted_proxy else None)


def client_of(request: web.Request) -> str:
    """Who is attempting: the peer; or, when the peer is the configured `trusted_proxy`, the
    address that proxy appended last to X-Forwarded-For (the only entry it vouches for)."""
    peer = request.remote or "?"
    trusted = request.app[_CONTEXT].trusted_proxy
    forwarded = request.headers.get("X-Forwarded-For", "")
    if trusted is None or not forwarded:
        return peer
    try:
        from_proxy = ipaddress.ip_address(peer) in trusted
    except ValueError:
        return peer
    if not from_proxy:
        return peer
    last = forwarded.split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return peer  # not an address: the proxy did not write it


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _refused(status: int = 403, *, retry_after: int = 0) -> web.Response:
    if status == 429:
        response = _html(pages.notice(tr("Too many attempts"),
                                      tr("Too many invalid links from here. Wait a few "
                                         "minutes, then open a fresh link from /logs "
                                         "dashboard.")), 429)
        response.headers["Retry-After"] = str(retry_after)
        return response
    return _html(pages.notice(tr("Link not valid"),
                              tr("This link is invalid, has expired, or belongs to another "
                                 "server. Ask for a new one with /logs dashboard in Discord.")),
                 403)


_ENDED = {
    "epoch": (lazy("Session ended"),
              lazy("A moderator ended every dashboard session of this server. Ask for a new "
                   "link with /logs dashboard in Discord.")),
    "rights": (lazy("No longer an instructor"),
               lazy("You are no longer an instructor (or a member) of this server, so its "
                    "dashboard is closed to you. If that is a mistake, ask a moderator.")),
    "used": (lazy("Link already used"),
             lazy("A dashboard link opens one browser session only, and this one was opened "
                  "already. Ask for a new one with /logs dashboard in Discord.")),
}


def _ended(why: str, *, guild_id: int | None = None, public_path: str = "") -> web.Response:
    """A genuine grant that no longer holds: 403, and the session cookie deleted."""
    title, text = _ENDED[why]
    response = _html(pages.notice(title, text), 403)
    if guild_id is not None:
        response.del_cookie(f"{COOKIE_PREFIX}{guild_id}", path=f"{public_path}/g/{guild_id}/")
    return response


def _unknown(exc: RightsUnknown) -> web.Response:
    log.warning("dashboard: cannot check an instructor's rights: %s", exc)
    response = _html(pages.notice(tr("Cannot check your access right now"),
                                  tr("The bot cannot ask Discord whether you are still an "
                                     "instructor of this server. Try again in a minute.")), 503)
    response.headers["Retry-After"] = "30"
    return response


def _bad_attempt(request: web.Request, client: str, what: str) -> web.Response:
    """A credential that is not genuine: counted; past the limit, answered 429."""
    limiter = request.app[_LIMITER]
    blocked = limiter.blocked(client)
    limiter.fail(client)  # counted while blocked too: a client that keeps guessing stays so
    if blocked:
        return _refused(429, retry_after=limiter.retry_after(client))
    log.warning("dashboard: refused %s from %s", what, client)
    return _refused()


async def _still_holds(request: web.Request, grant: Grant) -> str | None:
    """Why a genuine grant no longer holds (a key of `_ENDED`), or None when it does.
    Raises RightsUnknown when Discord cannot be asked."""
    ctx = request.app[_CONTEXT]
    if grant.epoch != await ctx.sessions.epoch(grant.guild_id):
        return "epoch"
    if not await ctx.authorize(grant.guild_id, grant.user_id):
        return "rights"
    return None


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every response, errors and aiohttp's own 404/405 included."""
    response.headers.update(SECURITY_HEADERS)
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"


#: Keeps a language picked with `?lang=` (a preference, not a credential).
LANGUAGE_COOKIE = "tlm_lang"


def language(request: web.Request) -> str:
    """The one place the dashboard's language is decided: `?lang=` (the switch on every
    page), then the cookie that switch set, then the browser's Accept-Language, else
    English."""
    return i18n.pick(request.query.get("lang"), request.cookies.get(LANGUAGE_COOKIE),
                     i18n.from_accept_language(request.headers.get("Accept-Language")))


@web.middleware
async def _in_language(request: web.Request, handler: Callable[[web.Request], Awaitable[
        web.StreamResponse]]) -> web.StreamResponse:
    chosen = language(request)
    with i18n.using(chosen):
        response = await handler(request)
    if i18n.supported(request.query.get("lang")) and not response.prepared:
        ctx = request.app[_CONTEXT]
        response.set_cookie(LANGUAGE_COOKIE, chosen, max_age=365 * 24 * 3600,
                            path=f"{ctx.public_path}/", samesite="Lax",
                            secure=ctx.secure_cookies or request.secure)
    return response


Handler = Callable[[web.Request, Grant], Awaitable[web.StreamResponse]]


def guild_page(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Only with a genuine, unexpired session of this very guild."""

    async def checked(request: web.Request) -> web.StreamResponse:
        text = request.match_info["guild_id"]
        if not _ID.fullmatch(text) or int(text) > MAX_ID:
            raise web.HTTPNotFound()
        guild_id = int(text)
        cookie = request.cookies.get(f"{COOKIE_PREFIX}{guild_id}")
        if cookie is None:
            return _refused()
        grant = request.app[_SIGNER].verify("session", cookie)
        if grant is None or grant.guild_id != guild_id:
            return _bad_attempt(request, client_of(request),
                                f"a session cookie for guild {guild_id}")
        try:
            ended = await _still_holds(request, grant)
        except RightsUnknown as exc:
            return _unknown(exc)
        if ended is not None:
            log.info("dashboard: session of user %s for guild %s ended (%s)",
                     grant.user_id, guild_id, ended)
            return _ended(ended, guild_id=guild_id,
                          public_path=request.app[_CONTEXT].public_path)
        try:
            return await handler(request, grant)
        except ConnectionResetError:
            # The reader left mid-answer (a closed tab, a cancelled export): nothing is wrong
            # here, and aiohttp would log a traceback for each. Handing it a fresh response
            # lets it find the connection gone and log nothing but the access.
            log.debug("dashboard: the client of %s left before the answer was sent",
                      request.path)
            return web.Response(status=204)
        except BadFilter as exc:
            root = "../" * (request.path.count("/") - 1)
            return _html(pages.notice(tr("Cannot filter like that"), str(exc), root=root), 400)

    return checked


async def login(request: web.Request) -> web.StreamResponse:
    grant = request.app[_SIGNER].verify("link", request.query.get("t", ""))
    if grant is None or not grant.link_id:
        return _bad_attempt(request, client_of(request), "a link")
    ctx = request.app[_CONTEXT]
    try:
        ended = await _still_holds(request, grant)
    except RightsUnknown as exc:
        return _unknown(exc)
    if ended is None and not await ctx.sessions.use_link(grant.link_id, grant.expires_at):
        ended = "used"
    if ended is not None:
        log.info("dashboard: link of user %s for guild %s refused (%s)",
                 grant.user_id, grant.guild_id, ended)
        return _ended(ended)
    target = f"g/{grant.guild_id}/"
    response = _html(pages.notice(tr("Opening the dashboard…"), tr("One moment."),
                                  refresh_to=target))
    max_age = max(1, int(grant.expires_at - time.time()))
    session = Grant(grant.guild_id, grant.user_id, grant.expires_at, grant.epoch)
    response.set_cookie(
        f"{COOKIE_PREFIX}{grant.guild_id}", request.app[_SIGNER].issue("session", session),
        max_age=max_age, path=f"{ctx.public_path}/g/{grant.guild_id}/", httponly=True,
        samesite="Strict", secure=ctx.secure_cookies or request.secure,
    )
    log.info("dashboard: session opened for guild %s by user %s", grant.guild_id, grant.user_id)
    return response


async def home(request: web.Request) -> web.StreamResponse:
    return _html(pages.notice(tr("tlm-bot dashboard"),
                              tr("Open it with /logs dashboard in your server on Discord.")))


async def style(request: web.Request) -> web.StreamResponse:
    css = (resources.files("bot.dashboard") / "static" / "style.css").read_text("utf-8")
    return web.Response(text=css, content_type="text/css", charset="utf-8",
                        headers={"Cache-Control": "max-age=3600"})


# ---------------------------------------------------------------------- parsing filters


def _window(request: web.Request) -> tuple[str, Window]:
    key = request.query.get("range") or "7d"
    if key not in _SPANS:
        raise BadFilter(lazy(
            "Unknown range {key}; use one of {join}.",
            key=repr(key), join=', '.join(_SPANS)))
    return key, Window.last(_SPANS[key])


def _day(text: str, name: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.combine(date.fromisoformat(text), dtime(), tzinfo=timezone.utc)
    except ValueError:
        raise BadFilter(lazy("{name} must be a date like 2026-11-30.", name=name)) from None


def query_filter(request: web.Request, guild_id: int) -> QueryFilter:
    """The table's filter from the URL; every value is checked before it reaches SQL (where
    it is a bound parameter anyway)."""
    q = request.query
    status = q.get("status") or None
    if status is not None and status not in STATUS_VALUES:
        raise BadFilter(lazy("Unknown status {status}.", status=repr(status)))
    command = (q.get("command") or "").strip().lstrip("/") or None
    if command is not None and len(command) > 64:
        raise BadFilter(lazy("That command name is too long."))
    user = (q.get("user") or "").strip()
    user_id = _user_id(user) if user else None
    since = _day(q.get("since", ""), "from")
    until = _day(q.get("until", ""), "until")
    if until is not None:
        if until.date() == date.max:
            until = None  # up to the last day there is: no end
        else:
            until += timedelta(days=1)  # the "until" day is included
    if q.get("range"):
        if q["range"] not in _SPANS:
            raise BadFilter(lazy("Unknown range {q}.", q=repr(q['range'])))
        start = datetime.now(timezone.utc) - _SPANS[q["range"]]
        since = max(since, start) if since else start
    text = (q.get("q") or "").strip()
    if len(text) > 200:
        raise BadFilter(lazy("The search text is limited to 200 characters."))
    return QueryFilter(guild_id=guild_id, user_id=user_id, command=command,
                       status=status, since=since, until=until, limit=None, text=text)


def _user_id(text: str) -> int:
    """A Discord user id: ASCII digits (``"²".isdigit()`` is true, `int` refuses it) that fit
    SQLite's integer."""
    if not _ID.fullmatch(text) or int(text) > MAX_ID:
        raise BadFilter(lazy("Student id must be a number (their Discord user id)."))
    return int(text)


def _page_number(request: web.Request) -> int:
    text = request.query.get("page", "1")
    if not re.fullmatch(r"[0-9]{1,6}", text) or int(text) == 0:
        raise BadFilter(lazy("page must be a positive number."))
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
    return _html(await _layout(request, grant,
                               title=tr("Overview · {range}", range=pages.RANGES[key]),
                               root="../../", base="", active="overview", body=body))


async def queries(request: web.Request, grant: Grant) -> web.StreamResponse:
    f = query_filter(request, grant.guild_id)
    data = request.app[_DATA]
    page = await reads.page(data, f, _page_number(request) - 1, PAGE_SIZE)
    body = pages.queries(page, params=dict(request.query), commands=await data.commands(
        grant.guild_id), text_search=request.app[_CONTEXT].log_inputs == "full")
    return _html(await _layout(request, grant, title=tr("Queries"), root="../../", base="",
                               active="queries", body=body))


async def student(request: web.Request, grant: Grant) -> web.StreamResponse:
    user_id = _user_id(request.match_info["user_id"])
    key, window = _window(request)
    data = request.app[_DATA]
    view = await data.student(grant.guild_id, user_id, window)
    latest = await reads.page(data, QueryFilter(guild_id=grant.guild_id, user_id=user_id),
                              0, PAGE_SIZE)
    title = tr("Student {student}", student=pages.student_label(user_id, view.name))
    return _html(await _layout(request, grant, title=title, root="../../../", base="../",
                               active="", body=pages.student(view, window, latest, range_key=key)))


async def rules(request: web.Request, grant: Grant) -> web.StreamResponse:
    ctx = request.app[_CONTEXT]
    settings = await request.app[_SETTINGS].get(grant.guild_id)
    body = pages.rules(settings, default_cooldown=ctx.default_cooldown,
                       sentiment_report=ctx.sentiment_report())
    return _html(await _layout(request, grant, title=tr("Rules"), root="../../", base="",
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
    # nothing is ever uploaded
    app = web.Application(client_max_size=16 * 1024, middlewares=[_in_language])
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
