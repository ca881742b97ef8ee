"""The commands of the ``playhouse`` CLI, one module each.

Every module here is an entrypoint: it declares its arguments (``arguments``), and its
``main(args, settings)`` composes the parts its process needs — storage opened, the cast
loaded, the app or the worker assembled — and runs them. Library modules never compose;
they are handed what they use. Modules here import only the standard library at the top,
so building the parser stays cheap; the heavy parts are imported inside ``main``.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from playhouse.config import Settings


class Command(Protocol):
    """What :mod:`playhouse.cli` finds in a command module."""

    HELP: str

    def arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def main(self, args: argparse.Namespace, settings: Settings) -> int: ...


NAMES: tuple[str, ...] = (
    "run", "web", "worker", "scheduler", "personas", "config", "poison", "models", "dataset",
    "train", "sample",
)
"""The commands, in the order ``playhouse --help`` lists them (module = name)."""
