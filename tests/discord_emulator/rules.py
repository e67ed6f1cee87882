"""Discord's documented limits, as checks the emulator answers with Discord's own errors.

A bot that breaks one of these works against a lenient fake and fails against real Discord, in
front of a class. Each check returns every problem (as Discord's "field: message" strings) rather
than the first, so one failing test shows the whole payload's trouble. The numbers come from
Discord's developer documentation; the OpenAPI spec, where present, adds its schema on top
(schema.py).
"""

from __future__ import annotations

import re
from typing import Any

from .schema import _spec_errors, message_components_spec_errors

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
IS_COMPONENTS_V2 = 1 << 15
BUTTON, STRING_SELECT, TEXT_INPUT, LABEL = 2, 3, 4, 18
ACTION_ROW, SECTION, TEXT_DISPLAY, THUMBNAIL, MEDIA_GALLERY, FILE, SEPARATOR, CONTAINER = (
    1, 9, 10, 11, 12, 13, 14, 17)
#: What a components v2 message may hold at its top level (rows, sections, text, media, files,
#: separators, containers); a classic message holds only action rows.
V2_TOP_LEVEL = {ACTION_ROW, SECTION, TEXT_DISPLAY, MEDIA_GALLERY, FILE, SEPARATOR, CONTAINER}
V2_MAX_COMPONENTS = 40  # every component counts, nested ones included
V2_MAX_TEXT = 4000  # the text of every text display together
SELECT_TYPES = {3, 5, 6, 7, 8}  # string, user, role, mentionable, channel selects
CONTEXT_MENUS_PER_TYPE = 5  # message commands and user commands, each, per scope


def validate_message(payload: dict[str, Any], n_files: int = 0, *,
                     was_components_v2: bool = False,
                     file_names: list[str] | None = None) -> list[str]:
    """Problems Discord would reject a message payload for, as "field: message" strings.

    `was_components_v2`: the payload edits a message sent with the components v2 flag, which
    an edit can never remove (so the v2 rules hold whatever flags the edit names).
    `file_names`: the attachments the message will carry, which `attachment://` media must name.
    """
    problems: list[str] = []
    v2 = was_components_v2 or bool((payload.get("flags") or 0) & IS_COMPONENTS_V2)
    if v2:
        problems += _v2_message_problems(payload, file_names)
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
    components = payload.get("components") or []
    if components:
        problems += validate_components(components, components_v2=v2)
    return problems


def _v2_message_problems(payload: dict[str, Any], file_names: list[str] | None) -> list[str]:
    """A components v2 message: no content, embeds, stickers or polls beside its components;
    at most 40 components (nested ones count) and 4,000 characters of text displays."""
    problems = []
    for key in ("content", "embeds", "sticker_ids", "poll"):
        if payload.get(key):
            problems.append(f"{key}: Cannot be used when the IS_COMPONENTS_V2 flag is set.")
    components = payload.get("components") or []
    items = _walk(components, "components")
    if len(items) > V2_MAX_COMPONENTS:
        problems.append(f"components: Must be {V2_MAX_COMPONENTS} or fewer in total, nested "
                        f"ones included (got {len(items)}).")
    text = sum(len(str(item.get("content") or "")) for _, item in items
               if item.get("type") == TEXT_DISPLAY)
    if text > V2_MAX_TEXT:
        problems.append(f"components: The text displays hold {text} characters; the limit "
                        f"is {V2_MAX_TEXT}.")
    for i, item in enumerate(components):
        if item.get("type") not in V2_TOP_LEVEL:
            problems.append(f"components.{i}.type: component type {item.get('type')} cannot "
                            "be at the top level of a message.")
    for path, item in items:
        if item.get("type") == TEXT_DISPLAY and not str(item.get("content") or ""):
            problems.append(f"{path}.content: a text display cannot be empty.")
        if item.get("type") == MEDIA_GALLERY:
            media = item.get("items") or []
            if not 1 <= len(media) <= 10:
                problems.append(f"{path}.items: Must be between 1 and 10 in length "
                                f"(got {len(media)}).")
            for j, entry in enumerate(media):
                url = str((entry.get("media") or {}).get("url") or "")
                name = url.removeprefix("attachment://")
                if (url.startswith("attachment://") and file_names is not None
                        and name not in file_names):
                    problems.append(f"{path}.items.{j}.media.url: no attachment named "
                                    f"{name!r} on the message.")
    return problems


