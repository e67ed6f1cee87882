"""HTML of the dashboard's pages: plain functions from data to text, every value escaped.

Why no template engine: five small pages whose structure is code anyway (loops over rows and
buckets); `html.escape` on every interpolated value is the whole escaping story, and it is easy
to review: in this module, nothing reaches the output without passing `_e` (or being a number
or an SVG built by `charts`, which escapes its own text). Links are relative, so the pages work
unchanged under a reverse proxy's path prefix.

Words are the catalog's (`core.i18n.tr`), in the language the request asked for
(`bot.dashboard.app.language`: `?lang=`, then the cookie it sets, then the browser's
Accept-Language); numbers too ("1.234" / "1,234").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from urllib.parse import urlencode

from bot.dashboard import charts
from core import i18n
from core.i18n import lazy, number, percent, tr
from core.outcomes import STATUS_VALUES, Status
from core.storage.dashboard_data import Overview, StudentView, Window
from core.storage.guild_settings import GuildSettings
from core.storage.querylog import QueryRow, RowsPage

#: Outcomes that are the bot's problem, not the student's (see core.outcomes).
SERVER_FAULTS = ("overloaded", "unavailable", "timeout", "failed")
RANGES = {"24h": lazy("last 24 hours"), "7d": lazy("last 7 days"),
          "30d": lazy("last 30 days"), "90d": lazy("last 90 days")}


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{number(value, '#,##0')} ms"


def _pct(value: float) -> str:
    return str(percent(value, "0.0%"))


def _n(value: int) -> str:
    return str(number(value, "#,##0"))


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def student_label(user_id: int, name: str) -> str:
    return f"{name} ({user_id})" if name else str(user_id)


def layout(*, title: str, guild_id: int, root: str, base: str, active: str, body: str,
           guild_name: str = "") -> str:
    """The page frame. `root`: relative path to the app root; `base`: to the guild's pages;
    `guild_name`: the server's name as the bot last saw it ("": the id stands in)."""
    nav = "".join(
        f'<a href="{_e(base + href)}"{" aria-current=page" if key == active else ""}>'
        f"{_e(label)}</a>"
        for key, href, label in (("overview", "./", tr("Overview")),
                                 ("queries", "queries", tr("Queries")),
                                 ("rules", "rules", tr("Rules"))))
    return (
        f"<!doctype html><html lang={_e(i18n.current_language())}><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · tlm-bot</title>"
        f'<link rel=stylesheet href="{_e(root)}static/style.css"></head><body>'
        f"<header><h1>tlm-bot · {server_title(guild_id, guild_name)}</h1><nav>{nav}</nav>"
        f"{_language_links()}"
        "</header>"
        f"<main><h2>{_e(title)}</h2>{body}</main></body></html>"
    )


def _language_links() -> str:
    """Every language the dashboard speaks, under its own name; `?lang=` switches (and a
    cookie keeps the choice)."""
    here = i18n.current_language()
    links = "".join(
        f'<a href="?{urlencode({"lang": code})}" hreflang="{_e(code)}" lang="{_e(code)}"'
        f'{" aria-current=true" if code == here else ""}>{_e(i18n.language_name(code))}</a>'
        for code in i18n.languages())
    return (
        '<span class="languages" aria-label="'
        + str(_e(tr("language")))
        + '">'
        + str(links)
        + "</span>"
    )


def server_title(guild_id: int, name: str) -> str:
    """The server by its name, its id in a tooltip; the id alone when no name is known."""
    if not name:
        return _e(tr("server {id}", id=guild_id))
    return (
        '<span title="'
        + str(_e(tr("server id {id}", id=guild_id)))
        + '">'
        + str(_e(name))
        + "</span>"
    )


def notice(title: object, text: object, *, root: str = "",
           refresh_to: str | None = None) -> str:
    """A page without data: errors, and the hop that leaves the token out of the address."""
    head = (f'<meta http-equiv=refresh content="0; url={_e(refresh_to)}">' if refresh_to
            else "")
    link = (
        ('<p><a href="' + str(_e(refresh_to)) + '">' + str(_e(tr("Continue"))) + "</a></p>")
        if refresh_to
        else ""
    )
    return (
        f"<!doctype html><html lang={_e(i18n.current_language())}><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"{head}<title>{_e(title)} · tlm-bot</title>"
        f'<link rel=stylesheet href="{_e(root)}static/style.css"></head><body>'
        f'<main class=notice><h2>{_e(title)}</h2><p>{_e(text)}</p>{link}</main></body></html>'
    )


