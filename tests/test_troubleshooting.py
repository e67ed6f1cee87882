"""docs/troubleshooting.md quotes the real error lines, so searching for what you see finds it.

Each row of its table starts with the line a user sees, as a ``code span`` in which `...` stands
for what varies (a path, a model id, a reason). Every scenario below produces one such line
through the real `tlm-bot` entry point (in process: no models load, nothing leaves loopback);
each quoted line must match the line its scenario prints, in full, and every scenario must be
quoted by a row. A message reworded in the code, or a row edited by hand, fails here.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.cli import main
from tests.conftest import write_tiny_config
from tests.tiny_models import TinyModelPaths

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "troubleshooting.md"
ROW = re.compile(r"^\| `` (?P<quote>.+?) `` \|", re.M)


def quoted_lines() -> list[str]:
    return ROW.findall(PAGE.read_text(encoding="utf-8"))


def as_pattern(quote: str) -> re.Pattern[str]:
    return re.compile(".+?".join(re.escape(part) for part in quote.split("...")), re.S)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


Scenario = Callable[[pytest.MonkeyPatch, Path, TinyModelPaths], list[str]]
SCENARIOS: dict[str, Scenario] = {}
#: What a scenario holds while its command runs (a listening socket).
HELD: list[socket.socket] = []


def scenario(function: Scenario) -> Scenario:
    SCENARIOS[function.__name__] = function
    return function


def config_with_models(tmp_path: Path, models: TinyModelPaths, **roles: str) -> str:
    """The tiny models' config with some roles pointing elsewhere."""
    path = write_tiny_config(tmp_path / "config.toml", models)
    lines = path.read_text(encoding="utf-8").splitlines()
    for role, model in roles.items():
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{role} = "))
        lines[at] = f"{role} = {json.dumps(model)}"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def absent_hub_model(tmp_path: Path, models: TinyModelPaths) -> str:
    """A config whose mask model is a hub id that no cache holds."""
    return config_with_models(tmp_path, models, mask="nobody-here/absent-model")


@scenario
def hub_unreachable(monkeypatch, tmp_path, models):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    return ["--config", absent_hub_model(tmp_path, models), "ask", "mask", "A [MASK]."]


@scenario
def hub_offline(monkeypatch, tmp_path, models):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return ["--config", absent_hub_model(tmp_path, models), "ask", "mask", "A [MASK]."]


@scenario
def download_offline(monkeypatch, tmp_path, models):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    config = config_with_models(tmp_path, models, **{
        role: f"nobody-here/absent-{role}" for role in ("mask", "qa", "generate", "features")})
    return ["--config", config, "download-models"]


@scenario
def local_folder_missing(monkeypatch, tmp_path, models):
    config = config_with_models(tmp_path, models, mask="./models/not-there")
    return ["--config", config, "ask", "mask", "A [MASK]."]


@scenario
def check_config_folder_missing(monkeypatch, tmp_path, models):
    return ["check-config", config_with_models(tmp_path, models, qa="./models/not-there")]


@scenario
def ask_out_folder_impossible(monkeypatch, tmp_path, models):
    (tmp_path / "notes.txt").write_text("a file, not a folder", encoding="utf-8")
    return ["--config", config_with_models(tmp_path, models), "ask", "attention", "A cat.",
            "--out", "notes.txt/a.png"]


@scenario
def dashboard_no_database(monkeypatch, tmp_path, models):
    return ["--config", config_with_models(tmp_path, models), "dashboard", "--guild", "1"]


@scenario
def dashboard_port_taken(monkeypatch, tmp_path, models):
    import asyncio

    from core.storage.database import Database

    config = config_with_models(tmp_path, models)

    async def create() -> None:
        async with await Database.open(tmp_path / "tlm.db"):
            pass

    asyncio.run(create())
    taken = socket.socket()
    HELD.append(taken)  # closed once the command ran
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return ["--config", config, "dashboard", "--guild", "1", "--port",
            str(taken.getsockname()[1])]


@scenario
def no_token(monkeypatch, tmp_path, models):
    return ["--config", str(write_tiny_config(tmp_path / "config.toml", models)), "run"]


