"""The task contract: the engine reads what tasks declare, and loads only what a caller needs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from core.config import ModelSpec
from core.errors import InputTooLong, ModelUnavailable
from core.inference.engine import InferenceEngine
from core.inference.models import Head
from core.inference.task_table import TASK_TYPES, model_needs
from core.inference.tasks.base import OPTIONAL_ROLES, ROLES
from core.inference.tasks.features import FeaturesRequest
from core.inference.tasks.fill_mask import FillMaskRequest
from core.inference.tasks.generate import GenerateRequest
from core.inference.tasks.tokens import TokensRequest


def _with_models(config, **models):
    return dataclasses.replace(config, models=dataclasses.replace(config.models, **models))


def test_every_task_declares_its_models_by_role():
    for task_type in TASK_TYPES:
        assert task_type.needs, task_type.name
        assert set(task_type.needs) <= {*ROLES, *OPTIONAL_ROLES}, task_type.name
        assert all(isinstance(h, Head) for heads in task_type.needs.values() for h in heads)


def test_registry_needs_come_from_the_tasks(tiny_config):
    tasks = [t(tiny_config.models, tiny_config.limits) for t in TASK_TYPES]
    needs = model_needs(tiny_config, tasks, ROLES)
    m = tiny_config.models
    # mask and features name the same folder: one load, the encoder rides on the MLM head.
    assert needs == {
        m.mask: {Head.MASKED_LM, Head.ENCODER, Head.TOKENIZER},
        m.qa: {Head.QA},
        m.generate: {Head.CAUSAL_LM, Head.TOKENIZER},
    }


async def test_features_only_loads_the_encoder_alone(tiny_config, tmp_path: Path):
    # The other roles point at folders that do not exist: loading them would fail.
    missing = ModelSpec(str(tmp_path / "absent"))
    config = _with_models(tiny_config, mask=missing, qa=missing, generate=missing)
    async with InferenceEngine(config, tasks={"features"}) as engine:
        assert engine.roles == {"features"}
        assert engine.registry.specs == [config.models.features]
        result = await engine.submit(FeaturesRequest("a fine film"))
        assert result.vector.shape == (32,) or result.vector.ndim == 1
        loaded = await engine.registry.get(config.models.features)
        assert set(loaded.modules) == {Head.ENCODER}  # AutoModel, not the masked-LM head
        with pytest.raises(TypeError, match="no task handles"):
            await engine.submit(FillMaskRequest("a [MASK] b"))


async def test_roles_limit_the_models_a_task_may_use(tiny_config):
    async with InferenceEngine(tiny_config, tasks={"tokens"}, roles={"mask"}) as engine:
        assert engine.registry.specs == [tiny_config.models.mask]
        assert (await engine.submit(TokensRequest("Hello there", "wordpiece"))).tokens
        loaded = await engine.registry.get(tiny_config.models.mask)
        assert loaded.modules == {}  # a tokenizer needs no weights
        with pytest.raises(ModelUnavailable, match="`generate` model is not loaded"):
            await engine.submit(TokensRequest("Hello there", "bpe"))


def test_unknown_task_names_are_refused(tiny_config):
    with pytest.raises(ValueError, match="unknown tasks: nope"):
        InferenceEngine(tiny_config, tasks={"nope"})


async def test_generate_rows_count_against_its_own_batch_limit(engine):
    task = engine.task_for(GenerateRequest("x"))
    assert task.rows(GenerateRequest("x", num_return_sequences=3)) == 3
    assert task.max_batch_rows(engine.config.engine) == min(
        engine.config.engine.max_batch_size, engine.config.engine.max_generate_batch)
    assert engine.task_for(FillMaskRequest("a [MASK]")).rows(FillMaskRequest("a [MASK]")) == 1


async def test_one_length_check_names_count_and_limit(engine):
    with pytest.raises(InputTooLong) as info:
        await engine.submit(FillMaskRequest("w " * 200 + "[MASK]"))
    assert "tokens;" in info.value.message and "reads at most 128" in info.value.message
