"""`tlm-bot ask` reaches every student command through the registry, with the slash options."""

from __future__ import annotations

import json

import pytest

from bot.ask import DISCORD_ONLY, slash_commands
from bot.cli import main
from bot.client import EXTENSIONS
from bot.interactions.registry import COMMANDS
from tests.test_cli import run_cli, write_config
from tests.test_privacy_outcomes import VALID


def test_every_student_command_has_an_ask_subcommand_with_its_options(capsys):
    declared = slash_commands(EXTENSIONS)
    for name in COMMANDS:
        # The top-level command, not a group's sub-command of the same name (`/quiz mask`).
        assert set(VALID[name]) <= {p.name for p in declared[name].parameters}, name
        with pytest.raises(SystemExit):
            main(["ask", *name.split(), "--help"])
        help_text = capsys.readouterr().out
        for parameter in declared[name].parameters:
            if parameter.name in DISCORD_ONLY:  # how Discord shows an answer: no CLI option
                assert "--" + parameter.name not in help_text
                continue
            positional = parameter.required or parameter.name in COMMANDS[name].input_options
            shown = parameter.name if positional else "--" + parameter.name.replace("_", "-")
            assert shown in help_text, (name, shown)
            described = " ".join(help_text.split())
            if positional and not parameter.required:
                # Optional in Discord (a form asks for it), required here: help says so rather
                # than repeat Discord's "leave it out".
                first = parameter.description.split(". ")[0].rstrip(".")
                assert f"{first}. Required here" in described, (name, shown)
                assert "Leave it out" not in described, (name, shown)
            else:
                assert parameter.description in described, (name, shown)


@pytest.mark.parametrize("name", ["attention", "contextsim", "maskpair", "nexttoken",
                                  "logitlens", "neighbours", "explain mask", "explain qa",
                                  "explain next"])
def test_pictures_are_written_to_a_file(capsys, tmp_path, tiny_models, name, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, tiny_models)
    options = {k: v.replace("{M}", "cat") if isinstance(v, str) else v
               for k, v in VALID[name].items()}
    parameters = {p.name: p for p in slash_commands(EXTENSIONS)[name].parameters}
    argv = ["--config", str(config), "ask", *name.split()]
    for key, value in options.items():
        if parameters[key].required:
            argv.append(str(value))
        else:
            argv += ["--" + key.replace("_", "-"), str(value)]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    [line] = [line for line in out.splitlines() if line.startswith("picture written to ")]
    path = tmp_path / line.removeprefix("picture written to ")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_tokens_compare_from_the_cli(capsys, tmp_path, tiny_models):
    config = write_config(tmp_path, tiny_models)
    code, out, err = run_cli(capsys, "--config", str(config), "ask", "tokens", "hello world",
                             "--model", "compare")
    assert code == 0, err
    assert "WordPiece" in out or "wordpiece" in out.lower()
    assert "bpe" in out.lower()


def test_check_config_load_tries_every_model(capsys, tmp_path, tiny_models):
    config = write_config(tmp_path, tiny_models)
    code, out, err = run_cli(capsys, "check-config", str(config), "--load")
    assert code == 0, err
    assert out.count("loaded in") >= 3 and out.rstrip().endswith("config OK")
    broken = tmp_path / "broken.toml"
    broken.write_text(config.read_text().replace(str(tiny_models.qa), str(tiny_models.causal_lm)))
    code, out, err = run_cli(capsys, "check-config", str(broken), "--load")
    assert code == 3, out + err
    assert "question-answering head" in out, out


def test_tokens_compare_adds_the_configured_multilingual_tokenizer(capsys, tmp_path,
                                                                    tiny_models):
    """`[models] multilingual` puts a third tokenizer beside WordPiece and BPE (the tiny
    masked model's tokenizer stands in for a multilingual one); without it, two."""
    plain = write_config(tmp_path, tiny_models)
    code, out, err = run_cli(capsys, "--config", str(plain), "ask", "tokens",
                             "Ciao mi chiamo Mattia", "--model", "compare")
    assert code == 0, err
    assert out.startswith("WordPiece vs BPE\n") and out.count(" tokens\n") == 2, out
    config = tmp_path / "multilingual.toml"
    config.write_text(plain.read_text().replace(
        "[models]\n", f"[models]\nmultilingual = {json.dumps(str(tiny_models.masked_lm))}\n"))
    code, out, err = run_cli(capsys, "--config", str(config), "ask", "tokens",
                             "Ciao mi chiamo Mattia", "--model", "compare")
    assert code == 0, err
    name = tiny_models.masked_lm.name
    assert out.startswith(f"WordPiece vs BPE vs {name}\n"), out
    assert f"WordPiece ({name}): " in out and out.count(" tokens\n") == 3, out
    code, out, err = run_cli(capsys, "check-config", str(config), "--load")
    assert code == 0 and "multilingual: " in out, out + err
