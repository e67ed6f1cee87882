"""Mutation testing of the protection modules: would the tests notice if a protection broke?

`make mutation` runs this. For each module below, mutmut (PyPI, version pinned in the Makefile)
makes small edits to the code one at a time (a ``<`` becomes ``<=``, a ``return x`` becomes
``return None``, a string changes) and runs the fast tests that target that module; a mutant
the tests still pass with "survived", i.e. the tests would not have caught that bug. The kill
ratio per module is printed, survivors are listed in ``build/mutation/<module>/survivors.txt``
with their diffs, and the ones that cannot be killed (equivalent mutants) are explained in
docs/MUTATION.md. The last figures live in benchmarks/RESULTS.md ("Mutation testing").

Why one scratch copy per module: mutmut reads its settings from the folder it runs in and keeps
its state there (``mutants/``), so each module gets ``build/mutation/<name>/`` with a copy of
the source and tests and its own ``setup.cfg``; the checkout itself is never edited.

The module list is `TARGETS`, the one place to edit when a protection moves.

    python benchmarks/mutation.py                 every module
    python benchmarks/mutation.py policy gate     some modules
    python benchmarks/mutation.py --list          the module list
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
#: What each scratch copy holds (tests/ and pyproject.toml are copied by mutmut itself too).
COPIED = ("core", "bot", "cogs", "tests", "pyproject.toml")


@dataclass(frozen=True)
class Target:
    """One protection: the file mutmut mutates, optionally only some of its functions (mutmut's
    names: ``x_function`` for a module function, ``xǁClassǁmethod`` for a method), and the
    fast tests that target it."""

    name: str
    path: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()
    #: Tests in those files too slow to run once per mutant (pytest node ids).
    deselect: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return self.path.removesuffix(".py").replace("/", ".")

    def mutant_globs(self) -> list[str]:
        return [f"{self.module}.{f}__mutmut_*" for f in self.functions]

    def covers(self, mutant: str) -> bool:
        globs = self.mutant_globs()
        return not globs or any(fnmatch.fnmatchcase(mutant, g) for g in globs)


BIG_EXPORT = ("tests/test_querylog_hardening.py::"
              "test_a_200k_row_export_streams_off_the_loop_within_the_limit")

#: The engine tests about admission (the queue, callers that leave, refusals, routing), not
#: its throughput or sharing: run once per mutant, the whole file took over a minute.
ENGINE_ADMISSION_TESTS = (
    "test_full_queue_is_overloaded_at_once",
    "test_queue_is_per_model",
    "test_cancelled_waiting_caller_is_skipped",
    "test_callers_that_went_away_free_their_queue_places",
    "test_cancelled_caller_in_flight_does_not_hurt_its_batch",
    "test_timeout_gives_request_timeout_and_the_lane_keeps_serving",
    "test_configured_timeout_applies_by_default",
    "test_model_that_fails_to_load",
    "test_aclose_finishes_the_batch_in_flight_and_fails_the_queue",
    "test_submit_before_start_is_refused",
    "test_a_user_error_raised_by_a_task_reaches_the_student",
    "test_tokens_do_not_wait_behind_the_model_s_forward_passes",
    "test_with_a_remote_backend_forwards_go_remote_and_tokens_stay_here",
    "test_a_waiting_picture_request_knows_its_place_in_line",
    "test_an_answered_request_leaves_no_error_behind",
)

TARGETS: tuple[Target, ...] = (
    Target("policy", "core/policy.py", ("tests/test_policy.py",)),
    Target("querylog-rows", "core/storage/querylog/rows.py",
           ("tests/test_querylog_rows.py", "tests/test_querylog.py",
            "tests/test_querylog_hardening.py"), deselect=(BIG_EXPORT,)),
    # What is kept of a student's words (log_inputs, digests): the rows' and the quizzes'.
    Target("privacy", "core/privacy.py",
           ("tests/test_privacy.py", "tests/test_querylog_rows.py", "tests/test_querylog.py",
            "tests/test_quiz_rules.py")),
    Target("querylog-export", "core/storage/querylog/export.py",
           ("tests/test_export_rules.py", "tests/test_querylog.py",
            "tests/test_querylog_hardening.py",
            "tests/test_exports.py::test_every_export_route_writes_the_same_escaped_file",
            "tests/test_exports.py::test_the_dashboards_json_keeps_ids_whole"),
           deselect=(BIG_EXPORT,)),
    Target("dashboard-signing", "bot/dashboard/signing.py",
           ("tests/test_dashboard.py::test_signed_tokens_refuse_forgery_expiry_and_the_wrong_purpose",
            "tests/test_dashboard.py::test_a_link_expires_at_exactly_its_expiry_second",
            "tests/test_dashboard.py::"
            "test_link_ids_are_16_safe_characters_and_a_bad_one_is_refused",
            "tests/test_dashboard.py::test_a_forged_signature_never_passes_second_by_second",
            "tests/test_dashboard.py::"
            "test_the_key_comes_from_the_environment_or_is_kept_in_the_database")),
    Target("engine-admission", "core/inference/engine.py",
           (*(f"tests/test_engine.py::{t}" for t in ENGINE_ADMISSION_TESTS),
            "tests/test_pictures.py::test_pictures_beyond_the_queue_are_refused_as_busy",
            "tests/test_pictures.py::test_a_caller_that_goes_away_gives_its_place_back",
            "tests/test_streaming.py::test_streamed_text_is_the_unstreamed_answer"),
           functions=("xǁInferenceEngineǁadmit", "xǁInferenceEngineǁ_admit")),
    # The queue itself: the limit counts live callers only; a batch skips callers that left.
    Target("lanes-admission", "core/inference/lanes.py",
           ("tests/test_lanes.py",
            *(f"tests/test_engine.py::{t}" for t in ENGINE_ADMISSION_TESTS[:5])),
           functions=("xǁPendingǁlive", "xǁLaneǁwaiting", "xǁLaneǁput", "xǁLaneǁcollect",
                      "xǁLaneǁcompany_wait")),
    # The rules, not the reveal's layout (build_reveal and its helpers are display).
    Target("quiz-rules", "core/storage/quizzes.py",
           ("tests/test_quiz_rules.py", "tests/test_quiz.py"),
           functions=("xǁQuizStoreǁ__init__", "xǁQuizStoreǁkeeps_words", "xǁQuizStoreǁ_key",
                      "xǁQuizStoreǁcreate", "xǁQuizStoreǁguess", "xǁQuizStoreǁclose",
                      "xǁQuizStoreǁdelete_for_user", "xǁQuizStoreǁpurge_expired",
                      "xǁQuizStoreǁforget_after_reveal", "x_normalise_guess",
                      "x_check_new_quiz")),
    # The front door (bot/interactions/turn.py): its tests drive the bot through the emulated
    # Discord, so they name no module of the interaction layer.
    Target("gate", "bot/interactions/turn.py",
           ("tests/test_cooldown_refunds.py",
            "tests/test_moderation_e2e.py::test_threads_and_voice_chats_follow_channel_rules",
            "tests/test_interactions.py::test_a_flood_of_votes_changes_the_vote_once",
            "tests/test_interactions.py::test_each_member_s_votes_have_their_own_rate",
            "tests/test_front_door.py", "tests/test_gate.py"),
           functions=("xǁTurnǁgate", "xǁTurnǁrefund", "x_enter")),
)

#: mutmut's exit codes by verdict (mutmut.stats.status_by_exit_code, grouped).
KILLED = {1, 3, 36, 24, -24, 152, 255, 37}  # a test failed, or the mutant hung (timeout)
SURVIVED = {0}
NO_TESTS = {5, 33}


@dataclass
class Tally:
    killed: int = 0
    survived: int = 0
    no_tests: int = 0
    #: Survivors `equivalence` recognises as changing no behaviour (not counted in the ratio).
    equivalent: int = 0
    other: int = 0  # not checked (stopped by the time limit), suspicious, skipped

    @property
    def tested(self) -> int:
        """Mutants that count: a mutant no selected test reaches is not caught either."""
        return self.killed + self.survived + self.no_tests

    @property
    def ratio(self) -> float | None:
        return self.killed / self.tested if self.tested else None


def prepare(target: Target) -> Path:
    """A fresh scratch copy of the project with a setup.cfg for this one module."""
    work = WORK / target.name
    if work.exists():
        shutil.rmtree(work)
    (WORK / "tiny-models").mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.db", "*.db-*")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, work / name, ignore=ignore)
        else:
            shutil.copy2(source, work / name)
    lines = "\n    ".join
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths =\n    core\n    bot\n    cogs\n"
        f"only_mutate =\n    {target.path}\n"
        f"pytest_add_cli_args_test_selection =\n    {lines(target.tests)}\n"
        "pytest_add_cli_args =\n    -q\n    -p\n    no:cacheprovider\n    -x\n"
        + "".join(f"    --deselect\n    {node}\n" for node in target.deselect) +
        # torch and the bot's threads are not fork-safe: fork workers from a clean server.
        "process_isolation = forkserver\n"
        "use_git_change_detection = false\n"
        "track_dependencies = false\n",
        encoding="utf-8",
    )
    return work


def run_one(target: Target, *, limit_s: float, children: int) -> tuple[Tally, float, bool]:
    work = prepare(target)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    # Every mutant runs pytest afresh: build the tiny models once, not once per mutant.
    env["TLM_TEST_MODELS_DIR"] = str(WORK / "tiny-models")
    mutmut = Path(sys.executable).with_name("mutmut")
    command = [str(mutmut), "run", "--max-children", str(children), *target.mutant_globs()]
    started = time.monotonic()
    stopped = False
    with open(work / "mutmut.log", "w", encoding="utf-8") as out:
        process = subprocess.Popen(command, cwd=work, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            stopped = True  # what was tested so far still counts (mutmut saves as it goes)
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    elapsed = time.monotonic() - started
    (work / "run.json").write_text(json.dumps({"elapsed": elapsed, "stopped": stopped}))
    tally, survivors = count(target, work)
    diffs = {mutant: show(work, mutant, env) for mutant in survivors}
    write_survivors(work, diffs)
    return settle_equivalents(tally, diffs), elapsed, stopped


def recount(target: Target) -> tuple[Tally, float, bool]:
    """The figures of the last run of `target`, from its scratch copy."""
    work = WORK / target.name
    run = work / "run.json"
    if run.exists():
        saved = json.loads(run.read_text())
        elapsed, stopped = saved["elapsed"], saved["stopped"]
    else:  # a run that was interrupted: from its settings file to its log's last line
        elapsed = (work / "mutmut.log").stat().st_mtime - (work / "setup.cfg").stat().st_mtime
        stopped = True
    tally, survivors = count(target, work)
    saved_diffs = read_survivors(work)
    diffs = {mutant: saved_diffs.get(mutant, "") for mutant in survivors}
    return settle_equivalents(tally, diffs), elapsed, stopped


def count(target: Target, work: Path) -> tuple[Tally, list[str]]:
    meta = work / "mutants" / (target.path + ".meta")
    tally, survivors = Tally(), []
    if not meta.exists():
        return tally, survivors
    codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    for mutant, code in sorted(codes.items()):
        if not target.covers(mutant):
            continue
        if code in KILLED:
            tally.killed += 1
        elif code in SURVIVED:
            tally.survived += 1
            survivors.append(mutant)
        elif code in NO_TESTS:
            tally.no_tests += 1
            survivors.append(mutant)
        else:
            tally.other += 1
    return tally, survivors


def show(work: Path, mutant: str, env: dict[str, str]) -> str:
    """`mutmut show`: the mutant's diff against the original."""
    mutmut = Path(sys.executable).with_name("mutmut")
    shown = subprocess.run([str(mutmut), "show", mutant], cwd=work, env=env,
                           capture_output=True, text=True, check=False)
    return shown.stdout


