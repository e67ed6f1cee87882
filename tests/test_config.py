"""Configuration: a typo or a wrong value is an error that names the full key, never a silently
ignored setting, and the Discord token never comes from (or shows up in) a file.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path

import pytest

from core.config import (
    TOKEN_ENV,
    Config,
    ModelSpec,
    discord_token,
    load_config,
    mask_secret,
    parse_config,
)
from core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"

EXAMPLE_LIKE = """
[models]
mask = "distilbert/distilbert-base-cased"
qa = { id = "distilbert/distilbert-base-cased-distilled-squad", revision = "564e9b5" }
generate = "openai-community/gpt2"
features = "distilbert/distilbert-base-cased"
load_at_start = false

[engine]
workers = 3
torch_threads = 1
max_batch_size = 16
max_wait_ms = 5
queue_size = 64
request_timeout_s = 60
max_generate_batch = 8

[limits]
max_text_chars = 500
max_new_tokens = 50

[database]
path = "data/tlm.db"
log_inputs = "hashed"
default_retention_days = 30

[sentiment]
classifier_dir = "classifiers"
pooling = "mean"

[discord]
dev_guild = 123456789012345678
owner_ids = [111, 222]
default_cooldown_uses = 3
default_cooldown_seconds = 10.5
"""


def test_example_like_file_parses(tmp_path: Path):
    path = tmp_path / "config.toml"
    path.write_text(EXAMPLE_LIKE, encoding="utf-8")
    config = load_config(path)
    assert config.models.qa == ModelSpec(
        "distilbert/distilbert-base-cased-distilled-squad", "564e9b5"
    )
    assert config.models.mask == config.models.features == ModelSpec(
        "distilbert/distilbert-base-cased"
    )
    assert config.models.load_at_start is False
    assert config.engine.workers == 3 and config.engine.queue_size == 64
    assert config.engine.max_wait_ms == 5.0 and isinstance(config.engine.max_wait_ms, float)
    assert config.limits.max_text_chars == 500
    assert config.limits.max_context_chars == 4000  # unset keys keep their defaults
    assert config.database.log_inputs == "hashed"
    assert config.sentiment.pooling == "mean"
    assert config.discord.owner_ids == (111, 222)
    assert config.discord.dev_guild == 123456789012345678
    # Relative paths resolve against the config file's folder, not the working directory.
    assert config.base_dir == tmp_path.resolve()
    assert config.resolve_path(config.database.path) == tmp_path.resolve() / "data" / "tlm.db"
    assert config.resolve_path("/abs/x.db") == Path("/abs/x.db")


def test_empty_file_and_none_give_defaults(tmp_path: Path):
    path = tmp_path / "empty.toml"
    path.write_text("", encoding="utf-8")
    assert load_config(path) == Config() == load_config(None)


def test_model_spec_as_string_or_table():
    config = parse_config({"models": {"mask": "some/model",
                                      "qa": {"id": "other/model", "revision": "v2"},
                                      "generate": {"id": "gpt"}}})
    assert config.models.mask == ModelSpec("some/model", "main")
    assert config.models.qa == ModelSpec("other/model", "v2")
    assert config.models.generate == ModelSpec("gpt")
    assert str(config.models.qa) == "other/model@v2" and str(config.models.mask) == "some/model"
    with pytest.raises(ConfigError, match=r"models\.qa\.id"):
        parse_config({"models": {"qa": {"revision": "v2"}}})
    with pytest.raises(ConfigError, match=r"unknown key models\.qa\.rev\b"):
        parse_config({"models": {"qa": {"id": "x", "rev": "v2"}}})
    with pytest.raises(ConfigError, match=r"models\.mask must be a table"):
        parse_config({"models": {"mask": 3}})


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"engine": {"max_batchsize": 8}}, "engine.max_batchsize"),
        ({"modles": {}}, "modles"),
        ({"database": {"log_input": "full"}}, "database.log_input"),
        ({"discord": {"token": "abc"}}, "discord.token"),  # the token is never a config key
    ],
)
def test_unknown_key_names_the_full_key(raw, key):
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    message = info.value.message
    assert f"unknown key {key}" in message
    assert "known keys" in message


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        parse_config({"engine": {"max_batchsize": 8}})
    assert "max_batch_size" in info.value.message and "queue_size" in info.value.message


@pytest.mark.parametrize(
    ("raw", "key", "words"),
    [
        ({"engine": {"workers": "2"}}, "engine.workers", "integer"),
        ({"engine": {"workers": 2.5}}, "engine.workers", "integer"),
        ({"engine": {"workers": True}}, "engine.workers", "integer"),
        ({"engine": {"max_wait_ms": "fast"}}, "engine.max_wait_ms", "number"),
        ({"engine": {"max_wait_ms": False}}, "engine.max_wait_ms", "number"),
        ({"models": {"load_at_start": "yes"}}, "models.load_at_start", "true or false"),
        ({"database": {"path": 3}}, "database.path", "string"),
        ({"database": {"path": ""}}, "database.path", "non-empty"),
        ({"discord": {"owner_ids": 5}}, "discord.owner_ids", "list"),
        ({"discord": {"owner_ids": [1, "x"]}}, "discord.owner_ids[1]", "integer"),
        ({"discord": {"dev_guild": "guild"}}, "discord.dev_guild", "integer"),
        ({"engine": 5}, "engine", "table"),
    ],
)
def test_wrong_type_names_the_key(raw, key, words):
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.message.startswith(key + " ")
    assert words in info.value.message


@pytest.mark.parametrize(
    ("section", "key", "value", "bounds"),
    [
        ("engine", "workers", 0, "between 1 and 16"),
        ("engine", "workers", 17, "between 1 and 16"),
        ("engine", "queue_size", 0, "between 1 and 100000"),
        ("engine", "max_wait_ms", -1, "between 0 and 1000"),
        ("limits", "max_new_tokens", 1001, "between 1 and 1000"),
        ("limits", "max_mask_top_k", 0, "between 1 and 50"),
        ("database", "purge_interval_s", 0.5, "at least 1"),
        ("discord", "default_cooldown_uses", -1, "between 0 and 1000"),
    ],
)
def test_out_of_range_names_the_key_and_bounds(section, key, value, bounds):
    with pytest.raises(ConfigError) as info:
        parse_config({section: {key: value}})
    message = info.value.message
    assert f"{section}.{key}" in message and bounds in message and repr(value) in message


def test_dev_guild_must_be_positive():
    with pytest.raises(ConfigError, match=r"discord\.dev_guild"):
        parse_config({"discord": {"dev_guild": 0}})


@pytest.mark.parametrize(
    ("section", "key", "good", "bad"),
    [("database", "log_inputs", "none", "everything"), ("sentiment", "pooling", "cls", "max")],
)
def test_literal_choices(section, key, good, bad):
    assert getattr(getattr(parse_config({section: {key: good}}), section), key) == good
    with pytest.raises(ConfigError) as info:
        parse_config({section: {key: bad}})
    message = info.value.message
    assert f"{section}.{key} must be one of" in message and repr(good) in message
    assert repr(bad) in message


def test_token_comes_from_the_environment_and_is_never_shown(monkeypatch):
    secret = "MTIzNDU2Nzg5MDEy.GhIjKl.abcdefghijklmnopqrstuvwxyz012345"
    monkeypatch.setenv(TOKEN_ENV, f"  {secret}\n")
    assert discord_token() == secret
    assert discord_token({TOKEN_ENV: "  "}) is None
    assert discord_token({}) is None
    masked = mask_secret(secret)
    assert secret not in masked and secret[4:12] not in masked
    assert str(len(secret)) in masked
    for short in ("abc", "abcdefghijkl"):
        assert mask_secret(short) == "****"
    assert mask_secret(None) == mask_secret("") == "(not set)"


def test_load_config_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert "not found" in info.value.message and "nope.toml" in info.value.message


def test_load_config_bad_toml(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text("[engine]\nworkers = = 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "bad.toml" in info.value.message and "not valid TOML" in info.value.message


def test_config_is_frozen():
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.engine.workers = 5  # type: ignore[misc]


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every leaf key a config file may set, as 'section.key' (ModelSpec tables stop at the
    model key, since a spec may be written as a plain string)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name == "base_dir":
            continue
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint) and hint is not ModelSpec:
            keys += _all_keys(hint, f"{prefix}{field.name}.")
        else:
            keys.append(f"{prefix}{field.name}")
    return keys


@pytest.mark.skipif(not EXAMPLE.exists(), reason="config.example.toml not written yet")
def test_example_config_parses_and_documents_every_key():
    config = load_config(EXAMPLE)
    assert isinstance(config, Config)
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = []
    for key in _all_keys(Config):
        *sections, name = key.split(".")  # [ray.mask] tables nest one level deeper
        table = raw
        for section in sections:
            table = table.get(section, {})
        # A key counts as documented when set, or shown commented out (`# key = ...`).
        set_here = name in table
        commented = any(
            line.lstrip("# ").startswith(f"{name} =") or line.lstrip("# ").startswith(f"{name}=")
            for line in text.splitlines()
        )
        if not (set_here or commented):
            missing.append(key)
    assert not missing, f"config.example.toml does not mention: {', '.join(missing)}"
