"""``playhouse personas check|import-ssi``: validate the persona files and print the cast;
turn an ssi-bot bot config into persona files."""

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
    ssi = actions.add_parser("import-ssi", help="turn an ssi-bot bot config (ssi-bot.ini) "
                             "into persona files, saying what could not be mapped")
    ssi.add_argument("ini", metavar="BOT.ini")
    ssi.add_argument("--out", metavar="DIR", help="where the persona files go (default: "
                     "personas/)")
    ssi.add_argument("--name", help="only this bot's section (or the bot of an old "
                     "single-bot config)")
    ssi.add_argument("--force", action="store_true", help="replace existing persona files")


def main(args: argparse.Namespace, settings: Settings) -> int:
    if args.personas_command == "import-ssi":
        return import_ssi(Path(args.ini), Path(args.out or settings.personas_dir), sys.stdout,
                          name=args.name, force=args.force)
    return check(Path(args.directory or settings.personas_dir), sys.stdout)


def check(directory: Path, out: TextIO) -> int:
    """A table of the personas, then every error and warning; 0 when the folder has no
    error, else 1."""
    from playhouse.personas import load_cast

    cast = load_cast(directory)
    header = ("NAME", "KIND", "MODEL", "GRAMMAR", "ROOMS", "POSTS/DAY")
    personas = sorted(cast.personas.values(), key=lambda p: p.name.casefold())
    rows = [
        (p.name, p.kind, p.model, p.grammar if p.kind == "text" else "-", ",".join(p.rooms),
         f"{p.activity.posts_per_day:g}")
        for p in personas
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        out.write(line.rstrip() + "\n")
    out.write(f"\n{len(cast.personas)} personas, {len(cast.rooms)} rooms, ")
    out.write(f"{len(cast.errors)} errors")
    out.write(f", {len(cast.warnings)} warnings\n" if cast.warnings else "\n")
    for error in cast.errors:
        out.write(f"{error}\n")
    for warning in cast.warnings:
        out.write(f"warning: {warning}\n")
    return 0 if cast.ok else 1


def import_ssi(
    path: Path, out_dir: Path, out: TextIO, *, name: str | None = None, force: bool = False
) -> int:
    """Write ``out_dir/<name>.toml`` for every bot of ``path`` and say what was not mapped.

    An existing file is kept unless ``force``. Returns 0 when every bot was written."""
    from playhouse.personas import ROOMS_FILE
    from playhouse.ssi_import import import_ini

    results = import_ini(path, name=name, rooms_file=out_dir / ROOMS_FILE)
    failed = 0
    for result in results:
        target = out_dir / f"{result.name.lower()}.toml"
        if not result.error and target.exists() and not force:
            result.error = f"{target} exists; pass --force to replace it"
        if result.error:
            failed += 1
            out.write(f"[{result.section}] not imported: {result.error}\n")
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        target.write_text(result.text, encoding="utf-8")
        out.write(f"[{result.section}] wrote {target} (u/{result.name}, grammar "
                  f"{result.grammar})\n")
        for note in result.notes:
            out.write(f"  - {note}\n")
    if results and not failed:
        out.write(f"check them with: playhouse personas check {out_dir}\n")
    return 1 if failed else 0
