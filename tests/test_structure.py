"""The whole tree's shape, read from the source: layers, circles, private names, shims.

Layers, lowest first: `core` (no discord) < `bot.interactions` and `bot.dashboard` (the
interaction layer and the web view, over the core) < `cogs` (discord.py extensions: command
declarations) < the rest of `bot` (the composition root, the client, the CLI). A module
imports only its own layer and the ones below, with one exception by design: the top of `bot`
never imports `cogs` (it loads them by name, as discord.py extensions), so nothing runs from
`bot/` up into `cogs/` and back. Every import counts, `TYPE_CHECKING` and function-level ones
too: a circle hidden behind a late import is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "bot", "cogs")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = modules()


def resolve(name: str) -> str | None:
    """The project module `name` refers to (a module, or a name inside one), if any."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> list[tuple[str, str, int]]:
    """(imported project module, the name imported from it or "", line) for every import."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name)
                if target:
                    found.append((target, "", node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            for alias in node.names:
                target = resolve(f"{base}.{alias.name}") or resolve(base)
                if target:
                    name = "" if target == f"{base}.{alias.name}" else alias.name
                    found.append((target, name, node.lineno))
    return found


def layer(module: str) -> int:
    if module.startswith("core"):
        return 0
    if module.startswith(("bot.interactions", "bot.dashboard")):
        return 1
    if module.startswith("cogs"):
        return 2
    return 3


def test_no_import_goes_up_a_layer():
    upward = [f"{m} -> {t} (line {line})" for m in MODULES for t, _, line in imports_of(m)
              if layer(t) > layer(m) or (layer(m) == 3 and t.startswith("cogs"))]
    assert upward == []


def test_core_never_imports_discord():
    offenders = []
    for module, path in MODULES.items():
        if layer(module) == 0:
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{module}: {n}" for n in names if n.split(".")[0] == "discord"]
    assert offenders == []


def test_no_import_circles():
    graph = {m: {t for t, _, _ in imports_of(m) if t != m} for m in MODULES}
    # A package's __init__ is imported with any of its modules; that is not a circle of ours.
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    circles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                circles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_no_private_name_is_imported_across_files():
    private = [f"{m}: from {t} import {name} (line {line})" for m in MODULES
               for t, name, line in imports_of(m) if name.startswith("_") and t != m]
    assert private == []


def test_no_private_attribute_of_another_project_module():
    """`module._name` on a project module imported as a whole (`from core import x`)."""
    found = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in MODULES:
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                found.append(f"{module}: {node.value.id}.{node.attr} (line {node.lineno})")
    assert found == []


def test_no_shim_modules():
    """A module that only re-exports another ("moved to ...") is a second name for one thing.
    Package `__init__`s may gather their package's public names."""
    shims = []
    for module, path in MODULES.items():
        if path.name == "__init__.py":
            continue
        body = [n for n in ast.parse(path.read_text()).body
                if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        if body and all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in body):
            shims.append(module)
    assert shims == []


def test_the_dashboard_has_no_csv_writer_of_its_own():
    """CSV (ids as text, a BOM, formula escaping) is written by the query log alone."""
    users = [m for m in MODULES if m.startswith("bot.dashboard")
             and any(t == "csv" for t in _stdlib_imports(MODULES[m]))]
    assert users == []


def _stdlib_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names
