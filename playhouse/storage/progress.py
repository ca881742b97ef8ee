"""The ``progress`` table: how far a worker got with each request, for honest waiting.

A worker writes a request's row when its batch starts (``generating``), again before each
re-sampling round (``retrying``, with the reason the last sample was rejected) and once
its answer is on the results queue (``answered``). The web reads them for the
placeholders someone watches (:mod:`playhouse.web.waiting`). Rows share their job row's
keys (PK the first digits of the request id, RK the request id), so the rows of the
requests one post made are one partition, read in one query; they are small and are
pruned after a day.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable

import structlog

from playhouse.constants import TABLE_PROGRESS
from playhouse.storage.jobs import BUCKET_CHARS, job_partition
from playhouse.storage.models import JobProgress
from playhouse.storage.tables import Tables, from_entity, to_entity

log = structlog.get_logger()


class ProgressRepo:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    async def mark(self, rows: Iterable[JobProgress]) -> None:
        """Write ``rows`` (replacing what was there): one transaction per partition."""
        operations = [("upsert", to_entity(r, job_partition(r.request_id), r.request_id))
                      for r in rows]
        if operations:
            await self.t.submit(TABLE_PROGRESS, operations, "progress")

    async def some(self, request_ids: Iterable[str]) -> builtins.list[JobProgress]:
        """The rows of ``request_ids`` that exist (one query per partition)."""
        keys = [(job_partition(r), r) for r in request_ids]
        return [from_entity(e, JobProgress)
                for e in await self.t.rows(TABLE_PROGRESS, keys, "progress")]

    async def prune(self, before: float, *, limit: int = 2000) -> int:
        """Delete up to ``limit`` rows of the partitions wholly before ``before``."""
        cut = f"{int(before * 1_000_000):016x}"[:BUCKET_CHARS]
        entities = await self.t.query(
            TABLE_PROGRESS, "PartitionKey lt @cut", "old progress",
            parameters={"cut": cut}, select=["PartitionKey", "RowKey"], limit=limit,
        )
        if not entities:
            return 0
        done = len(await self.t.submit(
            TABLE_PROGRESS,
            (("delete", {"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"]})
             for e in entities),
            "prune progress",
        ))
        log.info("progress.pruned", count=done)
        return done
