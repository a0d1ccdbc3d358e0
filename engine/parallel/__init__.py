"""Sequence parallelism (Ulysses) for the FramePack transformer over `torch.distributed`.

`enable_sequence_parallel(transformer)` on every rank; `launch.run_parallel(n, fn, *args)`
starts the N ranks (gloo on CPU, NCCL on CUDA) when no launcher did. `shard_weights(transformer)`
keeps 1/N of the block weights per rank, gathered block by block (for GPUs too small for all of them).
"""

from .launch import rank_device, run_parallel
from .sequence_parallel import SequenceParallel, check_degree, enable_sequence_parallel, valid_degrees
from .weights import ShardedBlockWeights, shard_weights, sharded_weights

__all__ = [
    "SequenceParallel",
    "ShardedBlockWeights",
    "check_degree",
    "enable_sequence_parallel",
    "rank_device",
    "run_parallel",
    "shard_weights",
    "sharded_weights",
    "valid_degrees",
]
