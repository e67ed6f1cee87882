"""RESULTS.md is made of blocks, one per benchmark script: writing one keeps the others."""

from benchmarks.report import write_block


def test_write_block_replaces_only_its_own_block(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_block(path, "core", "# Core\n1 ms")
    write_block(path, "fastpath", "## Fast\n2 ms")
    write_block(path, "core", "# Core\n3 ms")
    text = path.read_text()
    assert "3 ms" in text and "1 ms" not in text and "2 ms" in text
    assert text.index("<!-- core:start -->") < text.index("<!-- fastpath:start -->")
    assert text.count("<!-- core:start -->") == 1 and text.count("<!-- fastpath:end -->") == 1
