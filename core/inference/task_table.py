"""Every task the engine runs, and which models (with which heads) they need.

A table of its own, below the engine: the engine, a Ray replica (`core.inference.serving.replica`),
`check-config --load` and `tlm-bot ask` all read it, and none of them needs the others for it.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from core.config import Config, ModelSpec
from core.inference.models import Head
from core.inference.tasks.attention import AttentionTask
from core.inference.tasks.base import Task
from core.inference.tasks.contextsim import ContextSimTask
from core.inference.tasks.explain import EXPLAIN_TASK_TYPES
from core.inference.tasks.features import FeaturesTask
from core.inference.tasks.fill_mask import FillMaskTask
from core.inference.tasks.generate import GenerateTask
from core.inference.tasks.logitlens import LogitLensTask
from core.inference.tasks.maskpair import MaskPairTask
from core.inference.tasks.neighbours import NeighboursTask
from core.inference.tasks.nexttoken import NextTokenTask
from core.inference.tasks.qa import QATask
from core.inference.tasks.tokens import TokensTask

TASK_TYPES: tuple[type[Task], ...] = (
    TokensTask, FillMaskTask, QATask, FeaturesTask, GenerateTask,
    # Teaching pictures; they use the mask and generate models already listed below.
    AttentionTask, ContextSimTask, MaskPairTask, NextTokenTask, LogitLensTask, NeighboursTask,
    # `/explain`: one per family, each in a lane of its own beside its model's.
    *EXPLAIN_TASK_TYPES,
)



def all_model_needs(config: Config) -> dict[ModelSpec, set[Head]]:
    """Every model any task uses and its heads: what the bot loads by default, and what a Ray
    replica for one of those models loads (`core.inference.serving.replica`)."""
    tasks = [task_type(config.models, config.limits) for task_type in TASK_TYPES]
    return model_needs(config, tasks, {role for task in tasks for role in task.needs})


def model_needs(config: Config, tasks: Iterable[Task],
                roles: Iterable[str]) -> dict[ModelSpec, set[Head]]:
    """Each model to load and its heads: the union of what the tasks declare per role.

    Roles naming the same model (by default `mask` and `features`) share one load.
    """
    needs: dict[ModelSpec, set[Head]] = collections.defaultdict(set)
    allowed = set(roles)
    for task in tasks:
        for role, heads in task.needs.items():
            spec = getattr(config.models, role)
            if role in allowed and spec is not None:  # an optional model left out
                needs[spec] |= heads
    return dict(needs)
