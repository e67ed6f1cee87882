"""The bot's side of the Ray backend: deployment states, and a lane runner that sends batches.

The lanes stay on the bot (`core.inference.lanes`: validation, queue bound and batching), and a
`RemoteRunner` sends each batch as one call through a `DeploymentHandle`; Serve spreads calls
over replicas. It offers the lane one slot per replica slot, so the lane splits what it
collected over the free slots: 32 requests become two batches of 16 on two idle replicas
instead of one of 32.

Errors, mapped to what the local engine says:
- Serve's back-pressure (`max_queued_requests`) -> `Overloaded` ("busy");
- a replica that died mid-batch -> the batch's unanswered requests are sent once more (Serve
  routes them to a live or replacement replica), then fail with "try again";
- a deployment still starting -> `LoadState.LOADING` (the "still loading" notice); requests wait
  in the lane, never in Serve's queue, so one whose deployment then fails is failed here;
- anything else from Ray (whose text carries pids, IPs, actor ids) -> a plain error logged here,
  a generic apology for the student. Only a `CoreError`'s own message ever reaches a student.
The request timeout is the engine's, end to end; when every caller of a batch has gone, the
remote call is cancelled (`DeploymentResponseGenerator.cancel()`), which stops the replica's
work, since cancelling the awaiting task alone does not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import numpy as np

from core.config import Config, ModelSpec
from core.errors import CoreError, ModelUnavailable, Overloaded
from core.i18n import lazy
from core.inference.lanes import BUSY, Pending, resolve, resolve_all
from core.inference.models import LoadState
from core.inference.serving.cluster import (
    AppPlan,
    app_plans,
    batches_in_flight,
    connect,
    require_ray,
)
from core.inference.tasks.base import Timings

log = logging.getLogger(__name__)
REPLICA_LOST = lazy("The model server restarted while answering. Please try again in a moment.")
NOT_DEPLOYED = "it is not deployed on the Ray cluster (run `tlm-bot serve`)"


class RayBackend:
    """Connection, per-model deployment state, and the lanes' remote calls."""

    def __init__(self, config: Config) -> None:
        require_ray()
        self.config = config
        self.plans: dict[ModelSpec, AppPlan] = {plan.spec: plan for plan in app_plans(config)}
        self._states: dict[ModelSpec, tuple[LoadState, str | None]] = {
            spec: (LoadState.PENDING, None) for spec in self.plans
        }
        self._handles: dict[ModelSpec, Any] = {}
        self._refreshed = asyncio.Event()
        self._poller: asyncio.Task | None = None
        self._joined = False

    async def start(self) -> None:
        self._joined = await asyncio.to_thread(connect, self.config)
        await self.refresh()
        self._poller = asyncio.create_task(self._poll(), name="ray-status")

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self._joined:
            import ray

            await asyncio.to_thread(ray.shutdown)

    # ------------------------------------------------------------------------- states

    def state(self, spec: ModelSpec) -> tuple[LoadState, str | None]:
        return self._states[spec]

    async def refresh(self) -> None:
        """Ask Serve for every application's status (one controller call)."""
        from ray import serve

        try:
            status = await asyncio.to_thread(serve.status)
        except Exception as exc:
            log.warning("cannot read Serve's status: %s", exc)
            reason = "the Ray cluster does not answer, or Serve is not running on it"
            states = {spec: (LoadState.FAILED, reason) for spec in self.plans}
        else:
            states = {
                spec: app_state(status.applications.get(plan.name))
                for spec, plan in self.plans.items()
            }
        for spec, state in states.items():
            if state != self._states[spec]:
                log.info("deployment of %s: %s%s", spec, state[0].value,
                         f" ({state[1]})" if state[1] else "")
        self._states = states
        self._refreshed.set()
        self._refreshed = asyncio.Event()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.config.ray.status_interval_s)
            await self.refresh()

    async def ready(self, spec: ModelSpec) -> None:
        """Wait while the deployment starts; raise `ModelUnavailable` if it cannot serve."""
        while True:
            state, error = self._states[spec]
            if state is LoadState.READY:
                return
            if state is LoadState.FAILED:
                raise ModelUnavailable(lazy("The model `{model}` is not available: {error}",
                                            model=str(spec), error=str(error)))
            await self._refreshed.wait()

    # ------------------------------------------------------------------------- calls

    def runner(self, spec: ModelSpec) -> RemoteRunner:
        """The `BatchRunner` of `spec`'s lane: its batches go to that model's deployment."""
        return RemoteRunner(self, spec)

    def _handle(self, spec: ModelSpec) -> Any:
        if spec not in self._handles:
            from ray import serve

            self._handles[spec] = serve.get_app_handle(self.plans[spec].name)
        return self._handles[spec]

    def _call(self, spec: ModelSpec, requests: list[Any], streams: bool) -> Any:
        """One batch's remote call. A task whose results come one by one (`Task.streams`,
        /generate) streams them back as each is ready; any other's come back in one reply,
        which costs one message fewer than a stream of one batch (its end-of-stream)."""
        handle = self._handle(spec)
        if streams:
            return handle.options(stream=True).run_batch.remote(requests)
        return handle.run_batch_whole.remote(requests)

    async def run(self, spec: ModelSpec, batch: list[Pending]) -> None:
        """Send one batch; resolve each caller's future as its outcome streams back."""
        from ray.exceptions import RayActorError, RayTaskError
        from ray.serve.exceptions import BackPressureError, RequestCancelledError

        sent = time.perf_counter()
        for attempt in (1, 2):
            todo = [item for item in batch if not item.future.done()]
            if not todo:
                return
            streams = todo[0].task.streams
            response = self._call(spec, [item.request for item in todo], streams)

            def cancel_when_abandoned(_: asyncio.Future, todo=todo, response=response) -> None:
                if all(i.future.done() for i in todo) and any(i.future.cancelled() for i in todo):
                    response.cancel()

            for item in todo:
                item.future.add_done_callback(cancel_when_abandoned)
            try:
                if not streams:
                    for index, outcome in await response:
                        resolve(todo[index].future, _arrived(outcome, todo[index], sent))
                    return
                async for index, outcome in response:
                    resolve(todo[index].future, _arrived(outcome, todo[index], sent))
                    if all(item.future.done() for item in todo):
                        # Every caller has its outcome: free the lane's slot now, not after
                        # Ray's end-of-stream message. A burst that follows at once otherwise
                        # found one slot of two busy and went to one replica whole.
                        break
                return
            except RequestCancelledError:
                return
            except BackPressureError:
                resolve_all(todo, Overloaded(BUSY))
                return
            except RayActorError as exc:
                if attempt == 1:
                    log.warning("a %s replica died mid-batch (%s); sending the batch again",
                                spec, type(exc).__name__)
                    continue
                resolve_all(todo, ModelUnavailable(REPLICA_LOST))
                return
            except RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                log.error("a %s batch failed on the cluster: %s", spec, exc)
                resolve_all(todo, cause if isinstance(cause, CoreError) else
                            RuntimeError(f"a {spec} batch failed on the cluster"))
                return
            except asyncio.CancelledError:
                response.cancel()
                raise


