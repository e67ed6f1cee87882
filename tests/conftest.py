"""Shared fixtures: tiny offline models, a config pointing at them, a running engine.

HF_HUB_OFFLINE is set before anything imports transformers, because huggingface_hub reads it
once at import: a test that reaches for the network then fails instead of hanging.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread for the models the tests run directly and for every subprocess: the tiny
# models gain nothing from a second thread, and with the suite's workers side by side on few
# cores OpenMP's spinning threads fight each other (a 100-token generate took several times
# longer with two). The engine still sets its workers' threads from `[engine] torch_threads`.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Ray reads these at import: loopback addresses stay loopback, no usage reports (see
# core/inference/serving/cluster.py; tests/ray_cluster.py proves it with strace).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from core.config import Config, parse_config  # noqa: E402
from core.inference.engine import InferenceEngine  # noqa: E402
from tests.tiny_models import TinyModelPaths, build_tiny_models  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


#: A folder to keep the tiny models in between pytest runs. `make mutation` sets it: it runs
#: the tests once per mutant, and building the models would be most of each run.
MODELS_DIR_ENV = "TLM_TEST_MODELS_DIR"

#: Test modules whose tests must all run in one process: they share a session fixture that
#: only one process may hold at a time (one private Ray cluster per session, `ray_cluster`).
#: Under pytest-xdist (`make test` runs `-n auto`) each of these goes to one worker whole.
ONE_WORKER_MODULES = ("tests/test_ray_serve.py",)
#: Session fixtures that must stay in the modules above.
ONE_WORKER_FIXTURES = ("ray_cluster",)


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest first, so that under pytest-xdist no worker starts a long test last while the
    others sit idle: the one-worker modules (starting a Ray cluster is the longest single
    step), then modules with `slow` tests (subprocesses), then the rest. Whole modules move,
    in their own order, so module fixtures are still set up once per worker."""
    for item in items:
        stray = set(ONE_WORKER_FIXTURES) & set(getattr(item, "fixturenames", ()))
        if stray and _module(item.nodeid) not in ONE_WORKER_MODULES:
            raise pytest.UsageError(
                f"{item.nodeid} uses {sorted(stray)}: add its module to ONE_WORKER_MODULES "
                "in tests/conftest.py, or under pytest-xdist two workers would each start one")
    slow_modules = {_module(item.nodeid) for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        module = _module(item.nodeid)
        return 0 if module in ONE_WORKER_MODULES else 1 if module in slow_modules else 2

    items.sort(key=rank)  # stable: each module keeps its order


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own; only with xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """pytest-xdist's `load` distribution, except that a module of ONE_WORKER_MODULES goes to
    one worker as a whole. (`--dist loadgroup` with `xdist_group` marks would say the same, but
    pytest-xdist 3.8 loses the groups on pytest 9.2: pytest-dev/pytest-xdist#1386.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class OneWorkerModules(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = _module(nodeid)
            return module if module in ONE_WORKER_MODULES else nodeid

    return OneWorkerModules(config, log)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """No silent skips: one line per reason, each saying what to install to run those tests
    (`make test` runs what a fresh clone can; CI, `.ci/run`, installs the rest)."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, (tuple, list)) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if reasons:
        terminalreporter.section("skipped, and what runs them", sep="-")
        for reason, count in reasons.most_common():
            terminalreporter.line(f"{count:3d} skipped: {reason}")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModelPaths:
    kept = os.environ.get(MODELS_DIR_ENV)
    if not kept:
        return build_tiny_models(tmp_path_factory.mktemp("tiny-models"))
    done = Path(kept) / "built"  # written last: a half-built folder is built again
    if not done.exists():
        paths = build_tiny_models(Path(kept))
        done.write_text("same seed, same weights\n")
        return paths
    return TinyModelPaths(**{f: Path(kept) / f for f in TinyModelPaths.__dataclass_fields__})


def tiny_config_dict(paths: TinyModelPaths) -> dict:
    return {
        "models": {
            "mask": str(paths.masked_lm),
            "qa": str(paths.qa),
            "generate": str(paths.causal_lm),
            "features": str(paths.masked_lm),
        },
        # One drawing process: each engine starts its drawing processes at once, and each
        # imports matplotlib; a test that needs more says so (tests/test_pictures.py).
        # float32 whatever the machine: tests compare answers with float32 references
        # (transformers pipelines, fixtures); `dtype = "auto"` and bfloat16 have their own tests
        # (tests/test_backends.py, tests/test_fast_default.py).
        "engine": {"max_wait_ms": 5.0, "workers": 2, "torch_threads": 1, "picture_workers": 1,
                   "dtype": "float32"},
        # A free port each: tests run side by side and must never fight over 8765.
        "dashboard": {"port": 0},
    }


@pytest.fixture
def tiny_config(tiny_models: TinyModelPaths, tmp_path: Path) -> Config:
    config = parse_config(tiny_config_dict(tiny_models), base_dir=tmp_path)
    return config


@pytest.fixture
async def engine(tiny_config: Config) -> AsyncIterator[InferenceEngine]:
    async with InferenceEngine(tiny_config) as engine:
        # Wait for every background load: a test that then loads a reference model itself
        # must not race them (concurrent from_pretrained calls corrupt tied weights).
        await asyncio.gather(*(engine.registry.get(spec) for spec in engine.registry.specs))
        yield engine


def with_engine(config: Config, **engine_overrides: object) -> Config:
    engine = dataclasses.replace(config.engine, **engine_overrides)
    return dataclasses.replace(config, engine=engine)


def write_tiny_config(path: Path, models: TinyModelPaths, **sections: dict) -> Path:
    """A config file for the tiny models, its database and classifier beside it: what the CLI
    and subprocess tests start the real entry points with. `sections` add or override keys."""
    raw = tiny_config_dict(models)
    raw["engine"]["torch_threads"] = 1
    raw["database"] = {"path": str(path.parent / "tlm.db")}
    raw["sentiment"] = {"classifier_dir": str(path.parent / "classifier")}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    lines = []
    for name, values in raw.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            # JSON strings and numbers are valid TOML values; booleans are spelt the same.
            lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ray_cluster(tiny_models: TinyModelPaths):
    """One private loopback Ray cluster with the tiny models deployed (see tests/ray_cluster.py).

    Module scope is one cluster per session all the same (only the modules of
    ONE_WORKER_MODULES may use it, and there is one), but it stops when its module is done:
    an idle cluster's processes would keep taking CPU from the rest of the suite."""
    from tests.ray_cluster import running_cluster

    with running_cluster(tiny_models) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _restore_logger_levels():
    """`tlm-bot`'s main() configures logging for its process (quiet loggers for one-shot
    commands, `bot.logging_policy`'s filters); tests call it in-process, so put every logger's
    level and filters back afterwards."""
    import logging

    def levels() -> dict[str, tuple[int, list]]:
        return {name: (logger.level, list(logger.filters))
                for name, logger in logging.Logger.manager.loggerDict.items()
                if isinstance(logger, logging.Logger)}

    before = levels()
    yield
    for name, (level, filters) in before.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).filters[:] = filters  # bot.logging_policy's, too
    for name in set(levels()) - set(before):
        logging.getLogger(name).setLevel(logging.NOTSET)
        logging.getLogger(name).filters.clear()
