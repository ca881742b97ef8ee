"""Persona fixtures (the demo models fixture ``models_dir`` lives in ``tests/conftest.py``,
shared with ``tests/faults``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from playhouse.personas import Cast, load_cast_strict

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_PERSONAS = ROOT / "personas"


@pytest.fixture
def persona_dir(tmp_path: Path) -> Path:
    """A writable copy of the shipped persona folder, for tests that add odd personas."""
    target = tmp_path / "personas"
    shutil.copytree(SHIPPED_PERSONAS, target)
    return target


def add_persona(folder: Path, name: str, *, model: str, extra: str = "",
                kind: str = "text", rooms: str = '["Technology"]') -> None:
    """Write a minimal persona file into ``folder``."""
    (folder / f"{name.lower()}.toml").write_text(
        f'name = "{name}"\ndisplay_name = "{name}"\nkind = "{kind}"\nmodel = "{model}"\n'
        f"rooms = {rooms}\n\n[activity]\nposts_per_day = 1\n{extra}\n",
        encoding="utf-8",
    )


def load(folder: Path) -> Cast:
    return load_cast_strict(folder)