def _stats(items: Iterable[tuple[str, object, object]]) -> str:
    cells = "".join(f'<div><dt>{_e(label)}</dt><dd data-stat="{_e(key)}">{_e(value)}</dd></div>'
                    for key, label, value in items)
    return f'<dl class="stats">{cells}</dl>'


def _series(window: Window, per_bucket: Mapping[str, Mapping[str, int]],
            names: Sequence[str]) -> tuple[list[str], dict[str, list[int]]]:
    labels = window.buckets()
    return labels, {name: [per_bucket.get(b, {}).get(name, 0) for b in labels] for name in names}


def _axis_labels(window: Window, labels: Sequence[str]) -> list[str]:
    return [b[5:].replace("T", " ") + (" h" if window.bucket == "hour" else "") for b in labels]


def _count_chart(title: str, window: Window, per_bucket: Mapping[str, Mapping[str, int]],
                 names: Sequence[str]) -> str:
    labels, series = _series(window, per_bucket, names)
    return (charts.stacked_bars(title, _axis_labels(window, labels), series)
            + charts.legend(names))


def _range_links(current: str) -> str:
    links = "".join(
        f'<a href="?{urlencode({"range": key})}"'
        f'{" aria-current=page" if key == current else ""}>{_e(label)}</a>'
        for key, label in RANGES.items())
    return f'<nav class="pager" aria-label="time range">{links}</nav>'


def overview(ov: Overview, *, range_key: str) -> str:
    window = ov.window
    hourly = window.bucket == "hour"
    names = list(ov.by_command)
    # Words, not 👍/👎: a machine without an emoji font would show empty boxes.
    feedback = (tr("{up} up · {down} down", up=_n(ov.feedback.get(1, 0)),
                   down=_n(ov.feedback.get(-1, 0)))
                if ov.feedback else tr("none yet"))
    by_command = (tr("Queries per hour by command") if hourly
                  else tr("Queries per day by command"))
    body = [
        _range_links(range_key),
        _stats([
            ("total", tr("Queries"), _n(ov.total)),
            ("user_error_rate", tr("Student errors"), _pct(ov.rate("user_error"))),
            ("refusal_rate", tr("Refused"), _pct(ov.rate("refused", "paused"))),
            ("cooldown_rate", tr("Cooldowns"), _pct(ov.rate("cooldown"))),
            ("fault_rate", tr("Bot faults"), _pct(ov.rate(*SERVER_FAULTS))),
            ("p50", tr("Latency p50"), _ms(ov.p50_ms)),
            ("p95", tr("Latency p95"), _ms(ov.p95_ms)),
            ("feedback", tr("Feedback"), feedback),
        ]),
        f"<section><h2>{_e(by_command)}</h2>"
        + _count_chart(by_command, window, ov.per_bucket, names)
        + "</section>",
    ]
    by_bucket = {lat.bucket: lat for lat in ov.latency}
    labels = window.buckets()
    latency = tr("Latency per hour") if hourly else tr("Latency per day")
    body.append(
        f"<section><h2>{_e(latency)}</h2>"
        + charts.lines(tr("Latency p50 and p95 per hour") if hourly
                       else tr("Latency p50 and p95 per day"), _axis_labels(window, labels), {
            "p50": [by_bucket[b].p50_ms if b in by_bucket else None for b in labels],
            "p95": [by_bucket[b].p95_ms if b in by_bucket else None for b in labels],
        }, unit=" ms")
        + charts.legend(["p50", "p95"]) + "</section>")
    rows = "".join(
        f'<tr><td><a href="queries?{urlencode({"command": name, "range": range_key})}">'
        f"/{_e(name)}</a></td><td class=num data-command-count=\"{_e(name)}\">{_n(count)}</td>"
        "</tr>" for name, count in ov.by_command.items())
    statuses = "".join(
        f'<tr><td title="{_e(Status(s).meaning)}">{_e(s)}</td>'
        f'<td class=num data-status-count="{_e(s)}">{_n(n)}</td></tr>'
        for s, n in ov.by_status.items())
    body.append(
        (
            "<section><h2>"
            + str(_e(tr("Per command")))
            + "</h2><div class=scroll><table><thead><tr><th>"
            + str(_e(tr("command")))
            + "</th><th class=num>"
            + str(_e(tr("queries")))
            + "</th></tr></thead><tbody>"
            + str(rows)
            + "</tbody></table></div><h2>"
            + str(_e(tr("Outcomes")))
            + "</h2><div class=scroll><table><thead><tr><th>"
            + str(_e(tr("status")))
            + "</th><th class=num>"
            + str(_e(tr("queries")))
            + "</th></tr></thead><tbody>"
            + str(statuses)
            + "</tbody></table></div></section>"
        )
    )
    students = "".join(
        f'<tr><td><a href="students/{s.user_id}">{_e(student_label(s.user_id, s.name))}</a></td>'
        f'<td class=num data-student-count="{s.user_id}">{_n(s.queries)}</td></tr>'
        for s in ov.busiest)
    body.append(
        (
            "<section><h2>"
            + str(_e(tr("Busiest students")))
            + "</h2><div class=scroll><table><thead><tr><th>"
            + str(_e(tr("student")))
            + "</th><th class=num>"
            + str(_e(tr("queries")))
            + "</th></tr></thead><tbody>"
            + str(students)
            + "</tbody></table></div></section>"
        )
    )
    return "".join(body)


