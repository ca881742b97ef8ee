"""The shipped cast, awake all day: the tests that call a bot must not depend on the hour
they run at (the shipped personas sleep part of the day, and a sleeping bot declines a
person's call). Tests of sleep itself write their own hours."""

from __future__ import annotations

import re
import shutil
import tempfile
from functools import cache
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[1] / "personas"
_HOURS = re.compile(r"^active_hours\s*=.*$", re.MULTILINE)


def awake_copy(target: Path, source: Path = SHIPPED) -> Path:
    """Copy the persona folder ``source`` to ``target`` with every ``active_hours`` line set
    to all day; returns ``target``."""
    shutil.copytree(source, target)
    changed = 0
    for path in target.glob("*.toml"):
        text = path.read_text(encoding="utf-8")
        awake, n = _HOURS.subn("active_hours = [0, 24]", text)
        if n:
            path.write_text(awake, encoding="utf-8")
            changed += n
    assert changed, f"no active_hours line in {source}: the pattern no longer matches"
    return target


@cache
def awake_personas() -> Path:
    """One awake copy of the shipped folder for the whole test run (read only)."""
    return awake_copy(Path(tempfile.mkdtemp(prefix="awake-personas-")) / "personas")
