"""What a user's Discord client does: turn a test's slash command into an INTERACTION_CREATE.

Option values are converted and refused the way the client would (types, ranges, choices, users
and roles of the guild) using the command as the bot synced it, so a test cannot invoke a command
in a shape no user could send.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .rules import EVERYONE_PERMISSIONS
from .world import Guild, InteractionRecord, snowflake


class InteractionsMixin:
    """Slash commands for DiscordEmulator (the state it uses is set up in its __init__)."""

    application_id: int
    student_id: int
    guild_id: int
    guilds: dict[int, Guild]
    interactions: list[InteractionRecord]
    synced_commands: dict[int | None, list[dict[str, Any]]]
    _by_id: dict[int, InteractionRecord]
    _by_token: dict[str, InteractionRecord]
    dispatch: Callable[[str, dict[str, Any]], Awaitable[None]]  # gateway.py
    _store_file: Callable[..., dict[str, Any]]  # rest.py

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
        payload = self._interaction_payload(2, data, guild, channel_id, user_id)
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
        return await self._dispatch_interaction(payload)

    def _interaction_payload(self, kind: int, data: dict[str, Any], guild: Guild,
                             channel_id: int, user_id: int) -> dict[str, Any]:
        """INTERACTION_CREATE of `kind` (2 command, 3 component, 4 autocomplete, 5 modal)."""
        # Read from the package at call time: a test that patches
        # tests.discord_emulator.ATTACHMENT_SIZE_LIMIT changes what the interaction advertises.
        from . import ATTACHMENT_SIZE_LIMIT

        if user_id not in guild.members:
            raise ValueError(f"user {user_id} is not a member of guild {guild.id}")
        return {
            "id": str(snowflake()), "application_id": str(self.application_id), "type": kind,
            "token": "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48), "version": 1,
            "data": data, "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": guild.locale, "features": []},
            "guild_locale": guild.locale, "channel_id": str(channel_id),
            "channel": {**guild.channels[channel_id],
                        "permissions": str(guild.permissions_of(user_id))},
            "member": {**guild.members[user_id],
                       "permissions": str(guild.permissions_of(user_id))},
            "app_permissions": str(guild.permissions_of(self.application_id)),
            "locale": guild.member_locales.get(user_id, "en-US"),
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
            "entitlements": [], "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild.id)}, "context": 0,
        }

    async def _dispatch_interaction(self, payload: dict[str, Any]) -> InteractionRecord:
        """Record the interaction (so its callback and webhooks are accepted), then send it."""
        record = InteractionRecord(int(payload["id"]), payload["token"], payload)
        self.interactions.append(record)
        self._by_id[record.id] = self._by_token[record.token] = record
        record.dispatched_at = time.monotonic()
        await self.dispatch("INTERACTION_CREATE", payload)
        return record

    def _find_command(self, name: str, guild_id: int,
                      kind: int = 1) -> tuple[int | None, dict[str, Any]]:
        """The synced command a user can see: the guild's first, then the global one."""
        for scope in (guild_id, None):
            for command in self.synced_commands.get(scope, []):
                if command["name"] == name and (command.get("type") or 1) == kind:
                    return scope, command
        what = {1: "slash command", 2: "user command", 3: "message command"}[kind]
        raise LookupError(f"{what} {name!r} was never synced (synced: {self.synced_commands})")

    def _build_options(self, schema: list[dict[str, Any]], values: dict[str, Any],
                       uploads: dict[str, tuple[str, bytes, str]], resolved: dict[str, Any],
                       guild: Guild, channel_id: int, path: list[str],
                       focused: str | None = None) -> list[dict[str, Any]]:
        """Options as the client sends them; with `focused`, as it sends them for autocomplete
        (required options may still be empty, the focused one carries the partial text)."""
        if path:
            sub = next((o for o in schema if o["name"] == path[0] and o["type"] in (1, 2)), None)
            if sub is None:
                raise ValueError(f"no subcommand (group) {path[0]!r}")
            inner = self._build_options(sub.get("options") or [], values, uploads, resolved,
                                        guild, channel_id, path[1:], focused)
            return [{"name": sub["name"], "type": sub["type"], "options": inner}]
        if any(o["type"] in (1, 2) for o in schema):
            raise ValueError("this command has subcommands: pass subcommand=")
        unknown = (set(values) | set(uploads)) - {o["name"] for o in schema}
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)}")
        if focused is not None:
            target = next((o for o in schema if o["name"] == focused), None)
            if target is None or not target.get("autocomplete"):
                raise ValueError(f"option {focused!r} has no autocomplete")
        built = []
        for opt in schema:
            name, kind = opt["name"], opt["type"]
            if name not in values and name not in uploads:
                if opt.get("required") and focused is None:
                    raise ValueError(f"option {name!r} is required")
                continue
            if name == focused:
                built.append({"name": name, "type": kind, "value": str(values[name]),
                              "focused": True})
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
