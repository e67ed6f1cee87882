"""No plain English sentence reaches Discord or the dashboard without the message catalog.

The code is read (AST), not run: every string literal that ends up in a place a member reads -
a message's content, an embed's title, description, field or footer, a button's or a form's
label and placeholder, a modal's title, an error a member is shown (`CoreError` and its
subclasses, `Decision`'s reason), an HTML page of the dashboard - must come from a catalog call
(`tr`, `lazy`, `ngettext`, `lazy_ngettext`, `locale_str`), which `make messages` extracts and
`tests/test_catalog.py` checks is translated. A literal counts as words when it holds a run of
three letters; markup, separators, units and the few names in `NOT_WORDS` do not.

`NOT_YET` lists the files still to convert (the catalog arrived after them); it may only
shrink: a file in it that is clean fails the test too, so it is taken off the list.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Calls whose string arguments are catalog message ids.
CATALOG = {"tr", "lazy", "ngettext", "lazy_ngettext", "locale_str"}
#: Keyword arguments that Discord (or a browser) shows, in any call.
SHOWN_KEYWORDS = {"content", "title", "description", "label", "placeholder", "text", "value",
                  "reason"}
#: Calls whose positional arguments are shown: errors for members, replies, decisions.
SHOWN_CALLS = {"Reply", "Embed", "add_field", "set_footer", "error_reply", "Decision", "done",
               "_done", "send_message", "send", "edit_original_response", "OneTextModal",
               "Button", "TextInput", "Modal", "SelectOption", "render_quiz_failed",
               "notice", "BadFilter", "Pick",
               # a picture's words (matplotlib)
               "set_title", "set_xlabel", "set_ylabel", "suptitle", "supxlabel", "supylabel",
               "set_label"}
#: Calls inside a shown expression that hand their text on to the member (the others are
#: opaque: what they make is checked where they make it).
PASS_THROUGH = {"clip", "safe", "code", "bold_input", "printable", "str", "join", "format",
                "strip", "replace", "_label"}
WORDS = re.compile(r"[A-Za-z]{3,}")
#: Words that are names, not language: the same in every language.
NOT_WORDS = re.compile(
    r"\[MASK\]|\[CLS\]|\[SEP\]|GPT-2|DistilBERT|WordPiece|BPE|tlm-bot|https?://\S+|"
    r"attachment://\S+|tlm:\S*|top_[kp]|\b(?:png|txt|csv|utf-8|CSV|JSON)\b|<t:[^>]*>")
#: The files not yet converted, with what they hold (see the module docstring).
NOT_YET: dict[str, str] = {}


#: What a member (or an instructor on the dashboard) reads; the CLI, the composition root and
#: the dashboard's plumbing speak to the operator, in English.
SCANNED = ("core", "bot/interactions", "cogs", "bot/dashboard/app.py")
#: The dashboard's HTML writer: every literal there is scanned, markup left out (tags,
#: attribute fragments) and so are lone identifiers (a CSS class, a query key).
PAGES = ("bot/dashboard/pages.py",)
TAG = re.compile(r"<[^<>]*>")
MARKUP = re.compile(r"<[^<>]*(?:>|$)|^[^<>]*>|[\w-]+=\S*|&\w+;")
IDENTIFIER = re.compile(r"\s*[a-z0-9_./-]*")


def _errors() -> set[str]:
    """Every exception class whose message a member reads: `CoreError` and its subclasses
    anywhere in the project, found by reading the class statements (`ConfigError` speaks to
    the operator)."""
    bases: dict[str, set[str]] = {}
    for path in _files(("core", "bot", "cogs")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                                    for b in node.bases}
    found = {"CoreError"}
    while True:
        more = {name for name, of in bases.items() if of & found} - found - {"ConfigError"}
        if not more:
            return found
        found |= more


def _files(packages: tuple[str, ...]) -> list[Path]:
    return sorted(p for package in packages for p in (
        [ROOT / package] if package.endswith(".py") else (ROOT / package).rglob("*.py")))


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}


def _name(func: ast.expr) -> str:
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _words(text: str) -> bool:
    return bool(WORDS.search(NOT_WORDS.sub("", TAG.sub("", text))))


def _literals(node: ast.AST) -> list[ast.Constant]:
    """The string literals an expression is built from, not those inside a catalog call."""
    found: list[ast.Constant] = []
    todo = [node]
    while todo:
        item = todo.pop()
        if isinstance(item, ast.Call):
            if _name(item.func) in PASS_THROUGH:
                todo.extend([*item.args, *(k.value for k in item.keywords)])
                if isinstance(item.func, ast.Attribute):
                    todo.append(item.func.value)  # "…".join(...), text.strip()
            continue  # a catalog call, or one that makes its own text (checked there)
        if isinstance(item, ast.Lambda):
            todo.append(item.body)  # a table's lambda makes shown words when called
            continue
        if isinstance(item, ast.Compare):
            continue
        if isinstance(item, ast.Dict):
            todo.extend(v for v in item.values if v is not None)  # keys are identifiers
            continue
        if isinstance(item, ast.Subscript):
            todo.append(item.value)  # a key or index is no text
            continue
        if isinstance(item, ast.Constant) and isinstance(item.value, str):
            found.append(item)
            continue
        if isinstance(item, ast.FormattedValue):
            todo.append(item.value)  # a format spec (":>6") is not shown as words
            continue
        todo.extend(ast.iter_child_nodes(item))
    return found


def _shown_names(function: ast.AST) -> set[str]:
    """Local names a function hands to a shown call or keyword (`text = ...; _done(text)`)."""
    names: set[str] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and _name(node.func) not in CATALOG:
            values = [*node.args] if _name(node.func) in SHOWN_CALLS else []
            values += [k.value for k in node.keywords if k.arg in SHOWN_KEYWORDS]
            names |= {v.id for v in values if isinstance(v, ast.Name)}
    return names


def _passed_on(function: ast.AST) -> list[ast.AST]:
    """What is assigned to those names in the function (`text, summary = "...", "x"`: only
    the part that lands in the shown name)."""
    names = _shown_names(function)
    found: list[ast.AST] = []
    for node in ast.walk(function):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and node.value:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id in names:
                    found.append(node.value)
                elif (isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                      and len(target.elts) == len(node.value.elts)):
                    found += [v for t, v in zip(target.elts, node.value.elts)
                              if isinstance(t, ast.Name) and t.id in names]
    return found


def untranslated(path: Path, errors: set[str], *, page: bool = False) -> list[str]:
    """The literals of `path` a member would read untranslated; `page`: a module writing
    HTML, where every literal but a docstring is scanned."""
    tree = ast.parse(path.read_text())
    shown: list[ast.AST] = []
    if page:
        docstrings = _docstrings(tree)
        inside_catalog = {id(n) for call in ast.walk(tree) if isinstance(call, ast.Call)
                          and _name(call.func) in CATALOG for n in ast.walk(call)}
        keys = {id(k) for d in ast.walk(tree) if isinstance(d, ast.Dict) for k in d.keys}
        page_hits = [
            node for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings | inside_catalog | keys
            and not IDENTIFIER.fullmatch(node.value)
            and _words(MARKUP.sub(" ", node.value))]
        rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
        return sorted({f"{rel}:{c.lineno}: {c.value[:60]!r}" for c in page_hits})
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            shown.extend(_passed_on(function))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(  # embed.description = ...
                isinstance(t, ast.Attribute) and t.attr in SHOWN_KEYWORDS for t in node.targets):
            shown.append(node.value)
        if isinstance(node, ast.Call):
            name = _name(node.func)
            if name in CATALOG:
                continue
            if name in SHOWN_CALLS or name in errors:
                shown.extend(node.args)
            for keyword in node.keywords:
                if keyword.arg in SHOWN_KEYWORDS or (keyword.arg == "name"
                                                     and name in SHOWN_CALLS):
                    shown.append(keyword.value)
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    return sorted({f"{rel}:{c.lineno}: {c.value[:60]!r}" for expr in shown
                   for c in _literals(expr) if _words(c.value)})


@pytest.fixture(scope="module")
def offences() -> dict[str, list[str]]:
    errors = _errors()
    found: dict[str, list[str]] = {}
    for path in dict.fromkeys([*_files(SCANNED), *(ROOT / page for page in PAGES)]):
        hits = untranslated(path, errors, page=str(path.relative_to(ROOT)) in PAGES)
        if hits:
            found[str(path.relative_to(ROOT))] = hits
    return found


def test_every_shown_string_goes_through_the_catalog(offences):
    new = {f: hits for f, hits in offences.items() if f not in NOT_YET}
    assert not new, "\n".join(hit for hits in new.values() for hit in hits)


def test_the_list_of_files_to_convert_only_shrinks(offences):
    assert not set(NOT_YET) - set(offences), (
        f"converted, take them off NOT_YET: {sorted(set(NOT_YET) - set(offences))}")


def test_no_catalog_call_hides_inside_an_f_string():
    """pybabel (on Python 3.11) does not read inside an f-string's {...}: a `tr("...")`
    there would never reach the catalog, and no test would notice it untranslated."""
    hidden = []
    for path in _files(("core", "bot", "cogs")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FormattedValue):
                hidden += [f"{path.relative_to(ROOT)}:{call.lineno}" for call in ast.walk(node)
                           if isinstance(call, ast.Call) and _name(call.func) in CATALOG]
    assert not hidden, hidden


def test_the_scan_sees_a_plain_string_in_a_reply(tmp_path):
    """The scan is not vacuous: each way a plain sentence reaches a member is caught."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def body(x):\n"
        "    Reply(content='Thanks for asking')\n"
        "    embed = discord.Embed(title=f'Answer: {x}')\n"
        "    embed.add_field(name='Score', value=tr('ok {x}', x=x))\n"
        "    raise InvalidInput('That will not work')\n"
        "    Reply(content=tr('Fine'), summary='not shown to anyone')\n"
        "    text, summary = 'Now it is done', 'not shown either'\n"
        "    Reply(content=text, summary=summary)\n"
    )
    hits = untranslated(sample, {"InvalidInput"})
    assert [h.split(": ", 1)[1] for h in hits] == [
        "'Thanks for asking'", "'Answer: '", "'Score'", "'That will not work'",
        "'Now it is done'"]
