"""The Serve application: the deployments bound together, from one `ClusterConfig`.

`build_app` is the application builder a Serve config file names (`import_path`); `build` is
what `framepack-live serve` and tests call with a config object.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ray.serve import Application

from framepack_live.engine.lora import list_loras
from framepack_live.stream.access import Access, read_api_keys
from framepack_live.stream.model_defaults import model_defaults
from framepack_live.stream.settings import LIVE_DECODE, Limits, StreamSettings

from .config import ClusterConfig
from .decoder import Decoder
from .denoiser import Denoiser
from .encoder import Encoder
from .ingress import Ingress
from .render_queue import RenderQueue
from .session_registry import SessionRegistry


def stream_settings(config: ClusterConfig) -> StreamSettings:
    """What the Ingress and the sessions run with: the model's own defaults (its trained
    resolution, steps and window) overridden by the operator's, the LoRAs sessions may choose, the
    operator's limits, ICE servers and access rules.

    Made once per build of the application, and so is the download links' signing key in it (a
    random one, `Access.link_key`): every Ingress replica gets these same settings as its
    constructor argument, so a link signed by one replica is honoured by all, and by a replica
    Serve restarts; a new deploy makes a new key, which only ends links less than a minute old.
    """
    # Live by default: every section's frames final when it is decoded (the config may say `blend`).
    model, generation = model_defaults(config.model, {**LIVE_DECODE, **config.generation})
    if config.lora_dir is not None:
        loras = list_loras(config.lora_dir)
        if not loras:
            raise ValueError(f"no LoRAs in {config.lora_dir}: expected diffusers' LoRA directories or .safetensors files")
        model = dataclasses.replace(model, loras=tuple(loras))
    access = Access(
        allowed_origins=tuple(config.allowed_origins),
        trusted_proxies=tuple(config.trusted_proxies),
        api_key_digests=read_api_keys(config.api_keys_file) if config.api_keys_file else frozenset(),
    )
    return StreamSettings(
        limits=Limits(max_sessions_total=config.max_sessions, max_sessions_per_client=config.max_sessions_per_client,
                      live_lead_sections=config.live_lead_sections),
        generation=generation,
        restart_steered=config.restart_steered,
        model=model,
        ice_servers=tuple(config.ice_servers),
        access=access,
        **({"session_dir": Path(config.session_dir)} if config.session_dir else {}),
        **({"jobs_dir": Path(config.jobs_dir)} if config.jobs_dir else {}),
    )


def build(
    config: ClusterConfig, denoiser_options: dict[str, Any] | None = None, ingress_replicas: int | None = None
) -> Application:
    """Bind the stages. On CPU only Denoiser ranks reserve cores (the other stages are light and
    would otherwise not fit next to a 2-rank Denoiser on a small machine); on GPUs the Encoder
    and Decoder share one GPU and each Denoiser rank gets its own. `denoiser_options` are Serve
    deployment options for the Denoiser (`num_replicas`, `health_check_period_s`, ...), as a
    config file's `deployments` section would set them; Ingress replicas left None are Serve's
    default or the config file's."""
    light = {"num_cpus": 0, "num_gpus": 0.5 if config.device == "cuda" else 0}
    rank = config.rank_bundle
    rank_options = {"num_cpus": rank["CPU"], "num_gpus": rank.get("GPU", 0)}
    group = dict(denoiser_options or {})
    ingress = {} if ingress_replicas is None else {"num_replicas": ingress_replicas}
    if config.sequence_parallel > 1:  # all ranks on one node: their all-to-alls want NVLink, not the network
        group |= {"placement_group_bundles": [rank] * config.sequence_parallel, "placement_group_strategy": "STRICT_PACK"}
    denoiser = Denoiser.options(
        ray_actor_options=rank_options,
        max_queued_requests=config.max_queued_sections,
        **group,
    )
    stream = stream_settings(config)
    stages = (
        Encoder.options(ray_actor_options=light).bind(config),
        denoiser.bind(config),
        Decoder.options(ray_actor_options=light).bind(config),
    )
    registry = SessionRegistry.bind(*stages, stream, config.spare_sessions)
    return Ingress.options(**ingress).bind(registry, RenderQueue.bind(*stages, stream), stages[0], stream)


def build_app(args: dict[str, Any]) -> Application:
    """Serve's application builder: `args` from the config file are `ClusterConfig` fields."""
    return build(ClusterConfig.from_args(args))
