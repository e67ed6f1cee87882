"""A small Discord (REST + gateway) emulated on 127.0.0.1 for end-to-end bot tests.

The real, unmodified discord.py client connects to it, so tests exercise what the library really
sends (payload shapes, rate-limit retries, reconnects) instead of our guesses about it. It keeps
the Discord rules a bot most often breaks (3 s first-response deadline, double acknowledgement,
message and command limits), answers with Discord's error codes, and records every request so a
test can assert on exactly what a user would have seen. See shared/docs/DISCORD_TESTING.md.

    async with DiscordEmulator() as emu:
        with emu.patch_discord():          # or env=emu.env() for a subprocess bot
            await bot.login(emu.token)
            task = asyncio.create_task(bot.connect())
            await emu.wait_ready()
            await bot.tree.sync(guild=discord.Object(emu.guild_id))
            record = await emu.invoke("mask", {"text": "Paris is the [MASK]."})
            await record.wait_done()
            assert "capital" in record.text and emu.violations == []
            await bot.close()              # before the emulator, or the bot keeps reconnecting
            await task
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import json
import logging
import math
import mimetypes
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
SITE_DIR = Path(__file__).resolve().parent / "emulator_site"
SPEC_PATH = Path(
    os.environ.get(
        "TLM_DISCORD_API_SPEC",
        Path(__file__).resolve().parents[2] / "shared" / "discord-api-spec" / "openapi.json",
    )
)
DISCORD_EPOCH_MS = 1_420_070_400_000
EPHEMERAL = 1 << 6
LOADING = 1 << 7
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
# add reactions, view channel, send messages, embed links, attach files, read history, use commands
EVERYONE_PERMISSIONS = (1 << 6) | (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (
    1 << 31
)
BOT_PERMISSIONS = EVERYONE_PERMISSIONS | (1 << 13)  # + manage messages
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
COMMAND_NAME_RE = re.compile(r"^[-_\w]{1,32}$")

_last_snowflake = 0


def snowflake() -> int:
    """A unique, time-ordered id shaped like Discord's, so created_at looks sane in the bot."""
    global _last_snowflake
    _last_snowflake = max(_last_snowflake + 1, (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22)
    return _last_snowflake


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _user(uid: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {"id": str(uid), "username": name, "discriminator": "0", "global_name": name,
            "avatar": None, "bot": bot, "public_flags": 0, "flags": 0}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json": with "; charset=utf-8" discord.py returns a str, not a dict.
    return web.Response(status=status, body=json.dumps(data).encode(),
                        headers={"Content-Type": "application/json", **(headers or {})})


# --------------------------------------------------------------------------- Discord rules


def validate_message(payload: dict[str, Any], n_files: int = 0) -> list[str]:
    """Problems Discord would reject a message payload for, as "field: message" strings."""
    problems: list[str] = []
    content = payload.get("content") or ""
    if len(content) > 2000:
        problems.append(f"content: Must be 2000 or fewer in length (got {len(content)}).")
    embeds = payload.get("embeds") or []
    if len(embeds) > 10:
        problems.append(f"embeds: Must be 10 or fewer in length (got {len(embeds)}).")
    total = 0
    for i, embed in enumerate(embeds):
        texts = {"title": (embed.get("title") or "", 256),
                 "description": (embed.get("description") or "", 4096),
                 "footer.text": ((embed.get("footer") or {}).get("text") or "", 2048),
                 "author.name": ((embed.get("author") or {}).get("name") or "", 256)}
        for key, (text, limit) in texts.items():
            total += len(text)
            if len(text) > limit:
                problems.append(f"embeds.{i}.{key}: Must be {limit} or fewer in length "
                                f"(got {len(text)}).")
        fields = embed.get("fields") or []
        if len(fields) > 25:
            problems.append(f"embeds.{i}.fields: Must be 25 or fewer in length "
                            f"(got {len(fields)}).")
        for j, fld in enumerate(fields):
            for key, limit in (("name", 256), ("value", 1024)):
                text = str(fld.get(key) or "")
                total += len(text)
                if not 1 <= len(text) <= limit:
                    problems.append(f"embeds.{i}.fields.{j}.{key}: Must be between 1 and {limit} "
                                    f"in length (got {len(text)}).")
    if total > 6000:
        problems.append(f"embeds: Embed size exceeds maximum size of 6000 (got {total}).")
    n_attachments = max(n_files, len(payload.get("attachments") or []))
    if n_attachments > 10:
        problems.append(f"attachments: Must be 10 or fewer in length (got {n_attachments}).")
    return problems


def message_is_empty(message: dict[str, Any], n_files: int = 0) -> bool:
    """Discord answers 50006 for a message with nothing a user could see."""
    return not ((message.get("content") or "").strip() or message.get("embeds") or n_files
                or message.get("attachments") or message.get("components")
                or message.get("sticker_ids") or message.get("poll"))


def validate_command_json(cmd: dict[str, Any]) -> list[str]:
    """Problems with one application command as synced: documented rules plus the OpenAPI spec."""
    name = cmd.get("name")
    where = f"command {name!r}"
    problems: list[str] = []
    if (cmd.get("type") or 1) == 1:
        problems += _check_name_and_description(cmd, where)
        problems += _check_options(cmd.get("options") or [], where, depth=0)
        chars = _command_chars(cmd)
        if chars > 4000:
            problems.append(f"{where}: {chars} characters in names/descriptions/choices (max 4000)")
    else:  # user and message context menus: free-form name, no description
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            problems.append(f"{where}: name must be 1-32 characters")
        if cmd.get("description"):
            problems.append(f"{where}: context menu commands take no description")
    problems += [f"{where}: spec: {e}" for e in _spec_errors(cmd)]
    return problems


def _check_name_and_description(obj: dict[str, Any], where: str) -> list[str]:
    problems = []
    name, description = obj.get("name"), obj.get("description")
    if not isinstance(name, str) or not COMMAND_NAME_RE.match(name) or name != name.lower():
        problems.append(f"{where}: name must be lowercase and match ^[-_\\w]{{1,32}}$")
    if not isinstance(description, str) or not 1 <= len(description) <= 100:
        problems.append(f"{where}: description must be 1-100 characters")
    return problems


def _check_options(options: list[dict[str, Any]], where: str, depth: int) -> list[str]:
    problems = []
    if len(options) > 25:
        problems.append(f"{where}: {len(options)} options (max 25)")
    names = [o.get("name") for o in options]
    if len(set(names)) != len(names):
        problems.append(f"{where}: duplicate option names")
    if len({o.get("type") in (1, 2) for o in options}) > 1:
        problems.append(f"{where}: subcommands cannot be mixed with options")
    seen_optional = False
    for opt in options:
        w = f"{where} option {opt.get('name')!r}"
        problems += _check_name_and_description(opt, w)
        kind = opt.get("type")
        if kind in (1, 2):
            children = opt.get("options") or []
            if kind == 2 and (depth > 0 or any(c.get("type") != 1 for c in children)):
                problems.append(f"{w}: groups must be top-level and hold only subcommands")
            if kind == 1 and depth > 1:
                problems.append(f"{w}: subcommands nest at most one group deep")
            problems += _check_options(children, w, depth + 1)
            continue
        if opt.get("required"):
            if seen_optional:
                problems.append(f"{w}: required options must come before optional ones")
        else:
            seen_optional = True
        choices = opt.get("choices") or []
        if len(choices) > 25:
            problems.append(f"{w}: {len(choices)} choices (max 25)")
        if choices and opt.get("autocomplete"):
            problems.append(f"{w}: autocomplete cannot be used with choices")
        for choice in choices:
            if not 1 <= len(str(choice.get("name", ""))) <= 100:
                problems.append(f"{w}: choice names must be 1-100 characters")
            if isinstance(choice.get("value"), str) and len(choice["value"]) > 100:
                problems.append(f"{w}: string choice values must be at most 100 characters")
    return problems


def _command_chars(obj: dict[str, Any]) -> int:
    total = len(obj.get("name") or "") + len(obj.get("description") or "")
    for choice in obj.get("choices") or []:
        total += len(str(choice.get("name", ""))) + len(str(choice.get("value", "")))
    return total + sum(_command_chars(o) for o in obj.get("options") or [])


@functools.cache
def _load_spec() -> dict[str, Any] | None:
    if not SPEC_PATH.is_file():
        log.debug("no Discord OpenAPI spec at %s; skipping schema checks", SPEC_PATH)
        return None
    return json.loads(SPEC_PATH.read_text())


def _spec_errors(cmd: dict[str, Any]) -> list[str]:
    spec = _load_spec()
    if spec is None:
        return []
    schema = spec["components"]["schemas"]["ApplicationCommandCreateRequest"]
    return _schema_errors(cmd, schema, spec, "$")


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _schema_errors(value: Any, schema: dict[str, Any], spec: dict[str, Any], at: str) -> list[str]:
    """The JSON-schema subset Discord's spec uses for commands (jsonschema is not installed)."""
    if "$ref" in schema:
        target: Any = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return _schema_errors(value, target, spec, at)
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if not any(_JSON_TYPES[k](value) for k in kinds):
            return [f"{at}: expected {'|'.join(kinds)}, got {type(value).__name__}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{at}: {value!r} != {schema['const']!r}")
    for sub in schema.get("allOf", []):
        errors += _schema_errors(value, sub, spec, at)
    if "oneOf" in schema:
        results = [_schema_errors(value, sub, spec, at) for sub in schema["oneOf"]]
        matches = sum(not r for r in results)
        if matches == 0:
            errors += min(results, key=len)
        elif matches > 1:
            errors.append(f"{at}: matches {matches} oneOf branches")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1e18):
            errors.append(f"{at}: length {len(value)} outside the allowed range")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{at}: {value!r} does not match {schema['pattern']}")
    if _JSON_TYPES["number"](value):
        if value < schema.get("minimum", -math.inf) or value > schema.get("maximum", math.inf):
            errors.append(f"{at}: {value} outside the allowed range")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 1e18):
            errors.append(f"{at}: {len(value)} items outside the allowed range")
        if schema.get("uniqueItems") and len({json.dumps(v) for v in value}) != len(value):
            errors.append(f"{at}: items are not unique")
        for i, item in enumerate(value):
            errors += _schema_errors(item, schema.get("items", {}), spec, f"{at}[{i}]")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{at}: missing required {key!r}")
        if len(value) > schema.get("maxProperties", 1e18):
            errors.append(f"{at}: too many properties")
        props, extra = schema.get("properties", {}), schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                errors += _schema_errors(item, props[key], spec, f"{at}.{key}")
            elif extra is False:
                errors.append(f"{at}: unexpected property {key!r}")
            elif isinstance(extra, dict):
                errors += _schema_errors(item, extra, spec, f"{at}.{key}")
    return errors


