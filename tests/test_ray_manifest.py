"""The KubeRay example must deploy exactly what `tlm-bot serve` deploys for the default config."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import yaml

from core.config import Config
from core.inference.serving.cluster import DEPLOYMENT_NAME, app_plans
from core.inference.serving.replica import replica_config

MANIFEST = Path(__file__).resolve().parents[1] / "deploy" / "kuberay-rayservice.yaml"


def _applications() -> list[dict]:
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert manifest["kind"] == "RayService"
    serve_config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    assert serve_config["proxy_location"] == "Disabled"  # handles only: nothing listens on HTTP
    return serve_config["applications"]


def test_manifest_names_the_same_applications_as_tlm_bot_serve():
    config = Config()
    plans = app_plans(config)
    apps = _applications()
    assert [app["name"] for app in apps] == [plan.name for plan in plans]
    for app, plan in zip(apps, plans):
        expected = plan.builder_args(config)
        assert app["args"]["model"] == plan.role
        assert app["args"]["models"] == expected["models"]
        assert app["args"]["engine"] == expected["engine"]  # dtype "auto": per replica machine
        # The manifest's arguments are valid for the replica and name this model.
        replica_view = replica_config(app["args"])
        assert getattr(replica_view.models, plan.role) == plan.spec


def test_manifest_import_path_is_the_replica_builder():
    for app in _applications():
        module, _, name = app["import_path"].partition(":")
        assert callable(getattr(importlib.import_module(module), name))
    assert DEPLOYMENT_NAME == "ModelServer"


def test_a_replica_runs_the_bot_s_dtype_and_fast_path_within_its_cpus(tiny_models, monkeypatch):
    """A replica (built here without a cluster: the class Serve instantiates) loads its model
    with the bot's `[engine] dtype` and the model's `quantize`, and runs a batch on no more
    torch threads than the CPUs Serve reserved for it."""
    import asyncio

    import torch

    from core.config import parse_config
    from core.inference.serving.replica import ModelServer
    from core.inference.tasks.fill_mask import FillMaskRequest, FillMaskTask
    from tests.conftest import tiny_config_dict

    raw = tiny_config_dict(tiny_models)
    raw["models"]["mask"] = {"id": raw["models"]["mask"], "quantize": "int8"}
    raw["engine"]["dtype"] = "bfloat16"
    raw["ray"] = {"mask": {"num_cpus": 1}}
    config = parse_config(raw)
    plan = next(p for p in app_plans(config) if p.role == "mask")
    threads_seen = []
    real = FillMaskTask.run_batch

    def counting(self, model, requests, emit):
        threads_seen.append(torch.get_num_threads())
        return real(self, model, requests, emit)

    monkeypatch.setattr(FillMaskTask, "run_batch", counting)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    before = torch.get_num_threads()
    try:
        server = ModelServer(plan.builder_args(config))
        assert server.placement.dtype == "bfloat16"
        assert "quantized" in type(server.model.modules[next(iter(server.model.modules))]
                                   .vocab_projector).__module__

        async def one() -> list:
            return [x async for x in server.run_batch([FillMaskRequest("A [MASK] day.", 3)])]

        ((index, result),) = asyncio.run(one())
        assert index == 0 and len(result.fillers) == 3
        assert threads_seen == [1]
        assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
        server.pool.shutdown(wait=True)
    finally:
        torch.set_num_threads(before)