def write_survivors(work: Path, diffs: dict[str, str]) -> None:
    """survivors.txt: each survivor's diff, those `equivalence` recognises last, with why."""
    real = [m for m in diffs if equivalence(diffs[m]) is None]
    same = [m for m in diffs if equivalence(diffs[m]) is not None]
    with open(work / "survivors.txt", "w", encoding="utf-8") as out:
        for mutant in real:
            out.write(diffs[mutant] + "\n")
        if same:
            out.write(f"{EQUIVALENT_MARK}\n\n")
        for mutant in same:
            out.write(f"# {equivalence(diffs[mutant])}\n{diffs[mutant]}\n")


#: Where survivors.txt's equivalent mutants begin.
EQUIVALENT_MARK = "######## equivalent (not counted)"


def read_survivors(work: Path) -> dict[str, str]:
    """The diffs a run saved in survivors.txt, by mutant name (for `--recount`)."""
    path = work / "survivors.txt"
    if not path.exists():
        return {}
    diffs: dict[str, str] = {}
    for chunk in re.split(r"(?m)^(?=# \S+: )", path.read_text(encoding="utf-8")):
        head = re.match(r"# (\S+): ", chunk)
        if head:
            diffs[head.group(1)] = chunk.split(EQUIVALENT_MARK)[0].strip()
    return diffs


