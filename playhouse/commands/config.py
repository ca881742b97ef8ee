"""``playhouse config``: print the effective settings, secrets masked."""

from __future__ import annotations

import argparse
import sys

from playhouse.config import Settings, effective

HELP = "print the effective settings (secrets masked)"


def arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no arguments


def main(args: argparse.Namespace, settings: Settings) -> int:
    rows = effective(settings)
    width = max(len(name) for name, _, _ in rows)
    for name, value, doc in rows:
        sys.stdout.write(f"{name:<{width}}  {value:<24}  # {doc}\n")
    return 0