def _options(values: Iterable[str] | Mapping[str, object], current: str | None,
             empty: object) -> str:
    """Options by value; a mapping's values are what is shown (the ranges' names)."""
    out = [f'<option value="">{_e(empty)}</option>']
    shown = values if isinstance(values, Mapping) else {v: v for v in values}
    for value, label in shown.items():
        chosen = " selected" if value == current else ""
        out.append(f'<option value="{_e(value)}"{chosen}>{_e(label)}</option>')
    return "".join(out)


def query_table(rows: Sequence[QueryRow], *, base: str) -> str:
    cells = []
    for r in rows:
        cells.append(
            f'<tr data-row-id="{r.id}"><td class=when data-label="time">'
            f'{_e(_when(r.created_at))}</td>'
            f'<td data-label="student"><a href="{_e(base)}students/{r.user_id}">'
            f"{_e(student_label(r.user_id, r.user_name))}</a></td>"
            f'<td data-col="command" data-label="command">/{_e(r.command)}</td>'
            f'<td data-col="status" data-label="status" class="status-{_e(r.status)}">'
            f"{_e(r.status)}</td>"
            f'<td class=text data-label="input">{_e(_clip(r.input_text, 160))}</td>'
            f'<td class=text data-label="answer">{_e(_clip(r.output_summary, 120))}</td>'
            f'<td class=num data-label="total">{_ms(r.total_ms)}</td></tr>')
    if not cells:
        cells.append(
            ("<tr><td colspan=7 class=muted>" + str(_e(tr("No queries match."))) + "</td></tr>")
        )
    heads = "".join(f"<th>{_e(h)}</th>" for h in (
        tr("time (UTC)"), tr("student"), tr("command"), tr("status"), tr("input"),
        tr("answer")))
    return (
        '<div class=scroll><table id="queries"><thead><tr>'
        + str(heads)
        + "<th class=num>"
        + str(_e(tr("total")))
        + "</th></tr></thead><tbody>"
        + str("".join(cells))
        + "</tbody></table></div>"
    )


def queries(page: RowsPage, *, params: Mapping[str, str], commands: Sequence[str],
            text_search: bool) -> str:
    """The filter form (a GET form: filtering is reading), the table, paging and exports."""
    p = {k: v for k, v in params.items() if v and k != "page"}
    search = (
        (
            "<label>"
            + str(_e(tr("text contains")))
            + '<input name=q value="'
            + str(_e(p.get("q", "")))
            + '" maxlength=200></label>'
        )
        if text_search
        else ""
    )
    any_ = tr("any")
    form = (
        '<form class="filters" method="get" action="queries"><label>'
        + str(_e(tr("command")))
        + "<select name=command>"
        + str(_options(commands, p.get("command"), any_))
        + "</select></label><label>"
        + str(_e(tr("status")))
        + "<select name=status>"
        + str(_options(STATUS_VALUES, p.get("status"), any_))
        + "</select></label><label>"
        + str(_e(tr("student id")))
        + '<input name=user inputmode=numeric value="'
        + str(_e(p.get("user", "")))
        + '"></label><label>'
        + str(_e(tr("range")))
        + "<select name=range>"
        + str(_options(RANGES, p.get("range"), tr("all time")))
        + "</select></label><label>"
        + str(_e(tr("from (UTC)")))
        + '<input type=date name=since value="'
        + str(_e(p.get("since", "")))
        + '"></label><label>'
        + str(_e(tr("until (UTC)")))
        + '<input type=date name=until value="'
        + str(_e(p.get("until", "")))
        + '"></label>'
        + str(search)
        + "<button type=submit>"
        + str(_e(tr("Filter")))
        + "</button></form>"
    )
    query = urlencode(p)
    exports = (f'<div class="exports"><a id="export-csv" href="queries.csv?{_e(query)}" download>'
               f'CSV</a><a id="export-json" href="queries.json?{_e(query)}">JSON</a></div>')
    pager = []
    number = page.index + 1  # the URL's page is 1-based
    if number > 1:
        pager.append(
            (
                '<a rel=prev href="?'
                + str(_e(urlencode({**p, "page": number - 1})))
                + '">'
                + str(_e(tr("← newer")))
                + "</a>"
            )
        )
    pager.append(
        (
            "<span>"
            + str(_e(tr("page {page} of {pages}", page=number, pages=page.count)))
            + "</span>"
        )
    )
    if number < page.count:
        pager.append(
            (
                '<a rel=next href="?'
                + str(_e(urlencode({**p, "page": number + 1})))
                + '">'
                + str(_e(tr("older →")))
                + "</a>"
            )
        )
    summary = (f'<p><span data-stat="matching">{_n(page.total)}</span> '
               + _e(tr("matching queries")) + "</p>")
    return (f"<section>{form}</section>{summary}{exports}"
            + query_table(page.rows, base="")
            + f'<div class="pager">{"".join(pager)}</div>')


