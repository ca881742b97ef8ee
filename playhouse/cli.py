"""The ``playhouse`` command line: parse, configure logging, then run the command.

The commands live in :mod:`playhouse.commands`, one module each (``NAMES`` lists them);
this module only builds the parser from them and dispatches to the chosen one's ``main``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import cast

from playhouse.commands import NAMES, Command
from playhouse.config import Settings
from playhouse.errors import PlayhouseError


def _command(name: str) -> Command:
    return cast(Command, importlib.import_module(f"playhouse.commands.{name}"))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="playhouse", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="playhouse.toml", help="optional settings file")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in NAMES:
        command = _command(name)
        command.arguments(sub.add_parser(name, help=command.HELP))
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
        return _command(args.command).main(args, settings)
    except PlayhouseError as exc:
        sys.stderr.write(f"playhouse: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
