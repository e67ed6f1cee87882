"""`tlm-bot`: run the bot, register its commands, and try everything without Discord.

`tlm-bot ask ...` goes through the same core and the same renderer as the bot, so what it
prints is what a student would see. Whatever goes wrong ends in one `error:` line that says
what to do, and an exit code a script can act on (see `EXIT_CODES`); the traceback of an
unexpected failure is shown only with `-v`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from core import i18n
from core.config import (
    TOKEN_ENV,
    Config,
    ConfigError,
    ModelSpec,
    discord_token,
    load_config,
    mask_secret,
)
from core.errors import CoreError as UserError  # user and service errors alike
from core.errors import ModelUnavailable
from core.inference.backends import describe_runtime

log = logging.getLogger("tlm-bot")

CONFIG_ENV = "TLM_CONFIG"

EXIT_OK = 0
#: An unexpected failure: a bug. The one line says so; `-v` shows the traceback.
EXIT_BUG = 1
#: Something the user can fix: the config, the token, the input, the data (argparse uses 2 too).
EXIT_USER = 2
#: Something the command needs cannot be reached or loaded: Discord, the model hub, a model.
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130
#: Documented in `--help` and docs/troubleshooting.md.
EXIT_CODES = {
    EXIT_OK: "done",
    EXIT_BUG: "unexpected failure (a bug; run again with -v and report the traceback)",
    EXIT_USER: "a problem you can fix: config, token, input or data",
    EXIT_UNAVAILABLE: "Discord or the model hub cannot be reached, or a model cannot be loaded",
    EXIT_INTERRUPTED: "interrupted (Ctrl+C)",
}


#: Commands that print an answer: their log lines would only get in its way.
_QUIET_COMMANDS = {"ask", "check-config", "dashboard", "download-models", "logs"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args)
    # `ask --locale`: the answer and an error alike, as that student reads them.
    with i18n.using(getattr(args, "locale", None) or i18n.SOURCE):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
        _check_models(_models_needed(args, config))
        with _loading_status(args):
            code = int(args.handler(args, config) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at exit
        return code
    except ModelUnavailable as exc:
        return _fail(exc.message, EXIT_UNAVAILABLE)
    except (ConfigError, UserError) as exc:
        return _fail(exc.message, EXIT_USER)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `tlm-bot logs export ... | head`: the reader has what it wanted. Point stdout at
        # devnull so the interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        hint = "" if args.verbose else " Run again with -v for the traceback,"
        return _fail(f"unexpected {type(exc).__name__}: {first}.{hint} "
                     "and please report it.", EXIT_BUG)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


class _Brief(logging.Formatter):
    """Log lines without tracebacks: the `error:` line says what happened; `-v` shows more."""

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        return ""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).rstrip()


class _DropTokenLengthWarning(logging.Filter):
    """transformers warns "Token indices sequence length is longer than ..." when a tokenizer
    sees a long text; the tasks then refuse or cut that text with their own clear message."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token indices sequence length")


