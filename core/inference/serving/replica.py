"""What runs on the cluster: one model, every task that uses it, one batch at a time.

A replica is the local engine's worker without its queue: it loads its model with the same
registry code (`core.inference.models.load_model`, the heads `core.inference.engine.all_model_needs`
names) and runs a batch with the same `core.inference.worker.run_batch` (one forward, then one
by one if the batch fails, a `UserError` per request as a value). Batches are formed by the
bot's lane, which measured faster than `@serve.batch` over per-request calls (small, ragged
batches; benchmarks/RESULTS.md, "Figures behind the code").

Results stream back as each is ready (`DeploymentResponseGenerator`): a 5-token `/generate`
answer must not wait for the 100-token one sharing its batch. When the bot cancels the call
(every caller went away), the pending futures are cancelled, so `/generate` stops decoding.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from core.config import Config, ConfigError, parse_config
from core.errors import CoreError
from core.inference.backends.placement import resolve_placement
from core.inference.lanes import Pending
from core.inference.models import load_model
from core.inference.serving.cluster import (
    DEPLOYMENT_NAME,
    AppPlan,
    app_plans,
    deployment_options,
    require_ray,
)
from core.inference.task_table import TASK_TYPES, all_model_needs
from core.inference.worker import run_batch, start_worker

log = logging.getLogger(__name__)


class ModelServer:
    """A Serve deployment class (wrapped by `build_app`), one per model spec."""

    def __init__(self, args: dict[str, Any]) -> None:
        config = replica_config(args)
        self.spec = getattr(config.models, args["model"])
        heads = frozenset(all_model_needs(config).get(self.spec, ()))
        self.tasks = {t.request_type: t(config.models, config.limits) for t in TASK_TYPES}
        #: torch threads: the CPUs Serve reserved for this replica, never more (two replicas
        #: of one CPU each on two cores must not each spread over both).
        self.threads = max(1, int(getattr(config.ray, args["model"]).num_cpus))
        if self.threads == 1:
            # The fast tokenizer would otherwise encode a batch on every core of the machine.
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
        import torch

        torch.set_num_threads(self.threads)  # loading, too, stays within the reservation
        #: The bot's device and dtype settings (and each model's fast path), resolved here:
        #: the same answers as the local engine on this machine.
        self.placement = resolve_placement(config.engine.device, config.engine.dtype,
                                           cpu_threads=self.threads)
        self.model = load_model(self.spec, heads, self.placement)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="tlm-replica",
                                       initializer=start_worker, initargs=(self.threads,))
        #: One batch at a time: two forwards in parallel threads only fight over the cores.
        self.one_batch = asyncio.Lock()
        log.info("replica of %s ready (pid %d)", self.spec, os.getpid())

    async def run_batch(self, requests: Sequence[Any]) -> AsyncIterator[tuple[int, Any]]:
        """Yield `(index, result or CoreError)` for every request, as each is ready."""
        loop = asyncio.get_running_loop()
        task = self.tasks[type(requests[0])]
        batch = [Pending(r, task, None, loop.create_future()) for r in requests]
        index = {id(item.future): i for i, item in enumerate(batch)}
        async with self.one_batch:
            work = loop.run_in_executor(self.pool, run_batch, loop, self.model, batch,
                                        self.threads)
            waiting = {item.future for item in batch}
            try:
                while waiting:
                    done, waiting = await asyncio.wait(waiting,
                                                       return_when=asyncio.FIRST_COMPLETED)
                    for future in done:
                        yield index[id(future)], _outcome(future)
            finally:
                for item in batch:  # the caller went away: let the task skip what is left
                    item.future.cancel()
                await asyncio.shield(work)  # hold the lock until the thread is free again

    async def run_batch_whole(self, requests: Sequence[Any]) -> list[tuple[int, Any]]:
        """`run_batch`'s outcomes in one reply, for a task whose results come together."""
        return [outcome async for outcome in self.run_batch(requests)]

    def pid(self) -> int:
        """The replica's process id (the fault tests kill it)."""
        return os.getpid()

    def __del__(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _outcome(future: asyncio.Future) -> Any:
    exc = future.exception()
    if exc is None:
        return future.result()
    if isinstance(exc, CoreError):
        return exc  # a UserError's message reaches the student unchanged
    # Anything else is a bug: its traceback stays in this replica's log; the bot gets a plain
    # error without Ray's wrapping (pid, IP, actor id), and shows students a generic apology.
    log.error("a request failed on the model server", exc_info=exc)
    return RuntimeError(f"{type(exc).__name__} on the model server: {str(exc)[:300]}")


def build_app(args: dict[str, Any]) -> Any:
    """A Serve application for one model (`AppPlan.builder_args`); also the `import_path`
    target of a Serve config file or a KubeRay `RayService`."""
    require_ray()
    from ray import serve

    sizing = getattr(replica_config(args).ray, args["model"])
    deployment = serve.deployment(ModelServer, name=DEPLOYMENT_NAME,
                                  **deployment_options(sizing))
    return deployment.bind(args)


def replica_config(args: dict[str, Any]) -> Config:
    """The replica's view of the bot's config: its models, limits and its own sizing."""
    return parse_config({
        "models": args["models"],
        "engine": args.get("engine", {}),
        "limits": args.get("limits", {}),
        "ray": {args["model"]: args.get("sizing", {})},
    })


def deploy(config: Config, *, wait: bool = True) -> list[AppPlan]:
    """Deploy (or update in place) every model application; blocks until they run. (Here, beside
    `build_app`, so the cluster module never imports this one back.)"""
    require_ray()
    from ray import serve

    plans = app_plans(config)
    # No HTTP proxy: the bot calls through DeploymentHandles only, so nothing listens for HTTP.
    serve.start(proxy_location="Disabled")
    try:
        serve.run_many(
            [serve.RunTarget(build_app(plan.builder_args(config)), name=plan.name,
                             route_prefix=None) for plan in plans],
            wait_for_applications_running=wait,
        )
    except Exception as exc:  # a replica that cannot load its model, the cluster gone...
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(f"deploying the models failed: {reason}") from None
    return plans
