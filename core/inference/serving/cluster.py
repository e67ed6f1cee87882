"""Connecting to a Ray cluster, and deploying the model applications onto it.

One Serve application per model spec (not per task): `/mask`, `/maskpair`, `/attention` and the
sentiment features all run on the DistilBERT replicas, which load the model once with every head
those tasks need, exactly as the local registry does.

Loopback by default. Out of the box on Linux, Ray rewrites 127.0.0.1 to the interface address
and binds every interface unless `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, and its dashboard process
probes the cloud metadata address unless a `ray_bootstrap_config.yaml` exists in its HOME.
`LOOPBACK_ENV` holds the variables; the test cluster and docs/scaling-out.md's `ray start` use
them, and a test runs the cluster under strace to prove no connect leaves loopback.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

from core.config import Config, ConfigError, ModelSpec, RayModelConfig

log = logging.getLogger(__name__)

#: Model roles in `[models]`, in the order that names a shared application (mask before features).
ROLES: tuple[str, ...] = ("mask", "qa", "generate", "features")

#: Set (if unset) before Ray is imported or started anywhere in this project.
LOOPBACK_ENV: dict[str, str] = {
    # Keep 127.0.0.1 as given instead of swapping in the interface address.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    # Even with usage stats off, a process of `ray start` looked up usage-stats.ray.io in DNS
    # (a packet to the resolver, caught by the strace test); pointed at loopback, it did not.
    "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
}

#: The name every model application gives its one deployment.
DEPLOYMENT_NAME = "ModelServer"


def require_ray() -> Any:
    """Import Ray, or say in one line how to get it."""
    for key, value in LOOPBACK_ENV.items():
        os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError:
        raise ConfigError(
            'engine.backend = "ray" needs Ray Serve: pip install "tlm-bot[ray]"'
        ) from None
    return ray


@dataclass(frozen=True)
class AppPlan:
    """One Serve application: a model spec, the roles that name it, and its sizing."""

    name: str
    role: str
    spec: ModelSpec
    sizing: RayModelConfig

    def builder_args(self, config: Config) -> dict[str, Any]:
        """The JSON-able arguments of `core.inference.serving.replica:build_app` (also what a
        KubeRay
        manifest's `serveConfigV2` passes)."""
        return {
            "model": self.role,
            "models": {
                role: {"id": spec.id, "revision": spec.revision, "quantize": spec.quantize,
                       "backend": spec.backend}
                for role in ROLES for spec in [getattr(config.models, role)]
            },
            # Resolved on the replica's machine: `auto` picks per machine there too.
            "engine": {"device": config.engine.device, "dtype": config.engine.dtype},
            "limits": dataclasses.asdict(config.limits),
            "sizing": _sizing_dict(self.sizing),
        }


def app_plans(config: Config) -> list[AppPlan]:
    """One plan per distinct model spec, named after the first role that uses it."""
    plans: dict[ModelSpec, AppPlan] = {}
    for role in ROLES:
        spec = getattr(config.models, role)
        if spec not in plans:
            plans[spec] = AppPlan(config.ray.app_prefix + role, role, spec,
                                  getattr(config.ray, role))
    return list(plans.values())


def deployment_options(sizing: RayModelConfig) -> dict[str, Any]:
    """Serve deployment options for one model's sizing (see `RayModelConfig`)."""
    options: dict[str, Any] = {
        "max_ongoing_requests": sizing.max_ongoing_requests,
        "max_queued_requests": sizing.max_queued_requests,
        "ray_actor_options": {"num_cpus": sizing.num_cpus, "num_gpus": sizing.num_gpus},
    }
    if sizing.autoscaling is not None:
        options["autoscaling_config"] = {
            "min_replicas": sizing.autoscaling.min,
            "max_replicas": sizing.autoscaling.max,
            "target_ongoing_requests": sizing.autoscaling.target_ongoing,
        }
    else:
        options["num_replicas"] = sizing.replicas
    return options


def batches_in_flight(sizing: RayModelConfig) -> int:
    """How many batches a bot lane keeps on the cluster at once: one per replica slot."""
    replicas = sizing.autoscaling.max if sizing.autoscaling is not None else sizing.replicas
    return replicas * sizing.max_ongoing_requests


def _sizing_dict(sizing: RayModelConfig) -> dict[str, Any]:
    raw = dataclasses.asdict(sizing)
    if raw["autoscaling"] is None:
        del raw["autoscaling"]
    return raw


def connect(config: Config) -> bool:
    """Join the configured cluster unless this process already has; True if it joined now.

    Ray's forwarded worker logs stay in the cluster's own log files (`log_to_driver=False`):
    the bot's log is for the bot.
    """
    ray = require_ray()
    if ray.is_initialized():
        return False
    address = config.ray.address
    options: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if not address.startswith("ray://"):
        options["_node_ip_address"] = config.ray.node_ip_address
    try:
        _probe(address)
        ray.init(address=address, **options)
    except Exception as exc:  # ConnectionError, TimeoutError, RuntimeError... all say the same
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200].rstrip(".")
        raise ConfigError(
            f"cannot reach the Ray cluster at {address!r} ([ray] address): {reason}. "
            "Start it with `ray start --head` (see docs/scaling-out.md) or fix the address."
        ) from None
    return True


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast when nothing listens at the cluster's address.

    `ray.init` retries an unreachable GCS for minutes, logging a warning every few seconds; a
    bot started against a cluster that is down should say so in one line instead.
    """
    if address.startswith("ray://"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
    else:
        from ray._private.services import canonicalize_bootstrap_address

        resolved = canonicalize_bootstrap_address(address)  # "auto": the address file
        if resolved is None:
            raise ConnectionError("no running Ray cluster was found on this machine")
        host, _, port = resolved.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise ConnectionError(f"nothing answers at {host}:{port} ({exc})") from None
