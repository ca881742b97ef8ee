"""Names that explain themselves: no two public types or functions of one name."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "playhouse"
PROTOCOL = {"HELP", "arguments", "main", "ROUTES"}
"""What every module of a kind has by design: a command module's entrypoint (read by
playhouse.cli), a route module's routes."""


def test_no_two_public_names_in_the_package_are_the_same() -> None:
    places: dict[str, list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names: list[str] = []
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            for name in names:
                if name.startswith("_") or name in PROTOCOL or name in ("log", "__all__"):
                    continue
                if len(name) == 1:  # a TypeVar
                    continue
                places[name].append(str(path.relative_to(PACKAGE)))
    twice = {name: where for name, where in places.items() if len(where) > 1}
    assert twice == {}
