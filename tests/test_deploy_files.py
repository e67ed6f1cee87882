"""The set-up files a new operator runs: the Makefile, CI's script, the Dockerfile, the unit.

None of them can run for real here (no second venv install inside a test, no Docker daemon, no
systemd as init), so each is checked for what would break a first run: `make -n` shows what
`make test`/`make run` would do on a fresh machine and on the second call; the Dockerfile's
instructions are parsed and every file it copies must exist; the unit file is parsed and, where
`systemd-analyze` exists, verified by systemd itself.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.cli import EXIT_USER

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: The tested versions every install takes (the Makefile, CI and the Dockerfile).
CONSTRAINTS = ROOT / "constraints.txt"
TORCH = next(line for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines()
             if line.startswith("torch=="))


# ---------------------------------------------------------------------------------- Makefile


def make_dry_run(workdir: Path, target: str, *variables: str) -> list[str]:
    # Run as a top-level make: under `make test VENV=.venv-ci` (as CI runs it) the parent's
    # command-line variables reach a child make through MAKEFLAGS *and* the environment.
    makefile_variables = set(re.findall(r"^([A-Z_]+) *\?=", (workdir / "Makefile").read_text(),
                                        re.M))
    inherited = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"} | makefile_variables
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    done = subprocess.run(["make", "-n", target, *variables], cwd=workdir, capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_make_test_sets_up_a_fresh_machine_then_runs_the_readme_test_command(checkout):
    lines = make_dry_run(checkout, "test")
    assert lines[0] == "python3 -m venv .venv"
    torch, project, pytest_line = lines[1], lines[2], lines[-1]
    # The CPU wheel first, from PyTorch's CPU index (falling back to the usual index where that
    # one cannot be reached), then the project with its test extras.
    cpu_try, fallback = torch.split(" || ")
    assert shlex.split(cpu_try)[-3:] == [TORCH, "--index-url", CPU_INDEX], torch
    assert shlex.split(fallback)[-1] == TORCH, torch
    assert shlex.split(project)[-4:] == ["-c", "constraints.txt", "-e", ".[test]"], project
    assert lines.index(torch) < lines.index(project)
    # The README's own test command, offline.
    assert pytest_line.startswith("HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q"), pytest_line
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python -m pytest -q" in readme and "make test" in readme and "make run" in readme


def test_a_second_make_test_does_not_reinstall_until_pyproject_changes(checkout):
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "python").touch()
    first = make_dry_run(checkout, "test")
    assert any("pip install" in line for line in first)
    # What the real first run leaves behind: its stamp, newer than pyproject.toml.
    time.sleep(0.01)
    for stamp in (".installed", ".installed-test"):
        (checkout / ".venv" / stamp).touch()
    assert make_dry_run(checkout, "test") == [
        "HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q -n auto"]
    assert make_dry_run(checkout, "run") == [".venv/bin/tlm-bot run"]
    # A new dependency in pyproject.toml, or new tested versions: the next call installs again.
    for later, changed in ((time.time() + 5, "pyproject.toml"),
                           (time.time() + 10, "constraints.txt")):
        os.utime(checkout / changed, (later, later))
        assert any("pip install" in line for line in make_dry_run(checkout, "test")), changed
        for stamp in (".installed", ".installed-test"):  # installed again
            os.utime(checkout / ".venv" / stamp, (later + 1, later + 1))


def test_make_run_installs_without_test_extras_and_torch_index_can_be_emptied(checkout):
    lines = make_dry_run(checkout, "run")
    assert shlex.split(lines[2])[-4:] == ["-c", "constraints.txt", "-e", "."]
    assert lines[-1] == ".venv/bin/tlm-bot run"
    plain = make_dry_run(checkout, "run", "TORCH_INDEX=")
    assert shlex.split(plain[1])[-1] == TORCH  # no --index-url at all


def test_ci_runs_make_test_in_a_fresh_venv():
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in script.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert "rm -rf .venv-ci" in commands
    make = [c for c in commands if c.startswith("make ")]
    assert len(make) == 1 and shlex.split(make[0])[:2] == ["make", "test"], make
    assert "VENV=.venv-ci" in shlex.split(make[0])
    assert commands.index("rm -rf .venv-ci") < commands.index(make[0])
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


# -------------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        keyword, _, args = pending.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, f"a continuation line ends the file: {pending!r}"
    return instructions


def test_dockerfile_copies_files_that_exist_installs_cpu_torch_and_runs_the_bot():
    instructions = dockerfile_instructions(ROOT / "Dockerfile")
    known = {"FROM", "ENV", "WORKDIR", "RUN", "COPY", "USER", "VOLUME", "STOPSIGNAL", "CMD",
             "ARG", "LABEL", "EXPOSE"}
    assert instructions[0][0] == "FROM"
    assert {keyword for keyword, _ in instructions} <= known
    for keyword, args in instructions:
        if keyword == "COPY":
            *sources, _target = [a for a in shlex.split(args) if not a.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the repo"
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    torch = next(i for i, run in enumerate(runs) if "torch==" in run)
    project = next(i for i, run in enumerate(runs) if run.startswith("pip install ."))
    assert torch < project
    assert f"--index-url {CPU_INDEX}" in runs[torch]
    # Both take the tested versions: torch's pin from constraints.txt, the rest with `-c`.
    assert "constraints.txt" in runs[torch] and "-c constraints.txt" in runs[project]
    copies = [args for keyword, args in instructions if keyword == "COPY"]
    assert instructions.index(("COPY", next(c for c in copies if "constraints.txt" in c))) < \
        instructions.index(("RUN", runs[torch]))
    # Every package the project installs must be copied in before `pip install .`.
    copied = {shlex.split(args)[0].rstrip("/") for keyword, args in instructions
              if keyword == "COPY"}
    packages = {"bot", "cogs", "core"}
    assert packages <= copied, packages - copied
    assert [args for keyword, args in instructions if keyword == "CMD"][-1:] == [
        json.dumps(["tlm-bot", "run"])]
    assert any(keyword == "USER" for keyword, _ in instructions)  # not as root
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", "config.toml", "*.db"} <= set(ignored)  # no secrets or state in the image


def test_the_docker_run_of_the_docs_publishes_the_dashboard_its_links_point_to():
    """The image's config.toml puts the dashboard on the container's interfaces and its links
    on the port the documented `docker run` publishes, on the host's loopback only."""
    from core.config import load_config

    instructions = dockerfile_instructions(ROOT / "Dockerfile")
    copies = [[a for a in shlex.split(args) if not a.startswith("--")]
              for keyword, args in instructions if keyword == "COPY"]
    assert ["deploy/docker-config.toml", "/data/config.toml"] in copies
    dashboard = load_config(ROOT / "deploy" / "docker-config.toml").dashboard
    assert dashboard.enabled and dashboard.host == "0.0.0.0"
    for page in ("README.md", "docs/operating.md"):
        text = (ROOT / page).read_text(encoding="utf-8").replace("\\\n", " ")
        runs = [line for line in text.splitlines() if line.startswith("docker run")]
        assert runs, page
        for run in runs:
            published = shlex.split(run)[shlex.split(run).index("-p") + 1]
            assert published == f"127.0.0.1:{dashboard.port}:{dashboard.port}", (page, run)
    assert dashboard.public_url == f"http://127.0.0.1:{dashboard.port}"


