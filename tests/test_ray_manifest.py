"""The KubeRay example must deploy exactly what `tlm-bot serve` deploys for the default config."""

from __future__ import annotations

import importlib
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
        # The manifest's arguments are valid for the replica and name this model.
        replica_view = replica_config(app["args"])
        assert getattr(replica_view.models, plan.role) == plan.spec


def test_manifest_import_path_is_the_replica_builder():
    for app in _applications():
        module, _, name = app["import_path"].partition(":")
        assert callable(getattr(importlib.import_module(module), name))
    assert DEPLOYMENT_NAME == "ModelServer"
