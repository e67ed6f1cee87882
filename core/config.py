"""Configuration: a TOML file parsed into frozen dataclasses.

Every key is declared here with its default, so a typo is an error that names the key rather
than a silently ignored setting (the Red-DiscordBot lesson). The Discord token is deliberately
not a config key: it comes from the environment so it never lands in a file someone commits.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

TOKEN_ENV = "DISCORD_TOKEN"


@dataclass(frozen=True)
class ModelSpec:
    """A model by hub id or local path; the same (id, revision) is loaded once and shared."""

    id: str
    revision: str = "main"
    #: CPU fast paths, opt-in per model (`core/inference/backends/`): "int8" = torch dynamic
    #: quantization of the Linear layers; "onnxruntime" = the encoder runs in ONNX Runtime.
    quantize: Literal["none", "int8"] = "none"
    backend: Literal["torch", "onnxruntime"] = "torch"

    @property
    def key(self) -> tuple[str, str]:
        return (self.id, self.revision)

    def __str__(self) -> str:
        return self.id if self.revision == "main" else f"{self.id}@{self.revision}"

    @property
    def short_name(self) -> str:
        """For picture titles: a hub id as is, a local folder by its last two parts."""
        path = Path(self.id)
        return "/".join(path.parts[-2:]) if path.is_absolute() else self.id


@dataclass(frozen=True)
class ModelsConfig:
    mask: ModelSpec = ModelSpec("distilbert/distilbert-base-cased")
    qa: ModelSpec = ModelSpec("distilbert/distilbert-base-cased-distilled-squad")
    generate: ModelSpec = ModelSpec("openai-community/gpt2")
    #: Encoder for `/sentiment` features. The default is the `/mask` model, so its weights are
    #: shared rather than loaded twice.
    features: ModelSpec = ModelSpec("distilbert/distilbert-base-cased")
    #: A third tokenizer for `/tokens model:compare`, e.g. a multilingual one
    #: ("google-bert/bert-base-multilingual-cased"): a class in another language sees the
    #: English tokenizers cut its words into pieces beside one that knows them. Only its
    #: tokenizer is loaded. None: compare the two above.
    multilingual: ModelSpec | None = None
    #: Load every model in the background at start, so the first student does not wait.
    load_at_start: bool = True


@dataclass(frozen=True)
class EngineConfig:
    #: Where forwards run. "local": this process's worker threads (one box, no extra install).
    #: "ray": replicas on a Ray Serve cluster (`tlm-bot serve`, the `[ray]` section); the bot
    #: keeps validation, batching, `/tokens`, policy, rendering and logging on its side.
    backend: Literal["local", "ray"] = "local"
    #: Worker threads. Two let a GPT-2 batch and a DistilBERT batch progress side by side.
    workers: int = 2
    #: torch intra-op threads per batch. 0 = auto: every core for a batch that runs alone, one
    #: each when two run at once, and only one worker ever uses more than one
    #: (`core.inference.worker.WorkerThreads`). On a machine shared with other busy processes
    #: set 1: multi-threaded forwards slow down several times whenever a neighbour is busy.
    torch_threads: int = 0
    max_batch_size: int = 32
    #: The longest the batcher waits for company after the first request of a batch (only while
    #: requests come closer together than a batch takes: `core.inference.lanes.Lane.company_wait`).
    max_wait_ms: float = 10.0
    #: Requests waiting per model before new ones get `Overloaded`.
    queue_size: int = 128
    request_timeout_s: float = 120.0
    #: Generated sequences decoded together; GPT-2 batches are costlier than encoder batches.
    max_generate_batch: int = 16
    #: Processes drawing the teaching commands' pictures, after the forward and off the model's
    #: lane. 0 = auto: the usable cores, at most 4 (each ~60 MB).
    picture_workers: int = 0
    #: Picture requests admitted at once (waiting for a forward or drawing) before new ones get
    #: `Overloaded`.
    picture_queue_size: int = 32
    #: "auto" (the first CUDA GPU if torch sees one, else the CPU), "cpu", "cuda", "cuda:N" or
    #: "mps". `tlm-bot check-config` says what was chosen and why.
    device: str = "auto"
    #: "auto" = the fastest precision within tolerance of float32 on this machine: float16 on a
    #: GPU, bfloat16 on a CPU with bfloat16 matrix units (AMX, AVX512-BF16), else float32
    #: (`core.inference.backends.placement`). An explicit value always wins.
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"


@dataclass(frozen=True)
class LimitsConfig:
    max_text_chars: int = 1000
    max_context_chars: int = 4000
    max_question_chars: int = 300
    #: Longest answer span QA considers, in tokens (SQuAD convention).
    max_answer_tokens: int = 30
    #: Overlap between QA windows when a context is longer than the model's window.
    qa_stride: int = 64
    max_new_tokens: int = 100
    max_return_sequences: int = 5
    max_mask_top_k: int = 10
    #: Integrated-gradients steps per `/explain` (each is one forward and backward over the
    #: input): more steps, a smaller convergence delta and a slower answer.
    explain_steps: int = 32


@dataclass(frozen=True)
class DatabaseConfig:
    path: str = "tlm-bot.db"
    #: full: store the text; hashed: a salted SHA-256 of it; none: metadata only.
    log_inputs: Literal["full", "hashed", "none"] = "full"
    default_retention_days: int = 90
    #: How often old rows are purged.
    purge_interval_s: float = 3600.0


@dataclass(frozen=True)
class SentimentConfig:
    classifier_dir: str = "classifiers/sentiment"
    pooling: Literal["cls", "mean"] = "cls"
    #: Limits for `/classifier train` attachments.
    max_upload_bytes: int = 2_000_000
    max_upload_rows: int = 10_000


@dataclass(frozen=True)
class DiscordConfig:
    #: If set, commands are copied to this guild at start (instant updates while developing).
    dev_guild: int | None = None
    #: Discord user ids allowed to run owner-only commands (besides the application owner).
    owner_ids: tuple[int, ...] = ()
    #: Per-user cooldown applied to every student command unless a moderator sets another.
    default_cooldown_uses: int = 5
    default_cooldown_seconds: float = 30.0
    #: Student commands in the bot's direct messages. Off: no moderator rules reach a DM and
    #: its rows belong to no server. On: the default cooldown applies there, and the owner
    #: exports those rows with `tlm-bot logs export --dms`.
    allow_dms: bool = False
    #: Buttons under an answer (new sample, feedback...) work this long, restarts included;
    #: after that a click says the button has expired.
    button_max_age_hours: float = 24.0
    #: `/generate` shows its text as it is written, by editing its message: at most once per
    #: `stream_edit_interval_s` per answer, and at most `stream_channel_edits` edits per
    #: `stream_channel_window_s` in one channel, all students together (Discord limits edits
    #: per channel without publishing the number: lower these if the log shows 429s).
    stream_generate: bool = True
    stream_edit_interval_s: float = 1.0
    stream_channel_edits: int = 10
    stream_channel_window_s: float = 5.0


@dataclass(frozen=True)
class DashboardConfig:
    """The read-only instructor dashboard (bot/dashboard), served by the bot process."""

    enabled: bool = True
    #: Loopback by default: put a TLS reverse proxy in front to reach it from elsewhere.
    host: str = "127.0.0.1"
    #: 0 picks a free port (tests); links then point at the port actually bound.
    port: int = 8765
    #: What links point to when the bot sits behind a reverse proxy, e.g.
    #: "https://bot.example.edu/dashboard". Unset: http://host:port.
    public_url: str | None = None
    #: How long a `/logs dashboard` link (and the session it opens) stays valid.
    link_hours: int = 12
    #: Seconds an instructor's rights, once checked with Discord (still a member, still the
    #: instructor role or Manage Server), are trusted before the next page asks again. Losing
    #: them ends the session within this time; 0 asks on every page.
    recheck_rights_s: float = 60.0
    #: The reverse proxy whose X-Forwarded-For is believed ("127.0.0.1", "10.0.0.0/8"): only
    #: then does the failed-attempt limiter count the address the proxy reports instead of the
    #: proxy's own. Unset: the header is ignored (anyone could write it).
    trusted_proxy: str | None = None
    #: A connection must finish each request's headers within this many seconds (an idle
    #: keep-alive connection is closed after as long): half-sent requests cannot pile up.
    header_timeout_s: float = 10.0
    #: Connections served at once; past it the oldest one still sending its headers is dropped.
    #: Keep it well under the process's file limit (deploy/tlm-bot.service sets LimitNOFILE).
    max_connections: int = 256


@dataclass(frozen=True)
class RayAutoscaling:
    """Serve's autoscaling for one model: replicas between `min` and `max`, aiming at
    `target_ongoing` batches per replica."""

    min: int = 1
    max: int = 2
    target_ongoing: float = 1.0


@dataclass(frozen=True)
class RayModelConfig:
    """How one model's Serve deployment is sized (`[ray.mask]`, `[ray.qa]`, ...)."""

    #: Fixed replica count; ignored when `autoscaling` is set.
    replicas: int = 1
    autoscaling: RayAutoscaling | None = None
    #: Per replica; also its torch thread count (at least 1).
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    #: Batches one replica works on at once. 1: a batch gets all its cores (forwards in
    #: parallel threads only fight over them), and the bot sends one batch per replica.
    max_ongoing_requests: int = 1
    #: Batches waiting at Serve for a replica (from every bot using the cluster); beyond it
    #: Serve refuses and the student reads "busy". -1 = unbounded.
    max_queued_requests: int = 8