# ----------------------------------------------------------------------------- systemd unit


UNIT = ROOT / "deploy" / "tlm-bot.service"


def parse_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser


def test_systemd_unit_runs_the_bot_and_does_not_restart_on_a_config_error():
    unit = parse_unit(UNIT)
    assert unit.sections() == ["Unit", "Service", "Install"]
    service = unit["Service"]
    exec_start = shlex.split(service["ExecStart"])
    assert Path(exec_start[0]).is_absolute() and exec_start[0].endswith("/.venv/bin/tlm-bot")
    assert exec_start[1:] == ["run"]
    assert service["Restart"] == "on-failure"
    # A config or token mistake (exit 2) is not fixed by restarting every 30 s.
    assert service["RestartPreventExitStatus"].split() == [str(EXIT_USER)]
    assert service["KillSignal"] == "SIGTERM"  # the clean stop that flushes the log
    assert "EnvironmentFile" in service and "DISCORD_TOKEN" not in service.get("Environment", "")
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit["Unit"]["After"]


def test_systemd_unit_leaves_room_for_the_dashboards_connections():
    """systemd's default soft limit is 1,024 descriptors: 1,100 half-sent dashboard connections
    once starved `/logs export` (issue #23). The unit raises it far above the dashboard's own
    connection cap."""
    from core.config import DashboardConfig

    service = parse_unit(UNIT)["Service"]
    soft = int(service["LimitNOFILE"].split(":")[0])
    assert soft >= 4096 and soft >= 8 * DashboardConfig().max_connections


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_itself_accepts_the_unit(tmp_path):
    # `verify` checks that ExecStart exists: point it at this venv's entry point.
    entry = Path(sys.executable).with_name("tlm-bot")
    if not entry.exists():
        pytest.skip("tlm-bot is not installed in this venv")
    text = UNIT.read_text(encoding="utf-8").replace("/opt/tlm-bot/.venv/bin/tlm-bot", str(entry))
    copy = tmp_path / "tlm-bot.service"
    copy.write_text(text, encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)],
                          capture_output=True, text=True, timeout=60)
    problems = [line for line in done.stderr.splitlines() if "tlm-bot.service" in line]
    assert done.returncode == 0 and not problems, done.stderr


def test_the_unit_header_points_to_a_make_target_and_pages_that_exist(checkout):
    header = [line for line in UNIT.read_text(encoding="utf-8").splitlines()
              if line.startswith("#")]
    text = "\n".join(header)
    assert "make setup" in text
    lines = make_dry_run(checkout, "setup")
    assert any(shlex.split(line)[-2:] == ["-e", "."] for line in lines), lines
    assert not any("tlm-bot run" in line for line in lines), lines  # installs, starts nothing
    for page in re.findall(r"\b(docs/[\w.-]+\.md)\b", UNIT.read_text(encoding="utf-8")):
        assert (ROOT / page).is_file(), page
    assert "docs/operating.md" in text