def _configure_logging(args: argparse.Namespace) -> None:
    if args.verbose:
        level = logging.DEBUG
    elif args.command in _QUIET_COMMANDS:
        level = logging.WARNING
    else:
        level = logging.INFO
    handler = logging.StreamHandler()
    # `run` keeps tracebacks: its log is the operator's record of a bug in a long-lived bot.
    formatter_cls = logging.Formatter if args.verbose or args.command == "run" else _Brief
    handler.setFormatter(formatter_cls("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Third-party chatter is not what a user running `ask` wants to read.
    for noisy in ("httpx", "huggingface_hub", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    # Payloads (students' text, interaction tokens) stay out of the log, even with -v.
    from bot.logging_policy import apply as apply_logging_policy

    apply_logging_policy(debug_discord=args.debug_discord)
    if not args.verbose:
        # The hub's retry warnings ("Retrying in 8s [Retry 4/5]") come through its own handler
        # *and* ours; the one `error:` line at the end says what failed and what to do.
        import huggingface_hub.utils.logging as hub_logging

        hub_logging.set_verbosity_error()
        if args.command in _QUIET_COMMANDS:
            # A model that cannot load is reported by the `error:` line, with the fix.
            logging.getLogger("core.inference.models").setLevel(logging.CRITICAL)
            # `dashboard` says in its own `error:` line why it cannot listen.
            logging.getLogger("bot.compose").setLevel(logging.CRITICAL)
    # A plain logger name: importing transformers here would cost a second and a half.
    logging.getLogger("transformers.tokenization_utils_base").addFilter(_DropTokenLengthWarning())


def _loading_status(args: argparse.Namespace) -> contextlib.AbstractContextManager[object]:
    """A status line for a slow model load, where no log line says it already."""
    from bot.terminal import model_loading_status

    if args.verbose or args.command not in _QUIET_COMMANDS:
        return contextlib.nullcontext()
    return model_loading_status()


def _config_source(args: argparse.Namespace) -> tuple[str | None, str]:
    """Which config file to read, and where that choice came from (check-config says so)."""
    explicit = getattr(args, "path", None)
    if explicit:
        return explicit, "given on the command line"
    if args.config:
        return args.config, "from --config"
    if os.environ.get(CONFIG_ENV):
        return os.environ[CONFIG_ENV], f"from ${CONFIG_ENV}"
    if Path("config.toml").exists():
        return "config.toml", "found in the current folder"
    return None, "no config file given, none in the current folder"


def _config(args: argparse.Namespace) -> Config:
    return load_config(_config_source(args)[0])


def _token() -> str:
    token = discord_token()
    if token is None:
        raise ConfigError(
            f"no Discord token: set the {TOKEN_ENV} environment variable "
            "(see README, 'Create the bot application')."
        )
    return token


# ------------------------------------------------------------------------------ model checks


def _models_needed(args: argparse.Namespace, config: Config) -> list[ModelSpec]:
    """The models a one-shot command will load (`run` loads in the background and lives on)."""
    if args.command == "train-sentiment":
        return [config.models.features]
    if args.command != "ask":
        return []
    from bot.ask import models_for

    return models_for(args, config, _extensions())


def _check_models(specs: Sequence[ModelSpec]) -> None:
    """Fail within a second, with the fix, when a model is neither local nor reachable.

    The loader's own check (`core.inference.models.where_to_load`), run before anything else:
    without
    it, transformers retries an unreachable hub for about a minute per model and then reports
    it in a traceback. A model already in the cache or a local folder never touches the network.
    """
    from core.inference.models import ModelRefused, where_to_load

    for spec in dict.fromkeys(specs):
        try:
            where_to_load(spec)
        except ModelRefused as exc:
            log.debug("%s", _what_was_tried(spec))
            raise ModelUnavailable(f"The model `{spec}` is not available: {exc}") from None


def _what_was_tried(spec: ModelSpec) -> str:
    """Where the loader looked for `spec`, for `-v`: the folder, or the hub id, the cache
    folder, the hub's address and whether offline mode kept it from asking."""
    from huggingface_hub import constants

    from core.inference.models import looks_local

    if looks_local(spec.id):
        folder = Path(spec.id).expanduser()
        return (f"tried the local folder {folder} (exists: {'yes' if folder.exists() else 'no'}; "
                "relative paths are read from the config file's folder)")
    hub = ("offline mode is on (HF_HUB_OFFLINE=1), so the hub was not asked"
           if constants.HF_HUB_OFFLINE else
           f"then the hub at {constants.ENDPOINT} (HF_ENDPOINT; offline mode off)")
    return (f"tried the hub id {spec.id} at revision {spec.revision}: first the cache folder "
            f"{constants.HF_HUB_CACHE} (HF_HUB_CACHE, or HF_HOME/hub), {hub}")


def _extensions() -> Sequence[str]:
    from bot.client import EXTENSIONS

    return EXTENSIONS


# ---------------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from bot.compose import DiscordUnreachable, run_bot

    token = _token()
    log.info("starting tlm-bot (token %s)", mask_secret(token))
    try:
        asyncio.run(run_bot(config, token))
    except asyncio.CancelledError:  # SIGTERM
        pass
    except DiscordUnreachable as exc:
        return _fail(exc.message, EXIT_UNAVAILABLE)
    except _login_failure() as exc:
        return _fail(f"Discord refused the token ({type(exc).__name__}). Check {TOKEN_ENV}.",
                     EXIT_USER)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    """Deploy one Ray Serve application per model onto the cluster in `[ray] address`."""
    from core.inference.serving.cluster import connect
    from core.inference.serving.replica import deploy

    connect(config)
    for plan in deploy(config):
        print(f"{plan.name}: {plan.spec} is serving")
    print('deployed; bots with engine.backend = "ray" and this [ray] address can use it')
    return 0


def cmd_sync(args: argparse.Namespace, config: Config) -> int:
    from bot.compose import DiscordUnreachable, sync_commands

    try:
        names = asyncio.run(sync_commands(config, _token(), args.guild))
    except DiscordUnreachable as exc:
        return _fail(exc.message, EXIT_UNAVAILABLE)
    except _login_failure() as exc:
        return _fail(f"Discord refused the token ({type(exc).__name__}). Check {TOKEN_ENV}.",
                     EXIT_USER)
    where = f"guild {args.guild}" if args.guild else "all guilds (global; may take up to an hour)"
    print(f"synced {len(names)} commands to {where}: {', '.join(sorted(names))}")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace, config: Config) -> int:
    path, why = _config_source(args)
    if path is None:
        print(f"config: the defaults ({why})")
    else:
        print(f"config: {Path(path).resolve()} ({why})")
    print(f"{TOKEN_ENV}: {mask_secret(discord_token())}")
    for section in dataclasses.fields(config):
        if section.name == "base_dir":
            continue
        print(f"[{section.name}]")
        for key, value in dataclasses.asdict(getattr(config, section.name)).items():
            print(f"  {key} = {value!r}")
    print("\n".join(describe_runtime(config)))  # device, dtype and fast paths, and why
    _check_local_model_folders(config)
    if config.engine.backend == "ray":
        from core.inference.serving.cluster import require_ray

        require_ray()  # not installed: the one `error:` line says how to get it (exit 2)
        print("engine: Ray Serve backend (ray is installed; `tlm-bot serve` deploys the models)")
    if getattr(args, "load", False):
        from core.inference.load_check import try_loads

        loads = try_loads(config)
        for load in loads:
            print(load)
        if not all(load.ok for load in loads):
            print("config OK, but some models cannot be loaded (see above)")
            return EXIT_UNAVAILABLE
    print("config OK")
    return EXIT_OK


def _check_local_model_folders(config: Config) -> None:
    """A model named by a folder that is not there is a config mistake: say which role and
    folder now, rather than when the model is first needed (`--load` loads the others too)."""
    from core.inference.models import ModelRefused, looks_local, where_to_load

    for role in ("mask", "qa", "generate", "features", "multilingual"):
        spec = getattr(config.models, role)
        if spec is not None and looks_local(spec.id):
            try:
                where_to_load(spec)  # for a folder: is it there (no network)
            except ModelRefused as exc:
                raise ConfigError(f"models.{role}: {exc}") from None


def cmd_download_models(args: argparse.Namespace, config: Config) -> int:
    """One line per model; a failure names its cause and the others still download."""
    from huggingface_hub import constants, snapshot_download

    from core.inference.models import ModelRefused, looks_local, where_to_load

    specs = {s.key: s for s in (config.models.mask, config.models.qa, config.models.generate,
                                config.models.features, config.models.multilingual)
             if s is not None}
    failed = 0
    for spec in specs.values():
        if looks_local(spec.id):
            print(f"{spec.id}: local path, nothing to download")
            continue
        try:
            cached = where_to_load(spec)  # the loader's own check: cache, offline, reachable
        except ModelRefused as exc:
            reason = ("it is not in the local cache (unset HF_HUB_OFFLINE to download)"
                      if constants.HF_HUB_OFFLINE else str(exc))
            print(f"error: cannot download {spec}: {reason}", file=sys.stderr)
            failed += 1
            continue
        if cached:
            print(f"{spec}: already in the local cache")
            continue
        print(f"downloading {spec} ...", flush=True)
        try:
            path = snapshot_download(
                spec.id, revision=spec.revision,
                allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"],
            )
        except Exception as exc:  # the hub's errors, httpx's and OSError alike
            log.debug("download of %s failed", spec, exc_info=exc)
            print(f"error: cannot download {spec}: {_download_problem(spec, exc)}",
                  file=sys.stderr)
            failed += 1
        else:
            print(f"  -> {path}")
    return EXIT_UNAVAILABLE if failed else EXIT_OK


def _download_problem(spec: ModelSpec, exc: Exception) -> str:
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(exc, RevisionNotFoundError):
        return f"the hub has no revision {spec.revision!r} of {spec.id}"
    if isinstance(exc, RepositoryNotFoundError):
        return f"the hub has no model {spec.id!r} (check the id in [models])"
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def cmd_ask(args: argparse.Namespace, config: Config) -> int:
    import transformers

    transformers.utils.logging.disable_progress_bar()  # the answer is what the user wants
    config = dataclasses.replace(
        config, models=dataclasses.replace(config.models, load_at_start=False)
    )
    from bot.ask import answer_offline
    from bot.client import EXTENSIONS
    from bot.terminal import for_terminal

    _picture_folder(getattr(args, "out", None))
    print(for_terminal(asyncio.run(answer_offline(args, config, EXTENSIONS))))
    return 0


def _picture_folder(out: str | None) -> None:
    """Make `--out`'s folder now, or refuse in one line before any model loads."""
    if not out:
        return
    folder = Path(out).expanduser().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot make the folder {folder} "
                          f"({exc.strerror or exc}); choose another path") from None
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"--out {out}: the folder {folder} is not writable; choose another path")


