"""The whole server on this machine for benchmarks: a local Ray instance, Serve's HTTP proxy on a
free loopback port, and the application deployed from a `ClusterConfig`, as `framepack-live
serve` would run it. Shared by the benchmarks that measure it from outside, over HTTP and /ws."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from framepack_live.cluster.config import ClusterConfig

APP = "framepack-live"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_serve(num_cpus: int) -> Iterator[int]:
    """Ray on `num_cpus` cores and Serve's proxy; yields the proxy's port, shuts both down after."""
    import ray
    from ray import serve

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


def deploy(config: ClusterConfig, **build_options) -> None:
    """Run the application built from `config` (replacing one deployed before) at `/`; returns
    once it is up and warmed up, where `serve` shows its address. `build_options` go to
    `cluster.app.build`."""
    from ray import serve

    from framepack_live.cluster.app import build
    from framepack_live.cluster.serve import wait_until_running

    serve.run(build(config, **build_options), name=APP, route_prefix="/")
    wait_until_running([APP])
