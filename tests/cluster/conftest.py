"""One local Ray (2 CPUs, like the acceptance machine) for every cluster test, and Serve on a free
port; each test module deploys the application with the `ClusterConfig` it needs."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import torch

from framepack_live.cluster.config import ClusterConfig

APP = "framepack-live"
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


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    from ray import serve

    # address="local": always a fresh instance, never a cluster someone else started on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def deploy(ray_cluster):
    """`with deploy(config[, denoiser_options]) as server:` runs the app for the block, then deletes it so the next
    module's replicas get the CPUs."""
    from ray import serve

    from framepack_live.cluster.app import build

    @contextmanager
    def deployed(config: ClusterConfig, denoiser_options: dict | None = None):
        serve.run(build(config, denoiser_options), name=APP, route_prefix="/")
        try:
            yield Server(f"http://127.0.0.1:{ray_cluster}", f"ws://127.0.0.1:{ray_cluster}/ws")
        finally:
            serve.delete(APP)

    return deployed


@pytest.fixture(scope="session")
def requests(tiny_model, generation):
    """Three sessions' first sections (different prompts and seeds), as the Ingress sends them."""
    from framepack_live.cluster.work import DenoiseRequest
    from framepack_live.engine.conditioning import encode_prompt
    from framepack_live.engine.generator import start_video
    from framepack_live.engine.images import default_start_image
    from framepack_live.engine.settings import GenerationSettings

    settings = GenerationSettings(**generation)
    start = start_video(tiny_model, default_start_image(), settings)
    return [
        DenoiseRequest(
            session_id=f"s{i}",
            settings=settings,
            prompt=encode_prompt(tiny_model, prompt),
            negative=None,
            image_embeds=start.start.image_embeds,
            start_latents=start.start.image_latents,
            history=start.start.image_latents,
            rng_state=torch.Generator().manual_seed(i).get_state(),
        )
        for i, prompt in enumerate(PROMPTS)
    ]


@pytest.fixture(scope="session")
def expected(tiny_model, requests) -> list[torch.Tensor]:
    """Each section alone, in this process: what the engine makes."""
    from framepack_live.cluster.work import denoise_batch

    return [denoise_batch(tiny_model, [r], None)[0].latents for r in requests]
