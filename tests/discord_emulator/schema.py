"""Validation against Discord's published OpenAPI spec, when it is present.

Synced commands, interaction callback bodies (messages, updates, modals, autocomplete choices) and
message components are checked against the spec's request schemas.

The hand-written rules (rules.py) cover what Discord documents in prose; the spec catches shape
mistakes they do not list (wrong types, unknown properties). The spec lives beside the repository
in ../shared/discord-api-spec/openapi.json (or $TLM_DISCORD_API_SPEC) and is optional: without it
the checks are skipped, never failed. jsonschema is not a dependency, so this validates the small
JSON-schema subset that the spec uses for these.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# parents[3]: the folder that holds this checkout (tests/discord_emulator/schema.py is 3 deep).
SPEC_PATH = Path(
    os.environ.get(
        "TLM_DISCORD_API_SPEC",
        Path(__file__).resolve().parents[3] / "shared" / "discord-api-spec" / "openapi.json",
    )
)
#: The skip reason of the tests that need the spec (the suite's summary prints it).
NO_SPEC = (f"Discord's OpenAPI spec is not at {SPEC_PATH} (put discord-api-spec's openapi.json "
           "there, or set TLM_DISCORD_API_SPEC to it; CI has it); without it the emulator also "
           "skips its schema checks of the bot's requests")


@functools.cache
def _load_spec() -> dict[str, Any] | None:
    if not SPEC_PATH.is_file():
        log.debug("no Discord OpenAPI spec at %s; skipping schema checks", SPEC_PATH)
        return None
    return json.loads(SPEC_PATH.read_text())


def _spec_errors(cmd: dict[str, Any]) -> list[str]:
    return spec_errors(cmd, "ApplicationCommandCreateRequest")


# The spec's request schema for each interaction callback type (5 and 6 share 4's and 7's).
CALLBACK_SCHEMAS = {
    4: "CreateMessageInteractionCallbackRequest",
    5: "CreateMessageInteractionCallbackRequest",
    6: "UpdateMessageInteractionCallbackRequest",
    7: "UpdateMessageInteractionCallbackRequest",
    8: "ApplicationCommandAutocompleteCallbackRequest",
    9: "ModalInteractionCallbackRequest",
}


def spec_errors(value: Any, schema_name: str) -> list[str]:
    """Problems with `value` against the spec's components/schemas/`schema_name` ([] without it)."""
    spec = _load_spec()
    if spec is None:
        return []
    return _schema_errors(value, spec["components"]["schemas"][schema_name], spec, "$")


def message_components_spec_errors(components: list[Any]) -> list[str]:
    """Top-level message components against the spec (what a message, follow-up or edit sends)."""
    spec = _load_spec()
    if spec is None:
        return []
    schemas = spec["components"]["schemas"]
    schema = schemas["IncomingWebhookUpdateForInteractionCallbackRequestPartial"]
    return _schema_errors(components, schema["properties"]["components"], spec, "$.components")


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
    if schema.get("format") == "snowflake" and _JSON_TYPES["integer"](value) and value >= 0:
        return []  # Discord takes a snowflake as an integer too (discord.py sends upload ids so)
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
    if "anyOf" in schema:
        results = [_schema_errors(value, sub, spec, at) for sub in schema["anyOf"]]
        if all(results):
            errors += min(results, key=len)
    if "oneOf" in schema:
        results = [_schema_errors(value, sub, spec, at) for sub in schema["oneOf"]]
        matches = sum(not r for r in results)
        if matches == 0:  # report the branch that came closest: not a plain type mismatch
            errors += min(results, key=lambda r: (r[0].startswith(f"{at}: expected "), len(r)))
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