def _login_raises(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    """Discord's login, the first call that reaches Discord, fails with `exc`."""
    import discord

    async def static_login(self, token):
        raise exc

    monkeypatch.setattr(discord.http.HTTPClient, "static_login", static_login)
    monkeypatch.setenv("DISCORD_TOKEN", "not-a-real-token")


@scenario
def discord_refused_token(monkeypatch, tmp_path, models):
    import discord

    _login_raises(monkeypatch, discord.LoginFailure("Improper token has been passed."))
    config = write_tiny_config(tmp_path / "config.toml", models)
    return ["--config", str(config), "sync", "--guild", "1"]


@scenario
def discord_unreachable(monkeypatch, tmp_path, models):
    import aiohttp

    _login_raises(monkeypatch, aiohttp.ClientConnectionError(
        "Cannot connect to host discord.com:443 ssl:default [Temporary failure in name "
        "resolution]"))
    config = write_tiny_config(tmp_path / "config.toml", models)
    return ["--config", str(config), "sync", "--guild", "1"]


@scenario
def config_not_found(monkeypatch, tmp_path, models):
    return ["--config", str(tmp_path / "nowhere.toml"), "check-config"]


@scenario
def config_is_a_folder(monkeypatch, tmp_path, models):
    return ["--config", str(tmp_path), "check-config"]


@scenario
def config_not_utf8(monkeypatch, tmp_path, models):
    (tmp_path / "latin1.toml").write_bytes('[discord]\n# caf\xe9\n'.encode("latin-1"))
    return ["--config", str(tmp_path / "latin1.toml"), "check-config"]


@scenario
def config_not_toml(monkeypatch, tmp_path, models):
    (tmp_path / "bad.toml").write_text("[models\nmask = 1\n", encoding="utf-8")
    return ["--config", str(tmp_path / "bad.toml"), "check-config"]


@scenario
def config_unknown_key(monkeypatch, tmp_path, models):
    (tmp_path / "typo.toml").write_text("[engine]\nworkerz = 2\n", encoding="utf-8")
    return ["--config", str(tmp_path / "typo.toml"), "check-config"]


@scenario
def config_bad_value(monkeypatch, tmp_path, models):
    (tmp_path / "bad.toml").write_text("[engine]\nworkers = \"two\"\n", encoding="utf-8")
    return ["--config", str(tmp_path / "bad.toml"), "check-config"]


@scenario
def database_damaged(monkeypatch, tmp_path, models):
    config = write_tiny_config(tmp_path / "config.toml", models)
    (tmp_path / "tlm.db").write_bytes(b"not a database " * 500)
    return ["--config", str(config), "logs", "export", "--guild", "1"]


@scenario
def pooling_differs(monkeypatch, tmp_path, models):
    config = write_tiny_config(tmp_path / "config.toml", models, sentiment={"pooling": "cls"})
    (tmp_path / "reviews.tsv").write_text("good\t1\nbad\t0\n" * 10, encoding="utf-8")
    return ["--config", str(config), "train-sentiment", "--data",
            str(tmp_path / "reviews.tsv"), "--pooling", "mean"]


@scenario
def classifier_no_better(monkeypatch, tmp_path, models):
    config = write_tiny_config(tmp_path / "config.toml", models)
    # The same sentence under both labels: nothing to learn.
    (tmp_path / "reviews.tsv").write_text("the same sentence\t0\nthe same sentence\t1\n" * 10,
                                          encoding="utf-8")
    return ["--config", str(config), "train-sentiment", "--data", str(tmp_path / "reviews.tsv")]


def real_lines(tmp_path: Path, models: TinyModelPaths,
               capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """Each scenario's last stderr line, each run in a folder and an environment of its own."""
    lines = {}
    for name, make_argv in SCENARIOS.items():
        folder = tmp_path / name
        folder.mkdir()
        with pytest.MonkeyPatch.context() as monkeypatch:
            for variable in ("TLM_CONFIG", "DISCORD_TOKEN", "TLM_DISCORD_EMULATOR_URL"):
                monkeypatch.delenv(variable, raising=False)
            monkeypatch.chdir(folder)
            try:
                main(make_argv(monkeypatch, folder, models))
            finally:
                while HELD:
                    HELD.pop().close()
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        lines[name] = err[-1] if err else ""
    return lines


def test_every_quoted_line_is_a_real_one_and_every_real_one_is_quoted(tmp_path, tiny_models,
                                                                        capsys):
    quotes = quoted_lines()
    assert all(q.startswith(("error: ", "WARNING: ")) for q in quotes), quotes
    lines = real_lines(tmp_path, tiny_models, capsys)
    unquoted = {name: line for name, line in lines.items()
                if not any(as_pattern(q).fullmatch(line) for q in quotes)}
    assert not unquoted, "docs/troubleshooting.md quotes no row for these real lines:\n" + \
        "\n".join(f"{name}: {line}" for name, line in unquoted.items())
    stale = [q for q in quotes if not any(as_pattern(q).fullmatch(line)
                                          for line in lines.values())]
    assert not stale, f"rows no scenario prints (reworded in the code?): {stale}"

