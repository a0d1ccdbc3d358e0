"""`framepack-live plan`: the GPU memory every deployment needs, and whether the GPUs it will be
placed on hold it. `serve --config` runs the same check before deploying.

What each stage needs per GPU process comes from `memory` (weights from the model's configs,
working memory by formula). Where it goes comes from the Serve config (how much of a GPU each
replica asks for; a Denoiser replica's N ranks take one GPU each, all on one node) and from the
node types it can land on: the GPU node types of a `ray up` file, the GPUs of the running Ray
cluster, or one card size given with `--gpu-memory`. Ray packs fractional GPU requests onto one
card, so a replica asking for a fraction f of a GPU may count on f of its memory only; a stage
that could land on several node types must fit on each.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from framepack_live.engine.errors import InputError
from framepack_live.engine.presets import resolve
from framepack_live.engine.settings import GenerationSettings

from .config import ClusterConfig
from .gpus import GIB, NodeType, card, node_types_from_cluster, node_types_from_ray
from .memory import (
    ModelSizes,
    Need,
    Section,
    component_configs,
    decoder_need,
    denoiser_need,
    encoder_need,
    shard_traffic_bytes,
    value_bytes,
)

#: GPU share of the Encoder and Decoder when the Serve config does not set one (cluster/app.py).
DEFAULT_LIGHT_SHARE = 0.5


@dataclass(frozen=True)
class Placement:
    """One stage's GPU processes: what each needs, the share of a GPU each gets, and how many
    GPUs one replica needs on one node."""

    need: Need
    processes: str
    share: float
    gpus_together: int


@dataclass(frozen=True)
class Check:
    placement: Placement
    node: NodeType

    @property
    def allowance(self) -> int:
        return int(self.placement.share * self.node.gpu.memory_bytes)

    @property
    def fits(self) -> bool:
        return self.placement.need.total <= self.allowance


@dataclass
class Plan:
    """The plan's table, its notes, and one line per stage that does not fit."""

    heading: str
    placements: list[Placement]
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Every stage that does not fit, on one line."""
        return " | ".join(self.problems)

    def render(self) -> str:
        header = ("stage", "GPU processes", "weights", "working", "runtime", "need", "on", "share", "has", "fits")
        rows = []
        for placement in self.placements:
            need = placement.need
            numbers = [f"{amount / GIB:.2f}" for amount in (need.weights, need.working, need.overhead, need.total)]
            checks = [c for c in self.checks if c.placement is placement] or [None]
            for check in checks:
                where = ("-", "-", "-", "-") if check is None else (
                    check.node.describe(), f"{placement.share:g}", f"{check.allowance / GIB:.2f}", "yes" if check.fits else "NO"
                )
                rows.append((need.stage, placement.processes, *numbers, *where))
        widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
        lines = [self.heading, "  ".join(h.ljust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)) for row in rows]
        lines += ["GiB per GPU process. " + " ".join(f"{p.need.stage}: {p.need.detail}." for p in self.placements)]
        lines += self.notes
        lines += [f"does not fit: {problem}" for problem in self.problems]
        return "\n".join(lines)


def section_of(config: ClusterConfig, resolution: int | None = None) -> Section:
    """The default section of the application: its `generation` settings, else the model's."""
    source = resolve(config.model)
    generation = {**source.defaults, **config.generation}
    if resolution is not None:
        width = height = resolution
    else:
        width = generation.get("width", source.resolution)
        height = generation.get("height", source.resolution)
    return Section(width=width, height=height, window=generation.get("window", GenerationSettings.window))


