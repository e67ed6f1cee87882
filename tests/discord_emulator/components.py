"""What a user does with messages beyond slash commands: posting, right-clicking, clicking, forms.

A test posts a user's message (`add_message`), runs a message context menu on it, presses a
button or picks from a select on a bot message, submits the modal the bot opened, or types into an
autocompleted option. Each is refused (ValueError) where the Discord client would not let a user
do it: a button that is not on the message's *current* state (after the bot's edits) or is
disabled, someone else's ephemeral message, a modal field too long or missing, a context menu
that was never synced. What discord.py 2.7 expects, learnt from its source:

- Component clicks (INTERACTION_CREATE type 3) need `data.custom_id`, `data.component_type` and
  the whole `message`: discord.py routes a click by (component_type, custom_id) to the view it
  stored under that message's id, and a DynamicItem rebuilds its view from `message.components`.
- Views sent with a response are stored under `response_message_id` from the callback's
  `?with_response=1` answer, so that id must be the real message id.
- Modal submits (type 5) echo the modal's layout: classic modals wrap each text input in an
  action row (type 1), `ui.Label` sends a type 18 label holding one `component`; discord.py reads
  either.
- Autocomplete (type 4) carries the command's options with the typed one marked `focused`; its
  value is the partial text (a string whatever the option's type), and required options may be
  missing. The only accepted answer is callback type 8.
- A message context menu (type 2, data.type 3) names the message in `target_id` and carries it in
  `resolved.messages`.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from .world import Guild, InteractionRecord, _now_iso, flatten_components, snowflake

TEXT_INPUT, STRING_SELECT = 4, 3


class ComponentsMixin:
    """Messages, clicks, modals, autocomplete and context menus for DiscordEmulator."""

    student_id: int
    guild_id: int
    respond_deadline_s: float
    guilds: dict[int, Guild]
    interactions: list[InteractionRecord]
    _messages: dict[int, dict[str, Any]]
    _remember: Callable[[dict[str, Any]], dict[str, Any]]  # rest.py
    _find_command: Callable[..., tuple[int | None, dict[str, Any]]]  # interactions.py
    _build_options: Callable[..., list[dict[str, Any]]]  # interactions.py
    _interaction_payload: Callable[..., dict[str, Any]]  # interactions.py
    _dispatch_interaction: Callable[[dict[str, Any]], Awaitable[InteractionRecord]]

    # ----- messages

    def add_message(self, channel_id: int | None = None, content: str = "", *,
                    author_id: int | None = None,
                    embeds: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A message a user posted (default: the student, in the guild's first channel).

        It is stored, not dispatched: REST GET finds it and a context menu can target it, but no
        MESSAGE_CREATE reaches the bot (the bot asks for no message intents).
        """
        if channel_id is None:
            guild = self.guilds[self.guild_id]
            channel_id = next(iter(guild.channels))
        else:
            guild = self._guild_of_channel(channel_id)
        author_id = author_id or self.student_id
        if author_id not in guild.members:
            raise ValueError(f"user {author_id} is not a member of guild {guild.id}")
        member = guild.members[author_id]
        message = {
            "id": str(snowflake()), "type": 0, "channel_id": str(channel_id),
            "guild_id": str(guild.id), "author": member["user"],
            "member": {k: v for k, v in member.items() if k != "user"},
            "content": content, "embeds": list(embeds or []), "attachments": [],
            "components": [], "mentions": [], "mention_roles": [], "mention_everyone": False,
            "pinned": False, "tts": False, "timestamp": _now_iso(), "edited_timestamp": None,
            "flags": 0,
        }
        return self._remember(message)

    def message(self, message_id: int | str) -> dict[str, Any]:
        """The current state of a message the emulator knows (bot or user; KeyError if gone)."""
        try:
            return self._messages[int(message_id)]
        except KeyError:
            raise KeyError(f"no message {message_id} (never sent, or deleted)") from None

    # ----- message context menus

    async def invoke_message_command(self, name: str, message: dict[str, Any] | int, *,
                                     user_id: int | None = None,
                                     guild_id: int | None = None) -> InteractionRecord:
        """Right-click `message` -> Apps -> `name`, which must be synced as a message command."""
        target = self._current(message)
        if target["flags"] & (1 << 6):
            raise ValueError("ephemeral messages have no Apps menu")
        channel_id = int(target["channel_id"])
        guild = self.guilds[guild_id] if guild_id else self._guild_of_channel(channel_id)
        scope, command = self._find_command(name, guild.id, 3)
        data: dict[str, Any] = {
            "id": command["id"], "name": name, "type": 3, "target_id": target["id"],
            "resolved": {"messages": {target["id"]: copy.deepcopy(target)}}}
        if scope is not None:
            data["guild_id"] = str(scope)
        payload = self._interaction_payload(2, data, guild, channel_id,
                                            user_id or self.student_id)
        return await self._dispatch_interaction(payload)

    # ----- components

    async def click(self, message: dict[str, Any] | int, custom_id: str, *,
                    user_id: int | None = None) -> InteractionRecord:
        """Press the enabled button `custom_id` on the current state of a bot message."""
        target, user_id = self._component_target(message, user_id)
        self._find_component(target, custom_id, {2})
        return await self._dispatch_component(target, user_id, {
            "custom_id": custom_id, "component_type": 2})

    async def select(self, message: dict[str, Any] | int, custom_id: str, values: list[str], *,
                     user_id: int | None = None) -> InteractionRecord:
        """Pick `values` in the string select menu `custom_id` (within its options and counts)."""
        target, user_id = self._component_target(message, user_id)
        menu = self._find_component(target, custom_id, {STRING_SELECT})
        offered = {o["value"] for o in menu.get("options") or []}
        low, high = menu.get("min_values", 1), menu.get("max_values", 1)
        if not set(values) <= offered or len(set(values)) != len(values):
            raise ValueError(f"{custom_id}: {values} are not distinct options of {sorted(offered)}")
        if not low <= len(values) <= high:
            raise ValueError(f"{custom_id}: pick between {low} and {high} options")
        return await self._dispatch_component(target, user_id, {
            "custom_id": custom_id, "component_type": STRING_SELECT, "values": list(values)})

    def _component_target(self, message: dict[str, Any] | int,
                          user_id: int | None) -> tuple[dict[str, Any], int]:
        target = self._current(message)
        viewer = self._shown_to(target) if target["flags"] & (1 << 6) else None
        user_id = user_id or viewer or self.student_id
        if viewer is not None and user_id != viewer:
            raise ValueError(f"message {target['id']} is ephemeral: only user {viewer} sees it")
        return target, user_id

    def _find_component(self, message: dict[str, Any], custom_id: str,
                        types: set[int]) -> dict[str, Any]:
        for component in flatten_components(message.get("components") or []):
            if component.get("custom_id") == custom_id and component.get("type") in types:
                if component.get("disabled"):
                    raise ValueError(f"{custom_id!r} is disabled on message {message['id']}")
                return component
        present = [c.get("custom_id") for c in flatten_components(message.get("components") or [])]
        raise ValueError(f"no component {custom_id!r} on message {message['id']} "
                         f"(it has {present})")

    async def _dispatch_component(self, message: dict[str, Any], user_id: int,
                                  data: dict[str, Any]) -> InteractionRecord:
        channel_id = int(message["channel_id"])
        guild = self._guild_of_channel(channel_id)
        payload = self._interaction_payload(3, data, guild, channel_id, user_id)
        payload["message"] = copy.deepcopy(message)
        return await self._dispatch_interaction(payload)

    # ----- modals

    async def submit_modal(self, record: InteractionRecord, values: dict[str, Any], *,
                           user_id: int | None = None) -> InteractionRecord:
        """Fill in and submit the modal that `record`'s first response (type 9) opened.

        `values` maps each field to its text (a list of values for a select in a label); a key
        is the field's custom_id or, failing that, its label as the user sees it (handy when
        discord.py generated the custom_id). Optional fields left out are sent empty, as the
        client does.
        """
        modal = record.modal
        if modal is None:
            raise ValueError("this interaction opened no modal (its first response was not 9)")
        if record.modal_submitted:
            raise ValueError("this modal was already submitted (Discord closes it on submit)")
        user_id = user_id or record.user_id
        if user_id != record.user_id:
            raise ValueError(f"the modal was shown to user {record.user_id}, not {user_id}")
        remaining = dict(values)
        rows = [self._submitted(c, remaining) for c in modal.get("components") or []]
        if remaining:
            raise ValueError(f"the modal has no fields {sorted(remaining)}")
        record.modal_submitted = True
        payload = {k: v for k, v in record.payload.items() if k not in ("message",)}
        payload.update(id=str(snowflake()), type=5,
                       token="aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48),
                       data={"custom_id": modal["custom_id"],
                             "components": [r for r in rows if r is not None]})
        if "message" in record.payload:  # opened from a component: the submit names its message
            mid = int(record.payload["message"]["id"])
            payload["message"] = copy.deepcopy(self._messages.get(mid, record.payload["message"]))
        return await self._dispatch_interaction(payload)

    def _submitted(self, component: dict[str, Any],
                   values: dict[str, Any]) -> dict[str, Any] | None:
        """One top-level modal component as the client submits it (rows and labels kept)."""
        kind = component.get("type")
        ident = {"id": component["id"]} if "id" in component else {}
        if kind == 1:
            return {"type": 1, **ident, "components": [
                self._field_value(c, c.get("label"), values)
                for c in component.get("components") or []]}
        if kind == 18:
            return {"type": 18, **ident, "component": self._field_value(
                component["component"], component.get("label"), values)}
        return None  # text displays and the like carry no value

    def _field_value(self, field: dict[str, Any], label: str | None,
                     values: dict[str, Any]) -> dict[str, Any]:
        custom_id = field.get("custom_id")
        kind = field.get("type")
        given = values.pop(custom_id if custom_id in values else label, None)
        required = field.get("required", True)
        if kind == TEXT_INPUT:
            text = "" if given is None else str(given)
            if not text and required:
                raise ValueError(f"modal field {custom_id!r} is required")
            low, high = field.get("min_length") or 0, field.get("max_length") or 4000
            if text and not low <= len(text) <= high:
                raise ValueError(f"modal field {custom_id!r}: length {len(text)} outside "
                                 f"[{low}, {high}]")
            return {"type": TEXT_INPUT, "custom_id": custom_id, "value": text}
        if kind == STRING_SELECT:
            picked = list(given or [])
            offered = {o["value"] for o in field.get("options") or []}
            if not set(picked) <= offered:
                raise ValueError(f"modal select {custom_id!r}: {picked} not in {sorted(offered)}")
            if not picked and required:
                raise ValueError(f"modal field {custom_id!r} is required")
            return {"type": STRING_SELECT, "custom_id": custom_id, "values": picked}
        raise ValueError(f"modal component type {kind} is not emulated")

    # ----- autocomplete

    async def autocomplete(self, name: str, options: dict[str, Any], focused: str, *,
                           subcommand: str | None = None, subcommand_group: str | None = None,
                           user_id: int | None = None, channel_id: int | None = None,
                           guild_id: int | None = None,
                           timeout: float | None = None) -> list[dict[str, Any]]:
        """Type `options[focused]` into an autocompleted option; the bot's choices (type 8).

        Raises TimeoutError when no accepted answer comes (the record, with any error the
        emulator answered, is the last of `interactions`).
        """
        guild = self.guilds[guild_id or self.guild_id]
        channel_id = channel_id or next(iter(guild.channels))
        scope, command = self._find_command(name, guild.id)
        values = dict(options)
        values.setdefault(focused, "")
        path = [n for n in (subcommand_group, subcommand) if n]
        resolved: dict[str, Any] = {}
        built = self._build_options(command.get("options") or [], values, {}, resolved, guild,
                                    channel_id, path, focused)
        data: dict[str, Any] = {"id": command["id"], "name": name, "type": 1, "options": built}
        if scope is not None:
            data["guild_id"] = str(scope)
        if resolved:
            data["resolved"] = resolved
        payload = self._interaction_payload(4, data, guild, channel_id,
                                            user_id or self.student_id)
        record = await self._dispatch_interaction(payload)
        await record.wait_first_response(timeout or self.respond_deadline_s + 2)
        return list(record.choices or [])

    # ----- lookups

    def _current(self, message: dict[str, Any] | int | str) -> dict[str, Any]:
        mid = message["id"] if isinstance(message, dict) else message
        if int(mid) not in self._messages:
            raise ValueError(f"no message {mid} (never sent, or deleted)")
        return self._messages[int(mid)]

    def _guild_of_channel(self, channel_id: int) -> Guild:
        for guild in self.guilds.values():
            if channel_id in guild.channels:
                return guild
        raise ValueError(f"channel {channel_id} is in no guild of the emulator")

    def _shown_to(self, message: dict[str, Any]) -> int | None:
        """The user an interaction's message was shown to (the one who ran the interaction)."""
        for record in self.interactions:
            if record.original is message or any(m is message for m in record.followup_messages):
                return record.user_id
        return None
