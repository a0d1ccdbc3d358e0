"""The `framepack-live` command: the composition root of engine, stream, cluster and bench.

Subcommands import their modules lazily, so `render` never pays for Ray and `--help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..engine.errors import InputError

BENCHMARKS = ("context", "sp", "serve", "sessions", "toyworld", "train", "gpu", "seams", "preview", "extend", "rewind", "live", "realtime")


def build_parser() -> argparse.ArgumentParser:
    from . import plan, render, serve

    parser = argparse.ArgumentParser(prog="framepack-live", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve.add_arguments(commands.add_parser("serve", help="start the live server"))
    render.add_arguments(commands.add_parser("render", help="render one video to an MP4 file"))
    plan.add_arguments(commands.add_parser("plan", help="GPU memory per stage and whether the GPUs hold it"))
    bench = commands.add_parser("bench", help="run a benchmark; prints one JSON object", add_help=False)
    bench.add_argument("name", choices=BENCHMARKS)
    return parser


def main(argv: list[str] | None = None) -> int:
    # transformers warns at import that torchvision is absent (its PIL image processors are used
    # instead, which is what we want); a command line should not open with that.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return importlib.import_module(f"framepack_live.bench.{args.name}").main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "render":
        from .render import run
    elif args.command == "plan":
        from .plan import run
    else:
        from .serve import run
    try:
        return run(args)
    except InputError as exc:
        print(f"framepack-live: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