def make_plan(
    config: ClusterConfig, shares: dict[str, float], section: Section, node_types: list[NodeType] | None
) -> Plan:
    """Needs of every GPU stage of `config`, checked against `node_types` (None: not checked)."""
    configs = component_configs(config.model)
    sizes = ModelSizes.from_configs(configs)
    nbytes = value_bytes(config.device)
    ranks = config.sequence_parallel
    denoiser = denoiser_need(sizes, section, ranks, config.max_batch_size, config.shard_weights, nbytes)
    placements = [
        Placement(encoder_need(sizes, section, nbytes), "1 per replica", shares.get("Encoder", DEFAULT_LIGHT_SHARE), 1),
        Placement(denoiser, f"{ranks} per replica (ranks)" if ranks > 1 else "1 per replica", 1.0, ranks),
        Placement(decoder_need(sizes, section, nbytes), "1 per replica", shares.get("Decoder", DEFAULT_LIGHT_SHARE), 1),
    ]
    dtype = "bf16" if nbytes == 2 else "float32"
    plan = Plan(
        heading=(
            f"framepack-live plan: {config.model or 'toyworld'} at {section.width}x{section.height}, window "
            f"{section.window}, {dtype}, max_batch_size {config.max_batch_size}; configs from {configs.origin}"
        ),
        placements=placements,
    )
    if config.shard_weights:
        traffic = shard_traffic_bytes(sizes, ranks, nbytes)
        plan.notes.append(
            f"shard_weights: each rank keeps 1/{ranks} of the block weights and receives {traffic / GIB:.1f} GiB of "
            f"them per transformer call (one per step, two with cfg > 1), gathered block by block while the "
            f"previous block computes{_transfer_time(traffic, node_types)}."
        )
    if config.device != "cuda":
        plan.notes.append("device cpu: nothing to place on GPUs; the figures are host memory per process.")
        return plan
    if node_types is None:
        plan.notes.append("no GPUs to check against: give --config with a cluster, --cluster FILE or --gpu-memory GIB.")
        return plan
    for placement in placements:
        candidates = [node for node in node_types if node.gpus >= placement.gpus_together]
        if not candidates:
            plan.problems.append(
                f"{placement.need.stage} needs {placement.gpus_together} GPUs on one node, and no node type has that many"
            )
        for node in candidates:
            check = Check(placement, node)
            plan.checks.append(check)
            if not check.fits:
                plan.problems.append(_why(check, config, sizes, section, nbytes))
    return plan


def _transfer_time(traffic: int, node_types: list[NodeType] | None) -> str:
    links = sorted({n.gpu.link_gb_s for n in node_types or [] if n.gpu.link_gb_s})
    if not links:
        return ""
    times = ", ".join(f"{traffic / (link * 1e9):.2f} s at {link:g} GB/s" for link in links)
    return f"; at least {times} per call if not hidden"


def _why(check: Check, config: ClusterConfig, sizes: ModelSizes, section: Section, nbytes: int) -> str:
    """One line: the stage, what it needs, the GPU, and the way out when there is one."""
    need = check.placement.need
    share = "" if check.placement.share == 1 else f"{check.placement.share:g} of "
    line = (
        f"{need.stage} needs {need.total / GIB:.1f} GiB per GPU but gets {check.allowance / GIB:.1f} GiB "
        f"({share}one {check.node.gpu.name}{'' if check.node.summary else ' of ' + check.node.name})"
    )
    if need.stage == "Denoiser" and not config.shard_weights and config.sequence_parallel > 1:
        sharded = denoiser_need(sizes, section, config.sequence_parallel, config.max_batch_size, True, nbytes)
        line += f"; with shard_weights: true a rank needs {sharded.total / GIB:.1f} GiB"
    elif need.stage == "Denoiser" and config.sequence_parallel == 1:
        line += "; spread it with sequence_parallel >= 2 and shard_weights: true"
    elif check.placement.share < 1:
        line += "; give it a larger share (ray_actor_options.num_gpus) or a larger GPU"
    return line


