"""What every model-holding replica does first: pin torch's thread count, then load the model.

Thread count before anything else: torch sizes its pool on first use, and replicas sharing a host
(or the 2 cores of a test machine) each grabbing every core would slow all of them down.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import torch

from framepack_live.engine.download import DownloadProgress
from framepack_live.engine.model import FramePackModel

from .config import ClusterConfig
from .model_status import reported

T = TypeVar("T")


def load_model(config: ClusterConfig, parts: tuple[str, ...]) -> FramePackModel:
    """Load only the components this stage runs (`FramePackModel.PARTS` keys), so an Encoder or
    Decoder replica does not hold the 13 B transformer. With `shard_weights` a Denoiser rank keeps
    only its share of the blocks (its process group must be up). A first start downloads the
    model's files: the replica reports how far it is to the registry (`model_status`)."""
    torch.set_num_threads(config.torch_threads)
    shard = config.shard_weights and "transformer" in parts
    progress = DownloadProgress(show=False)
    with reported(config.model, progress):
        return FramePackModel.load(config.model, device=config.device, parts=parts, cache=config.cache,
                                   compile=config.compile, shard_weights=shard, download=progress)


class ModelThread:
    """The one thread a replica runs its model on: calls run one at a time, in arrival order.

    Serve runs a deployment's synchronous methods in a thread pool (as many threads as
    `max_ongoing_requests`), so without this the Encoder's tokenizers and prompt cache and the
    Decoder's VAE would be used by several threads at once. Nothing promises that is safe (fast
    tokenizers raise "Already borrowed"), and on a GPU concurrent calls only add up their working
    memory, which the memory plan counts once. The stage methods are `async`: the event loop
    takes requests and answers cache hits while this thread works.
    """

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def cancellable(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args, stop)`, where `stop()` turns true when this call is cancelled (Serve cancels
        a request whose caller gave it up): `fn` then ends at its next check
        (`engine.interrupt`) and the thread goes on to the next call, instead of finishing work
        nobody waits for."""
        cancelled = threading.Event()
        try:
            return await self.submit(fn, *args, cancelled.is_set)
        except asyncio.CancelledError:
            cancelled.set()
            raise
