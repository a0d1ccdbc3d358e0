"""`framepack-live serve`: start (or join) Ray, deploy the application, print the URL, block until
Ctrl-C, then shut Serve and the local Ray down so no replica outlives the command."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

import yaml

from framepack_live.engine.errors import InputError
from framepack_live.engine.presets import LIVE_MODEL

from .config import ClusterConfig
from .model_status import REGISTRY, describe

APP_NAME = "framepack-live"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `serve` subcommand's flags (the command line owner dispatches to `run`)."""
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default 8000)")
    parser.add_argument("--model", default=LIVE_MODEL,
                        help=f"preset, pipeline directory or hub id (default: {LIVE_MODEL}, the toy model's few-step "
                             "student with its live decoder, on CPU; toyworld is its 8-step teacher)")
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
    parser.add_argument("--live-lead", type=_lead, default=ClusterConfig.live_lead_sections, metavar="SECTIONS",
                        help="how far a session may run ahead of real-time playback, in sections, before it waits "
                             f"(default {ClusterConfig.live_lead_sections}; 'off': as fast as the model goes)")
    parser.add_argument("--denoisers", type=int, default=None, metavar="R", help="Denoiser replicas (default 1)")
    parser.add_argument(
        "--ingress-replicas", type=int, default=None, metavar="R",
        help="Ingress replicas: any of them serves any session (default 2 where there are 2 or more CPUs, else 1)",
    )
    parser.add_argument(
        "--lora-dir", type=Path, default=None, metavar="DIR",
        help="LoRAs sessions may choose from (diffusers' LoRA directories or .safetensors files, each with a card)",
    )
    parser.add_argument("--session-dir", default=None, help="where sessions keep their frames (default: the temp dir)")
    parser.add_argument("--jobs-dir", default=None,
                        help="where render jobs keep their state and MP4s (default: jobs/ beside the session dir)")
    access = parser.add_argument_group("networking and access (with --config: set them in the file's args)")
    access.add_argument(
        "--ice-server", action="append", default=[], metavar="URL",
        help="a STUN or TURN server for WebRTC (stun:host:3478, turn:host:3478?transport=udp); repeatable",
    )
    access.add_argument("--ice-username", default=None, help="username for the --ice-server TURN servers")
    access.add_argument("--ice-credential", default=None, help="credential (password) for the --ice-server TURN servers")
    access.add_argument(
        "--trusted-proxy", action="append", default=[], metavar="CIDR",
        help="a load balancer or reverse proxy (address or network) whose X-Forwarded-For names the client; repeatable",
    )
    access.add_argument(
        "--allowed-origin", action="append", default=[], metavar="ORIGIN",
        help="another site (https://host[:port]) whose pages may use the server ('*': any); repeatable",
    )
    access.add_argument(
        "--api-keys", type=Path, default=None, metavar="FILE", help="require one of these keys (one per line) to start a session",
    )
    parser.add_argument(
        "--address", default=None, help="join this Ray cluster (e.g. 'auto') instead of starting a local one"
    )
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    parser.add_argument(
        "--config", type=Path, default=None, help="a Serve config file (config/serve.yaml) to deploy instead of flags"
    )


#: Flags that configure the application itself; a `--config` file sets them in its `args` instead.
APP_FLAGS = ("ice_server", "ice_username", "ice_credential", "trusted_proxy", "allowed_origin", "api_keys", "lora_dir")

#: Serve's HTTP proxy runs uvicorn, which by default takes the client address from
#: `X-Forwarded-For` for any peer on loopback. Whom to trust is the application's `trusted_proxies`
#: setting, so the Ray this command starts runs its proxy with uvicorn's own trust turned off
#: (`ray_cluster.yaml` does the same for `ray start`).
PROXY_ENV = {"FORWARDED_ALLOW_IPS": ""}


def run(args: argparse.Namespace) -> int:
    import ray
    from ray import serve

    if args.config is not None:
        given = [f"--{name.replace('_', '-')}" for name in APP_FLAGS if getattr(args, name) not in (None, [])]
        if given:
            raise InputError(
                "bad_request", f"{', '.join(given)}: set these in {args.config}'s application args, not with --config"
            )
    if args.address is None:
        for name, value in PROXY_ENV.items():
            os.environ.setdefault(name, value)
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
            # Not `serve.run`, which would block with nothing to show while a first start downloads
            # the model: the Ingress answers /healthz meanwhile, and this terminal shows the same.
            target = serve.RunTarget(_application_from_flags(args, ray), name=APP_NAME, route_prefix="/")
            serve.run_many([target], wait_for_applications_running=False)
            wait_until_running([APP_NAME])
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
    ingress = args.ingress_replicas or (2 if (os.cpu_count() or 1) >= 2 else 1)
    denoisers = None if args.denoisers is None else {"num_replicas": args.denoisers}
    try:
        return build(_config_from_flags(args, device), denoisers, ingress_replicas=ingress)
    except ValueError as exc:  # a bad setting (an ICE server, a key file) in one line, before anything is deployed
        raise InputError("bad_request", str(exc)) from None


