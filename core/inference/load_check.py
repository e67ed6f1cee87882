"""`check-config --load`: try every configured model load, the way the bot would, and report.

A config can be valid and still name a model that cannot do its job (no such folder, not
cached while offline, a checkpoint without the role's head). The bot would say so only when a
student first asks; this tries each load now, one model at a time, with exactly the heads the
engine's tasks declare for it (`core.inference.engine.model_needs`), and reports one line per role.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable
from dataclasses import dataclass

from core.config import Config, ModelSpec
from core.inference.models import Head, failure_reason, load_model
from core.inference.task_table import TASK_TYPES, model_needs
from core.inference.tasks.base import OPTIONAL_ROLES, ROLES


@dataclass(frozen=True)
class RoleLoad:
    """How loading one role's model went."""

    role: str
    spec: ModelSpec
    heads: frozenset[Head]
    ok: bool
    #: "loaded in 1.2 s" or why not, in one line a user can act on.
    detail: str
    seconds: float

    def __str__(self) -> str:
        heads = ", ".join(sorted(h.value for h in self.heads))
        verdict = "ok, " if self.ok else "FAILED: "
        return f"{self.role}: {self.spec} ({heads}): {verdict}{self.detail}"


def try_loads(config: Config, roles: Iterable[str] | None = None) -> list[RoleLoad]:
    """Load each configured model (blocking; call from a thread in async code) and report
    per role. Roles that share a model share one load. Nothing stays loaded afterwards."""
    # The optional multilingual tokenizer too, when the config names one (no Ray replica).
    wanted = [r for r in (*ROLES, *OPTIONAL_ROLES) if roles is None or r in set(roles)]
    tasks = [task_type(config.models, config.limits) for task_type in TASK_TYPES]
    needs = model_needs(config, tasks, wanted)
    outcomes: dict[ModelSpec, tuple[bool, str, float]] = {}
    for spec, heads in needs.items():
        started = time.perf_counter()
        try:
            model = load_model(spec, frozenset(heads))
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none raised
            outcomes[spec] = (False, failure_reason(exc), time.perf_counter() - started)
        else:
            seconds = time.perf_counter() - started
            outcomes[spec] = (True, f"loaded in {seconds:.1f} s", seconds)
            del model
            gc.collect()
    results = []
    for role in wanted:
        spec = getattr(config.models, role)
        if spec in outcomes:
            ok, detail, seconds = outcomes[spec]
            results.append(RoleLoad(role, spec, frozenset(needs[spec]), ok, detail, seconds))
    return results


__all__ = ["RoleLoad", "try_loads"]
