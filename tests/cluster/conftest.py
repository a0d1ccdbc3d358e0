"""One Ray cluster for every cluster test: a head and two worker nodes on this machine
(`ray.cluster_utils.Cluster`), with custom resources standing for node types: `head` on the head,
`gpu_node` on the workers (GPU nodes in a real cluster). Tests that place nothing are scheduled
anywhere; the kill tests place stages as a Serve config would. Serve listens on a free port; each
test module deploys the application with the `ClusterConfig` it needs."""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pytest
import torch

from framepack_live.cluster.config import ClusterConfig

APP = "framepack-live"
#: Per worker node: one CPU and one unit of the custom resource standing for a GPU node.
WORKER = {"num_cpus": 1, "resources": {"gpu_node": 1}}
PROMPTS = ["a red ball", "the camera pans right over a blue sea", "a dog runs"]


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

    from framepack_live.cluster.serve import PROXY_ENV

    # As `framepack-live serve` and ray_cluster.yaml start Ray: Serve's HTTP proxy leaves the
    # client address alone, and the application's `trusted_proxies` decide. And each request may
    # reach any Ingress replica, as behind a load balancer, rather than always the one on the
    # proxy's node: what one replica starts, another must be able to serve.
    os.environ.update({**PROXY_ENV, "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0"})
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "resources": {"head": 1},
            # The state API (which process and node runs a replica) is the dashboard's; on a free
            # port, so another Ray on the machine does not stop this one.
            "include_dashboard": True,
            "dashboard_port": _free_port(),
        },
    )
    for _ in range(2):
        cluster.add_node(**WORKER)
    ray.init(address=cluster.address, runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}})
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
    yield RayCluster(port, cluster)
    serve.shutdown()
    ray.shutdown()
    cluster.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server_for(ray_cluster):
    def server() -> Server:
        return Server(f"http://127.0.0.1:{ray_cluster.port}", f"ws://127.0.0.1:{ray_cluster.port}/ws")

    return server


@pytest.fixture(scope="session")
def deploy(ray_cluster, server_for):
    """`with deploy(config[, denoiser_options][, ingress_replicas=R]) as server:` runs the app for
    the block, then deletes it so the next module's replicas get the CPUs."""
    from ray import serve

    from framepack_live.cluster.app import build

    @contextmanager
    def deployed(config: ClusterConfig, denoiser_options: dict | None = None, **replicas):
        serve.run(build(config, denoiser_options, **replicas), name=APP, route_prefix="/")
        try:
            yield server_for()
        finally:
            serve.delete(APP)

    return deployed


@pytest.fixture(scope="session")
def requests(tiny_model, generation):
    """Three sessions' first sections (different prompts and seeds), as a session plans them."""
    from framepack_live.cluster.work import DenoiseRequest
    from framepack_live.engine import video_state
    from framepack_live.engine.conditioning import encode_prompt
    from framepack_live.engine.generator import start_video
    from framepack_live.engine.images import default_start_image
    from framepack_live.engine.settings import GenerationSettings

    settings = GenerationSettings(**generation)
    made = []
    for i, prompt in enumerate(PROMPTS):
        start = start_video(tiny_model, default_start_image(), replace(settings, seed=i))
        made.append(
            DenoiseRequest(
                session_id=f"s{i}",
                settings=settings,
                plan=video_state.plan_section(video_state.begin(start, settings, prompt)),
                prompt=encode_prompt(tiny_model, prompt),
                negative=None,
                image_embeds=start.start.image_embeds,
            )
        )
    return made


@pytest.fixture(scope="session")
def expected(tiny_model, requests) -> list[torch.Tensor]:
    """Each section alone, in this process: what the engine makes."""
    from framepack_live.cluster.batch import denoise_batch

    return [denoise_batch(tiny_model, [r], None)[0].latents for r in requests]