# --------------------------------------------------------------------------- the world


class Guild:
    """One guild of the emulated world: channels, roles and members as Discord sends them."""

    def __init__(self, name: str) -> None:
        self.id = snowflake()
        self.name = name
        self.channels: dict[int, dict[str, Any]] = {}
        self.roles: dict[int, dict[str, Any]] = {}
        self.members: dict[int, dict[str, Any]] = {}
        self._permission_overrides: dict[int, int] = {}
        self._add_role(self.id, "@everyone", EVERYONE_PERMISSIONS)  # @everyone's id is the guild's

    def add_channel(self, name: str, *, type: int = 0) -> int:
        cid = snowflake()
        self.channels[cid] = {"id": str(cid), "type": type, "name": name, "guild_id": str(self.id),
                              "position": len(self.channels), "permission_overwrites": [],
                              "nsfw": False, "topic": None, "parent_id": None,
                              "last_message_id": None, "rate_limit_per_user": 0, "flags": 0}
        if type in (2, 13):  # voice and stage channels (their text chat takes commands too)
            self.channels[cid].update(bitrate=64000, user_limit=0, rtc_region=None)
        return cid

    def add_thread(self, parent_id: int, name: str) -> int:
        """A public thread under `parent_id` (type 11), as Discord sends it in an interaction."""
        tid = self.add_channel(name, type=11)
        self.channels[tid].update(
            parent_id=str(parent_id), owner_id=str(next(iter(self.members))),
            member_count=1, message_count=0, total_message_sent=0,
            thread_metadata={"archived": False, "auto_archive_duration": 1440,
                             "archive_timestamp": _now_iso(), "locked": False},
        )
        return tid

    def add_role(self, name: str, permissions: int = 0) -> int:
        return self._add_role(snowflake(), name, permissions)

    def _add_role(self, rid: int, name: str, permissions: int) -> int:
        self.roles[rid] = {"id": str(rid), "name": name, "color": 0,
                           "colors": {"primary_color": 0, "secondary_color": None,
                                      "tertiary_color": None},
                           "hoist": False, "icon": None, "unicode_emoji": None,
                           "position": len(self.roles), "permissions": str(permissions),
                           "managed": False, "mentionable": True, "flags": 0}
        return rid

    def role_id(self, name: str) -> int:
        return next(int(r["id"]) for r in self.roles.values() if r["name"] == name)

    def add_member(self, name: str, roles: Sequence[int | str] = (),
                   permissions: int | None = None, *, bot: bool = False,
                   user_id: int | None = None) -> int:
        """Add a member; `roles` are ids or names; `permissions` overrides the role-derived set."""
        uid = user_id or snowflake()
        role_ids = [r if isinstance(r, int) else self.role_id(r) for r in roles]
        self.members[uid] = {"user": _user(uid, name, bot=bot), "nick": None, "avatar": None,
                             "roles": [str(r) for r in role_ids], "joined_at": _now_iso(),
                             "premium_since": None, "deaf": False, "mute": False, "flags": 0,
                             "pending": False, "communication_disabled_until": None}
        if permissions is not None:
            self._permission_overrides[uid] = permissions
        return uid

    def permissions_of(self, uid: int) -> int:
        if uid in self._permission_overrides:
            return self._permission_overrides[uid]
        perms = int(self.roles[self.id]["permissions"])
        for rid in self.members[uid]["roles"]:
            perms |= int(self.roles[int(rid)]["permissions"])
        return (1 << 53) - 1 if perms & ADMINISTRATOR else perms

    def gateway_payload(self) -> dict[str, Any]:
        return {"id": str(self.id), "name": self.name, "icon": None, "splash": None,
                "owner_id": str(next(iter(self.members), self.id)),
                "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0,
                "default_message_notifications": 0, "explicit_content_filter": 0,
                "roles": list(self.roles.values()), "emojis": [], "stickers": [], "features": [],
                "mfa_level": 0, "system_channel_id": None, "system_channel_flags": 0,
                "rules_channel_id": None, "max_members": 500000, "vanity_url_code": None,
                "description": None, "banner": None, "premium_tier": 0,
                "premium_subscription_count": 0, "preferred_locale": "en-US",
                "public_updates_channel_id": None, "nsfw_level": 0,
                "premium_progress_bar_enabled": False, "joined_at": _now_iso(), "large": False,
                "unavailable": False, "member_count": len(self.members),
                "members": list(self.members.values()),
                # Active threads come apart from the channels, as Discord sends them.
                "channels": [c for c in self.channels.values() if c["type"] not in (10, 11, 12)],
                "threads": [c for c in self.channels.values() if c["type"] in (10, 11, 12)],
                "presences": [], "voice_states": [], "stage_instances": [],
                "guild_scheduled_events": [], "soundboard_sounds": []}