def cmd_train_sentiment(args: argparse.Namespace, config: Config) -> int:
    configured = config.sentiment.pooling
    if args.pooling and args.pooling != configured:
        # The bot refuses a classifier whose pooling differs from the config; installing one
        # would silently break /sentiment at the next start.
        path, _ = _config_source(args)
        where = f"in {path}" if path else "(the default; no config file)"
        raise ConfigError(
            f"--pooling {args.pooling} differs from sentiment.pooling = {configured!r} {where}, "
            "so the bot would refuse the classifier. Set "
            f'`pooling = "{args.pooling}"` under [sentiment] in the config file and run again '
            "(then --pooling is not needed)."
        )
    # Only the encoder is needed: never wait for the other models (they may not even be here).
    config = dataclasses.replace(
        config, models=dataclasses.replace(config.models, load_at_start=False)
    )
    return asyncio.run(_train(args, config))


async def _train(args: argparse.Namespace, config: Config) -> int:
    from core.inference.engine import InferenceEngine
    from core.sentiment import load_labelled_data
    from core.sentiment.service import SentimentService

    if args.download:
        from core.sentiment.datasets import download_sst2

        def progress(done: int, total: int) -> None:
            of = f" of {total / 1e6:.1f}" if total else ""
            print(f"\rdownloading SST-2: {done / 1e6:.1f}{of} MB", end="")

        path = download_sst2(progress=progress)
        print(f"\nSST-2 training split: {path}")
    else:
        path = args.data
    data = load_labelled_data(path, limit=args.limit)
    async with InferenceEngine(config) as engine:
        service = SentimentService(engine, config)
        print(f"training on {len(data.texts)} examples with {service.encoder.describe()} ...",
              flush=True)
        report = await service.train(data)
    print(report.to_text())
    print(f"installed in {service.directory} (the bot picks it up at its next start)")
    if not report.beats_baseline:
        print(f"WARNING: {report.baseline_warning()}", file=sys.stderr)
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace, config: Config) -> int:
    """Serve the configured database's dashboard (no Discord, no models) and print a signed
    link to one server's pages, until Ctrl+C or SIGTERM."""
    path = config.resolve_path(config.database.path)
    if not path.exists():
        raise ConfigError(f"no database at {path} ([database] path): nothing to show yet")
    cfg = config.dashboard
    if not cfg.enabled:
        raise ConfigError("the dashboard is off in the config ([dashboard] enabled = false)")
    if args.port is not None:
        config = dataclasses.replace(config, dashboard=dataclasses.replace(cfg, port=args.port))
    try:
        return asyncio.run(_serve_dashboard(config, args.guild, args.hours))
    except KeyboardInterrupt:  # Ctrl+C is how this command ends
        return EXIT_OK


