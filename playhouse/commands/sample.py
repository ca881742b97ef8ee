"""``playhouse sample``: generate a few threads from a persona's model, to judge it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playhouse.config import Settings

HELP = "generate a few threads from a persona's model"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("persona", metavar="PERSONA")
    parser.add_argument("--personas", metavar="DIR",
                        help="folder holding the persona file (default: personas/)")
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--replies", type=int, default=3, help="chained replies per thread")
    parser.add_argument("--room", help="default: the persona's first room")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def main(args: argparse.Namespace, settings: Settings) -> int:
    from playhouse.sampling import SampleOptions, sample

    return sample(
        SampleOptions(
            persona=args.persona,
            personas_dir=Path(args.personas or settings.personas_dir),
            models_dir=Path(settings.models_dir),
            threads=args.threads, replies=args.replies, room=args.room, seed=args.seed,
            device=args.device,
        ),
        sys.stdout,
    )
