"""`tlm-bot`: run the bot, register its commands, and try everything without Discord.

`tlm-bot ask ...` goes through the same core and the same renderer as the bot, so what it
prints is what a student would see. Errors a user can fix (bad config, no token, bad input)
print one clear line and exit 2; they never end in a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import io
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from core.config import TOKEN_ENV, Config, ConfigError, discord_token, load_config, mask_secret
from core.errors import CoreError as UserError  # user and service errors alike

log = logging.getLogger("tlm-bot")

CONFIG_ENV = "TLM_CONFIG"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # Third-party chatter is not what a user running `ask` wants to read.
    for noisy in ("httpx", "huggingface_hub", "urllib3", "discord.gateway"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        config = _config(args)
        return int(args.handler(args, config) or 0)
    except (ConfigError, UserError) as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _config(args: argparse.Namespace) -> Config:
    path = getattr(args, "path", None) or args.config or os.environ.get(CONFIG_ENV)
    if path is None and Path("config.toml").exists():
        path = "config.toml"
    return load_config(path)


def _token() -> str:
    token = discord_token()
    if token is None:
        raise ConfigError(
            f"no Discord token: set the {TOKEN_ENV} environment variable "
            "(see README, 'Create the bot application')."
        )
    return token


# ---------------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from bot.app import run_bot

    token = _token()
    log.info("starting tlm-bot (token %s)", mask_secret(token))
    try:
        asyncio.run(run_bot(config, token))
    except asyncio.CancelledError:  # SIGTERM
        pass
    except _login_failure() as exc:
        print(f"error: Discord refused the token ({type(exc).__name__}). Check {TOKEN_ENV}.",
              file=sys.stderr)
        return 2
    return 0


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    """Deploy one Ray Serve application per model onto the cluster in `[ray] address`."""
    from core.serving.cluster import connect, deploy

    connect(config)
    for plan in deploy(config):
        print(f"{plan.name}: {plan.spec} is serving")
    print('deployed; bots with engine.backend = "ray" and this [ray] address can use it')
    return 0


def cmd_sync(args: argparse.Namespace, config: Config) -> int:
    from bot.app import sync_commands

    try:
        names = asyncio.run(sync_commands(config, _token(), args.guild))
    except _login_failure() as exc:
        print(f"error: Discord refused the token ({type(exc).__name__}).", file=sys.stderr)
        return 2
    where = f"guild {args.guild}" if args.guild else "all guilds (global; may take up to an hour)"
    print(f"synced {len(names)} commands to {where}: {', '.join(sorted(names))}")
    return 0


def cmd_check_config(args: argparse.Namespace, config: Config) -> int:
    print(f"{TOKEN_ENV}: {mask_secret(discord_token())}")
    for section in dataclasses.fields(config):
        if section.name == "base_dir":
            continue
        print(f"[{section.name}]")
        for key, value in dataclasses.asdict(getattr(config, section.name)).items():
            print(f"  {key} = {value!r}")
    print("config OK")
    return 0


def cmd_download_models(args: argparse.Namespace, config: Config) -> int:
    from huggingface_hub import snapshot_download

    specs = {s.key: s for s in (config.models.mask, config.models.qa, config.models.generate,
                                config.models.features)}
    for spec in specs.values():
        if Path(spec.id).expanduser().exists():
            print(f"{spec.id}: local path, nothing to download")
            continue
        print(f"downloading {spec} ...")
        path = snapshot_download(
            spec.id, revision=spec.revision,
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"],
        )
        print(f"  -> {path}")
    return 0


def cmd_ask(args: argparse.Namespace, config: Config) -> int:
    import transformers

    transformers.utils.logging.disable_progress_bar()  # the answer is what the user wants
    config = dataclasses.replace(
        config, models=dataclasses.replace(config.models, load_at_start=False)
    )
    from bot.ask import answer_offline
    from bot.client import EXTENSIONS

    print(asyncio.run(answer_offline(args, config, EXTENSIONS)))
    return 0


def cmd_train_sentiment(args: argparse.Namespace, config: Config) -> int:
    if args.pooling:
        config = dataclasses.replace(
            config, sentiment=dataclasses.replace(config.sentiment, pooling=args.pooling)
        )
    return asyncio.run(_train(args, config))


async def _train(args: argparse.Namespace, config: Config) -> int:
    from core.engine import InferenceEngine
    from core.sentiment import load_labelled_data
    from core.sentiment_service import SentimentService

    if args.download:
        from core.datasets import download_sst2

        def progress(done: int, total: int) -> None:
            print(f"\rdownloading SST-2: {done / 1e6:.1f} of {total / 1e6:.1f} MB", end="")

        path = download_sst2(progress=progress)
        print(f"\nSST-2 training split: {path}")
    else:
        path = args.data
    data = load_labelled_data(path, limit=args.limit)
    async with InferenceEngine(config) as engine:
        service = SentimentService(engine, config)
        print(f"training on {len(data.texts)} examples with {service.encoder.describe()} ...")
        report = await service.train(data)
    print(report.to_text())
    print(f"installed in {service.directory} (the bot picks it up at its next start)")
    return 0


def cmd_logs_export(args: argparse.Namespace, config: Config) -> int:
    return asyncio.run(_export(args, config))


async def _export(args: argparse.Namespace, config: Config) -> int:
    from core.database import Database
    from core.querylog import QueryFilter, QueryLog

    path = config.resolve_path(config.database.path)
    if not path.exists():
        raise ConfigError(f"no database at {path}")
    since = _since(args.since) if args.since else None
    async with await Database.open(path) as db:
        async with QueryLog(db) as querylog:
            text = await querylog.export_csv(QueryFilter(guild_id=args.guild, since=since,
                                                         limit=None))
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8", newline="")
        # Not text.count("\n"): quoted cells hold newlines (every /qa input does).
        rows = sum(1 for _ in csv.reader(io.StringIO(text))) - 1
        print(f"wrote {rows} rows to {args.out}")
    else:
        sys.stdout.write(text)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tlm-bot", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help=f"config file (default: ${CONFIG_ENV} or ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="start the bot").set_defaults(handler=cmd_run)
    sub.add_parser("serve", help="deploy the models onto the Ray cluster ([ray] address)"
                   ).set_defaults(handler=cmd_serve)
    p = sub.add_parser("sync", help="register slash commands with Discord")
    p.add_argument("--guild", type=int, help="only this guild (instant) instead of global")
    p.set_defaults(handler=cmd_sync)
    p = sub.add_parser("check-config", help="validate a config file and print the settings")
    p.add_argument("path", nargs="?", help="config file (same as --config)")
    p.set_defaults(handler=cmd_check_config)
    sub.add_parser("download-models", help="fetch the configured models into the HF cache"
                   ).set_defaults(handler=cmd_download_models)

    ask = sub.add_parser("ask", help="answer a student command without Discord")
    ask.set_defaults(handler=cmd_ask)
    from bot.ask import add_ask_parsers
    from bot.client import EXTENSIONS

    add_ask_parsers(ask, EXTENSIONS)

    p = sub.add_parser("train-sentiment", help="train the /sentiment classifier")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="TSV (text<TAB>label) or CSV with a header")
    source.add_argument("--download", choices=["sst2"],
                        help="fetch the SST-2 training split the course notebook used")
    p.add_argument("--limit", type=int, help="use only the first N rows (the notebook used 2000)")
    p.add_argument("--pooling", choices=["cls", "mean"])
    p.set_defaults(handler=cmd_train_sentiment)

    logs = sub.add_parser("logs", help="query log tools")
    logs_sub = logs.add_subparsers(dest="logs_command", required=True)
    p = logs_sub.add_parser("export", help="export one guild's rows as CSV")
    p.add_argument("--guild", type=int, required=True)
    p.add_argument("--since", help="7d, 12h, 30m or an ISO date")
    p.add_argument("--out", help="file to write (default: stdout)")
    p.set_defaults(handler=cmd_logs_export)
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
