"""HTML of the dashboard's pages: plain functions from data to text, every value escaped.

Why no template engine: five small pages whose structure is code anyway (loops over rows and
buckets); `html.escape` on every interpolated value is the whole escaping story, and it is easy
to review: in this module, nothing reaches the output without passing `_e` (or being a number
or an SVG built by `charts`, which escapes its own text). Links are relative, so the pages work
unchanged under a reverse proxy's path prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from urllib.parse import urlencode

from bot.dashboard import charts
from core.outcomes import STATUS_VALUES, Status
from core.storage.dashboard_data import Overview, StudentView, Window
from core.storage.guild_settings import GuildSettings
from core.storage.querylog import QueryRow, RowsPage

#: Outcomes that are the bot's problem, not the student's (see core.outcomes).
SERVER_FAULTS = ("overloaded", "unavailable", "timeout", "failed")
RANGES: dict[str, str] = {"24h": "last 24 hours", "7d": "last 7 days", "30d": "last 30 days",
                          "90d": "last 90 days"}


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def student_label(user_id: int, name: str) -> str:
    return f"{name} ({user_id})" if name else str(user_id)


def layout(*, title: str, guild_id: int, root: str, base: str, active: str, body: str,
           guild_name: str = "") -> str:
    """The page frame. `root`: relative path to the app root; `base`: to the guild's pages;
    `guild_name`: the server's name as the bot last saw it ("": the id stands in)."""
    nav = "".join(
        f'<a href="{_e(base + href)}"{" aria-current=page" if key == active else ""}>{label}</a>'
        for key, href, label in (("overview", "./", "Overview"), ("queries", "queries", "Queries"),
                                 ("rules", "rules", "Rules")))
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · tlm-bot</title>"
        f'<link rel=stylesheet href="{_e(root)}static/style.css"></head><body>'
        f"<header><h1>tlm-bot · {server_title(guild_id, guild_name)}</h1><nav>{nav}</nav>"
        "</header>"
        f"<main><h2>{_e(title)}</h2>{body}</main></body></html>"
    )


def server_title(guild_id: int, name: str) -> str:
    """The server by its name, its id in a tooltip; the id alone when no name is known."""
    if not name:
        return f"server {guild_id}"
    return f'<span title="server id {guild_id}">{_e(name)}</span>'


def notice(title: str, text: str, *, root: str = "", refresh_to: str | None = None) -> str:
    """A page without data: errors, and the hop that leaves the token out of the address."""
    head = (f'<meta http-equiv=refresh content="0; url={_e(refresh_to)}">' if refresh_to
            else "")
    link = f'<p><a href="{_e(refresh_to)}">Continue</a></p>' if refresh_to else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"{head}<title>{_e(title)} · tlm-bot</title>"
        f'<link rel=stylesheet href="{_e(root)}static/style.css"></head><body>'
        f'<main class=notice><h2>{_e(title)}</h2><p>{_e(text)}</p>{link}</main></body></html>'
    )


def _stats(items: Iterable[tuple[str, str, str]]) -> str:
    cells = "".join(f'<div><dt>{_e(label)}</dt><dd data-stat="{_e(key)}">{_e(value)}</dd></div>'
                    for key, label, value in items)
    return f'<dl class="stats">{cells}</dl>'


def _series(window: Window, per_bucket: Mapping[str, Mapping[str, int]],
            names: Sequence[str]) -> tuple[list[str], dict[str, list[int]]]:
    labels = window.buckets()
    return labels, {name: [per_bucket.get(b, {}).get(name, 0) for b in labels] for name in names}