async def _serve_dashboard(config: Config, guild_id: int, hours: int | None) -> int:
    import signal
    import time

    from bot.compose import DASHBOARD_ONLY, open_services

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # not on Windows
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with open_services(config, DASHBOARD_ONLY) as services:
        dashboard = services.dashboard
        if dashboard is None:
            cfg = config.dashboard
            raise ConfigError(
                f"the dashboard cannot listen on {cfg.host}:{cfg.port} (is the bot running? "
                "its own dashboard serves the same database: /logs dashboard in Discord); "
                "choose another port with --port, or 0 for any free one")
        hours = hours or config.dashboard.link_hours

        async def operator_only(asked_guild: int, user_id: int) -> bool:
            """No Discord to ask for anyone's rights: the operator who ran this command, for
            the server it names, and nobody else."""
            return (asked_guild, user_id) == (guild_id, OPERATOR_USER_ID)

        dashboard.authorize = operator_only
        # The operator has no Discord id: the link is issued to user 0.
        link = await dashboard.link(guild_id, OPERATOR_USER_ID,
                                    expires_at=int(time.time()) + hours * 3600)
        print(f"dashboard of server {guild_id}, valid {hours} h (keep it private: it is a key):")
        print(link, flush=True)
        print("serving until Ctrl+C", file=sys.stderr, flush=True)
        await stop.wait()
    return EXIT_OK


