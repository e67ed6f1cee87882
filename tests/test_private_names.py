"""No private name of this project is used outside the file that defines it.

A leading underscore says "this file's business": the engine's lanes were once subclassed through
five of its private names by the Ray backend, so a change inside the engine broke another
package without a test noticing. Anything another file needs is public and documented where it
lives. Third-party private names (Ray's, transformers') are outside this rule.

Read from the source with `ast`: `from x import _y` and `x._y` for a module `x` of this
project, and `obj._y` where `_y` is not defined in the file at hand but is in another file of the
project (an attribute or function of another module's class).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "cogs", "core", "benchmarks", "tests")
#: Trees held to the rule. bot/ and cogs/ join once their interaction layer is rewritten.
CHECKED = ("core", "benchmarks")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined(tree: ast.AST) -> set[str]:
    """Names a file defines: functions, classes, assigned names and attributes, slots."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # `__slots__` entries
    return names


def _files(*roots: str) -> list[Path]:
    return sorted(p for root in roots for p in (REPO / root).rglob("*.py"))


def _ours(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def private_uses(path: Path, project_names: set[str]) -> list[str]:
    """`path:line: what` for each private name of another project file used in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = _defined(tree)
    modules: set[str] = set()  # local names bound to a module of this project
    found: list[str] = []
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or _ours(node.module or "")):
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name):
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id in modules:
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif node.attr not in here and node.attr in project_names:
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def _project_names() -> set[str]:
    names: set[str] = set()
    for path in _files(*PACKAGES):
        names |= {n for n in _defined(ast.parse(path.read_text(encoding="utf-8"))) if _private(n)}
    return names


@pytest.fixture(scope="module")
def project_names() -> set[str]:
    return _project_names()


@pytest.mark.parametrize("root", CHECKED)
def test_no_private_name_is_used_across_files(root, project_names):
    found = [use for path in _files(root) for use in private_uses(path, project_names)]
    assert found == []


def test_the_check_sees_each_kind_of_use(tmp_path, project_names):
    """The check itself: an import, a module attribute and another class's attribute."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from core.inference.engine import _expire\n"
        "import core.inference.engine as engine\n"
        "engine._expire\n"
        "def f(stage):\n"
        "    return stage._returned()\n",
        encoding="utf-8",
    )
    assert [use.split(": ", 1)[1] for use in private_uses(sample, project_names)] == [
        "from core.inference.engine import _expire", "engine._expire", "stage._returned",
    ]