def _axis_labels(window: Window, labels: Sequence[str]) -> list[str]:
    return [b[5:].replace("T", " ") + ("h" if window.bucket == "hour" else "") for b in labels]


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
    per = "hour" if window.bucket == "hour" else "day"
    names = list(ov.by_command)
    # Words, not 👍/👎: a machine without an emoji font would show empty boxes.
    feedback = (f"{ov.feedback.get(1, 0):,} up · {ov.feedback.get(-1, 0):,} down"
                if ov.feedback else "none yet")
    body = [
        _range_links(range_key),
        _stats([
            ("total", "Queries", f"{ov.total:,}"),
            ("user_error_rate", "Student errors", _pct(ov.rate("user_error"))),
            ("refusal_rate", "Refused", _pct(ov.rate("refused", "paused"))),
            ("cooldown_rate", "Cooldowns", _pct(ov.rate("cooldown"))),
            ("fault_rate", "Bot faults", _pct(ov.rate(*SERVER_FAULTS))),
            ("p50", "Latency p50", _ms(ov.p50_ms)),
            ("p95", "Latency p95", _ms(ov.p95_ms)),
            ("feedback", "Feedback", feedback),
        ]),
        f"<section><h2>Queries per {per}, by command</h2>"
        + _count_chart(f"Queries per {per} by command", window, ov.per_bucket, names)
        + "</section>",
    ]
    by_bucket = {lat.bucket: lat for lat in ov.latency}
    labels = window.buckets()
    body.append(
        f"<section><h2>Latency per {per}</h2>"
        + charts.lines(f"Latency p50 and p95 per {per}", _axis_labels(window, labels), {
            "p50": [by_bucket[b].p50_ms if b in by_bucket else None for b in labels],
            "p95": [by_bucket[b].p95_ms if b in by_bucket else None for b in labels],
        }, unit=" ms")
        + charts.legend(["p50", "p95"]) + "</section>")
    rows = "".join(
        f'<tr><td><a href="queries?{urlencode({"command": name, "range": range_key})}">'
        f"/{_e(name)}</a></td><td class=num data-command-count=\"{_e(name)}\">{count:,}</td></tr>"
        for name, count in ov.by_command.items())
    statuses = "".join(
        f'<tr><td title="{_e(Status(s).meaning)}">{_e(s)}</td>'
        f'<td class=num data-status-count="{_e(s)}">{n:,}</td></tr>'
        for s, n in ov.by_status.items())
    body.append(
        '<section><h2>Per command</h2><div class=scroll><table><thead><tr><th>command</th>'
        f"<th class=num>queries</th></tr></thead><tbody>{rows}</tbody></table></div>"
        '<h2>Outcomes</h2><div class=scroll><table><thead><tr><th>status</th>'
        f"<th class=num>queries</th></tr></thead><tbody>{statuses}</tbody></table></div>"
        "</section>")
    students = "".join(
        f'<tr><td><a href="students/{s.user_id}">{_e(student_label(s.user_id, s.name))}</a></td>'
        f'<td class=num data-student-count="{s.user_id}">{s.queries:,}</td></tr>'
        for s in ov.busiest)
    body.append(
        "<section><h2>Busiest students</h2><div class=scroll><table><thead><tr><th>student</th>"
        f"<th class=num>queries</th></tr></thead><tbody>{students}</tbody></table></div>"
        "</section>")
    return "".join(body)


def _options(values: Iterable[str], current: str | None, empty: str) -> str:
    out = [f'<option value="">{_e(empty)}</option>']
    for value in values:
        chosen = " selected" if value == current else ""
        out.append(f'<option value="{_e(value)}"{chosen}>{_e(value)}</option>')
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
        cells.append('<tr><td colspan=7 class=muted>No queries match.</td></tr>')
    return (
        '<div class=scroll><table id="queries"><thead><tr><th>time (UTC)</th><th>student</th>'
        "<th>command</th><th>status</th><th>input</th><th>answer</th><th class=num>total</th>"
        f"</tr></thead><tbody>{''.join(cells)}</tbody></table></div>")


