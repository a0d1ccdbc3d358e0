"""One local Ray (2 CPUs, like the acceptance machine) for every cluster test, and Serve on a free
port; each test module deploys the application with the `ClusterConfig` it needs."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from framepack_live.cluster.config import ClusterConfig

APP = "framepack-live"


@pytest.fixture(scope="session")
def generation() -> dict:
    """Session defaults small enough for two shared cores: a section denoises in about 0.1 s and
    decodes in under 1 s."""
    return dict(width=128, height=128, steps=4, window=2, seed=0)


@dataclass
class Server:
    url: str
    ws_url: str
    app: str = APP


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def deploy(ray_cluster):
    """`with deploy(config) as server:` runs the app for the block, then deletes it so the next
    module's replicas get the CPUs."""
    from ray import serve

    from framepack_live.cluster.app import build

    @contextmanager
    def deployed(config: ClusterConfig):
        serve.run(build(config), name=APP, route_prefix="/")
        try:
            yield Server(f"http://127.0.0.1:{ray_cluster}", f"ws://127.0.0.1:{ray_cluster}/ws")
        finally:
            serve.delete(APP)

    return deployed