def settle_equivalents(tally: Tally, diffs: dict[str, str]) -> Tally:
    """Move the survivors `equivalence` recognises out of the ratio."""
    for diff in diffs.values():
        if diff and equivalence(diff) is not None:
            tally.survived -= 1
            tally.equivalent += 1
    return tally


#: A string literal that is SQL, as this code writes it (keywords in capitals, so a sentence
#: that starts with "Set" or holds "where" is not taken for SQL): it opens like a statement
#: or a continuation line, or it holds a placeholder, an `excluded.` column or a null test, or
#: it is a line of a column list.
SQL_TEXT = re.compile(
    r"^\s*\(?\s*(SELECT|INSERT|UPDATE|DELETE|VALUES|WHERE|AND|OR|NOT IN|SET|ORDER BY"
    r"|BEGIN|COMMIT)\b|\bLIMIT\s+\?|[=<>(,]\s*\?|=\s*(?i:excluded)\.|\bIS\s+(NOT\s+)?NULL\b")
#: A line of a column list: lower-case names between commas, one at least with an underscore
#: (`guess_secret`), which a list of words in a sentence does not have.
COLUMN_LIST = re.compile(r"^\s*\(?\s*[a-z_]+(\s*,\s*[a-z_]+)+\s*\)?\s*,?\s*$")
#: Codec names, which Python looks up ignoring case ("UTF-8" is "utf-8").
CODECS = frozenset({"utf-8", "utf8", "ascii"})
#: A subscript of a database row (`row["id"]`, `r["guild_id"]`, `rows[0]["closed_at"]`).
ROW_KEY = re.compile(r"\b(row|r|rows\[\d+\])\[\s*$")


