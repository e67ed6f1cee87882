"""`tlm-bot` on the command line: what an operator types before (or instead of) Discord.

Most tests call `bot.cli.main([...])` in-process and read what it printed; one runs the real
console entry (`python -m bot`) as a subprocess. Every command gets a config file written to
tmp_path that points at the tiny offline models. Errors a user can fix must exit 2 with one
"error:" line and never a traceback.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.cli import main
from core.storage.database import Database
from core.storage.querylog import QueryLog, QueryRecord, unescape_csv_cell
from tests.conftest import write_tiny_config
from tests.tiny_models import TinyModelPaths

ROOT = Path(__file__).resolve().parents[1]

POSITIVE_WORDS = ["good", "great", "wonderful", "happy", "lovely", "excellent", "nice",
                  "amazing", "beautiful", "fun"]
NEGATIVE_WORDS = ["bad", "awful", "terrible", "sad", "ugly", "boring", "poor", "horrible",
                  "worst", "dull"]


def labelled_rows() -> list[tuple[str, int]]:
    """40 sentences, 20 per class, alternating so that any prefix holds both classes."""
    rows = []
    for good, bad in zip(POSITIVE_WORDS * 2, NEGATIVE_WORDS * 2):
        rows.append((f"a {good} movie, really {good}", 1))
        rows.append((f"a {bad} movie, really {bad}", 0))
    return rows


def write_config(tmp_path: Path, models: TinyModelPaths, *, pooling: str = "cls") -> Path:
    return write_tiny_config(tmp_path / "config.toml", models, sentiment={"pooling": pooling})


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *phrases: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, err
    for phrase in phrases:
        assert phrase in error_lines[0], error_lines[0]


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own TLM_CONFIG or token must not leak into what these tests see.
    monkeypatch.delenv("TLM_CONFIG", raising=False)
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)


# ------------------------------------------------------------------------------------- ask


def test_ask_answers_like_the_bot_and_explains_bad_input(tiny_models, tmp_path, capsys):
    config = str(write_config(tmp_path, tiny_models))

    code, out, _ = run_cli(capsys, "--config", config, "ask", "mask",
                           "Paris is the [MASK] of France.", "--top-k", "3")
    assert code == 0
    assert out.startswith("Fillers for [MASK]")
    assert len(re.findall(r"^` *\d+` ", out, re.M)) == 3  # exactly k ranked fillers
    assert "Best sentence" in out and "model: " in out

    code, out, err = run_cli(capsys, "--config", config, "ask", "mask", "no mask here")
    assert_user_error(code, err, "no [MASK]", "exactly one `[MASK]`")
    assert out == ""

    code, out, _ = run_cli(capsys, "--config", config, "ask", "qa", "Where is the tower?",
                           "The Eiffel Tower is in Paris.")
    assert code == 0 and out.startswith("Answer: ")
    assert "**Q:** Where is the tower?" in out

    code, out, _ = run_cli(capsys, "--config", config, "ask", "tokens",
                           "Tokenization is unbelievable!")
    assert code == 0 and out.startswith("WordPiece tokens")
    assert "[CLS]" in out and "##iz" in out


def test_ask_generate_with_a_seed_repeats_itself(tiny_models, tmp_path, capsys):
    config = str(write_config(tmp_path, tiny_models))
    argv = ["--config", config, "ask", "generate", "Once upon a time", "--max-new-tokens", "8"]
    code, first, _ = run_cli(capsys, *argv, "--seed", "1234")
    code_again, again, _ = run_cli(capsys, *argv, "--seed", "1234")
    assert code == code_again == 0
    assert first.startswith("**Once upon a time**")
    assert "seed 1234" in first
    _, other, _ = run_cli(capsys, *argv, "--seed", "99")
    # The timing in the footer differs from run to run; the text must not.
    text = first.split("\nmodel: ")[0]
    assert text == again.split("\nmodel: ")[0]
    assert text != other.split("\nmodel: ")[0] and "seed 99" in other


def test_ask_sentiment_without_a_classifier_says_how_to_train(tiny_models, tmp_path, capsys):
    config = str(write_config(tmp_path, tiny_models))
    code, out, err = run_cli(capsys, "--config", config, "ask", "sentiment", "good")
    assert_user_error(code, err, "No sentiment classifier has been trained yet",
                      "tlm-bot train-sentiment --data FILE")
    assert out == ""


def test_console_entry_runs_as_a_subprocess(tiny_models, tmp_path):
    config = write_config(tmp_path, tiny_models)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                         if p)}
    env.pop("TLM_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "ask", "tokens",
         "Tokenization is unbelievable!", "--model", "bpe"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("BPE tokens")
    table = done.stdout.split("```")[1]  # piped: the markdown Discord gets
    assert "␣is" in table and "Ġ" not in table  # a piece that starts with a space
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------------------- train-sentiment


def test_train_sentiment_reports_installs_and_then_answers(tiny_models, tmp_path, capsys):
    config = str(write_config(tmp_path, tiny_models, pooling="mean"))
    data = tmp_path / "reviews.tsv"  # SST-2's header-less sentence<TAB>label
    data.write_text("".join(f"{text}\t{label}\n" for text, label in labelled_rows()),
                    encoding="utf-8")

    code, out, err = run_cli(capsys, "--config", config, "train-sentiment", "--data", str(data),
                             "--limit", "30", "--pooling", "mean")
    assert code == 0, err
    assert "training on 30 examples" in out and "mean pooling" in out
    # 30 rows, a fifth held out: the report says what it was measured on...
    assert "trained   24 sentences, tested on 6 held out" in out
    accuracy = re.search(r"^classifier +(\d\.\d{3})$", out, re.M)
    baseline = re.search(r"^always 'negative' +(\d\.\d{3})$", out, re.M)  # the dummy baseline
    assert accuracy is not None and baseline is not None, out
    assert float(baseline[1]) == 0.5  # 3 of each class in the stratified test set
    # ...and the classifier is installed where the bot will look for it.
    classifier_dir = tmp_path / "classifier"
    assert (classifier_dir / "manifest.json").is_file()
    assert (classifier_dir / "classifier.npz").is_file()
    assert str(classifier_dir) in out

    code, out, err = run_cli(capsys, "--config", config, "ask", "sentiment", "good")
    assert code == 0, err
    assert re.match(r"(negative|positive) \(\d+%\)\n", out), out
    assert f"held-out accuracy {float(accuracy[1]):.1%}" in out


def test_train_sentiment_refuses_bad_data_with_a_message(tiny_models, tmp_path, capsys):
    config = str(write_config(tmp_path, tiny_models))
    no_label = tmp_path / "reviews.csv"
    no_label.write_text("text,stars\ngreat film,5\nawful film,1\n", encoding="utf-8")
    one_class = tmp_path / "happy.csv"
    one_class.write_text("text,label\n" + "".join(f"{w} film,positive\n" for w in POSITIVE_WORDS),
                         encoding="utf-8")

    code, _, err = run_cli(capsys, "--config", config, "train-sentiment", "--data", str(no_label))
    assert_user_error(code, err, "reviews.csv", "no `label` column")
    code, _, err = run_cli(capsys, "--config", config, "train-sentiment", "--data",
                           str(one_class))
    assert_user_error(code, err, "happy.csv", "'positive'", "both classes")
    code, _, err = run_cli(capsys, "--config", config, "train-sentiment", "--data",
                           str(tmp_path / "missing.tsv"))
    assert_user_error(code, err, "No such file", "missing.tsv")
    assert not (tmp_path / "classifier").exists()


# ------------------------------------------------------------------- run, config and logs


def test_run_without_a_token_exits_with_a_clear_message(tiny_models, tmp_path, capsys):
    config = str(write_config(tmp_path, tiny_models))
    code, _, err = run_cli(capsys, "--config", config, "run")
    assert_user_error(code, err, "no Discord token", "DISCORD_TOKEN")


def test_check_config_names_an_unknown_key(tiny_models, tmp_path, capsys):
    good = write_config(tmp_path, tiny_models)
    code, out, _ = run_cli(capsys, "check-config", str(good))
    assert code == 0 and out.rstrip().endswith("config OK")
    assert "DISCORD_TOKEN: (not set)" in out and "[sentiment]" in out

    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text(encoding="utf-8").replace(
        "[engine]\n", "[engine]\nmax_wiat_ms = 3\n"), encoding="utf-8")
    code, out, err = run_cli(capsys, "check-config", str(bad))
    assert_user_error(code, err, "unknown key engine.max_wiat_ms")
    assert "config OK" not in out


def test_logs_export_writes_one_guilds_rows(tiny_models, tmp_path, capsys):
    config = str(write_config(tmp_path, tiny_models))
    ours, theirs = 111, 222
    old = datetime.now(timezone.utc) - timedelta(days=30)

    async def seed() -> None:
        async with await Database.open(tmp_path / "tlm.db") as db:
            async with QueryLog(db) as querylog:
                for guild, user, text, created in [
                    (ours, 1, "Where is it?\n---\nThe tower is in Paris.", None),  # QA
                    (theirs, 2, "someone else's text", None),
                    (ours, 3, "=HYPERLINK(1)", None),
                    (ours, 4, "a month ago", old),
                ]:
                    assert await querylog.record(QueryRecord(
                        guild_id=guild, channel_id=5, user_id=user, command="mask",
                        options={}, input_text=text, status="ok", created_at=created))

    asyncio.run(seed())
    out_file = tmp_path / "export.csv"
    code, out, err = run_cli(capsys, "--config", config, "logs", "export", "--guild", str(ours),
                             "--out", str(out_file))
    assert code == 0, err
    assert f"wrote 3 rows to {out_file}" in out
    assert out_file.stat().st_mode & 0o777 == 0o600  # owner-only, like the database
    rows = list(csv.DictReader(io.StringIO(out_file.read_text(encoding="utf-8-sig"), newline="")))
    assert sorted(unescape_csv_cell(r["user_id"]) for r in rows) == ["1", "3", "4"]
    assert {r["guild_id"] for r in rows} == {f'="{ours}"'}  # text: spreadsheets keep 19 digits
    texts = {r["input_text"] for r in rows}
    assert "'=HYPERLINK(1)" in texts  # defused for spreadsheets
    assert "Where is it?\n---\nThe tower is in Paris." in texts  # newlines survive quoting

    code, out, err = run_cli(capsys, "--config", config, "logs", "export", "--guild", str(ours),
                             "--since", "7d")
    assert code == 0, err
    assert out.startswith("\ufeff")
    recent = list(csv.DictReader(io.StringIO(out[1:], newline="")))
    assert sorted(unescape_csv_cell(r["user_id"]) for r in recent) == ["1", "3"]

    code, _, err = run_cli(capsys, "--config", config, "logs", "export", "--guild", str(ours),
                           "--since", "last week")
    assert_user_error(code, err, "--since must look like 7d")


def test_a_damaged_database_is_one_line_and_exit_2(tiny_models, tmp_path, capsys):
    config = str(write_config(tmp_path, tiny_models))
    (tmp_path / "tlm.db").write_bytes(b"not a database " * 500)
    code, _, err = run_cli(capsys, "--config", config, "logs", "export", "--guild", "1")
    assert_user_error(code, err, "is damaged", "restore a backup")


def test_ask_with_a_locale_answers_as_that_student_reads_it(tiny_models, tmp_path, capsys):
    config = str(write_config(tmp_path, tiny_models))
    code, out, _ = run_cli(capsys, "--config", config, "ask", "--locale", "it", "mask",
                           "Paris is the [MASK] of France.", "--top-k", "2")
    assert code == 0
    assert out.startswith("Parole per [MASK]") and "Frase migliore" in out, out
    assert re.search(r"— 0,\d{3}$", out, re.M), out  # the Italian decimal comma
    code, out, err = run_cli(capsys, "--config", config, "ask", "--locale", "it", "mask",
                             "niente maschera")
    assert_user_error(code, err, "Il tuo testo non contiene [MASK]")
    # The next command (no --locale) is English again: the language was this command's only.
    code, out, _ = run_cli(capsys, "--config", config, "ask", "mask", "A [MASK].", "--top-k", "1")
    assert out.startswith("Fillers for [MASK]")
