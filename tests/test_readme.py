"""The shell blocks of the README and of every docs/ page, run as written, so the documentation
cannot drift from the CLI.

Every ```sh block either runs here (offline: `bash -e` in a folder whose `config.toml` points
at the test suite's tiny models, with `tlm-bot` on PATH) or carries an explicit marker on the
line before it, `<!-- readme-test: skip (why) -->`, for what needs a token, the network or an
installation. A new block without a marker is run, so an example that stops working fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_tiny_config

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINT = Path(sys.executable).with_name("tlm-bot")
SKIP = re.compile(r"<!-- readme-test: skip \((?P<why>[^)]+)\) -->")
BLOCK = re.compile(r"^```sh\n(?P<code>.*?)^```$", re.M | re.S)


#: The pages whose blocks run: the front page and every page under docs/.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def sh_blocks() -> list[tuple[str, str, str | None]]:
    """("page:line", code, skip reason or None) for every ```sh block of every page."""
    blocks = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            skip = SKIP.fullmatch(before.strip())
            line = text.count("\n", 0, match.start()) + 1
            where = f"{page.relative_to(ROOT)}:{line}"
            blocks.append((where, match["code"], skip["why"] if skip else None))
    return blocks


BLOCKS = sh_blocks()


def test_the_pages_have_runnable_blocks_and_every_skip_says_why():
    assert len(PAGES) > 5  # docs/ was found
    runnable = [code for _, code, why in BLOCKS if why is None]
    assert any("tlm-bot ask mask" in code for code in runnable)
    assert any("tlm-bot check-config" in code for code in runnable)
    assert all(why.strip() for _, _, why in BLOCKS if why is not None)
    # Blocks of docs pages are collected too, not only the README's.
    assert any(where.startswith("docs/") and why is None for where, _, why in BLOCKS)


def test_the_pages_link_to_files_that_exist():
    """Relative links ([text](path) and ![alt](path)) point at files of the repository."""
    for page in PAGES:
        for target in re.findall(r"\]\((?!https?:|#|mailto:)([^)#\s]+)", page.read_text("utf-8")):
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} -> {target}"


@pytest.mark.slow
@pytest.mark.skipif(not ENTRY_POINT.exists(), reason="tlm-bot is not installed in this venv")
@pytest.mark.parametrize("where,code", [(where, code) for where, code, why in BLOCKS
                                        if why is None],
                         ids=[where for where, _, why in BLOCKS if why is None])
def test_block_runs(where, code, tiny_models, tmp_path):
    write_tiny_config(tmp_path / "config.toml", tiny_models)
    # What the sentiment example trains on: two classes a bag of words separates.
    rows = [f"a {w} movie,positive" for w in ("good", "great", "fine", "witty", "lovely")] + \
        [f"a {w} movie,negative" for w in ("bad", "dull", "awful", "poor", "boring")]
    (tmp_path / "my_reviews.csv").write_text("text,label\n" + "\n".join(rows * 2) + "\n",
                                             encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "PATH": os.pathsep.join((str(ENTRY_POINT.parent), os.environ.get("PATH", ""))),
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                         if p)}
    for name in ("TLM_CONFIG", "DISCORD_TOKEN"):
        env.pop(name, None)
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{where}\n{code}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    assert "error:" not in done.stderr, done.stderr