def queries(page: RowsPage, *, params: Mapping[str, str], commands: Sequence[str],
            text_search: bool) -> str:
    """The filter form (a GET form: filtering is reading), the table, paging and exports."""
    p = {k: v for k, v in params.items() if v and k != "page"}
    search = (f'<label>text contains<input name=q value="{_e(p.get("q", ""))}" maxlength=200>'
              "</label>" if text_search else "")
    form = (
        '<form class="filters" method="get" action="queries">'
        f'<label>command<select name=command>{_options(commands, p.get("command"), "any")}'
        "</select></label>"
        f'<label>status<select name=status>{_options(STATUS_VALUES, p.get("status"), "any")}'
        "</select></label>"
        f'<label>student id<input name=user inputmode=numeric value="{_e(p.get("user", ""))}">'
        "</label>"
        f'<label>range<select name=range>{_options(RANGES, p.get("range"), "all time")}'
        "</select></label>"
        f'<label>from (UTC)<input type=date name=since value="{_e(p.get("since", ""))}"></label>'
        f'<label>until (UTC)<input type=date name=until value="{_e(p.get("until", ""))}"></label>'
        f"{search}<button type=submit>Filter</button></form>")
    query = urlencode(p)
    exports = (f'<div class="exports"><a id="export-csv" href="queries.csv?{_e(query)}" download>'
               f'CSV</a><a id="export-json" href="queries.json?{_e(query)}">JSON</a></div>')
    pager = []
    number = page.index + 1  # the URL's page is 1-based
    if number > 1:
        pager.append(f'<a rel=prev href="?{_e(urlencode({**p, "page": number - 1}))}">'
                     "← newer</a>")
    pager.append(f"<span>page {number} of {page.count}</span>")
    if number < page.count:
        pager.append(f'<a rel=next href="?{_e(urlencode({**p, "page": number + 1}))}">'
                     "older →</a>")
    summary = f'<p><span data-stat="matching">{page.total:,}</span> matching queries</p>'
    return (f"<section>{form}</section>{summary}{exports}"
            + query_table(page.rows, base="")
            + f'<div class="pager">{"".join(pager)}</div>')


def student(view: StudentView, window: Window, page: RowsPage, *, range_key: str) -> str:
    per = "hour" if window.bucket == "hour" else "day"
    names = list(view.by_command)
    commands = "".join(
        f'<tr><td>/{_e(c)}</td><td class=num data-command-count="{_e(c)}">{n:,}</td></tr>'
        for c, n in view.by_command.items())
    return (
        _range_links(range_key)
        + _stats([("total", "Queries (all time)", f"{view.total:,}"),
                  ("name", "Display name", view.name or "not stored")])
        + f"<section><h2>Queries per {per}</h2>"
        + _count_chart(f"Queries per {per} by command", window, view.per_bucket, names)
        + "</section><section><h2>Commands</h2><div class=scroll><table><thead><tr>"
        f"<th>command</th><th class=num>queries</th></tr></thead><tbody>{commands}</tbody>"
        "</table></div></section>"
        + f'<h2>Latest queries</h2><p class="exports"><a href="../queries?user={view.user_id}">'
        "all of this student's queries</a></p>"
        + query_table(page.rows, base="../"))


def rules(s: GuildSettings, *, default_cooldown: str, sentiment_report: str) -> str:
    where = {"channel": "channel {}", "role": "role {}", "guild": "the whole server"}
    items = "".join(
        f"<li>{'allow' if r.allow else 'deny'} <code>{_e(r.command)}</code> in "
        f"{_e(where[r.scope].format(r.scope_id))}</li>"
        for r in sorted(s.rules, key=lambda r: (r.scope, r.scope_id, r.command)))
    cooldowns = "".join(f"<li><code>{_e(c.command)}</code>: {c.uses} per {c.per_seconds:g} s</li>"
                        for c in s.cooldowns) or f"<li>default: {_e(default_cooldown)}</li>"
    return (
        "<section>" + _stats([
            ("paused", "Paused", "yes" if s.paused else "no"),
            ("instructor_role", "Instructor role",
             str(s.instructor_role_id) if s.instructor_role_id else "none (moderators only)"),
            ("retention", "Retention", f"{s.retention_days} days"),
        ])
        + "<h2>Rules (channel beats role beats server)</h2>"
        + f"<ul>{items or '<li>none: every command is allowed everywhere</li>'}</ul>"
        + f"<h2>Cooldowns</h2><ul>{cooldowns}</ul>"
        + '<p class=muted>Change these with <code>/config</code> in Discord.</p></section>'
        + f"<section><h2>Sentiment classifier</h2><pre>{_e(sentiment_report)}</pre></section>")
