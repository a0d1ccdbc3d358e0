"""One Ray cluster for every cluster test: a head and two worker nodes on this machine
(`ray.cluster_utils.Cluster`), with custom resources standing for node types: `head` on the head,
`gpu_node` on the workers (GPU nodes in a real cluster). Tests that place nothing are scheduled
anywhere; the kill tests place stages as a Serve config would. Serve listens on a free port; each
test module deploys the application with the `ClusterConfig` it needs."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from framepack_live.cluster.config import ClusterConfig

APP = "framepack-live"
#: Per worker node: one CPU and one unit of the custom resource standing for a GPU node.
WORKER = {"num_cpus": 1, "resources": {"gpu_node": 1}}


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


@dataclass
class RayCluster:
    port: int
    cluster: object  # ray.cluster_utils.Cluster

    def add_worker(self):
        return self.cluster.add_node(**WORKER)


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    from ray import serve
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "resources": {"head": 1},
            # The state API (which process and node runs a replica) is the dashboard's.
            "include_dashboard": True,
        },
    )
    for _ in range(2):
        cluster.add_node(**WORKER)
    ray.init(address=cluster.address, runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
    yield RayCluster(port, cluster)
    serve.shutdown()
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="session")
def server_for(ray_cluster):
    def server() -> Server:
        return Server(f"http://127.0.0.1:{ray_cluster.port}", f"ws://127.0.0.1:{ray_cluster.port}/ws")

    return server


@pytest.fixture(scope="session")
def deploy(ray_cluster, server_for):
    """`with deploy(config) as server:` runs the app for the block, then deletes it so the next
    module's replicas get the CPUs."""
    from ray import serve

    from framepack_live.cluster.app import build

    @contextmanager
    def deployed(config: ClusterConfig, **replicas):
        serve.run(build(config, **replicas), name=APP, route_prefix="/")
        try:
            yield server_for()
        finally:
            serve.delete(APP)

    return deployed
