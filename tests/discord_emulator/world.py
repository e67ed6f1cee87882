"""The emulated Discord world: guilds with their channels, roles and members, and interactions.

Objects here are kept in the shapes Discord sends (string ids, full member and role objects), so
the gateway and REST layers hand them to discord.py as they are. InteractionRecord is a test's
view of one interaction (command, click, modal submit, autocomplete): everything the bot
answered, and what a user would have seen.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Sequence
from typing import Any

from .rules import ADMINISTRATOR, EPHEMERAL, EVERYONE_PERMISSIONS, LOADING

DISCORD_EPOCH_MS = 1_420_070_400_000

_last_snowflake = 0


def snowflake() -> int:
    """A unique, time-ordered id shaped like Discord's, so created_at looks sane in the bot."""
    global _last_snowflake
    _last_snowflake = max(_last_snowflake + 1, (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22)
    return _last_snowflake


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _user(uid: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {"id": str(uid), "username": name, "discriminator": "0", "global_name": name,
            "avatar": None, "bot": bot, "public_flags": 0, "flags": 0}


class Guild:
    """One guild of the emulated world: channels, roles and members as Discord sends them."""

    def __init__(self, name: str) -> None:
        self.id = snowflake()
        self.name = name
        self.channels: dict[int, dict[str, Any]] = {}
        self.roles: dict[int, dict[str, Any]] = {}
        self.members: dict[int, dict[str, Any]] = {}
        #: The server's language (`guild_locale` in every interaction from it).
        self.locale = "en-US"
        #: Each member's client language (`locale` in their interactions); default en-US.
        self.member_locales: dict[int, str] = {}
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
                "premium_subscription_count": 0, "preferred_locale": self.locale,
                "public_updates_channel_id": None, "nsfw_level": 0,
                "premium_progress_bar_enabled": False, "joined_at": _now_iso(), "large": False,
                "unavailable": False, "member_count": len(self.members),
                "members": list(self.members.values()),
                # Active threads come apart from the channels, as Discord sends them.
                "channels": [c for c in self.channels.values() if c["type"] not in (10, 11, 12)],
                "threads": [c for c in self.channels.values() if c["type"] in (10, 11, 12)],
                "presences": [], "voice_states": [], "stage_instances": [],
                "guild_scheduled_events": [], "soundboard_sounds": []}


# Components that only lay others out; a test looking for "the buttons" looks through them.
_LAYOUT_TYPES = {1, 9, 17, 18}  # action row, section, container, label


def flatten_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The components inside rows, sections, containers and labels, in display order."""
    flat: list[dict[str, Any]] = []
    for component in components:
        if component.get("type") not in _LAYOUT_TYPES:
            flat.append(component)
        children = list(component.get("components") or [])
        children += [component[k] for k in ("component", "accessory") if component.get(k)]
        flat += flatten_components(children)
    return flat


def text_displays(components: list[dict[str, Any]]) -> list[str]:
    """The text of a components v2 message: its text displays' content, in display order."""
    return [str(c.get("content") or "") for c in flatten_components(components)
            if c.get("type") == 10]


def media_urls(components: list[dict[str, Any]]) -> list[str]:
    """The pictures a components v2 message shows: its media galleries' urls, in order."""
    return [str((entry.get("media") or {}).get("url") or "")
            for c in flatten_components(components) if c.get("type") == 12
            for entry in c.get("items") or []]


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
        self.modal: dict[str, Any] | None = None  # the modal a type 9 first response opened
        self.modal_submitted = False
        self.choices: list[dict[str, Any]] | None = None  # a type 8 autocomplete answer
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
    def message(self) -> dict[str, Any] | None:
        """The bot's visible message for this interaction (with its components), if any."""
        shown = self.visible_messages
        return shown[0] if shown else None

    @property
    def components(self) -> list[dict[str, Any]]:
        """Every component of `message` flattened out of its rows (buttons, selects, ...)."""
        return flatten_components(self.message["components"]) if self.message else []

    @property
    def user_id(self) -> int:
        """The user who caused the interaction (a member in a guild, a user in DMs)."""
        user = (self.payload.get("member") or {}).get("user") or self.payload["user"]
        return int(user["id"])

    @property
    def ephemeral(self) -> bool:
        messages = self.visible_messages or ([self.original] if self.original else [])
        return bool(messages and messages[0]["flags"] & EPHEMERAL)

    @property
    def text(self) -> str:
        parts: list[str] = []
        for msg in self.visible_messages:
            parts.append(msg.get("content") or "")
            parts += text_displays(msg.get("components") or [])
            for embed in msg.get("embeds") or []:
                parts += [embed.get("title") or "", embed.get("description") or ""]
                parts += [f"{f.get('name')}: {f.get('value')}" for f in embed.get("fields") or []]
                parts.append((embed.get("footer") or {}).get("text") or "")
        return "\n".join(p for p in parts if p)

    def _changed(self) -> None:
        if self.first_response is not None:
            self._responded.set()
        # After a deferred update (6) the component's message is already on screen; the answer
        # is the edit or follow-up that comes next.
        waiting = (self.first_response is not None and self.first_response.get("type") == 6
                   and not self.edits and not self.followups)
        if self.visible_messages and not waiting:
            self._done.set()

    async def wait_first_response(self, timeout: float = 5) -> dict[str, Any]:
        await self._wait(self._responded, timeout, "a first response")
        assert self.first_response is not None
        return self.first_response

    async def wait_done(self, timeout: float = 30) -> InteractionRecord:
        """Wait for a final visible message: a type 4 reply, or a follow-up/edit after a defer.

        A type 7 update counts at once; a type 6 (deferred update) only once an edit or
        follow-up comes, so for a bot that only acknowledges a click use wait_first_response.
        """
        await self._wait(self._done, timeout, "a visible message")
        return self

    async def _wait(self, event: asyncio.Event, timeout: float, what: str) -> None:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            data = self.payload["data"]
            name = data.get("name") or data.get("custom_id")
            raise TimeoutError(f"interaction {name!r} got no {what} in "
                               f"{timeout}s (errors returned: {self.errors})") from None
