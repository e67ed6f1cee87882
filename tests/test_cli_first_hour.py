"""What a new user meets in the first hour, through the real `tlm-bot` entry point.

No network: an unreachable hub is a closed loopback port (HF_ENDPOINT) or HF_HUB_OFFLINE=1
with an empty model cache; an unreachable Discord is the emulator's URL variable pointing at a
closed loopback port. Every failure must end in one `error:` line that says what to do, with
the exit code `tlm-bot --help` documents, and never a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import EXIT_UNAVAILABLE, EXIT_USER, main
from tests.conftest import write_tiny_config
from tests.discord_emulator import SITE_DIR

ROOT = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No ambient config or token; an empty model cache, so a hub id is not there."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                         if p)}
    for name in ("TLM_CONFIG", "DISCORD_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                 "HF_ENDPOINT", "TLM_DISCORD_EMULATOR_URL"):
        env.pop(name, None)
    env.update(extra)
    return env


def tlm_bot(tmp_path: Path, *argv: str, env: dict[str, str], timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_error_line(done: subprocess.CompletedProcess[str], code: int,
                          *phrases: str) -> str:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr  # no retry chatter, no log lines, no tracebacks
    assert lines[0].startswith("error: "), lines[0]
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------- model hub


@pytest.mark.slow
@pytest.mark.parametrize("hub", ["unreachable", "offline"])
def test_ask_without_the_hub_says_what_to_do_in_one_line(tmp_path, hub):
    extra = ({"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"} if hub == "unreachable"
             else {"HF_HUB_OFFLINE": "1"})
    done = tlm_bot(tmp_path, "ask", "mask", "The boys [MASK] shy.",
                   env=cli_env(tmp_path, **extra))
    line = assert_one_error_line(done, EXIT_UNAVAILABLE, "distilbert/distilbert-base-cased",
                                 "tlm-bot download-models", "HF_HUB_OFFLINE=1", "[models]")
    assert "cannot be reached" in line if hub == "unreachable" else "HF_HUB_OFFLINE" in line
    assert done.stdout == ""


@pytest.mark.slow
def test_a_model_that_fails_to_load_is_one_line_and_its_traceback_only_with_v(tmp_path,
                                                                              tiny_models):
    broken = tmp_path / "broken-model"
    broken.mkdir()  # a local folder with no config.json: the loader itself fails
    config = write_tiny_config(tmp_path / "config.toml", tiny_models)
    text = config.read_text(encoding="utf-8")
    mask_line = f"mask = {json.dumps(str(tiny_models.masked_lm))}"
    assert mask_line in text
    config.write_text(text.replace(mask_line, f"mask = {json.dumps(str(broken))}"),
                      encoding="utf-8")
    env = cli_env(tmp_path, HF_HUB_OFFLINE="1")
    done = tlm_bot(tmp_path, "ask", "mask", "The boys [MASK] shy.", "--config", str(config),
                   env=env)
    assert_one_error_line(done, EXIT_UNAVAILABLE, "could not be loaded", str(broken))
    verbose = tlm_bot(tmp_path, "ask", "mask", "x [MASK]", "--config", str(config), "-v",
                      env=env)
    assert verbose.returncode == EXIT_UNAVAILABLE
    assert "Traceback" in verbose.stderr  # the detail is there for whoever asks for it


@pytest.mark.slow
@pytest.mark.parametrize("hub", ["unreachable", "offline"])
def test_download_models_reports_each_failure_on_one_line(tmp_path, hub):
    extra = ({"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"} if hub == "unreachable"
             else {"HF_HUB_OFFLINE": "1"})
    done = tlm_bot(tmp_path, "download-models", env=cli_env(tmp_path, **extra))
    assert done.returncode == EXIT_UNAVAILABLE, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    # mask and features are the same model: three distinct models, three lines.
    assert len(errors) == 3, done.stderr
    assert all(line.startswith("error: cannot download ") for line in errors), errors
    if hub == "offline":
        assert all("unset HF_HUB_OFFLINE" in line for line in errors), errors
    else:
        assert all("cannot be reached" in line for line in errors), errors


# ---------------------------------------------------------------------------- Discord


@pytest.mark.slow
@pytest.mark.parametrize("command", [["run"], ["sync", "--guild", "1"]])
def test_discord_unreachable_is_one_line_and_loads_no_model_first(tmp_path, tiny_models,
                                                                  command):
    config = write_tiny_config(tmp_path / "config.toml", tiny_models)
    env = cli_env(tmp_path, HF_HUB_OFFLINE="1", DISCORD_TOKEN="not-a-real-token",
                  TLM_DISCORD_EMULATOR_URL=f"http://127.0.0.1:{closed_port()}")
    env["PYTHONPATH"] = os.pathsep.join((str(SITE_DIR), env["PYTHONPATH"]))
    done = tlm_bot(tmp_path, "--config", str(config), *command, env=env)
    assert done.returncode == EXIT_UNAVAILABLE, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: cannot reach Discord: "), errors
    # `run` logs in before any model starts loading: nothing to wait for on the way out.
    assert "core.inference.models: loading" not in done.stderr, done.stderr
    # A bot that never joins voice does not warn about voice libraries.
    assert "voice will NOT be supported" not in done.stderr, done.stderr


# ------------------------------------------------------------------- options and config


@pytest.fixture
def no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TLM_CONFIG", raising=False)
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("no_ambient_config")
def test_config_and_verbose_work_before_or_after_the_subcommand(tiny_models, tmp_path, capsys):
    config = str(write_tiny_config(tmp_path / "config.toml", tiny_models,
                                   engine={"workers": 3}))
    for argv in (["--config", config, "check-config"], ["check-config", "--config", config],
                 ["-v", "check-config", "--config", config], ["check-config", config, "-v"]):
        assert main(argv) == 0, argv
        out = capsys.readouterr().out
        assert f"config: {Path(config).resolve()} (" in out.splitlines()[0], out
        assert "workers = 3" in out, argv
    # Deeper subcommands too (`ask tokens ... --config FILE`).
    assert main(["ask", "tokens", "Tokenization", "--config", config, "-v"]) == 0
    assert capsys.readouterr().out.startswith("WordPiece tokens")


@pytest.mark.usefixtures("no_ambient_config")
def test_check_config_says_where_its_settings_came_from(tiny_models, tmp_path, capsys,
                                                        monkeypatch):
    assert main(["check-config"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "config: the defaults (no config file given, none in the current folder)")
    write_tiny_config(tmp_path / "config.toml", tiny_models)
    assert main(["check-config"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"config: {tmp_path.resolve() / 'config.toml'} (found in the current folder)"
    monkeypatch.setenv("TLM_CONFIG", str(tmp_path / "config.toml"))
    assert main(["check-config"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("(from $TLM_CONFIG)")


@pytest.mark.usefixtures("no_ambient_config")
def test_a_config_path_that_is_a_folder_or_not_utf8_is_one_line_exit_2(tmp_path, capsys):
    folder = tmp_path / "conf.d"
    folder.mkdir()
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('[discord]\n# caf\xe9\n'.encode("latin-1"))
    for path, phrase in ((folder, "is a folder"), (latin1, "is not UTF-8")):
        for command in (["check-config"], ["run"]):
            assert main(["--config", str(path), *command]) == EXIT_USER
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith("error: ") and phrase in err, err


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly(tmp_path, tiny_models):
    config = write_tiny_config(tmp_path / "config.toml", tiny_models)
    env = cli_env(tmp_path, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "bot", "--config", str(config),
                             "check-config"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head -0`: the reader is gone before the first line
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert err == "", err


def test_help_documents_exit_codes_and_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out
    for code in ("0", "1", "2", "3", "130"):
        assert any(line.split()[:1] == [code] for line in out.splitlines()), code
    with pytest.raises(SystemExit):
        main(["ask", "generate", "--help"])
    assert "(default: 30)" in capsys.readouterr().out  # --max-new-tokens


def test_limit_zero_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train-sentiment", "--data", "x.tsv", "--limit", "0"])
    assert exit_info.value.code == EXIT_USER
    assert "--limit: must be at least 1, got 0" in capsys.readouterr().err


# ------------------------------------------------------------------------- train-sentiment


def reviews(tmp_path: Path, rows: list[tuple[str, int]]) -> Path:
    path = tmp_path / "reviews.tsv"
    path.write_text("".join(f"{text}\t{label}\n" for text, label in rows), encoding="utf-8")
    return path


@pytest.mark.usefixtures("no_ambient_config")
def test_train_sentiment_refuses_a_pooling_the_config_would_reject(tiny_models, tmp_path,
                                                                   capsys):
    config = str(write_tiny_config(tmp_path / "config.toml", tiny_models,
                                   sentiment={"pooling": "cls"}))
    data = reviews(tmp_path, [("good", 1), ("bad", 0)] * 10)
    assert main(["--config", config, "train-sentiment", "--data", str(data),
                 "--pooling", "mean"]) == EXIT_USER
    err = capsys.readouterr().err
    assert err.startswith("error: --pooling mean differs from sentiment.pooling = 'cls'"), err
    assert 'pooling = "mean"' in err and config in err
    assert not (tmp_path / "classifier").exists()  # nothing was trained or installed


@pytest.mark.usefixtures("no_ambient_config")
def test_a_classifier_no_better_than_the_baseline_comes_with_a_loud_warning(
        tiny_models, tmp_path, capsys):
    config = str(write_tiny_config(tmp_path / "config.toml", tiny_models))
    # The same sentence under both labels: nothing to learn, the baseline is as good as it gets.
    data = reviews(tmp_path, [("the same sentence", 0), ("the same sentence", 1)] * 10)
    assert main(["--config", config, "train-sentiment", "--data", str(data)]) == 0
    out, err = capsys.readouterr()
    assert "WARNING: no better than the baseline" in out  # in the report Discord shows too
    assert err.splitlines()[-1].startswith(
        "WARNING: this classifier is no better than always answering"), err
    assert (tmp_path / "classifier" / "manifest.json").is_file()