#: Who a link printed by `tlm-bot dashboard` is issued to: no Discord user.
OPERATOR_USER_ID = 0


def cmd_logs_export(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(_export(args, config))


async def _export(args: argparse.Namespace, config: Config) -> int:
    from core.storage.database import Database
    from core.storage.querylog import QueryFilter, QueryLog

    path = config.resolve_path(config.database.path)
    if not path.exists():
        raise ConfigError(f"no database at {path}")
    since = _since(args.since) if args.since else None
    f = QueryFilter(guild_id=None if args.dms else args.guild, since=since, limit=None)
    async with await Database.open(path) as db:
        async with QueryLog(db) as querylog:
            if args.out:
                # Owner-only, like the database: the file holds what students typed.
                fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    result = await querylog.export_csv(f, out)
                print(f"wrote {result.rows} rows to {args.out}")
            else:
                sys.stdout.flush()
                result = await querylog.export_csv(f, sys.stdout.buffer)
                sys.stdout.flush()
    return 0


def _since(text: str) -> datetime:
    """'7d', '12h', '30m' or an ISO date."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if text[-1:] in units and text[:-1].isdigit():
        return datetime.now(timezone.utc) - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since must look like 7d, 12h or 2026-01-31, got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _login_failure() -> tuple[type[BaseException], ...]:
    import discord

    return (discord.LoginFailure, discord.PrivilegedIntentsRequired)


# ------------------------------------------------------------------------------------ parser


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, when it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
                and "%(default)" not in text):
            text += " (default: %(default)s)"
        return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_common_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """`--config` and `-v` are accepted before or after any subcommand.

    On subcommands their default is SUPPRESS, so an option given before the subcommand is not
    reset by the subcommand's parser.
    """
    default = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("--config", metavar="FILE", **default,
                        help=f"config file (default: ${CONFIG_ENV} or ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", **default,
                        help="debug logging, and the traceback of an unexpected failure "
                             "(never students' text: see --debug-discord)")
    parser.add_argument("--debug-discord", action="store_true", **default,
                        help="also log discord.py's gateway events and requests whole; the "
                             "log then holds students' text and interaction tokens")


def _finish(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand, at any depth, the common options and the help format."""
    for action in parser._actions:  # argparse offers no public walk over subparsers
        if (action.help is None and action.option_strings
                and action.default not in (None, False, argparse.SUPPRESS)):
            action.help = "(default: %(default)s)"  # argparse shows nothing for help=None
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                child.formatter_class = _HelpFormatter
                _add_common_options(child, top=False)
                _finish(child)


def _exit_codes_text() -> str:
    return "exit codes:\n" + "\n".join(f"  {code:>3}  {what}" for code, what in EXIT_CODES.items())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tlm-bot", description=__doc__.splitlines()[0],
                                     epilog=_exit_codes_text(), formatter_class=_HelpFormatter)
    _add_common_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="start the bot").set_defaults(handler=cmd_run)
    sub.add_parser("serve", help="deploy the models onto the Ray cluster ([ray] address)"
                   ).set_defaults(handler=cmd_serve)
    p = sub.add_parser("sync", help="register slash commands with Discord now (`run` does it "
                                    "by itself when they changed)")
    p.add_argument("--guild", type=int, help="only this guild (instant) instead of global")
    p.set_defaults(handler=cmd_sync)
    p = sub.add_parser("check-config", help="validate a config file and print the settings")
    p.add_argument("path", nargs="?", help="config file (same as --config)")
    p.add_argument("--load", action="store_true",
                   help="also load every configured model, one line per role")
    p.set_defaults(handler=cmd_check_config)
    sub.add_parser("download-models", help="fetch the configured models into the HF cache"
                   ).set_defaults(handler=cmd_download_models)

    ask = sub.add_parser("ask", help="answer a student command without Discord")
    ask.set_defaults(handler=cmd_ask)
    ask.add_argument("--locale", default=i18n.SOURCE, metavar="LANGUAGE",
                     help="answer in this language, as a student whose Discord is set to it "
                          f"sees it (a Discord locale such as it or en-US; the bot speaks "
                          f"{', '.join(i18n.languages())})")
    from bot.ask import add_ask_parsers
    from bot.client import EXTENSIONS

    add_ask_parsers(ask, EXTENSIONS)

    p = sub.add_parser("train-sentiment", help="train the /sentiment classifier")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="TSV (text<TAB>label) or CSV with a header")
    source.add_argument("--download", choices=["sst2"],
                        help="fetch the SST-2 training split the course notebook used")
    p.add_argument("--limit", type=_positive_int, metavar="N",
                   help="use only the first N rows (the notebook used 2000)")
    p.add_argument("--pooling", choices=["cls", "mean"],
                   help="must match sentiment.pooling in the config (the bot refuses a "
                        "classifier trained otherwise); set it there instead")
    p.set_defaults(handler=cmd_train_sentiment)

    p = sub.add_parser("dashboard", help="serve the dashboard of the configured database (no "
                       "Discord, no models) and print a signed link to one server's pages")
    p.add_argument("--guild", type=int, required=True, help="the server whose pages to open")
    p.add_argument("--port", type=int,
                   help="listen on this port instead of [dashboard] port (0: any free port)")
    p.add_argument("--hours", type=_positive_int,
                   help="how long the link stays valid (default: [dashboard] link_hours)")
    p.set_defaults(handler=cmd_dashboard)

    logs = sub.add_parser("logs", help="query log tools")
    logs_sub = logs.add_subparsers(dest="logs_command", required=True)
    p = logs_sub.add_parser("export", help="export one guild's rows (or the DMs') as CSV")
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("--guild", type=int, help="the server whose rows to export")
    scope.add_argument("--dms", action="store_true",
                       help="the rows of direct messages ([discord] allow_dms)")
    p.add_argument("--since", help="7d, 12h, 30m or an ISO date")
    p.add_argument("--out", help="file to write (default: stdout)")
    p.set_defaults(handler=cmd_logs_export)
    _finish(parser)
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
