"""What GPUs a node has: known instance types and GPU models, for the memory plan.

Memory is what `nvidia-smi` reports as the card's total (what CUDA can give out, before the
context takes its share); the link is the nominal one-direction bandwidth between two GPUs of
the node, which bounds how fast sharded weights can be gathered.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 2**20
GIB = 2**30


@dataclass(frozen=True)
class GpuModel:
    name: str
    memory_mib: int
    #: GB/s one direction between two GPUs of a node (NVLink or PCIe); None when unknown.
    link_gb_s: float | None

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * MIB


GPU_MODELS = {
    gpu.name: gpu
    for gpu in (
        GpuModel("T4", 15360, 12.0),
        GpuModel("V100", 16384, 150.0),
        GpuModel("A10G", 23028, 25.0),
        GpuModel("L4", 23034, 25.0),
        GpuModel("L40S", 46068, 25.0),
        GpuModel("A100-40G", 40960, 300.0),
        # Ray labels both A100 sizes "A100" on a running node: counted as the smaller one.
        GpuModel("A100", 40960, 300.0),
        GpuModel("A100-80G", 81920, 300.0),
        GpuModel("H100", 81559, 450.0),
        GpuModel("H200", 143771, 450.0),
    )
}

#: AWS instance type -> (GPU model, GPUs per node).
AWS_INSTANCES: dict[str, tuple[str, int]] = {
    **{f"g4dn.{size}": ("T4", 1) for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g4dn.12xlarge": ("T4", 4),
    **{f"g5.{size}": ("A10G", 1) for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g5.12xlarge": ("A10G", 4),
    "g5.24xlarge": ("A10G", 4),
    "g5.48xlarge": ("A10G", 8),
    **{f"g6.{size}": ("L4", 1) for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g6.12xlarge": ("L4", 4),
    "g6.24xlarge": ("L4", 4),
    "g6.48xlarge": ("L4", 8),
    **{f"g6e.{size}": ("L40S", 1) for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g6e.12xlarge": ("L40S", 4),
    "g6e.24xlarge": ("L40S", 4),
    "g6e.48xlarge": ("L40S", 8),
    "p3.2xlarge": ("V100", 1),
    "p3.8xlarge": ("V100", 4),
    "p3.16xlarge": ("V100", 8),
    "p4d.24xlarge": ("A100-40G", 8),
    "p4de.24xlarge": ("A100-80G", 8),
    "p5.48xlarge": ("H100", 8),
    "p5e.48xlarge": ("H200", 8),
    "p5en.48xlarge": ("H200", 8),
}


@dataclass(frozen=True)
class NodeType:
    """A kind of node stages can be placed on: its name (in ray_cluster.yaml, or a description),
    how many GPUs it has and which."""

    name: str
    gpus: int
    gpu: GpuModel
    #: Set when the node is not a real one (`--gpu-memory`).
    summary: str | None = None

    def describe(self) -> str:
        return self.summary or f"{self.name} ({self.gpus} x {self.gpu.name}, {self.gpu.memory_bytes / GIB:.1f} GiB)"


def node_types_from_cluster(cluster: dict) -> list[NodeType]:
    """The GPU node types of a `ray up` config (the head and CPU-only types are left out).

    A type's GPU count is its `resources.GPU` when given, else the instance's; its GPU model
    comes from `node_config.InstanceType`. An instance type this table does not know is an
    error naming the way out (`--gpu-memory`)."""
    types = []
    for name, spec in cluster.get("available_node_types", {}).items():
        instance = spec.get("node_config", {}).get("InstanceType")
        known = AWS_INSTANCES.get(instance)
        gpus = spec.get("resources", {}).get("GPU", known[1] if known else 0)
        if not gpus:
            continue
        if known is None:
            raise ValueError(
                f"node type {name!r}: unknown instance type {instance!r}, so its GPU memory is unknown; "
                "check against a card with --gpu-memory GIB"
            )
        types.append(NodeType(f"{name} {instance}", int(gpus), GPU_MODELS[known[0]]))
    return types


def node_types_from_ray(nodes: list[dict]) -> list[NodeType]:
    """The GPU nodes of a running Ray cluster, by the accelerator type Ray detected on each."""
    types = {}
    for node in nodes:
        resources = node.get("Resources", {})
        gpus = int(resources.get("GPU", 0))
        accelerator = next((key.split(":", 1)[1] for key in resources if key.startswith("accelerator_type:")), None)
        if gpus and node.get("Alive", True):
            if accelerator not in GPU_MODELS:
                raise ValueError(
                    f"a node's GPUs are {accelerator!r}, whose memory is unknown; use framepack-live plan --gpu-memory"
                )
            types[(gpus, accelerator)] = NodeType(f"running node with {accelerator}", gpus, GPU_MODELS[accelerator])
    return list(types.values())


def card(memory_gib: float, gpus: int | None = None) -> NodeType:
    """Cards of `memory_gib` each (`--gpu-memory`), as many per node as a stage asks for unless
    `gpus` says; link speed unknown."""
    gpu = GpuModel(f"{memory_gib:g} GiB GPU", int(memory_gib * 1024), None)
    count = "" if gpus is None else f"{gpus} x "
    return NodeType("--gpu-memory", gpus or 1024, gpu, summary=f"{count}{memory_gib:g} GiB GPUs")
