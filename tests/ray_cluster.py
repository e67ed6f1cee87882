"""A private Ray cluster for the tests: loopback only, started under strace, one per session.

It is started the way docs/scaling-out.md tells an operator to (`ray start --head` with the
loopback settings, then `tlm-bot serve`), in a private HOME and temp dir, with 2 CPUs. Both
processes run under `strace -f -e trace=connect` when strace exists, so a test can prove that no
process of the cluster (raylet, GCS, dashboard, workers, replicas) or the deploying driver
connected anywhere but loopback or a unix socket. `ray stop` is never used: it kills every Ray
process of the user by name; this cluster's processes are ended by their process group and by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.config import Config, parse_config
from tests.conftest import tiny_config_dict
from tests.tiny_models import TinyModelPaths

ROOT = Path(__file__).resolve().parents[1]
#: Half a CPU per replica: the 2-CPU test cluster then fits a replica per model and a second
#: `/mask` replica.
#: `/generate` queues at most 2 batches at Serve, so a test can fill it.
TEST_SIZING = {
    "mask": {"num_cpus": 0.5},
    "qa": {"num_cpus": 0.5},
    "generate": {"num_cpus": 0.5, "max_queued_requests": 2},
}
#: Deploying the models on a busy 2-core machine took up to ~70 s.
SERVE_TIMEOUT_S = 300
NO_RAY = ("Ray is not installed: `make test TEST_EXTRAS=test,ray` (CI's) or "
          "`pip install -e '.[ray]'` runs the Ray backend's tests")


@dataclass
class RayTestCluster:
    address: str
    #: The bot's config for this cluster (tiny models, backend = "ray").
    config: Config
    config_path: Path
    #: The environment the cluster and its CLI processes run with.
    env: dict[str, str]
    #: strace logs of the cluster and of `tlm-bot serve` (empty without strace).
    strace_logs: list[Path] = field(default_factory=list)
    serve_output: str = ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _traced(log: Path) -> list[str]:
    strace = shutil.which("strace")
    if strace is None:
        return []
    return [strace, "-f", "--seccomp-bpf", "-e", "trace=connect", "-o", str(log)]


def ray_env(base: Path) -> dict[str, str]:
    """The variables every Ray process of the test cluster (and its drivers) runs with."""
    from core.inference.serving.cluster import LOOPBACK_ENV

    token = base / "auth_token"
    if not token.exists():
        # Ray writes its own token 0644; this one is private to the user.
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return {
        **LOOPBACK_ENV,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
    }


@contextlib.contextmanager
def running_cluster(models: TinyModelPaths, *, num_cpus: int = 2, strace: bool = True,
                    sizing: dict | None = None, engine: dict | None = None,
                    **ray_section: object) -> Iterator[RayTestCluster]:
    """A cluster with `models` deployed (tiny ones here; the benchmarks pass real-size ones).
    `engine` overrides the tests' `[engine]` settings (the benchmarks run the shipped dtype)."""
    base = Path(tempfile.mkdtemp(prefix="tlm-ray-", dir="/tmp"))  # unix socket paths are short
    home = base / "home"
    home.mkdir()
    # With this file present, Ray's dashboard does not probe the cloud metadata address.
    (home / "ray_bootstrap_config.yaml").write_text("")
    ray_vars = ray_env(base)
    saved = {key: os.environ.get(key) for key in ray_vars}
    # Before Ray is imported here: it reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER at import, and
    # this process would otherwise reach the GCS through the interface address.
    os.environ.update(ray_vars)
    pytest.importorskip("ray", reason=NO_RAY)
    env = {
        **os.environ, **ray_vars, "HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
    }
    port = _free_port()
    address = f"127.0.0.1:{port}"
    ray_bin = str(Path(sys.executable).with_name("ray"))
    head_log = base / "head.log"
    cluster_trace = base / "strace-cluster.log"
    trace = _traced if strace else (lambda log: [])
    command = trace(cluster_trace) + [
        ray_bin, "start", "--head", "--block", "--node-ip-address=127.0.0.1",
        f"--port={port}", f"--ray-client-server-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}", f"--num-cpus={num_cpus}",
        "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
        f"--temp-dir={base / 't'}",
    ]
    try:
        for attempt in (1, 2):
            with head_log.open("wb") as head_out:  # the child keeps its own descriptor
                head = _start_head(command, env, head_out)
            try:
                _wait_for_head(head, head_log)
                break
            except RuntimeError:
                # Ray gives its raylet a fixed 30 s to register; on a 2-core machine under heavy
                # load that can pass. Once more, then give up.
                _end(head, base)
                if attempt == 2:
                    raise
        raw = tiny_config_dict(models)
        raw["engine"].update(engine or {})
        raw["engine"]["backend"] = "ray"
        raw["database"] = {"path": str(base / "tlm.db")}
        raw["ray"] = {"address": address, **(TEST_SIZING if sizing is None else sizing),
                     **ray_section}
        config = parse_config(raw, base_dir=base)
        config_path = base / "config.toml"
        config_path.write_text(toml_text(raw), encoding="utf-8")
        serve_trace = base / "strace-serve.log"
        serve_log = base / "serve.log"
        with serve_log.open("wb") as out:
            served = subprocess.run(
                trace(serve_trace) + [sys.executable, "-m", "bot", "--config",
                                        str(config_path), "serve"],
                env=env, stdout=out, stderr=subprocess.STDOUT, timeout=SERVE_TIMEOUT_S,
            )
        output = serve_log.read_text(errors="replace")
        assert served.returncode == 0, output
        from core.inference.serving.cluster import connect

        connect(config)  # this process joins once; engines in tests find it joined
        logs = [p for p in (cluster_trace, serve_trace) if p.exists()]
        yield RayTestCluster(address, config, config_path, env, logs, output)
    finally:
        with contextlib.suppress(Exception):
            import ray

            ray.shutdown()
        _end(head, base)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if os.environ.get("TLM_KEEP_RAY_DIR"):
            print(f"ray test dir kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def _start_head(command: list[str], env: dict[str, str], out) -> subprocess.Popen:
    # Its own session: the cluster is ended by its process group, never `ray stop`.
    return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def toml_text(raw: dict, prefix: str = "") -> str:
    """Just enough TOML for a config dict: scalars, then nested tables as [a.b] sections."""
    scalars = [f"{k} = {json.dumps(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    text = f"[{prefix}]\n" if prefix and scalars else ""
    text += "".join(f"{line}\n" for line in scalars)
    for key, value in raw.items():
        if isinstance(value, dict):
            text += toml_text(value, f"{prefix}.{key}" if prefix else key)
    return text


def _wait_for_head(head: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    """Until `ray start` says the whole node is up (an open GCS port is not enough: a driver
    connecting before the raylet registered fails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited: {text[-2000:]}")
        if "Ray runtime started" in text:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the test cluster did not start in {timeout}s")


def _end(head: subprocess.Popen, base: Path) -> None:
    """Stop this cluster only: its process group, then any process still naming its dir."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(wait)
            break
    for pid in _pids_mentioning(str(base)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _pids_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if text.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids
