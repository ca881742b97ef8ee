"""The ``decisions`` table: each persona's recent scheduling verdicts, for the status page.

The scheduler logs every verdict it reaches (replied, passed, held back by a cap) with the
parts of its score; it also writes the ones it logs here, one transaction per persona and
round, so an operator can see on ``/status`` why a persona answers (or never does). PK
the persona's name in lowercase, RK an inverted time id: newest first, a persona's latest
verdicts one query. Rows older than a day are pruned by housekeeping.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable

import structlog

from playhouse import ids
from playhouse.constants import TABLE_DECISIONS
from playhouse.storage.models import Verdict
from playhouse.storage.tables import Tables, from_entity, to_entity

log = structlog.get_logger()


def _persona_key(persona: str) -> str:
    return persona.strip().casefold()


class DecisionRepo:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    async def add(self, verdicts: Iterable[Verdict]) -> None:
        """Store ``verdicts``: one transaction per persona (per 100)."""
        operations = [
            ("upsert", to_entity(v, _persona_key(v.persona), ids.invert(ids.new_id(v.at))))
            for v in verdicts
        ]
        if operations:
            await self.t.submit(TABLE_DECISIONS, operations, "decisions")

    async def recent(self, persona: str, *, limit: int = 50) -> builtins.list[Verdict]:
        """``persona``'s latest verdicts, newest first."""
        entities = await self.t.query(
            TABLE_DECISIONS, "PartitionKey eq @pk", f"decisions of {persona}",
            parameters={"pk": _persona_key(persona)}, limit=limit,
        )
        return [from_entity(e, Verdict) for e in entities]

    async def prune(self, before: float, *, limit: int = 2000) -> int:
        """Delete up to ``limit`` verdicts reached before ``before`` (all personas)."""
        floor = ids.invert(f"{int(before * 1_000_000):016x}" + "0" * (ids.ID_LENGTH - 16))
        entities = await self.t.query(
            TABLE_DECISIONS, "RowKey gt @floor", "old decisions",
            parameters={"floor": floor}, select=["PartitionKey", "RowKey"], limit=limit,
        )
        if not entities:
            return 0
        done = len(await self.t.submit(
            TABLE_DECISIONS,
            (("delete", {"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"]})
             for e in entities),
            "prune decisions",
        ))
        log.info("decisions.pruned", count=done)
        return done
