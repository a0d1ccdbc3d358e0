"""Sequence parallelism (Ulysses) for the FramePack transformer over `torch.distributed`.

`enable_sequence_parallel(transformer)` on every rank; `launch.run_parallel(n, fn, *args)`
starts the N ranks (gloo on CPU, NCCL on CUDA) when no launcher did.
"""

from .launch import rank_device, run_parallel
from .sequence_parallel import SequenceParallel, check_degree, enable_sequence_parallel, valid_degrees

__all__ = [
    "SequenceParallel",
    "check_degree",
    "enable_sequence_parallel",
    "rank_device",
    "run_parallel",
    "valid_degrees",
]