# --------------------------------------------------------------------------- records


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the /api/v10 prefix for API calls; CDN paths as requested
    query: dict[str, str]
    json: Any
    files: list[tuple[str, bytes]]
    time: float  # time.monotonic() on arrival
    status: int = 0


class InteractionRecord:
    """One dispatched interaction and everything the bot did with it."""

    def __init__(self, id: int, token: str, payload: dict[str, Any]) -> None:
        self.id = id
        self.token = token
        self.payload = payload
        self.dispatched_at = 0.0
        self.first_response: dict[str, Any] | None = None
        self.first_response_at: float | None = None
        self.followups: list[dict[str, Any]] = []  # raw follow-up payloads
        self.edits: list[dict[str, Any]] = []  # raw PATCH payloads
        self.files: list[tuple[str, bytes]] = []
        self.errors: list[dict[str, Any]] = []  # error bodies the emulator answered with
        self.original: dict[str, Any] | None = None  # current state of the @original message
        self.followup_messages: list[dict[str, Any]] = []
        self._responded = asyncio.Event()
        self._done = asyncio.Event()

    @property
    def ack_latency(self) -> float | None:
        if self.first_response_at is None:
            return None
        return self.first_response_at - self.dispatched_at

    @property
    def visible_messages(self) -> list[dict[str, Any]]:
        original = self.original
        shown = [original] if original is not None and not original["flags"] & LOADING else []
        return shown + self.followup_messages

    @property
    def ephemeral(self) -> bool:
        messages = self.visible_messages or ([self.original] if self.original else [])
        return bool(messages and messages[0]["flags"] & EPHEMERAL)

    @property
    def text(self) -> str:
        parts: list[str] = []
        for msg in self.visible_messages:
            parts.append(msg.get("content") or "")
            for embed in msg.get("embeds") or []:
                parts += [embed.get("title") or "", embed.get("description") or ""]
                parts += [f"{f.get('name')}: {f.get('value')}" for f in embed.get("fields") or []]
                parts.append((embed.get("footer") or {}).get("text") or "")
        return "\n".join(p for p in parts if p)

    def _changed(self) -> None:
        if self.first_response is not None:
            self._responded.set()
        if self.visible_messages:
            self._done.set()

    async def wait_first_response(self, timeout: float = 5) -> dict[str, Any]:
        await self._wait(self._responded, timeout, "a first response")
        assert self.first_response is not None
        return self.first_response

    async def wait_done(self, timeout: float = 30) -> InteractionRecord:
        """Wait for a final visible message: a type 4 reply, or a follow-up/edit after a defer."""
        await self._wait(self._done, timeout, "a visible message")
        return self

    async def _wait(self, event: asyncio.Event, timeout: float, what: str) -> None:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"interaction {self.payload['data']['name']!r} got no {what} in "
                               f"{timeout}s (errors returned: {self.errors})") from None


