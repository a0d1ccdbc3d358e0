"""The deployment files validate with Ray's own schemas, offline: a typo there only shows up on a
real cluster otherwise, minutes and dollars later."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _load(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text())


def test_ray_cluster_yaml_validates_against_rays_cluster_schema():
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _load("ray_cluster.yaml")
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    # What `ray up` itself does before launching anything: merge the provider's defaults, validate.
    validate_config(prepare_config(config))


def test_ray_cluster_yaml_has_cpu_head_gpu_workers_installs_and_starts_the_app():
    config = _load("ray_cluster.yaml")
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert any(t["resources"].get("GPU", 0) >= 1 for name, t in types.items() if name != config["head_node_type"])
    assert any("pip install" in c and "framepack-live" in c for c in config["setup_commands"])
    assert any("serve deploy" in c and "config/serve.yaml" in c for c in config["head_start_ray_commands"])
    # Serve's HTTP proxy must not believe X-Forwarded-For on its own (the app's trusted_proxies decide).
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        assert all("FORWARDED_ALLOW_IPS= ray start" in c for c in commands if "ray start" in c)


def test_ray_cluster_schema_rejects_a_broken_file():
    """Guards the test above against a validator that accepts anything."""
    import ray.autoscaler

    config = _load("ray_cluster.yaml")
    config["available_node_types"]["head"]["min_wokers"] = 1
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, schema)


def test_serve_config_loads_with_serves_schema_and_builds_the_app():
    from ray.serve import Application
    from ray.serve.schema import ServeDeploySchema

    from framepack_live.cluster.app import build_app

    config = ServeDeploySchema.model_validate(_load("config/serve.yaml"))
    (app,) = config.applications
    assert app.import_path == "framepack_live.cluster.app:build_app"
    assert isinstance(build_app(app.args), Application)
    # Serve refuses overrides of deployments the application does not have, only at deploy time.
    assert {d.name for d in app.deployments} <= {"Ingress", "SessionRegistry", "Encoder", "Denoiser", "Decoder"}
    assert next(d for d in app.deployments if d.name == "Ingress").num_replicas >= 2


def test_serve_config_args_are_checked():
    from framepack_live.cluster.app import build_app

    with pytest.raises(ValueError, match="unknown application args"):
        build_app({"sequence_paralel": 2})
    bad = {
        "ice_servers": [{"urls": "turn:turn.example.org:3478"}],  # TURN needs a username and credential
        "trusted_proxies": ["10.0.0.0/33"],
        "allowed_origins": ["friend.example"],  # not scheme://host
    }
    for name, value in bad.items():
        with pytest.raises(ValueError):
            build_app({name: value})
    with pytest.raises(ValueError, match="cannot read the API key file"):
        build_app({"api_keys_file": "/nonexistent/keys.txt"})
