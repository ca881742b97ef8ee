"""Fixtures of the fault suite: the scale of a scenario and the processes it runs.

Every scenario is parametrized with two scales: ``short`` (marked ``faults_short``, so
``pytest -m "not faults"`` — ``make test`` — runs it) and ``full`` (marked ``faults``,
run by ``make test-faults``). Each run appends its row of the reliability report to
``tests/artifacts/reliability-<scale>.jsonl`` and prints it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from playhouse.storage import Storage
from tests.awake import awake_copy, awake_personas
from tests.faults.harness import Stack

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"


@dataclass(frozen=True)
class Scale:
    name: str
    worker_requests: int
    worker_kills: int
    web_clients: int
    web_posts: int
    """Posts per client."""
    web_kills: int
    outage_s: float
    outage_clients: int
    redis_clients: int
    poison_requests: int
    good_requests: int
    load_users: int
    load_rooms: int
    load_s: float


SHORT = Scale(name="short", worker_requests=24, worker_kills=2, web_clients=4, web_posts=6,
              web_kills=1, outage_s=6.0, outage_clients=2, redis_clients=4, poison_requests=1,
              good_requests=3, load_users=20, load_rooms=4, load_s=10.0)
FULL = Scale(name="full", worker_requests=200, worker_kills=10, web_clients=20, web_posts=15,
             web_kills=3, outage_s=30.0, outage_clients=6, redis_clients=12,
             poison_requests=3, good_requests=12, load_users=200, load_rooms=20, load_s=120.0)

SCALES = [
    pytest.param(SHORT, id="short", marks=pytest.mark.faults_short),
    pytest.param(FULL, id="full", marks=[pytest.mark.faults, pytest.mark.timeout(1200)]),
]


@pytest.fixture
def stack(storage: Storage, connection_string: str, models_dir: Path,
          tmp_path: Path) -> Iterator[Stack]:
    """Processes on the test's namespace and the shipped cast; all stopped at the end."""
    procs = Stack(connection_string, storage.namespace, models_dir, awake_personas(), tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


def report(scale: Scale, row: dict[str, Any]) -> None:
    """Print a row of the reliability table and keep it for docs/reliability.md."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with (ARTIFACTS / f"reliability-{scale.name}.jsonl").open("a", encoding="utf-8") as out:
        out.write(json.dumps(row) + "\n")
    print("\nRELIABILITY " + json.dumps(row))


@pytest.fixture
def persona_dir(tmp_path: Path) -> Path:
    """A writable copy of the shipped persona folder (for the poison persona)."""
    return awake_copy(tmp_path / "personas")