def validate_components(components: list[dict[str, Any]], *,
                        components_v2: bool = False) -> list[str]:
    """Problems with a message's components: rows, buttons, selects and their custom ids.

    Classic messages hold at most 5 action rows of at most 5 buttons or 1 select; components v2
    messages (flag 1 << 15) lay out up to 40 components freely, so only the per-item limits and
    custom id uniqueness apply to them.
    """
    problems: list[str] = []
    if not components_v2:
        if len(components) > 5:
            problems.append(f"components: Must be 5 or fewer in length (got {len(components)}).")
        for i, row in enumerate(components):
            if row.get("type") != ACTION_ROW:
                problems.append(f"components.{i}.type: top-level components must be action rows")
    # An action row holds 1-5 buttons or one select, wherever it sits (v2: inside containers).
    for path, row in _walk(components, "components"):
        if row.get("type") != ACTION_ROW:
            continue
        children = row.get("components") or []
        selects = sum(1 for c in children if c.get("type") in SELECT_TYPES)
        if not 1 <= len(children) <= 5:
            problems.append(f"{path}.components: Must be between 1 and 5 in length "
                            f"(got {len(children)}).")
        if selects and len(children) > 1:
            problems.append(f"{path}.components: a select menu fills its whole row")
    for path, item in _walk(components, "components"):
        if item.get("type") in SELECT_TYPES:
            options = item.get("options")
            if item.get("type") == STRING_SELECT and not 1 <= len(options or []) <= 25:
                problems.append(f"{path}.options: Must be between 1 and 25 in length "
                                f"(got {len(options or [])}).")
            for j, option in enumerate(options or []):
                problems += _check_length(option, "label", f"{path}.options.{j}", 1, 100,
                                          required=True)
                problems += _check_length(option, "value", f"{path}.options.{j}", 1, 100,
                                          required=True)
            problems += _check_length(item, "placeholder", path, 0, 150)
    problems += _check_custom_ids(components, "components")
    for path, item in _walk(components, "components"):
        label = item.get("label")
        if item.get("type") == BUTTON and label is not None and len(str(label)) > 80:
            problems.append(f"{path}.label: Must be 80 or fewer in length (got {len(label)}).")
    if not problems:  # the spec on top, so one mistake is not reported twice
        problems = [f"components: spec: {e}" for e in message_components_spec_errors(components)]
    return problems


def validate_modal(modal: dict[str, Any]) -> list[str]:
    """Problems with a modal (interaction callback type 9's data)."""
    problems: list[str] = []
    title = str(modal.get("title") or "")
    if not 1 <= len(title) <= 45:
        problems.append(f"data.title: Must be between 1 and 45 in length (got {len(title)}).")
    components = modal.get("components") or []
    if not 1 <= len(components) <= 5:
        problems.append(f"data.components: Must be between 1 and 5 in length "
                        f"(got {len(components)}).")
    problems += _check_custom_ids([modal], "data", include_self=True)
    for path, item in _walk(components, "data.components"):
        if item.get("type") == LABEL:
            problems += _check_length(item, "label", path, 1, 45)
        if item.get("type") != TEXT_INPUT:
            continue
        if "label" in item:  # classic layout; inside a type 18 label it has none
            problems += _check_length(item, "label", path, 1, 45)
        problems += _check_length(item, "value", path, 0, 4000)
        problems += _check_length(item, "placeholder", path, 0, 100)
        for key, low in (("min_length", 0), ("max_length", 1)):
            value = item.get(key)
            if value is not None and not low <= value <= 4000:
                problems.append(f"{path}.{key}: Must be between {low} and 4000 (got {value}).")
    return problems


def validate_autocomplete(data: dict[str, Any]) -> list[str]:
    """Problems with autocomplete choices (interaction callback type 8's data)."""
    choices = data.get("choices") or []
    problems: list[str] = []
    if len(choices) > 25:
        problems.append(f"data.choices: Must be 25 or fewer in length (got {len(choices)}).")
    for i, choice in enumerate(choices):
        problems += _check_length(choice, "name", f"data.choices.{i}", 1, 100, required=True)
        if isinstance(choice.get("value"), str):
            problems += _check_length(choice, "value", f"data.choices.{i}", 0, 100)
    return problems


def _check_length(obj: dict[str, Any], key: str, path: str, low: int, high: int, *,
                  required: bool = False) -> list[str]:
    value = obj.get(key)
    if value is None and not required:
        return []
    n = len(str(value or ""))
    if not low <= n <= high:
        return [f"{path}.{key}: Must be between {low} and {high} in length (got {n})."]
    return []


def _walk(components: list[dict[str, Any]], path: str) -> list[tuple[str, dict[str, Any]]]:
    """Every component with its "field" path, descending into rows, sections and labels."""
    found: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(components):
        found += _walk_one(item, f"{path}.{i}")
    return found


def _walk_one(item: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(path, item)] + _walk(item.get("components") or [], f"{path}.components")
    for key in ("component", "accessory"):
        if isinstance(item.get(key), dict):
            found += _walk_one(item[key], f"{path}.{key}")
    return found


def _check_custom_ids(components: list[dict[str, Any]], path: str, *,
                      include_self: bool = False) -> list[str]:
    """custom_id is 1-100 characters and unique among `components` (a modal's own id aside)."""
    problems: list[str] = []
    seen: set[str] = set()
    items = _walk(components, path)
    if include_self:  # [modal]: its own custom_id shares the length limit, not the namespace
        items = [(path, components[0])] + _walk(components[0].get("components") or [],
                                                f"{path}.components")
    for i, (where, item) in enumerate(items):
        custom_id = item.get("custom_id")
        if custom_id is None:
            continue
        if not 1 <= len(str(custom_id)) <= 100:
            problems.append(f"{where}.custom_id: Must be between 1 and 100 in length "
                            f"(got {len(str(custom_id))}).")
        if include_self and i == 0:
            continue
        if custom_id in seen:
            problems.append(f"{where}.custom_id: Component custom id cannot be duplicated "
                            f"({custom_id!r}).")
        seen.add(custom_id)
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
