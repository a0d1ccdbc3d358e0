"""The Serve application: the four deployments bound together, from one `ClusterConfig`.

`build_app` is the application builder a Serve config file names (`import_path`); `build` is
what `framepack-live serve` and tests call with a config object.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from .config import ClusterConfig
from .decoder import Decoder
from .denoiser import Denoiser
from .encoder import Encoder
from .ingress import Ingress


def build(config: ClusterConfig, denoiser_options: dict[str, Any] | None = None) -> Application:
    """Bind the stages. On CPU only Denoiser ranks reserve cores (the other stages are light and
    would otherwise not fit next to a 2-rank Denoiser on a small machine); on GPUs the Encoder
    and Decoder share one GPU and each Denoiser rank gets its own. `denoiser_options` are Serve
    deployment options for the Denoiser (`num_replicas`, `health_check_period_s`, ...), as a
    config file's `deployments` section would set them."""
    light = {"num_cpus": 0, "num_gpus": 0.5 if config.device == "cuda" else 0}
    rank = config.rank_bundle
    rank_options = {"num_cpus": rank["CPU"], "num_gpus": rank.get("GPU", 0)}
    group = dict(denoiser_options or {})
    if config.sequence_parallel > 1:  # all ranks on one node: their all-to-alls want NVLink, not the network
        group |= {"placement_group_bundles": [rank] * config.sequence_parallel, "placement_group_strategy": "STRICT_PACK"}
    denoiser = Denoiser.options(
        ray_actor_options=rank_options,
        max_queued_requests=config.max_queued_sections,
        **group,
    )
    return Ingress.bind(
        Encoder.options(ray_actor_options=light).bind(config),
        denoiser.bind(config),
        Decoder.options(ray_actor_options=light).bind(config),
        config,
    )


def build_app(args: dict[str, Any]) -> Application:
    """Serve's application builder: `args` from the config file are `ClusterConfig` fields."""
    return build(ClusterConfig.from_args(args))
