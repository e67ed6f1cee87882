"""`docs/make_pictures.py`: the README's pictures are reproducible and leave nothing behind.

Run twice with `--tiny` (no extra needed), each run must write byte-identical PNGs (no temp
folder name in a title, seeded models) and remove its temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("attention", "contextsim", "maskpair", "nexttoken", "attention-v2")


@pytest.mark.slow
def test_make_pictures_is_deterministic_and_cleans_up(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "HF_HUB_OFFLINE": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    outputs = []
    for run in ("first", "second"):
        out = tmp_path / run
        done = subprocess.run([sys.executable, str(ROOT / "docs" / "make_pictures.py"), "--tiny",
                               "--out", str(out)], env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr
        outputs.append({name: (out / f"{name}.png").read_bytes() for name in NAMES})
        assert not [p.name for p in scratch.iterdir() if p.name.startswith("tlm-pictures-")]
    assert outputs[0] == outputs[1]
    assert all(png.startswith(b"\x89PNG") for png in outputs[0].values())
