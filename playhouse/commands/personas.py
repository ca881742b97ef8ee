"""``playhouse personas check``: validate every persona file and print the cast."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from playhouse.config import Settings

HELP = "persona files"


def arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="personas_command", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="validate every persona file and print the cast")
    check.add_argument("directory", nargs="?", help="default: personas/")


def main(args: argparse.Namespace, settings: Settings) -> int:
    return check(Path(args.directory or settings.personas_dir), sys.stdout)


def check(directory: Path, out: TextIO) -> int:
    """A table of the personas, then every error; 0 when the folder has none, else 1."""
    from playhouse.personas import load_cast

    cast = load_cast(directory)
    header = ("NAME", "KIND", "MODEL", "ROOMS", "POSTS/DAY")
    personas = sorted(cast.personas.values(), key=lambda p: p.name.casefold())
    rows = [
        (p.name, p.kind, p.model, ",".join(p.rooms), f"{p.activity.posts_per_day:g}")
        for p in personas
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        out.write(line.rstrip() + "\n")
    out.write(f"\n{len(cast.personas)} personas, {len(cast.rooms)} rooms, ")
    out.write(f"{len(cast.errors)} errors\n")
    for error in cast.errors:
        out.write(f"{error}\n")
    return 0 if cast.ok else 1
