"""Persona fixtures (the demo models fixture ``models_dir`` lives in ``tests/conftest.py``,
shared with ``tests/faults``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from playhouse.personas import Cast, load_cast_strict
from tests.awake import awake_copy

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_PERSONAS = ROOT / "personas"


@pytest.fixture
def persona_dir(tmp_path: Path) -> Path:
    """A writable copy of the shipped persona folder (awake all day), for tests that add odd
    personas."""
    return awake_copy(tmp_path / "personas")


def add_persona(folder: Path, name: str, *, model: str, extra: str = "",
                kind: str = "text", rooms: str = '["Technology"]',
                grammar: str = "playhouse") -> None:
    """Write a minimal persona file into ``folder``."""
    (folder / f"{name.lower()}.toml").write_text(
        f'name = "{name}"\ndisplay_name = "{name}"\nkind = "{kind}"\nmodel = "{model}"\n'
        f'grammar = "{grammar}"\nrooms = {rooms}\n\n[activity]\nposts_per_day = 1\n{extra}\n',
        encoding="utf-8",
    )


def load(folder: Path) -> Cast:
    return load_cast_strict(folder)


def eager_cast(folder: Path) -> Cast:
    """One text persona, Eager, in r/Technology, that wants to answer every post at once
    (for tests of the scheduler's live placeholders)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rooms.toml").write_text('[[room]]\nname = "Technology"\n', encoding="utf-8")
    (folder / "eager.toml").write_text(
        'name = "Eager"\ndisplay_name = "Eager"\nkind = "text"\nmodel = "m"\n'
        'rooms = ["Technology"]\n\n[activity]\nposts_per_day = 0\nper_hour_cap = 50\n'
        "per_room_hour_cap = 50\nper_thread_cap = 2\n\n[activity.weights]\nbase = 10.0\n",
        encoding="utf-8")
    return load_cast_strict(folder)


FAST_REPLIES = {"sweep_interval_s": 0.3, "reply_delay_s": 0.0, "lease_s": 15,
                "housekeeping_interval_s": 3600.0}
"""Scheduler settings for tests that wait for a scheduled reply."""