@dataclass
class _RateLimit:
    pattern: str
    retry_after: float
    global_: bool
    remaining: int


@dataclass
class _Session:
    id: str
    ws: web.WebSocketResponse | None
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # kept for RESUME replay
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


Handler = Callable[[RecordedRequest, "re.Match[str]"], Awaitable[web.Response]]


# --------------------------------------------------------------------------- the emulator


class DiscordEmulator:
    """REST + gateway on 127.0.0.1 that a real discord.py client logs into.

    One bot at a time: events go to the session that identified last. Paths in `requests`,
    `unhandled` and the regexes of the fault-injection helpers are relative to /api/v10.
    """

    def __init__(self, *, token: str = "test-token", application_id: int = 1300000000000000001,
                 owner_id: int = 1300000000000000002, respond_deadline_s: float = 3.0,
                 token_ttl_s: float = 900.0, bot_name: str = "tlm-bot") -> None:
        self.token = token
        self.application_id = application_id
        self.owner_id = owner_id
        self.respond_deadline_s = respond_deadline_s
        self.token_ttl_s = token_ttl_s
        self.bot_user = _user(application_id, bot_name, bot=True)
        self.url = ""
        self.guilds: dict[int, Guild] = {}
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[str] = []
        self.violations: list[str] = []
        self.channel_messages: list[dict[str, Any]] = []
        self.interactions: list[InteractionRecord] = []
        self.gateway_log: list[str] = []  # IDENTIFY, READY, RESUME, RESUMED, RECONNECT, ...
        self.synced_commands: dict[int | None, list[dict[str, Any]]] = {}
        self._by_id: dict[int, InteractionRecord] = {}
        self._by_token: dict[str, InteractionRecord] = {}
        self._cdn: dict[str, tuple[str, bytes]] = {}
        self._rate_limits: list[_RateLimit] = []
        self._delays: dict[str, float] = {}
        self._sessions: dict[str, _Session] = {}
        self._session: _Session | None = None
        self._sockets: dict[web.WebSocketResponse, web.Request] = {}
        self._ready = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._routes = self._route_table()

        self.guild = self.add_guild("Class")
        self.guild_id = self.guild.id
        self.channel_id = self.guild.add_channel("general")
        self.everyone_role_id = self.guild.id
        self.student_role_id = self.guild.add_role("Student")
        self.instructor_role_id = self.guild.add_role("Instructor", MANAGE_GUILD)
        self.student_id = self.guild.add_member("student", roles=["Student"])
        self.moderator_id = self.guild.add_member("instructor", roles=["Instructor"])

    # ----- lifecycle and wiring

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/gateway/", self._gateway)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def api_url(self) -> str:
        return self.url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/gateway/"

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[DiscordEmulator]:
        """Point this process's discord.py at the emulator; restores the real URLs on exit."""
        import discord
        import discord.gateway
        import discord.http
        import yarl

        saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
                 discord.Asset.BASE)
        discord.http.Route.BASE = self.api_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        discord.Asset.BASE = self.url
        try:
            yield self
        finally:
            (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
             discord.Asset.BASE) = saved

    def env(self) -> dict[str, str]:
        """Environment for a subprocess bot: sitecustomize.py applies the same patch there."""
        paths = [str(SITE_DIR), os.environ.get("PYTHONPATH", "")]
        return {"PYTHONPATH": os.pathsep.join(p for p in paths if p),
                "TLM_DISCORD_EMULATOR_URL": self.url}

    def add_guild(self, name: str = "Class") -> Guild:
        """Add a guild (with the bot as a member). Add guilds before the bot connects."""
        guild = Guild(name)
        guild.add_member(self.bot_user["username"], permissions=BOT_PERMISSIONS, bot=True,
                         user_id=self.application_id)
        self.guilds[guild.id] = guild
        return guild

    def find_requests(self, method: str | None = None,
                      path_regex: str = "") -> list[RecordedRequest]:
        return [r for r in self.requests
                if (method is None or r.method == method) and re.search(path_regex, r.path)]

    # ----- fault injection

    def rate_limit_next(self, path_regex: str, retry_after: float = 0.2, *, global_: bool = False,
                        count: int = 1) -> None:
        """Answer the next `count` matching requests with a 429 discord.py will retry."""
        self._rate_limits.append(_RateLimit(path_regex, retry_after, global_, count))

    def set_response_delay(self, path_regex: str, seconds: float) -> None:
        """Make matching requests slow (0 removes the delay); deadlines count from arrival."""
        if seconds > 0:
            self._delays[path_regex] = seconds
        else:
            self._delays.pop(path_regex, None)

    async def send_reconnect(self) -> None:
        self.gateway_log.append("RECONNECT")
        await self._send(self._live_session().ws, {"op": 7, "d": None, "s": None, "t": None})

    async def drop_connection(self) -> None:
        """Cut the TCP connection with no close frame, as a network fault would."""
        session = self._live_session()
        self.gateway_log.append("DROP")
        request = self._sockets.get(session.ws) if session.ws else None
        session.ws = None
        if request is not None and request.transport is not None:
            request.transport.abort()

    async def invalidate_session(self, resumable: bool = False) -> None:
        session = self._live_session()
        self.gateway_log.append("INVALID_SESSION")
        if not resumable:
            self._sessions.pop(session.id, None)
            self._ready.clear()
        await self._send(session.ws, {"op": 9, "d": resumable, "s": None, "t": None})

    # ----- gateway

    async def wait_ready(self, timeout: float = 10) -> None:
        """Wait until a client identified and was sent READY and every GUILD_CREATE."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def wait_gateway(self, entry: str, count: int = 1, timeout: float = 10) -> None:
        """Wait until `entry` (e.g. "RESUMED") appears `count` times in gateway_log."""
        deadline = time.monotonic() + timeout
        while self.gateway_log.count(entry) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{entry} x{count} not seen; gateway log: {self.gateway_log}")
            await asyncio.sleep(0.01)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a gateway event; while the client is away it is kept for RESUME to replay."""
        session = self._session
        if session is None:
            raise RuntimeError("no client has identified with the emulator")
        async with session.lock:
            session.seq += 1
            frame = {"op": 0, "t": event, "s": session.seq, "d": data}
            session.events.append(frame)
            await self._send(session.ws, frame)

    def _live_session(self) -> _Session:
        if self._session is None or self._session.ws is None:
            raise RuntimeError("no client is connected to the emulator's gateway")
        return self._session

    @staticmethod
    async def _send(ws: web.WebSocketResponse | None, frame: dict[str, Any]) -> None:
        # Text frames: discord.py only decompresses binary ones, so zlib-stream is not needed.
        if ws is not None and not ws.closed:
            with contextlib.suppress(ConnectionResetError):
                await ws.send_str(json.dumps(frame))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self._sockets[ws] = request
        try:
            await self._send(ws, {"op": 10, "d": {"heartbeat_interval": 41250}, "s": None,
                                  "t": None})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_frame(ws, json.loads(msg.data))
        finally:
            del self._sockets[ws]
            for session in self._sessions.values():
                if session.ws is ws:
                    session.ws = None
        return ws

    async def _on_frame(self, ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        op, data = frame.get("op"), frame.get("d")
        if op == 1:
            await self._send(ws, {"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(ws, data)
        elif op == 6:
            await self._resume(ws, data)
        elif op == 3:
            self.gateway_log.append("PRESENCE_UPDATE")
        else:
            self.unhandled.append(f"gateway op {op}: {frame}")

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        self.gateway_log.append("IDENTIFY")
        if data.get("token") != self.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        self._ready.clear()
        session = _Session(id=secrets.token_hex(16), ws=ws)
        self._sessions[session.id] = self._session = session
        await self.dispatch("READY", {
            "v": 10, "user": self.bot_user, "session_id": session.id,
            "resume_gateway_url": self.gateway_url, "session_type": "normal",
            "shard": data.get("shard", [0, 1]), "private_channels": [], "relationships": [],
            "presences": [], "user_settings": {}, "guild_join_requests": [],
            "geo_ordered_rtc_regions": [], "application": {"id": str(self.application_id),
                                                           "flags": 0},
            "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds]})
        self.gateway_log.append("READY")
        for guild in self.guilds.values():
            await self.dispatch("GUILD_CREATE", guild.gateway_payload())
        self._ready.set()

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        self.gateway_log.append("RESUME")
        session = self._sessions.get(data.get("session_id", ""))
        if session is None or data.get("token") != self.token:
            self.gateway_log.append("INVALID_SESSION")
            await self._send(ws, {"op": 9, "d": False, "s": None, "t": None})
            return
        async with session.lock:
            session.ws, self._session = ws, session
            for frame in session.events:
                if frame["s"] > (data.get("seq") or 0):
                    await self._send(ws, frame)
            session.seq += 1
            resumed = {"op": 0, "t": "RESUMED", "s": session.seq, "d": {}}
            session.events.append(resumed)
            await self._send(ws, resumed)
        self.gateway_log.append("RESUMED")

    # ----- interactions

    async def invoke(self, name: str, options: dict[str, Any] | None = None, *,
                     subcommand: str | None = None, subcommand_group: str | None = None,
                     user_id: int | None = None, channel_id: int | None = None,
                     guild_id: int | None = None,
                     attachments: dict[str, tuple[str, bytes, str]] | None = None,
                     dm: bool = False,
                     ) -> InteractionRecord:
        """Dispatch a slash command as a user would run it; option types come from the sync.

        `dm=True` sends it from the user's direct messages with the bot (no guild, no member),
        as Discord does for a globally synced command there.
        """
        guild = self.guilds[guild_id or self.guild_id]
        channel_id = channel_id or next(iter(guild.channels))
        user_id = user_id or self.student_id
        scope, command = self._find_command(name, guild.id)
        resolved: dict[str, dict[str, Any]] = {}
        path = [n for n in (subcommand_group, subcommand) if n]
        built = self._build_options(command.get("options") or [], dict(options or {}),
                                    dict(attachments or {}), resolved, guild, channel_id, path)
        data: dict[str, Any] = {"id": command["id"], "name": name, "type": 1, "options": built}
        if scope is not None:
            data["guild_id"] = str(scope)
        if resolved:
            data["resolved"] = resolved
        iid = snowflake()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        payload = {
            "id": str(iid), "application_id": str(self.application_id), "type": 2,
            "token": token, "version": 1, "data": data, "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "guild_locale": "en-US", "channel_id": str(channel_id),
            "channel": {**guild.channels[channel_id],
                        "permissions": str(guild.permissions_of(user_id))},
            "member": {**guild.members[user_id],
                       "permissions": str(guild.permissions_of(user_id))},
            "app_permissions": str(guild.permissions_of(self.application_id)),
            "locale": "en-US", "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
            "entitlements": [], "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild.id)}, "context": 0,
        }
        if dm:
            data.pop("guild_id", None)
            for key in ("guild_id", "guild", "guild_locale", "member"):
                payload.pop(key)
            dm_channel = str(snowflake())
            payload.update(
                user=guild.members[user_id]["user"], context=1, channel_id=dm_channel,
                channel={"id": dm_channel, "type": 1,
                         "recipients": [guild.members[user_id]["user"]]},
                authorizing_integration_owners={"1": str(user_id)},
            )
        record = InteractionRecord(iid, token, payload)
        self.interactions.append(record)
        self._by_id[iid] = self._by_token[token] = record
        record.dispatched_at = time.monotonic()
        await self.dispatch("INTERACTION_CREATE", payload)
        return record

    def _find_command(self, name: str, guild_id: int) -> tuple[int | None, dict[str, Any]]:
        for scope in (guild_id, None):
            for command in self.synced_commands.get(scope, []):
                if command["name"] == name and (command.get("type") or 1) == 1:
                    return scope, command
        raise LookupError(f"/{name} was never synced (synced: {self.synced_commands})")

    def _build_options(self, schema: list[dict[str, Any]], values: dict[str, Any],
                       uploads: dict[str, tuple[str, bytes, str]], resolved: dict[str, Any],
                       guild: Guild, channel_id: int, path: list[str]) -> list[dict[str, Any]]:
        if path:
            sub = next((o for o in schema if o["name"] == path[0] and o["type"] in (1, 2)), None)
            if sub is None:
                raise ValueError(f"no subcommand (group) {path[0]!r}")
            inner = self._build_options(sub.get("options") or [], values, uploads, resolved,
                                        guild, channel_id, path[1:])
            return [{"name": sub["name"], "type": sub["type"], "options": inner}]
        if any(o["type"] in (1, 2) for o in schema):
            raise ValueError("this command has subcommands: pass subcommand=")
        unknown = (set(values) | set(uploads)) - {o["name"] for o in schema}
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)}")
        built = []
        for opt in schema:
            name, kind = opt["name"], opt["type"]
            if name not in values and name not in uploads:
                if opt.get("required"):
                    raise ValueError(f"option {name!r} is required")
                continue
            if kind == 11:
                value: Any = self._upload(uploads[name], channel_id, resolved)
            else:
                value = self._option_value(opt, values[name], resolved, guild)
            built.append({"name": name, "type": kind, "value": value})
        return built

    def _option_value(self, opt: dict[str, Any], value: Any, resolved: dict[str, Any],
                      guild: Guild) -> Any:
        """Convert a test's value the way the Discord client would (and refuse what it refuses)."""
        kind = opt["type"]
        if kind == 3:
            value = str(value)
            if not (opt.get("min_length") or 0) <= len(value) <= (opt.get("max_length") or 6000):
                raise ValueError(f"{opt['name']}: length {len(value)} outside the allowed range")
        elif kind in (4, 10):
            value = int(value) if kind == 4 else value
            low, high = opt.get("min_value"), opt.get("max_value")
            if (low is not None and value < low) or (high is not None and value > high):
                raise ValueError(f"{opt['name']}: {value} outside [{low}, {high}]")
        elif kind == 5:
            value = bool(value)
        elif kind in (6, 7, 8, 9):
            uid = int(value)
            if kind in (6, 9) and uid in guild.members:
                member = guild.members[uid]
                resolved.setdefault("users", {})[str(uid)] = member["user"]
                resolved.setdefault("members", {})[str(uid)] = {
                    **{k: v for k, v in member.items() if k != "user"},
                    "permissions": str(guild.permissions_of(uid))}
            elif kind in (8, 9) and uid in guild.roles:
                resolved.setdefault("roles", {})[str(uid)] = guild.roles[uid]
            elif kind == 7 and uid in guild.channels:
                channel = guild.channels[uid]
                resolved.setdefault("channels", {})[str(uid)] = {
                    "id": channel["id"], "name": channel["name"], "type": channel["type"],
                    "permissions": str(EVERYONE_PERMISSIONS), "guild_id": str(guild.id),
                    **{k: channel[k] for k in ("parent_id", "thread_metadata", "owner_id",
                                               "member_count", "message_count")
                       if channel["type"] in (10, 11, 12)}}
            else:
                raise ValueError(f"{opt['name']}: {uid} is not a user/role/channel of the guild")
            value = str(uid)
        choices = [c["value"] for c in opt.get("choices") or []]
        if choices and value not in choices:
            raise ValueError(f"{opt['name']}: {value!r} is not one of the choices {choices}")
        return value

    def _upload(self, upload: tuple[str, bytes, str], channel_id: int,
                resolved: dict[str, Any]) -> str:
        filename, data, content_type = upload
        attachment = self._store_file(channel_id, filename, data, content_type)
        attachment["ephemeral"] = True
        resolved.setdefault("attachments", {})[attachment["id"]] = attachment
        return attachment["id"]

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
        problems = validate_message(payload, n_files)
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
               "attachments": [self._store_file(channel_id, n, d) for n, d in files],
               "mentions": [], "mention_roles": [], "mention_everyone": False, "pinned": False,
               "tts": bool(payload.get("tts")), "timestamp": _now_iso(),
               "edited_timestamp": None, "flags": payload.get("flags") or 0}
        if guild_id is not None:
            msg["guild_id"] = str(guild_id)
        if interaction:
            msg["webhook_id"] = msg["application_id"] = str(self.application_id)
        return msg

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
        if kind not in (4, 5, 6, 7, 8, 9):
            return self._error(rec, 400, 50035, "Invalid Form Body", inter=inter,
                               problems=[f"type: Invalid interaction callback type {kind!r}."])
        if kind in (4, 7):
            rejected = self._reject_message(rec, data, len(rec.files), inter)
            if rejected is not None:
                return rejected
        inter.first_response, inter.first_response_at = body, rec.time
        inter.files += rec.files
        message = None
        if kind == 4:
            message = inter.original = self._interaction_message(inter, data, rec.files)
        elif kind == 5:  # the "thinking..." placeholder, replaced by an edit or first follow-up
            flags = ((data.get("flags") or 0) & EPHEMERAL) | LOADING
            message = inter.original = self._interaction_message(inter, {"flags": flags}, [])
        inter._changed()
        if rec.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        flags = message["flags"] if message else 0
        resource: dict[str, Any] = {"type": kind}
        if message is not None:
            resource["message"] = message
        return _json({"interaction": {
            "id": str(inter.id), "type": 2, "activity_instance_id": None,
            "response_message_id": message["id"] if message else None,
            "response_message_loading": bool(flags & LOADING),
            "response_message_ephemeral": bool(flags & EPHEMERAL)}, "resource": resource})

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
            inter.original = message
        else:
            message = self._interaction_message(inter, data, rec.files)
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
            if message is original:
                inter.original = None
            else:
                inter.followup_messages.remove(message)
            return web.Response(status=204)
        data = rec.json if isinstance(rec.json, dict) else {}
        problems = validate_message(data, len(rec.files))
        if problems:
            return self._error(rec, 400, 50035, "Invalid Form Body", problems=problems,
                               inter=inter)
        updated = dict(message)
        for key, empty in (("content", ""), ("embeds", []), ("components", [])):
            if key in data:
                updated[key] = data[key] or empty
        kept = {str(a.get("id")) for a in data.get("attachments") or []}
        if "attachments" in data:
            updated["attachments"] = [a for a in message["attachments"] if a["id"] in kept]
        channel_id = int(message["channel_id"])
        updated["attachments"] += [self._store_file(channel_id, n, d) for n, d in rec.files]
        if message_is_empty(updated):
            return self._error(rec, 400, 50006, "Cannot send an empty message", inter=inter,
                               violation="edit leaves the message empty")
        updated["flags"] = message["flags"] & ~LOADING
        updated["edited_timestamp"] = _now_iso()
        message.clear()
        message.update(updated)
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
        message = self._message(data, rec.files, channel_id=cid, guild_id=guild.id,
                                interaction=False)
        response = _json(message)
        # Discord does not echo allowed_mentions, but tests want to see what a ping would do.
        self.channel_messages.append({**message, "allowed_mentions": data.get("allowed_mentions")})
        return response

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
