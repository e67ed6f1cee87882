"""The command line for a person at a terminal: plain answers, a status line for a slow model
load, `--out` into a new folder, a missing model folder named by `check-config`, and `-v`
naming where a model was looked for.

In process, through `bot.cli.main`, with the tiny models. "A terminal" is the captured stream
answering `isatty()` with True, which is all the CLI asks of it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import bot.terminal
from bot.cli import EXIT_UNAVAILABLE, EXIT_USER, main
from bot.terminal import plain_text
from tests.conftest import write_tiny_config


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TLM_CONFIG", raising=False)
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)


def a_terminal(monkeypatch: pytest.MonkeyPatch, stream: object) -> None:
    monkeypatch.setattr(stream, "isatty", lambda: True)


def with_mask_model(path: Path, models, model: str) -> str:
    config = write_tiny_config(path, models)
    text = config.read_text(encoding="utf-8").replace(
        f"mask = {json.dumps(str(models.masked_lm))}", f"mask = {json.dumps(model)}")
    config.write_text(text, encoding="utf-8")
    return str(config)


# ------------------------------------------------------------------------------ plain text


def test_on_a_terminal_ask_prints_plain_text_and_piped_what_discord_gets(
        tiny_models, tmp_path, capsys, monkeypatch):
    config = str(write_tiny_config(tmp_path / "config.toml", tiny_models))
    question = ["--config", config, "ask", "qa", "Where is the tower?",
                "The tower is in Paris, by the river."]
    assert main(question) == 0
    piped = capsys.readouterr().out
    assert "**Q:** Where is the tower?" in piped  # Discord's markdown, for pasting there

    a_terminal(monkeypatch, sys.stdout)
    assert main(question) == 0
    shown = capsys.readouterr().out
    assert "Q: Where is the tower?" in shown
    assert "**" not in shown and "__" not in shown and "`" not in shown, shown

    assert main(["--config", config, "ask", "tokens", "Tokenization", "--model", "compare"]) == 0
    compare = capsys.readouterr().out
    assert "```" not in compare and "[CLS]" in compare, compare


def test_plain_text_keeps_code_blocks_and_bare_stars_as_they_are():
    markdown = ("**Sentence:** a \\*starred\\* word, *final* here; * = in both lists\n"
                "```\ntoken  **not bold in a block**\n```\n` 1` **run** — 0.5")
    assert plain_text(markdown) == (
        "Sentence: a *starred* word, final here; * = in both lists\n"
        "token  **not bold in a block**\n"
        " 1 run — 0.5")


# ---------------------------------------------------------------------- model load status


@pytest.mark.parametrize("after_s,expected", [(0.0, 1), (60.0, 0)])
def test_a_slow_model_load_gets_one_status_line_on_a_terminal(
        tiny_models, tmp_path, capsys, monkeypatch, after_s, expected):
    config = str(write_tiny_config(tmp_path / "config.toml", tiny_models))
    monkeypatch.setattr(bot.terminal, "LOADING_STATUS_AFTER_S", after_s)
    a_terminal(monkeypatch, sys.stderr)
    assert main(["--config", config, "ask", "mask", "The boys [MASK] shy."]) == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert lines == [f"loading {tiny_models.masked_lm}..."] * expected, err
    assert out.startswith("Fillers for [MASK]")


def test_no_status_line_where_no_person_watches(tiny_models, tmp_path, capsys, monkeypatch):
    config = str(write_tiny_config(tmp_path / "config.toml", tiny_models))
    monkeypatch.setattr(bot.terminal, "LOADING_STATUS_AFTER_S", 0.0)
    assert main(["--config", config, "ask", "mask", "The boys [MASK] shy."]) == 0
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------------- --out


def test_ask_out_into_a_new_folder_writes_the_picture_there(tiny_models, tmp_path, capsys):
    config = str(write_tiny_config(tmp_path / "config.toml", tiny_models))
    assert main(["--config", config, "ask", "attention", "The cat sat.",
                 "--out", "new/dir/a.png"]) == 0
    picture = tmp_path / "new" / "dir" / "a.png"
    assert picture.read_bytes().startswith(b"\x89PNG")
    assert capsys.readouterr().out.rstrip().endswith(f"picture written to {Path('new/dir/a.png')}")


def test_ask_out_where_no_folder_can_be_made_is_refused_before_any_model_loads(
        tiny_models, tmp_path, capsys, monkeypatch):
    config = str(write_tiny_config(tmp_path / "config.toml", tiny_models))
    (tmp_path / "notes.txt").write_text("a file, not a folder", encoding="utf-8")

    def never(*args, **kwargs):
        raise AssertionError("the command ran although its picture could not be written")

    monkeypatch.setattr("bot.ask.answer_offline", never)
    assert main(["--config", config, "ask", "attention", "The cat sat.",
                 "--out", "notes.txt/a.png"]) == EXIT_USER
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --out notes.txt/a.png: "), err


# ---------------------------------------------------------------------------- check-config


def test_check_config_names_a_missing_model_folder_and_exits_2(tiny_models, tmp_path, capsys):
    config = with_mask_model(tmp_path / "config.toml", tiny_models, "./models/not-there")
    assert main(["check-config", config]) == EXIT_USER
    out, err = capsys.readouterr()
    assert "config OK" not in out
    assert err.count("\n") == 1, err
    folder = tmp_path / "models" / "not-there"
    assert err.startswith(f"error: models.mask: the local folder {folder} does not exist"), err


# --------------------------------------------------------------------------------------- -v


@pytest.mark.parametrize("verbose", [False, True])
def test_v_names_what_was_tried_for_a_model_that_cannot_be_had(
        tiny_models, tmp_path, capsys, monkeypatch, verbose):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    config = with_mask_model(tmp_path / "config.toml", tiny_models, "nobody-here/absent-model")
    argv = ["--config", config, *(["-v"] if verbose else []), "ask", "mask", "A [MASK]."]
    assert main(argv) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    tried = ("tried the hub id nobody-here/absent-model at revision main: first the cache "
             f"folder {constants.HF_HUB_CACHE}")
    assert (tried in err) is verbose, err
    assert ("offline mode is on (HF_HUB_OFFLINE=1), so the hub was not asked" in err) is verbose
    assert err.splitlines()[-1].startswith("error: The model `nobody-here/absent-model`")

    folder = with_mask_model(tmp_path / "config.toml", tiny_models, "./models/gone")
    assert main(["--config", folder, *(["-v"] if verbose else []), "ask", "mask", "A [MASK]."]
                ) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert (f"tried the local folder {tmp_path / 'models' / 'gone'} (exists: no" in err) is verbose
