"""``playhouse models build-demo``: build the offline demo models under ``var/models``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import structlog

from playhouse.config import Settings

log = structlog.get_logger()

HELP = "local models"


def arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    demo = actions.add_parser("build-demo", help="build the offline demo models under var/models")
    demo.add_argument("--seed", type=int, default=1234)
    demo.add_argument("--budget", type=float, default=150.0, help="training seconds in all")
    demo.add_argument("--force", action="store_true")


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Build what is missing; 0 when all is built.

    Invalid persona files are logged and the valid personas still built, but the exit code
    is then 1 (as ``playhouse personas check`` would say).
    """
    from playhouse.demo.build import DEMO_DIR, build_demo
    from playhouse.errors import PlayhouseError
    from playhouse.personas import load_cast

    models_dir, personas_dir = Path(settings.models_dir), Path(settings.personas_dir)
    cast = load_cast(personas_dir)
    for error in cast.errors:
        log.error("persona.invalid", file=error.file, field=error.field, reason=error.reason)
    if not cast.personas:
        log.error("demo.no_personas", directory=str(personas_dir))
        return 1
    started = time.monotonic()
    try:
        built = build_demo(models_dir, cast, seed=args.seed, budget_s=args.budget,
                           force=args.force)
    except (PlayhouseError, OSError) as exc:
        log.error("demo.failed", error=str(exc))
        return 1
    log.info("demo.ready", personas=len(built), seconds=round(time.monotonic() - started, 1),
             models_dir=str(models_dir / DEMO_DIR))
    return 1 if cast.errors else 0
