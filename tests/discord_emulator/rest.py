"""The emulator's REST API (/api/v10) and CDN: request recording, fault injection and routes.

Every request is recorded before it is answered, so a test can assert on exactly what the bot
sent. Routes enforce Discord's interaction rules (the first-response deadline, a single initial
response, token lifetime, acknowledgement before follow-ups) and answer with Discord's error
codes; a rule broken by the bot is also noted in `violations`. Anything without a route is a 404
noted in `unhandled`, so a test notices when the bot starts calling an endpoint not emulated yet.

First responses are checked against the interaction's type, as Discord does: a command takes
4/5/9, a component 4/5/6/7/9, autocomplete only 8, a modal submit 4/5 (and 6/7 when a component
opened the modal). 6 and 7 answer on the component's own message: 7 edits it in place, and for
both, @original (edits, deletes) then means that message, while follow-ups are new messages.
Every message is kept by id (`_messages`), edited in place, so each holder sees its current state.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import mimetypes
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from .rules import (
    CONTEXT_MENUS_PER_TYPE,
    EPHEMERAL,
    IS_COMPONENTS_V2,
    LOADING,
    message_is_empty,
    validate_autocomplete,
    validate_command_json,
    validate_message,
    validate_modal,
)
from .schema import CALLBACK_SCHEMAS, spec_errors
from .world import Guild, InteractionRecord, _now_iso, _user, snowflake

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"

# Which first responses Discord accepts for each interaction type (command, component,
# autocomplete, modal submit); 6 and 7 after a modal submit only when a component opened it.
CALLBACK_TYPES = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json": with "; charset=utf-8" discord.py returns a str, not a dict.
    return web.Response(status=status, body=json.dumps(data).encode(),
                        headers={"Content-Type": "application/json", **(headers or {})})


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the /api/v10 prefix for API calls; CDN paths as requested
    query: dict[str, str]
    json: Any
    files: list[tuple[str, bytes]]
    time: float  # time.monotonic() on arrival
    status: int = 0


@dataclass
class _RateLimit:
    pattern: str
    retry_after: float
    global_: bool
    remaining: int


Handler = Callable[[RecordedRequest, "re.Match[str]"], Awaitable[web.Response]]


class RestMixin:
    """The REST half of DiscordEmulator (the state it uses is set up in its __init__)."""

    token: str
    url: str
    application_id: int
    owner_id: int
    bot_user: dict[str, Any]
    gateway_url: str
    respond_deadline_s: float
    token_ttl_s: float
    guilds: dict[int, Guild]
    requests: list[RecordedRequest]
    unhandled: list[str]
    violations: list[str]
    channel_messages: list[dict[str, Any]]
    interactions: list[InteractionRecord]
    synced_commands: dict[int | None, list[dict[str, Any]]]
    _by_id: dict[int, InteractionRecord]
    _by_token: dict[str, InteractionRecord]
    _cdn: dict[str, tuple[str, bytes]]
    _messages: dict[int, dict[str, Any]]
    _rate_limits: list[_RateLimit]
    _edit_limit: tuple[int, float] | None
    _edit_times: dict[int, collections.deque[float]]
    edit_rate_limited: list[RecordedRequest]
    _delays: dict[str, float]
    _routes: list[tuple[str, re.Pattern[str], Handler, bool]]

    # ----- fault injection

    def rate_limit_next(self, path_regex: str, retry_after: float = 0.2, *, global_: bool = False,
                        count: int = 1) -> None:
        """Answer the next `count` matching requests with a 429 discord.py will retry."""
        self._rate_limits.append(_RateLimit(path_regex, retry_after, global_, count))

    def limit_channel_edits(self, count: int | None, per_s: float = 5.0) -> None:
        """Discord's per-channel limit on message edits: at most `count` edits of messages in
        one channel per `per_s` seconds (interaction webhook edits and channel edits alike);
        beyond it, a 429 whose `retry_after` says when the window frees a place (discord.py
        sleeps that long and retries). Each such 429 is kept in `edit_rate_limited`.
        None lifts the limit (the default: Discord does not publish the number)."""
        self._edit_limit = None if count is None else (count, per_s)
        self._edit_times.clear()

    def _take_edit_slot(self, rec: RecordedRequest, channel_id: int) -> web.Response | None:
        """Count one edit against its channel's window, or answer 429 when the window is full."""
        if self._edit_limit is None:
            return None
        count, per_s = self._edit_limit
        times = self._edit_times.setdefault(channel_id, collections.deque())
        while times and rec.time - times[0] >= per_s:
            times.popleft()
        if len(times) < count:
            times.append(rec.time)
            return None
        self.edit_rate_limited.append(rec)
        retry_after = round(per_s - (rec.time - times[0]), 3) + 0.001
        headers = {"Via": "1.1 google", "Retry-After": str(math.ceil(retry_after)),
                   "X-RateLimit-Scope": "shared"}
        return _json({"message": "You are being rate limited.", "retry_after": retry_after,
                      "global": False}, 429, headers)

    def set_response_delay(self, path_regex: str, seconds: float) -> None:
        """Make matching requests slow (0 removes the delay); deadlines count from arrival."""
        if seconds > 0:
            self._delays[path_regex] = seconds
        else:
            self._delays.pop(path_regex, None)

    def _store_file(self, channel_id: int, filename: str, data: bytes,
                    content_type: str | None = None) -> dict[str, Any]:
        """Keep bytes on the emulator's CDN so the bot (or a test) can download them."""
        aid = snowflake()
        path = f"/attachments/{channel_id}/{aid}/{filename}"
        self._cdn[path] = (filename, data)
        content_type = content_type or mimetypes.guess_type(filename)[0]
        return {"id": str(aid), "filename": filename, "size": len(data), "url": self.url + path,
                "proxy_url": self.url + path, "content_type": content_type}

    # ----- REST plumbing

    def _route_table(self) -> list[tuple[str, re.Pattern[str], Handler, bool]]:
        commands = r"/applications/(?P<app>\d+)(?:/guilds/(?P<guild>\d+))?/commands"
        webhook = r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)"
        message = webhook + r"/messages/(?P<mid>@original|\d+)"
        table: list[tuple[str, str, Handler, bool]] = [
            ("GET", r"/users/@me", self._get_me, True),
            ("GET", r"/oauth2/applications/@me", self._get_application, True),
            ("GET", r"/gateway(?:/bot)?", self._get_gateway, False),
            ("PUT", commands, self._put_commands, True),
            ("GET", commands, self._get_commands, True),
            ("POST", r"/interactions/(?P<iid>\d+)/(?P<token>[^/]+)/callback", self._callback,
             False),
            ("POST", webhook, self._followup, False),
            ("GET", message, self._webhook_message, False),
            ("PATCH", message, self._webhook_message, False),
            ("DELETE", message, self._webhook_message, False),
            ("POST", r"/channels/(?P<cid>\d+)/messages", self._channel_message, True),
            ("GET", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", self._channel_message_by_id,
             True),
            ("PATCH", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)",
             self._channel_message_by_id, True),
            ("DELETE", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)",
             self._channel_message_by_id, True),
            ("GET", r"/channels/(?P<cid>\d+)", self._get_channel, True),
            ("GET", r"/guilds/(?P<gid>\d+)/members/(?P<uid>\d+)", self._get_member, True),
        ]
        return [(method, re.compile(rx), handler, auth) for method, rx, handler, auth in table]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        is_api = request.path.startswith(API_PREFIX + "/")
        path = request.path[len(API_PREFIX):] if is_api else request.path
        rec = await self._record(request, path)
        response = await self._respond(request, rec, is_api)
        rec.status = response.status
        return response

    async def _respond(self, request: web.Request, rec: RecordedRequest,
                       is_api: bool) -> web.Response:
        if not is_api:
            if request.method == "GET" and rec.path in self._cdn:
                filename, data = self._cdn[rec.path]
                ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
                return web.Response(body=data, headers={"Content-Type": ctype})
            return self._unhandled(rec)
        limited = self._take_rate_limit(rec.path)
        if limited is not None:
            return limited
        delay = max((s for rx, s in self._delays.items() if re.search(rx, rec.path)), default=0)
        if delay:
            await asyncio.sleep(delay)
        for method, pattern, handler, needs_auth in self._routes:
            match = pattern.fullmatch(rec.path)
            if match and method == rec.method:
                if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
                    return _json({"code": 0, "message": "401: Unauthorized"}, 401)
                return await handler(rec, match)
        return self._unhandled(rec)

    async def _record(self, request: web.Request, path: str) -> RecordedRequest:
        payload: Any = None
        files: list[tuple[int, str, bytes]] = []
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                data = bytes(await part.read())
                index = re.fullmatch(r"files\[(\d+)\]", part.name or "")
                if part.name == "payload_json":
                    payload = json.loads(data)
                elif index:
                    files.append((int(index[1]), part.filename or "file", data))
        else:
            body = await request.read()
            if body:
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = body.decode(errors="replace")
        rec = RecordedRequest(request.method, path, dict(request.query), payload,
                              [(name, data) for _, name, data in sorted(files)], time.monotonic())
        self.requests.append(rec)
        return rec

    def _unhandled(self, rec: RecordedRequest) -> web.Response:
        self.unhandled.append(f"{rec.method} {rec.path}")
        log.warning("emulator has no route for %s %s", rec.method, rec.path)
        return _json({"code": 0, "message": "404: Not Found"}, 404)

    def _take_rate_limit(self, path: str) -> web.Response | None:
        for rule in self._rate_limits:
            if rule.remaining > 0 and re.search(rule.pattern, path):
                rule.remaining -= 1
                headers = {"Via": "1.1 google", "Retry-After": str(math.ceil(rule.retry_after)),
                           "X-RateLimit-Scope": "global" if rule.global_ else "user"}
                if rule.global_:
                    headers["X-RateLimit-Global"] = "true"
                body = {"message": "You are being rate limited.",
                        "retry_after": rule.retry_after, "global": rule.global_}
                return _json(body, 429, headers)
        return None

    def _error(self, rec: RecordedRequest, status: int, code: int, message: str, *,
               problems: Sequence[str] = (), inter: InteractionRecord | None = None,
               violation: str | None = None) -> web.Response:
        """A Discord-shaped error; rule breaks are also recorded in `violations`."""
        body: dict[str, Any] = {"code": code, "message": message}
        if problems:
            body["errors"] = {}
            for problem in problems:
                key, _, text = problem.partition(": ")
                errors = body["errors"].setdefault(key, {"_errors": []})["_errors"]
                errors.append({"code": "EMULATED_RULE", "message": text})
        for text in ([violation] if violation else []) + list(problems):
            self.violations.append(f"{rec.method} {rec.path}: {text}")
        if inter is not None:
            inter.errors.append(body)
        return _json(body, status)

    def _reject_message(self, rec: RecordedRequest, payload: dict[str, Any], n_files: int,
                        inter: InteractionRecord | None = None) -> web.Response | None:
        problems = validate_message(payload, n_files, file_names=[n for n, _ in rec.files])
        if problems:
            return self._error(rec, 400, 50035, "Invalid Form Body", problems=problems,
                               inter=inter)
        if message_is_empty(payload, n_files):
            return self._error(rec, 400, 50006, "Cannot send an empty message", inter=inter,
                               violation="empty message")
        return None

    def _message(self, payload: dict[str, Any], files: list[tuple[str, bytes]], *,
                 channel_id: int, guild_id: int | None, interaction: bool) -> dict[str, Any]:
        msg = {"id": str(snowflake()), "type": 20 if interaction else 0,
               "channel_id": str(channel_id), "author": self.bot_user,
               "content": payload.get("content") or "", "embeds": payload.get("embeds") or [],
               "components": payload.get("components") or [],
               "attachments": _described([self._store_file(channel_id, n, d) for n, d in files],
                                         payload),
               "mentions": [], "mention_roles": [], "mention_everyone": False, "pinned": False,
               "tts": bool(payload.get("tts")), "timestamp": _now_iso(),
               "edited_timestamp": None, "flags": payload.get("flags") or 0}
        if guild_id is not None:
            msg["guild_id"] = str(guild_id)
        if interaction:
            msg["webhook_id"] = msg["application_id"] = str(self.application_id)
        return msg

    def _remember(self, message: dict[str, Any]) -> dict[str, Any]:
        """Keep a message by id: emu.message(), clicks and context menus see its current state."""
        self._messages[int(message["id"])] = message
        return message

    def _forget(self, message: dict[str, Any]) -> None:
        """A deleted message disappears from the registry and from the record that showed it."""
        self._messages.pop(int(message["id"]), None)
        for inter in self.interactions:
            if inter.original is message:
                inter.original = None
            if message in inter.followup_messages:
                inter.followup_messages.remove(message)

    def _apply_edit(self, rec: RecordedRequest, message: dict[str, Any], data: dict[str, Any],
                    inter: InteractionRecord | None) -> web.Response | None:
        """Edit `message` in place (every holder sees it); an error response if Discord refuses.

        A components v2 message stays one (an edit cannot remove the flag), and an edit that
        sets the flag turns the message into one: its content and embeds go.
        """
        was_v2 = bool(message["flags"] & IS_COMPONENTS_V2)
        kept = {str(a.get("id")) for a in data.get("attachments") or []}
        attachments = ([a for a in message["attachments"] if a["id"] in kept]
                       if "attachments" in data else list(message["attachments"]))
        names = [a["filename"] for a in attachments] + [n for n, _ in rec.files]
        problems = validate_message(data, len(rec.files), was_components_v2=was_v2,
                                    file_names=names)
        if problems:
            return self._error(rec, 400, 50035, "Invalid Form Body", problems=problems,
                               inter=inter)
        updated = dict(message)
        for key, empty in (("content", ""), ("embeds", []), ("components", [])):
            if key in data:
                updated[key] = data[key] or empty
        v2 = was_v2 or bool((data.get("flags") or 0) & IS_COMPONENTS_V2)
        if v2:
            updated["content"], updated["embeds"] = "", []
        channel_id = int(message["channel_id"])
        updated["attachments"] = attachments + _described(
            [self._store_file(channel_id, n, d) for n, d in rec.files], data)
        if message_is_empty(updated):
            return self._error(rec, 400, 50006, "Cannot send an empty message", inter=inter,
                               violation="edit leaves the message empty")
        updated["flags"] = (message["flags"] & ~LOADING) | (IS_COMPONENTS_V2 if v2 else 0)
        updated["edited_timestamp"] = _now_iso()
        message.clear()
        message.update(updated)
        return None

    def _interaction_message(self, inter: InteractionRecord, payload: dict[str, Any],
                             files: list[tuple[str, bytes]]) -> dict[str, Any]:
        return self._message(payload, files, channel_id=int(inter.payload["channel_id"]),
                             guild_id=_opt_int(inter.payload.get("guild_id")),
                             interaction=True)

    # ----- REST routes

    async def _get_me(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return _json({**self.bot_user, "verified": True, "mfa_enabled": False, "locale": "en-US",
                      "email": None, "banner": None, "accent_color": None})

    async def _get_application(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        owner = _user(self.owner_id, "owner")
        return _json({"id": str(self.application_id), "name": self.bot_user["username"],
                      "icon": None, "description": "", "summary": "", "type": None,
                      "bot_public": True, "bot_require_code_grant": False, "owner": owner,
                      "team": None, "verify_key": secrets.token_hex(32), "flags": 0,
                      "interactions_endpoint_url": None, "bot": self.bot_user, "tags": [],
                      "redirect_uris": [], "rpc_origins": [], "approximate_guild_count":
                      len(self.guilds), "integration_types_config": {"0": {}}})

    async def _get_gateway(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return _json({"url": self.gateway_url.rstrip("/"), "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}})

    async def _put_commands(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        if int(m["app"]) != self.application_id:
            return self._error(rec, 403, 50001, "Missing Access")
        scope = int(m["guild"]) if m["guild"] else None
        if scope is not None and scope not in self.guilds:
            return self._error(rec, 404, 10004, "Unknown Guild")
        commands = rec.json if isinstance(rec.json, list) else []
        problems = [p for c in commands for p in validate_command_json(c)]
        names = [(c.get("type") or 1, c.get("name")) for c in commands]
        if len(set(names)) != len(names):
            problems.append("commands: duplicate command names")
        if sum(1 for kind, _ in names if kind == 1) > 100:
            problems.append("commands: more than 100 slash commands")
        for kind, what in ((2, "user"), (3, "message")):
            if sum(1 for k, _ in names if k == kind) > CONTEXT_MENUS_PER_TYPE:
                problems.append(f"commands: more than {CONTEXT_MENUS_PER_TYPE} {what} commands")
        if not isinstance(rec.json, list):
            problems.append("commands: body must be a JSON array")
        if problems:
            return self._error(rec, 400, 50035, "Invalid Form Body", problems=problems)
        old = {c["name"]: c["id"] for c in self.synced_commands.get(scope, [])}
        stored = []
        for command in commands:
            out = {"type": 1, "description": "", "default_member_permissions": None, **command,
                   "id": old.get(command["name"]) or str(snowflake()),
                   "application_id": str(self.application_id), "version": str(snowflake())}
            if scope is not None:
                out["guild_id"] = str(scope)
            stored.append(out)
        self.synced_commands[scope] = stored
        return _json(stored)

    async def _get_commands(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        return _json(self.synced_commands.get(int(m["guild"]) if m["guild"] else None, []))

    async def _callback(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        inter = self._by_id.get(int(m["iid"]))
        if inter is None or inter.token != m["token"]:
            return self._error(rec, 404, 10062, "Unknown interaction")
        late = rec.time - inter.dispatched_at
        if late > self.respond_deadline_s:
            return self._error(rec, 404, 10062, "Unknown interaction", inter=inter,
                               violation=f"first response {late:.2f}s after dispatch "
                                         f"(deadline {self.respond_deadline_s}s)")
        if inter.first_response is not None:
            return self._error(rec, 400, 40060, "Interaction has already been acknowledged.",
                               inter=inter, violation="second initial response")
        body = rec.json if isinstance(rec.json, dict) else {}
        kind, data = body.get("type"), body.get("data") or {}
        rejected = self._reject_callback(rec, inter, body)
        if rejected is not None:
            return rejected
        target = None  # the message a component is on, which 6 and 7 answer by updating
        if kind in (6, 7):
            target = self._messages.get(int(inter.payload["message"]["id"]))
            if target is None:
                return self._error(rec, 404, 10008, "Unknown Message", inter=inter)
        if kind == 7:
            edited = self._apply_edit(rec, target, data, inter)  # type: ignore[arg-type]
            if edited is not None:
                return edited
        inter.first_response, inter.first_response_at = body, rec.time
        inter.files += rec.files
        message = None
        if kind == 4:
            message = inter.original = self._remember(
                self._interaction_message(inter, data, rec.files))
        elif kind == 5:  # the "thinking..." placeholder, replaced by an edit or first follow-up
            flags = ((data.get("flags") or 0) & EPHEMERAL) | LOADING
            message = inter.original = self._remember(
                self._interaction_message(inter, {"flags": flags}, []))
        elif kind in (6, 7):  # @original now means the component's message
            message = inter.original = target
        elif kind == 8:
            inter.choices = list(data.get("choices") or [])
        elif kind == 9:
            inter.modal = data
        inter._changed()
        if rec.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        flags = message["flags"] if message else 0
        resource: dict[str, Any] = {"type": kind}
        if message is not None:
            resource["message"] = message
        return _json({"interaction": {
            "id": str(inter.id), "type": inter.payload["type"], "activity_instance_id": None,
            "response_message_id": message["id"] if message else None,
            "response_message_loading": bool(flags & LOADING),
            "response_message_ephemeral": bool(flags & EPHEMERAL)}, "resource": resource})

    def _reject_callback(self, rec: RecordedRequest, inter: InteractionRecord,
                         body: dict[str, Any]) -> web.Response | None:
        """Discord's checks of a first response: its type for this interaction, then its data."""
        kind, data = body.get("type"), body.get("data") or {}
        allowed = set(CALLBACK_TYPES.get(inter.payload["type"], ()))
        if inter.payload["type"] == 5 and "message" not in inter.payload:
            allowed -= {6, 7}
        if kind not in allowed:
            return self._error(rec, 400, 50035, "Invalid Form Body", inter=inter, problems=[
                f"type: Interaction callback type {kind!r} is not valid for interaction type "
                f"{inter.payload['type']} (allowed: {sorted(allowed)})."])
        problems = []
        if kind == 4:
            problems += validate_message(data, len(rec.files),
                                         file_names=[n for n, _ in rec.files])
        elif kind == 8:
            problems += validate_autocomplete(data)
        elif kind == 9:
            problems += validate_modal(data)
        if not problems:  # the spec on top, so one mistake is not reported twice
            problems = [f"spec: {e}" for e in spec_errors(body, CALLBACK_SCHEMAS[kind])]
        if problems:
            return self._error(rec, 400, 50035, "Invalid Form Body", problems=problems,
                               inter=inter)
        if kind == 4 and message_is_empty(data, len(rec.files)):
            return self._error(rec, 400, 50006, "Cannot send an empty message", inter=inter,
                               violation="empty message")
        return None

    def _webhook_interaction(self, rec: RecordedRequest,
                             m: re.Match[str]) -> InteractionRecord | web.Response:
        inter = self._by_token.get(m["token"])
        if int(m["app"]) != self.application_id or inter is None:
            return self._error(rec, 404, 10015, "Unknown Webhook")
        if rec.time - inter.dispatched_at > self.token_ttl_s:
            return self._error(rec, 401, 50027, "Invalid Webhook Token", inter=inter,
                               violation="interaction token used after it expired")
        if inter.first_response is None:
            return self._error(rec, 404, 10015, "Unknown Webhook", inter=inter,
                               violation="webhook call before the interaction was acknowledged")
        return inter

    async def _followup(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        inter = self._webhook_interaction(rec, m)
        if isinstance(inter, web.Response):
            return inter
        data = rec.json if isinstance(rec.json, dict) else {}
        rejected = self._reject_message(rec, data, len(rec.files), inter)
        if rejected is not None:
            return rejected
        inter.followups.append(data)
        inter.files += rec.files
        original = inter.original
        if original is not None and original["flags"] & LOADING:
            # Discord turns the first follow-up after a defer into the deferred message itself,
            # keeping the defer's ephemeral choice.
            message = self._interaction_message(inter, data, rec.files)
            message["id"], message["flags"] = original["id"], original["flags"] & ~LOADING
            inter.original = self._remember(message)
        else:
            message = self._remember(self._interaction_message(inter, data, rec.files))
            inter.followup_messages.append(message)
        inter._changed()
        if rec.query.get("wait") in ("1", "true", "True"):
            return _json(message)
        return web.Response(status=204)

    async def _webhook_message(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        inter = self._webhook_interaction(rec, m)
        if isinstance(inter, web.Response):
            return inter
        original = inter.original
        if m["mid"] == "@original" or (original is not None and original["id"] == m["mid"]):
            message = original
        else:
            message = next((x for x in inter.followup_messages if x["id"] == m["mid"]), None)
        if message is None:
            return self._error(rec, 404, 10008, "Unknown Message", inter=inter)
        if rec.method == "GET":
            return _json(message)
        if rec.method == "DELETE":
            self._forget(message)
            return web.Response(status=204)
        limited = self._take_edit_slot(rec, int(message["channel_id"]))
        if limited is not None:
            return limited
        data = rec.json if isinstance(rec.json, dict) else {}
        rejected = self._apply_edit(rec, message, data, inter)
        if rejected is not None:
            return rejected
        inter.edits.append(data)
        inter.files += rec.files
        inter._changed()
        return _json(message)

    async def _channel_message(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        cid = int(m["cid"])
        guild = next((g for g in self.guilds.values() if cid in g.channels), None)
        if guild is None:
            return self._error(rec, 404, 10003, "Unknown Channel")
        data = rec.json if isinstance(rec.json, dict) else {}
        rejected = self._reject_message(rec, data, len(rec.files))
        if rejected is not None:
            return rejected
        message = self._remember(self._message(data, rec.files, channel_id=cid,
                                               guild_id=guild.id, interaction=False))
        response = _json(message)
        # Discord does not echo allowed_mentions, but tests want to see what a ping would do.
        self.channel_messages.append({**message, "allowed_mentions": data.get("allowed_mentions")})
        return response

    async def _channel_message_by_id(self, rec: RecordedRequest,
                                     m: re.Match[str]) -> web.Response:
        """GET/PATCH/DELETE /channels/{cid}/messages/{mid}: ephemeral messages are not there."""
        message = self._messages.get(int(m["mid"]))
        if (message is None or message["channel_id"] != m["cid"]
                or message["flags"] & (EPHEMERAL | LOADING)):
            return self._error(rec, 404, 10008, "Unknown Message")
        if rec.method == "GET":
            return _json(message)
        if rec.method == "DELETE":
            self._forget(message)
            return web.Response(status=204)
        if message["author"]["id"] != self.bot_user["id"]:
            return self._error(rec, 403, 50005, "Cannot edit a message authored by another user",
                               violation="edit of another user's message")
        limited = self._take_edit_slot(rec, int(message["channel_id"]))
        if limited is not None:
            return limited
        data = rec.json if isinstance(rec.json, dict) else {}
        rejected = self._apply_edit(rec, message, data, None)
        return rejected if rejected is not None else _json(message)

    async def _get_channel(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        for guild in self.guilds.values():
            if int(m["cid"]) in guild.channels:
                return _json(guild.channels[int(m["cid"])])
        return self._error(rec, 404, 10003, "Unknown Channel")

    async def _get_member(self, rec: RecordedRequest, m: re.Match[str]) -> web.Response:
        guild = self.guilds.get(int(m["gid"]))
        if guild is None:
            return self._error(rec, 404, 10004, "Unknown Guild")
        member = guild.members.get(int(m["uid"]))
        if member is None:
            return self._error(rec, 404, 10007, "Unknown Member")
        return _json(member)


def _described(stored: list[dict[str, Any]], payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Each new file's alt text (`description`), which the client sends in payload_json's
    `attachments` under the file's index as its id, as Discord keeps it on the attachment."""
    given = {str(a.get("id")): a.get("description") for a in payload.get("attachments") or []
             if isinstance(a, dict)}
    for index, attachment in enumerate(stored):
        if given.get(str(index)):
            attachment["description"] = given[str(index)]
    return stored
