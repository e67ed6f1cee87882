"""RESULTS.md is made of blocks, one per benchmark script: writing one keeps the others, and
figures measured on a busy machine are refused (benchmarks/publish.py)."""

import json

import pytest

from benchmarks import fastpath
from benchmarks.publish import QUIET_LOAD, NoisyMachine, settled_load, write_block


def test_write_block_replaces_only_its_own_block(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_block(path, "core", "# Core\n1 ms", loads=[0.3])
    write_block(path, "fastpath", "## Fast\n2 ms", loads=[0.3])
    write_block(path, "core", "# Core\n3 ms", loads=[1.2, QUIET_LOAD])
    text = path.read_text()
    assert "3 ms" in text and "1 ms" not in text and "2 ms" in text
    assert text.index("<!-- core:start -->") < text.index("<!-- fastpath:start -->")
    assert text.count("<!-- core:start -->") == 1 and text.count("<!-- fastpath:end -->") == 1
    assert "Not a quiet machine" not in text


def test_figures_from_a_busy_machine_are_refused_and_nothing_is_written(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_block(path, "ray", "## Ray\nquiet 448 ms", loads=[0.9])
    before = path.read_text()
    with pytest.raises(NoisyMachine, match="quiet machine"):
        write_block(path, "ray", "## Ray\nnoisy 210 ms", loads=[0.8, 1.6])
    assert path.read_text() == before


def test_record_noisy_writes_the_figures_labelled_with_their_load(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_block(path, "ray", "## Ray\nnoisy 210 ms", loads=[16.2], record_noisy=True)
    text = path.read_text()
    assert "noisy 210 ms" in text
    heading, blank, label = text.splitlines()[1:4]
    assert heading == "## Ray" and not blank
    assert "Not a quiet machine" in label and "16.2" in label and "--record-noisy" in label


def test_settled_load_waits_idle_for_the_own_share_to_decay():
    readings = iter([2.3, 1.9, 1.4, 1.0])
    slept = []
    assert settled_load(60, read=lambda: next(readings), sleep=slept.append, poll_s=5) == 1.4
    assert slept == [5, 5]
    # A machine that stays busy: give up after the wait and report it (write_block refuses).
    slept.clear()
    assert settled_load(12, read=lambda: 3.0, sleep=slept.append, poll_s=5) == 3.0
    assert sum(slept) == 15


def test_a_script_refuses_with_exit_code_3_and_records_with_the_flag(tmp_path, monkeypatch,
                                                                       capsys):
    """`python -m benchmarks.fastpath --render` over raw figures taken at load 2.4."""
    raw = tmp_path / "fastpath.json"
    results = tmp_path / "RESULTS.md"
    raw.write_text(json.dumps({"when": "now", "memory": {
        "float32": {"rss_mb": 1455.0, "peak_mb": 1500.0}, "load_before": 2.4,
        "load_after": 2.9}}))
    monkeypatch.setattr(fastpath, "RAW", raw)
    monkeypatch.setattr(fastpath, "RESULTS", results)
    assert fastpath.main(["--render"]) == 3
    assert not results.exists()
    assert "re-run on a quiet machine" in capsys.readouterr().out.lower()
    monkeypatch.setattr(fastpath, "REPO", tmp_path)
    assert fastpath.main(["--render", "--record-noisy"]) == 0
    text = results.read_text()
    assert "1455 MB" in text and "load average up to 2.4" in text