def app_state(app: Any) -> tuple[LoadState, str | None]:
    """A Serve application's status (None: not deployed) as the engine's load states."""
    if app is None:
        return LoadState.FAILED, NOT_DEPLOYED
    status = str(getattr(app.status, "value", app.status))
    if status == "RUNNING":
        return LoadState.READY, None
    if status in ("NOT_STARTED", "DEPLOYING"):
        return LoadState.LOADING, None
    if status == "UNHEALTHY":  # replicas being replaced; Serve routes to the healthy ones
        return LoadState.READY, None
    message = (app.message or status).strip().splitlines()
    return LoadState.FAILED, f"its deployment failed on the Ray cluster ({message[0][:200]})"


def _arrived(outcome: Any, item: Pending, sent: float) -> Any:
    """A replica's outcome as the local engine would give it: the bot-side wait added to the
    queue time, and arrays writable again (Ray hands numpy arrays back read-only)."""
    if isinstance(outcome, BaseException):
        return outcome
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(outcome):
        value = getattr(outcome, field.name)
        if isinstance(value, np.ndarray) and not value.flags.writeable:
            changes[field.name] = value.copy()
    remote = outcome.timings
    if remote is not None:
        changes["timings"] = Timings(
            queued_ms=(sent - item.enqueued_at) * 1000 + remote.queued_ms,
            inference_ms=remote.inference_ms,
            batch_size=remote.batch_size,
        )
    return dataclasses.replace(outcome, **changes) if changes else outcome


class RemoteRunner:
    """A lane's `BatchRunner` on Ray: one Serve call per batch, several in flight at once
    (one per replica slot), after the deployment is running."""

    def __init__(self, backend: RayBackend, spec: ModelSpec) -> None:
        self.backend = backend
        self.spec = spec
        self.slots = batches_in_flight(backend.plans[spec].sizing)

    async def ready(self) -> None:
        await self.backend.ready(self.spec)

    async def run(self, batch: list[Pending]) -> None:
        try:
            await self.backend.run(self.spec, batch)
        except Exception:  # Ray's own text (pids, IPs, actor ids) never reaches a student
            log.exception("a batch for %s failed outside the mapping", self.spec)
            resolve_all(batch, RuntimeError(f"a {self.spec} batch failed on the cluster"))
        resolve_all(batch, RuntimeError(f"{self.spec}: the cluster returned no result"))