def equivalence(diff: str) -> str | None:
    """Why a surviving mutant changes no behaviour, or None when it may.

    One class is recognised mechanically: a string literal put in other letter case where
    the case cannot matter - SQL (SQLite's keywords and names ignore case; a quoted SQL value
    with letters in it would not, so such a literal is never counted), a key of an
    `sqlite3.Row` (looked up case-insensitively) or a codec name. Every other equivalent
    mutant is argued in docs/MUTATION.md by hand.
    """
    lines = diff.splitlines()
    removed = [ln[1:] for ln in lines if ln.startswith("-") and not ln.startswith("---")]
    added = [ln[1:] for ln in lines if ln.startswith("+") and not ln.startswith("+++")]
    if len(removed) != 1 or len(added) != 1:
        return None
    before, after = removed[0], added[0]
    if before == after or before.lower() != after.lower():
        return None
    pattern = re.compile(r"(?P<q>[\"'])(?:\\.|(?!(?P=q)).)*(?P=q)")
    old, new = list(pattern.finditer(before)), list(pattern.finditer(after))
    if (len(old) != len(new)
            or pattern.sub("S", before) != pattern.sub("S", after)):  # code outside changed
        return None
    for o, n in zip(old, new):
        if o.group(0) == n.group(0):
            continue
        text = o.group(0)[1:-1]
        if text.lower() in CODECS:
            continue
        if re.search(r"'[^']*[A-Za-z][^']*'", text):
            return None
        column_list = COLUMN_LIST.match(text) is not None and "_" in text
        if not (SQL_TEXT.search(text) or column_list or ROW_KEY.search(before[:o.start()])):
            return None
    return "SQL or an sqlite3.Row key in other letter case (both ignore case)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help="module names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the modules and their tests")
    parser.add_argument("--limit-min", type=float, default=15.0,
                        help="stop mutating a module after this many minutes (default 15)")
    parser.add_argument("--children", type=int, default=2, help="parallel test processes")
    parser.add_argument("--recount", action="store_true",
                        help="run nothing: count again what build/mutation/ holds")
    parser.add_argument("--no-write", action="store_true",
                        help="do not update the figures in benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    chosen = [t for t in TARGETS if not args.modules or t.name in args.modules]
    unknown = set(args.modules) - {t.name for t in TARGETS}
    if unknown:
        parser.error(f"unknown modules: {', '.join(sorted(unknown))}")
    if args.list:
        for t in chosen:
            only = f" ({', '.join(t.functions)})" if t.functions else ""
            print(f"{t.name}: {t.path}{only}\n    " + "\n    ".join(t.tests))
        return 0
    results = []
    for target in chosen:
        if args.recount:
            if not (WORK / target.name / "mutants").exists():
                continue
            tally, elapsed, stopped = recount(target)
        else:
            print(f"{target.name}: mutating {target.path} ...", flush=True)
            tally, elapsed, stopped = run_one(target, limit_s=args.limit_min * 60,
                                              children=args.children)
        results.append((target, tally, elapsed, stopped))
        print(line(target, tally, elapsed, stopped), flush=True)
    rows = {t.name: table_row(t, tally, elapsed, stopped, ended=last_log(t))
            for t, tally, elapsed, stopped in results}
    print("\n" + "\n".join([*HEADER, *rows.values()]))
    if not args.no_write:
        write_results(rows)
    print(f"\nSurvivors and their diffs: {WORK.relative_to(ROOT)}/<module>/survivors.txt")
    return 0


HEADER = ("| module | killed | survived | no tests | equivalent | not run | kill ratio | time | "
          "when |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")


def last_log(target: Target) -> float:
    log = WORK / target.name / "mutmut.log"
    return log.stat().st_mtime if log.exists() else time.time()


def table_row(target: Target, tally: Tally, elapsed: float, stopped: bool, *,
              ended: float) -> str:
    """One module's row; the load is now's (at the end of a run; at a recount, later's)."""
    ratio = f"{tally.ratio:.0%}" if tally.ratio is not None else "-"
    note = " (stopped)" if stopped else ""
    load = os.getloadavg()[0]
    when = datetime.fromtimestamp(ended, timezone.utc).strftime("%Y-%m-%d %H:%M")
    return (f"| {target.name} | {tally.killed} | {tally.survived} | {tally.no_tests} | "
            f"{tally.equivalent} | {tally.other} | {ratio} | {elapsed / 60:.1f} min{note} | "
            f"{when}, load {load:.1f} |")


def write_results(rows: dict[str, str]) -> None:
    """The "mutation" block of benchmarks/RESULTS.md: the last figures of each module (a run
    of some modules keeps the others' rows)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.publish import write_block

    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    block = re.search(r"<!-- mutation:start -->(.*?)<!-- mutation:end -->", text, re.S)
    kept = {}
    for row in (block.group(1).splitlines() if block else []):
        name = row.split("|")[1].strip() if row.startswith("| ") else ""
        if name in {t.name for t in TARGETS}:
            kept[name] = row
    kept.update(rows)
    ordered = [kept[t.name] for t in TARGETS if t.name in kept]
    write_block(RESULTS, "mutation", "\n".join([
        "## Mutation testing (`make mutation`)",
        "",
        f"mutmut {metadata.version('mutmut')} over the protection modules, each with only the "
        "tests that target it (`benchmarks/mutation.py` lists them; docs/MUTATION.md says how "
        "to read this and lists the equivalent mutants). Kill ratio = killed / (killed + "
        "survived + no tests); \"equivalent\": survivors that only put SQL, a database row's "
        "key or a codec name in other letter case (`equivalence`), not counted; \"not run\": "
        "mutants left when the module's time limit ended the run. Target: >= 90% per module. "
        "On the shared 2-core machine; the load is the 1-minute load average at the end.",
        "",
        *HEADER,
        *ordered,
    ]), loads=())  # kill ratios do not depend on the machine's speed (times are shown as such)


def line(target: Target, tally: Tally, elapsed: float, stopped: bool) -> str:
    ratio = f"{tally.ratio:.0%}" if tally.ratio is not None else "no mutant tested"
    return (f"  {target.name}: {tally.killed} killed, {tally.survived} survived, "
            f"{tally.no_tests} without tests, {tally.equivalent} equivalent, "
            f"{tally.other} not run: {ratio} "
            f"in {elapsed / 60:.1f} min" + (" (stopped at the time limit)" if stopped else ""))


if __name__ == "__main__":
    sys.exit(main())
