"""`framepack-live serve`: start (or join) Ray, deploy the application, print the URL, block until
Ctrl-C, then shut Serve and the local Ray down so no replica outlives the command."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import yaml

from .config import ClusterConfig

APP_NAME = "framepack-live"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `serve` subcommand's flags (the command line owner dispatches to `run`)."""
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default 8000)")
    parser.add_argument("--model", default=None, help="preset, pipeline directory or hub id (default: toyworld on CPU)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when Ray sees a GPU")
    parser.add_argument(
        "--sequence-parallel", type=int, default=1, metavar="N", help="devices one Denoiser replica spans"
    )
    parser.add_argument("--max-sessions", type=int, default=ClusterConfig.max_sessions)
    parser.add_argument("--max-batch-size", type=int, default=ClusterConfig.max_batch_size)
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the transformer and the live decoder (slower first section, faster after)")
    parser.add_argument("--cache", default=None, metavar="SPEC",
                        help="step cache on the transformer: none, first-block:T, mag:T or taylorseer:N "
                             "(default: the model's own; docs/benchmarks.md has the speed/quality table)")
    parser.add_argument("--denoisers", type=int, default=None, metavar="R", help="Denoiser replicas (default 1)")
    parser.add_argument(
        "--ingress-replicas", type=int, default=None, metavar="R",
        help="Ingress replicas: any of them serves any session (default 2 where there are 2 or more CPUs, else 1)",
    )
    parser.add_argument("--session-dir", default=None, help="where sessions keep their frames (default: the temp dir)")
    parser.add_argument(
        "--address", default=None, help="join this Ray cluster (e.g. 'auto') instead of starting a local one"
    )
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    parser.add_argument(
        "--config", type=Path, default=None, help="a Serve config file (config/serve.yaml) to deploy instead of flags"
    )


def run(args: argparse.Namespace) -> int:
    import ray
    from ray import serve

    # "local" unless --address: a Ray someone else started on this machine is not ours to join.
    ray.init(address=args.address or "local", num_cpus=args.num_cpus if args.address is None else None, namespace="serve")
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        if args.config is not None:
            from .plan import check_serve_config

            check_serve_config(args.config)  # a config whose stages cannot fit is refused, not deployed
            host, port = _deploy_config_file(args)
        else:
            host, port = args.host or "127.0.0.1", args.port or 8000
            serve.start(http_options={"host": host, "port": port})
            serve.run(_application_from_flags(args, ray), name=APP_NAME, route_prefix="/")
        print(f"framepack-live is serving at http://{host}:{port}  (Ctrl-C stops it)", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("shutting down", file=sys.stderr, flush=True)
        return 0
    finally:
        serve.shutdown()
        ray.shutdown()


def _application_from_flags(args: argparse.Namespace, ray):
    from .app import build

    device = args.device or ("cuda" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu")
    config = ClusterConfig(
        model=args.model,
        device=device,
        sequence_parallel=args.sequence_parallel,
        max_sessions=args.max_sessions,
        max_batch_size=args.max_batch_size,
        compile=args.compile,
        cache=args.cache,
        session_dir=args.session_dir,
    )
    ingress = args.ingress_replicas or (2 if (os.cpu_count() or 1) >= 2 else 1)
    denoisers = None if args.denoisers is None else {"num_replicas": args.denoisers}
    return build(config, denoisers, ingress_replicas=ingress)


def _deploy_config_file(args: argparse.Namespace) -> tuple[str, int]:
    """Deploy a Serve config the way `serve run FILE` does: validated by Serve's schema, applied by
    Serve's controller, so the file means the same here as with `serve deploy`."""
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load(args.config.read_text()))
    http = config.http_options.model_dump()
    if args.host:
        http["host"] = args.host
    if args.port:
        http["port"] = args.port
    serve_start(http_options=http, proxy_location=config.proxy_location)
    deploy_schema(config)
    return http["host"], http["port"]


def deploy_schema(config) -> None:
    """Apply a validated `ServeDeploySchema` on the running Serve and wait until its applications
    run (no deadline: replicas of a real model download and load for minutes)."""
    from ray import serve
    from ray.serve.context import _get_global_client

    _get_global_client().deploy_apps(config)
    while True:
        statuses = {app.name: serve.status().applications.get(app.name) for app in config.applications}
        states = {name: status.status if status else "NOT_STARTED" for name, status in statuses.items()}
        if all(state == "RUNNING" for state in states.values()):
            return
        failed = {name: statuses[name].message for name, state in states.items() if state == "DEPLOY_FAILED"}
        if failed:
            raise RuntimeError(f"deploying failed: {failed}")
        time.sleep(1)


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
