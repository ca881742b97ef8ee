"""The ``playhouse`` command line: parse, configure logging, then import the heavy parts."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from playhouse.config import Settings
from playhouse.errors import PlayhouseError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="playhouse", description=__doc__)
    p.add_argument("--config", default="playhouse.toml", help="optional settings file")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(
        "run", help="everything on one machine (Azurite when PLAYHOUSE_STORAGE is unset)"
    )
    web = sub.add_parser("web", help="the web app (pages, API, websocket, results consumer)")
    web.add_argument("--host")
    web.add_argument("--port", type=int)
    web.add_argument("--no-scheduler", action="store_true", help="never run the scheduler here")

    worker = sub.add_parser("worker", help="a generation worker")
    worker.add_argument("--kind", choices=("text", "image"), required=True)
    worker.add_argument("--max-models", type=int)
    worker.add_argument("--max-memory", type=int, help="MiB of models kept loaded")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")

    personas = sub.add_parser("personas", help="persona files")
    psub = personas.add_subparsers(dest="personas_command", required=True, metavar="ACTION")
    check = psub.add_parser("check", help="validate every persona file and print the cast")
    check.add_argument("directory", nargs="?", help="default: personas/")

    sub.add_parser("config", help="print the effective settings (secrets masked)")

    models = sub.add_parser("models", help="local models")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    demo = msub.add_parser("build-demo", help="build the offline demo models under var/models")
    demo.add_argument("--seed", type=int, default=1234)
    demo.add_argument("--budget", type=float, default=150.0, help="training seconds in all")
    demo.add_argument("--force", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.load(os.environ, args.config)
    except PlayhouseError as exc:
        sys.stderr.write(f"playhouse: {exc}\n")
        return 2
    from playhouse import logconfig

    logconfig.configure(settings.log_level, settings.log_format)
    try:
        return _dispatch(args, settings)
    except PlayhouseError as exc:
        sys.stderr.write(f"playhouse: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    command: str = args.command
    if command == "personas":
        from playhouse.personas import check_command

        return check_command(Path(args.directory or settings.personas_dir), sys.stdout)
    if command == "config":
        from playhouse.config import effective

        rows = effective(settings)
        width = max(len(name) for name, _, _ in rows)
        for name, value, doc in rows:
            sys.stdout.write(f"{name:<{width}}  {value:<24}  # {doc}\n")
        return 0
    if command == "models":
        from playhouse.generation.demo import build_demo_command

        return build_demo_command(
            Path(settings.models_dir),
            Path(settings.personas_dir),
            seed=args.seed,
            budget_s=args.budget,
            force=args.force,
        )
    if command == "run":
        from playhouse.runner import run_all

        return run_all(settings)
    if command == "worker":
        from playhouse.generation.main import run_worker

        return run_worker(
            settings,
            kind=args.kind,
            max_models=args.max_models,
            max_memory_mb=args.max_memory,
            burst=args.burst,
        )
    if command == "web":
        from playhouse.web.main import run_web

        return run_web(settings, host=args.host, port=args.port, scheduler=not args.no_scheduler)
    raise AssertionError(command)