def student(view: StudentView, window: Window, page: RowsPage, *, range_key: str) -> str:
    hourly = window.bucket == "hour"
    names = list(view.by_command)
    all_queries = tr("all of this student's queries")
    commands = "".join(
        f'<tr><td>/{_e(c)}</td><td class=num data-command-count="{_e(c)}">{_n(n)}</td></tr>'
        for c, n in view.by_command.items())
    return (
        _range_links(range_key)
        + _stats(
            [
                ("total", tr("Queries (all time)"), _n(view.total)),
                ("name", tr("Display name"), view.name or tr("not stored")),
            ]
        )
        + (
            "<section><h2>"
            + str(_e(tr("Queries per hour") if hourly else tr("Queries per day")))
            + "</h2>"
        )
        + _count_chart(
            tr("Queries per hour by command") if hourly else tr("Queries per day by command"),
            window,
            view.per_bucket,
            names,
        )
        + (
            "</section><section><h2>"
            + str(_e(tr("Commands")))
            + "</h2><div class=scroll><table><thead><tr><th>"
            + str(_e(tr("command")))
            + "</th><th class=num>"
            + str(_e(tr("queries")))
            + "</th></tr></thead><tbody>"
            + str(commands)
            + "</tbody></table></div></section>"
        )
        + (
            "<h2>"
            + str(_e(tr("Latest queries")))
            + '</h2><p class="exports"><a href="../queries?user='
            + str(view.user_id)
            + '">'
            + str(_e(all_queries))
            + "</a></p>"
        )
        + query_table(page.rows, base="../")
    )


def rules(s: GuildSettings, *, default_cooldown: str, sentiment_report: str) -> str:
    def where(scope: str, scope_id: int) -> str:
        if scope == "channel":
            return tr("channel {id}", id=scope_id)
        return tr("role {id}", id=scope_id) if scope == "role" else tr("the whole server")

    items = "".join(
        "<li>" + _e(tr("allow {command} in {where}", command=r.command,
                       where=where(r.scope, r.scope_id)) if r.allow else
                    tr("deny {command} in {where}", command=r.command,
                       where=where(r.scope, r.scope_id))) + "</li>"
        for r in sorted(s.rules, key=lambda r: (r.scope, r.scope_id, r.command)))
    cooldowns = "".join(
        f"<li><code>{_e(c.command)}</code>: "
        + _e(tr("{uses} per {seconds} s", uses=c.uses, seconds=number(c.per_seconds)))
        + "</li>" for c in s.cooldowns) or (
        "<li>" + _e(tr("default: {cooldown}", cooldown=default_cooldown)) + "</li>")
    return (
        "<section>"
        + _stats(
            [
                ("paused", tr("Paused"), tr("yes") if s.paused else tr("no")),
                (
                    "instructor_role",
                    tr("Instructor role"),
                    str(s.instructor_role_id)
                    if s.instructor_role_id
                    else tr("none (moderators only)"),
                ),
                ("retention", tr("Retention"), tr("{days} days", days=s.retention_days)),
            ]
        )
        + ("<h2>" + str(_e(tr("Rules (channel beats role beats server)"))) + "</h2>")
        + "<ul>"
        + (items or ("<li>" + str(_e(tr("none: every command is allowed everywhere"))) + "</li>"))
        + "</ul>"
        + ("<h2>" + str(_e(tr("Cooldowns"))) + "</h2><ul>" + str(cooldowns) + "</ul>")
        + "<p class=muted>"
        + _e(tr("Change these with /config in Discord."))
        + "</p></section>"
        + (
            "<section><h2>"
            + str(_e(tr("Sentiment classifier")))
            + "</h2><pre>"
            + str(_e(sentiment_report))
            + "</pre></section>"
        )
    )