def _config_from_flags(args: argparse.Namespace, device: str) -> ClusterConfig:
    return ClusterConfig(
        model=args.model,
        device=device,
        sequence_parallel=args.sequence_parallel,
        max_sessions=args.max_sessions,
        max_batch_size=args.max_batch_size,
        compile=args.compile,
        cache=args.cache,
        live_lead_sections=args.live_lead,
        session_dir=args.session_dir,
        jobs_dir=args.jobs_dir,
        ice_servers=ice_servers_from_flags(args),
        trusted_proxies=args.trusted_proxy,
        allowed_origins=args.allowed_origin,
        api_keys_file=str(args.api_keys.resolve()) if args.api_keys else None,
        lora_dir=str(args.lora_dir.resolve()) if args.lora_dir else None,
    )


def _lead(value: str) -> float | None:
    """`--live-lead`: a number of sections, or 'off'."""
    return None if value == "off" else float(value)


def ice_servers_from_flags(args: argparse.Namespace) -> list[dict]:
    """One ICE server per `--ice-server`; TURN ones get `--ice-username`/`--ice-credential`."""
    servers = []
    for url in args.ice_server:
        server = {"urls": url}
        if url.startswith("turn"):
            server |= {"username": args.ice_username, "credential": args.ice_credential}
        servers.append(server)
    return servers


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


def deploy_schema(config, out: TextIO = sys.stderr) -> None:
    """Apply a validated `ServeDeploySchema` on the running Serve and wait until its applications
    run, showing how far their models are on `out`."""
    from ray.serve.context import _get_global_client

    _get_global_client().deploy_apps(config)
    wait_until_running([app.name for app in config.applications], out)


def wait_until_running(apps: list[str], out: TextIO = sys.stderr) -> None:
    """Wait until the applications run and their models are warmed up, with their models' state
    on `out` (the figures of `/healthz`): no deadline, since replicas of a real model download
    and load for minutes.
    A model that failed to load (the hub cannot be reached) raises `ModelUnavailable`'s one line
    at once, rather than after Serve's retries of the replicas, which would fail the same way;
    an application that failed to deploy otherwise raises Serve's message."""
    from ray import serve

    line = StatusLine(out)
    try:
        while True:
            statuses = {name: serve.status().applications.get(name) for name in apps}
            states = {name: status.status if status else "NOT_STARTED" for name, status in statuses.items()}
            models = [model for model in map(model_status, apps) if model]
            if all(state == "RUNNING" for state in states.values()) and all(m["state"] == "ready" for m in models):
                return
            failed_models = [model["error"] for model in models if model["state"] == "failed"]
            if failed_models:
                raise InputError("model_unavailable", failed_models[0])
            failed = {name: statuses[name].message for name, state in states.items() if state == "DEPLOY_FAILED"}
            if failed:
                raise RuntimeError(f"deploying failed: {failed}")
            line.show("; ".join(map(describe, models)) or "starting the application")
            time.sleep(1)
    finally:
        line.close()


def model_status(app: str) -> dict | None:
    """The application's model summary from its registry; None until the registry answers (or
    for an application that has none)."""
    from ray import serve

    try:
        return serve.get_deployment_handle(REGISTRY, app).model_status.remote().result(timeout_s=2)
    except Exception:
        return None


class StatusLine:
    """One line rewritten in place on a terminal; elsewhere (a log file) a new line whenever the
    state changes, and every `LOG_EVERY_S` while it does not."""

    LOG_EVERY_S = 30.0

    def __init__(self, out: TextIO) -> None:
        self.out, self.tty = out, out.isatty()
        self._last, self._at, self._width = "", 0.0, 0

    def show(self, text: str) -> None:
        if self.tty:
            self.out.write("\r" + text.ljust(self._width))
            self._width = len(text)
        elif text.split(":")[0] != self._last.split(":")[0] or time.monotonic() - self._at > self.LOG_EVERY_S:
            self.out.write(text + "\n")
            self._at = time.monotonic()
        self._last = text
        self.out.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.out.write("\n")
            self.out.flush()


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