@dataclass(frozen=True)
class RayConfig:
    """The Ray Serve cluster used when `engine.backend = "ray"`."""

    #: What `ray.init` connects to: "auto" (a cluster started on this machine with
    #: `ray start --head`), "HOST:PORT" (its GCS), or "ray://HOST:10001" (Ray Client, from a
    #: machine that is not a Ray node). Never taken from Discord.
    address: str = "auto"
    #: This machine's address as Ray sees it. Loopback unless the bot joins a multi-machine
    #: cluster as a node (then its private-network address).
    node_ip_address: str = "127.0.0.1"
    #: Serve application names are this prefix plus the model's role(s), e.g. `tlm-mask`.
    app_prefix: str = "tlm-"
    #: How often the bot refreshes the deployments' states (loading, ready, failed).
    status_interval_s: float = 2.0
    mask: RayModelConfig = field(default_factory=RayModelConfig)
    qa: RayModelConfig = field(default_factory=RayModelConfig)
    generate: RayModelConfig = field(default_factory=RayModelConfig)
    #: Used only when `models.features` names another model than `models.mask`.
    features: RayModelConfig = field(default_factory=RayModelConfig)


@dataclass(frozen=True)
class Config:
    models: ModelsConfig = field(default_factory=ModelsConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    sentiment: SentimentConfig = field(default_factory=SentimentConfig)
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    #: Where relative paths in the file are resolved from (the config file's folder).
    base_dir: Path = field(default=Path("."), compare=False)

    def resolve_path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path


#: Ranges checked after parsing: (section, key) -> (min, max); None = unbounded.
_RANGES: dict[tuple[str, str], tuple[float | None, float | None]] = {
    ("engine", "workers"): (1, 16),
    ("engine", "torch_threads"): (0, 64),
    ("engine", "max_batch_size"): (1, 256),
    ("engine", "max_wait_ms"): (0, 1000),
    ("engine", "queue_size"): (1, 100_000),
    ("engine", "request_timeout_s"): (1, 3600),
    ("engine", "max_generate_batch"): (1, 64),
    ("engine", "picture_workers"): (0, 16),
    ("engine", "picture_queue_size"): (1, 10_000),
    ("limits", "max_text_chars"): (1, 100_000),
    ("limits", "max_context_chars"): (1, 1_000_000),
    ("limits", "max_question_chars"): (1, 10_000),
    ("limits", "max_answer_tokens"): (1, 512),
    ("limits", "qa_stride"): (0, 256),
    ("limits", "max_new_tokens"): (1, 1000),
    ("limits", "max_return_sequences"): (1, 10),
    ("limits", "max_mask_top_k"): (1, 50),
    ("limits", "explain_steps"): (2, 512),
    ("database", "default_retention_days"): (1, 36500),
    ("database", "purge_interval_s"): (1, None),
    ("sentiment", "max_upload_bytes"): (1, 50_000_000),
    ("sentiment", "max_upload_rows"): (2, 1_000_000),
    ("discord", "default_cooldown_uses"): (0, 1000),
    ("discord", "default_cooldown_seconds"): (0, 86400),
    ("discord", "button_max_age_hours"): (0.001, 8760),
    ("discord", "stream_edit_interval_s"): (0.05, 60),
    ("discord", "stream_channel_edits"): (1, 1000),
    ("discord", "stream_channel_window_s"): (0.1, 600),
    ("dashboard", "port"): (0, 65535),
    ("dashboard", "link_hours"): (1, 168),
    ("dashboard", "recheck_rights_s"): (0, 3600),
    ("dashboard", "header_timeout_s"): (0.5, 600),
    ("dashboard", "max_connections"): (1, 100_000),
    ("ray", "status_interval_s"): (0.1, 600),
}

#: The same checks for every `[ray.<model>]` table: key -> (min, max).
_RAY_MODEL_RANGES: dict[str, tuple[float | None, float | None]] = {
    "replicas": (1, 1000),
    "num_cpus": (0, 1024),
    "num_gpus": (0, 64),
    "max_ongoing_requests": (1, 1000),
    "max_queued_requests": (-1, 1_000_000),
}


def load_config(path: Path | str | None) -> Config:
    """Read a config file; `None` gives the defaults (handy for `tlm-bot ask`)."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder; give the config file itself") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_config(raw, base_dir=path.resolve().parent)


def parse_config(raw: dict[str, Any], *, base_dir: Path = Path(".")) -> Config:
    config = _build(Config, {k: v for k, v in raw.items()}, prefix="")
    config = dataclasses.replace(config, base_dir=base_dir)
    config = dataclasses.replace(config, models=_resolve_model_paths(config.models, base_dir))
    for (section, key), (low, high) in _RANGES.items():
        value = getattr(getattr(config, section), key)
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{section}.{key} must be {bounds}, got {value!r}")
    from core.inference.backends.placement import check_device_setting

    check_device_setting(config.engine.device)
    for role in ("mask", "qa", "generate", "features"):
        model = getattr(config.ray, role)
        for key, (low, high) in _RAY_MODEL_RANGES.items():
            value = getattr(model, key)
            if (low is not None and value < low) or (high is not None and value > high):
                raise ConfigError(f"ray.{role}.{key} must be between {low} and {high}, "
                                  f"got {value!r}")
        scaling = model.autoscaling
        if scaling is not None and not (1 <= scaling.min <= scaling.max
                                        and scaling.target_ongoing > 0):
            raise ConfigError(f"ray.{role}.autoscaling needs 1 <= min <= max and "
                              f"target_ongoing > 0, got {scaling}")
    if config.discord.dev_guild is not None and config.discord.dev_guild <= 0:
        raise ConfigError("discord.dev_guild must be a positive guild id")
    proxy = config.dashboard.trusted_proxy
    if proxy is not None:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"dashboard.trusted_proxy must be an IP address or network like "
                              f"127.0.0.1 or 10.0.0.0/8, got {proxy!r}") from None
    public_url = config.dashboard.public_url
    if public_url is not None and not public_url.startswith(("http://", "https://")):
        raise ConfigError(f"dashboard.public_url must start with http:// or https://, "
                          f"got {public_url!r}")
    return config


def _resolve_model_paths(models: ModelsConfig, base_dir: Path) -> ModelsConfig:
    """A model given as a relative path is read from the config file's folder, like
    `database.path`; a hub id ("org/name") stays as it is unless that folder exists there."""
    resolved = {}
    for f in dataclasses.fields(models):
        spec = getattr(models, f.name)
        if not isinstance(spec, ModelSpec):
            continue
        path = Path(spec.id).expanduser()
        written_as_path = (spec.id.startswith(("./", "../", ".\\", "..\\"))
                           or spec.id.count("/") >= 2)
        if not path.is_absolute() and (written_as_path or (base_dir / path).is_dir()):
            resolved[f.name] = dataclasses.replace(spec, id=str((base_dir / path).resolve()))
    return dataclasses.replace(models, **resolved)


def discord_token(environ: typing.Mapping[str, str] | None = None) -> str | None:
    token = (environ if environ is not None else os.environ).get(TOKEN_ENV, "").strip()
    return token or None


def mask_secret(secret: str | None) -> str:
    """Enough to tell two tokens apart, never enough to use one."""
    if not secret:
        return "(not set)"
    return f"{secret[:4]}…({len(secret)} chars)" if len(secret) > 12 else "****"


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "base_dir"}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"unknown key {prefix}{unknown[0]} (known keys here: {known})")
    required = [
        name for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    for name in required:
        if name not in raw:  # e.g. a model table without `id`: a TypeError would name nothing
            raise ConfigError(f"{prefix}{name} is required")
    values = {name: _convert(hints[name], raw[name], f"{prefix}{name}") for name in raw}
    return cls(**values)


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if hint is ModelSpec and isinstance(value, str):
            value = {"id": value}
        return _build(hint, value, prefix=f"{key}.")
    if origin is Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(repr(c) for c in typing.get_args(hint))
            raise ConfigError(f"{key} must be one of {choices}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, key)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return tuple(_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key} must be a non-empty string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported setting type {hint!r}")  # pragma: no cover