def read_serve_config(path: Path) -> tuple[ClusterConfig, dict[str, float]]:
    """The application's `ClusterConfig` and the GPU share each stage asks for in a Serve config."""
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    apps = [app for app in schema.applications if app.import_path.endswith("cluster.app:build_app")]
    if len(apps) != 1:
        raise InputError("bad_request", f"{path}: expected one framepack-live application, found {len(apps)}")
    (app,) = apps
    config = ClusterConfig.from_args(app.args)
    shares = {}
    for deployment in app.deployments:
        options = deployment.model_dump(exclude_unset=True).get("ray_actor_options") or {}
        if "num_gpus" in options:
            shares[deployment.name] = float(options["num_gpus"])
    return config, shares


def default_cluster_file(config_path: Path) -> Path | None:
    """The repository's ray_cluster.yaml for a config in its config/ folder, when it is there."""
    beside = config_path.resolve().parent.parent / "ray_cluster.yaml"
    return beside if beside.is_file() else None


def node_types_for(cluster_file: Path | None, gpu_memory: float | None) -> list[NodeType] | None:
    if gpu_memory is not None:
        return [card(gpu_memory)]
    if cluster_file is not None:
        return node_types_from_cluster(yaml.safe_load(cluster_file.read_text()))
    return None


def check_serve_config(path: Path, cluster_file: Path | None = None) -> None:
    """What `serve --config` runs first: raise `InputError` with the first stage that cannot fit.

    The GPUs are those of the running Ray cluster when it has any, else those of `cluster_file`
    (default: `default_cluster_file`)."""
    import ray

    config, shares = read_serve_config(path)
    if config.device != "cuda":
        return
    node_types = node_types_from_ray(ray.nodes())
    if not node_types:
        node_types = node_types_for(cluster_file or default_cluster_file(path), None)
    if not node_types:
        return  # nothing known to check against: Serve will wait for GPU nodes as usual
    plan = make_plan(config, shares, section_of(config), node_types)
    if plan.problems:
        raise InputError("bad_request", f"{path} cannot fit: {plan.summary()} (details: framepack-live plan --config {path})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="a Serve config (config/serve.yaml) to plan")
    parser.add_argument(
        "--cluster", type=Path, default=None,
        help="`ray up` file whose GPU node types the stages land on (default with --config: ray_cluster.yaml beside "
        "the config's folder, when there is one)",
    )
    parser.add_argument("--model", default=None, help="without --config: the model (default framepack-f1)")
    parser.add_argument("--resolution", type=int, default=None, help="section side in pixels (default: config's, model's)")
    parser.add_argument("--gpu-memory", type=float, default=None, metavar="GIB", help="check against cards of this size")
    parser.add_argument("--sequence-parallel", type=int, default=None, metavar="N", help="override: ranks per Denoiser")
    parser.add_argument("--shard-weights", action=argparse.BooleanOptionalAction, default=None, help="override: shard weights")
    parser.add_argument("--max-batch-size", type=int, default=None, metavar="B", help="override: sections per batch")


def run(args: argparse.Namespace) -> int:
    shares: dict[str, float] = {}
    cluster_file = args.cluster
    if args.config is not None:
        config, shares = read_serve_config(args.config)
        cluster_file = cluster_file or default_cluster_file(args.config)
    else:
        config = ClusterConfig(model=args.model or "framepack-f1", device="cuda")
    overrides = {
        "sequence_parallel": args.sequence_parallel,
        "shard_weights": args.shard_weights,
        "max_batch_size": args.max_batch_size,
    }
    try:
        config = ClusterConfig.from_args({**config.to_args(), **{k: v for k, v in overrides.items() if v is not None}})
        node_types = node_types_for(cluster_file, args.gpu_memory)
    except ValueError as exc:
        raise InputError("bad_request", str(exc)) from None
    if node_types is None and args.config is None:
        node_types = _local_gpus()
    plan = make_plan(config, shares, section_of(config, args.resolution), node_types)
    print(plan.render())
    if plan.problems:
        print(f"framepack-live plan: does not fit: {plan.summary()}", file=sys.stderr)
        return 1
    return 0


def _local_gpus() -> list[NodeType] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    memory = min(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
    return [card(memory / GIB, torch.cuda.device_count())]
