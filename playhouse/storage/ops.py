"""Operations rows: workers' heartbeats and the time series behind the status page.

Workers may run anywhere (a home GPU box, a cloud VM), so they report through storage,
like everything else they do:

* ``workers``: one row per worker (PK :data:`~playhouse.constants.PK_WORKERS`, RK the
  worker id), replaced at every heartbeat: identity, loaded models, each persona's state,
  cumulative counters and histogram buckets (what ``/metrics`` exposes), the last error.
* ``metrics``: one row per sample (PK the UTC hour, RK ``{ms:015d}-{source}``): a worker's
  deltas since its previous heartbeat, or a web instance's queue depths. The status page
  reads the last hour of them; old hours are pruned.
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec
import structlog

from playhouse.constants import PK_WORKERS, TABLE_METRICS, TABLE_WORKERS
from playhouse.storage.tables import Tables, from_entity, to_entity

log = structlog.get_logger()

BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32)
"""Upper bounds of the batch size histogram (a batch is at most 32 requests)."""
LATENCY_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
"""Upper bounds, in seconds, of the generation latency histograms."""

WorkerState = Literal["running", "stopping", "stopped"]
ModelState = Literal["loaded", "idle", "unavailable"]


class PersonaState(msgspec.Struct, frozen=True, kw_only=True):
    """One persona as one worker sees it."""

    name: str
    model: ModelState = "idle"
    """``loaded`` in memory, ``idle`` not loaded (yet), ``unavailable`` failed to load."""
    reason: str = ""
    """Why the model is unavailable."""
    answered: int = 0
    failed: int = 0
    last_answer_at: float = 0.0
    last_error: str = ""
    samples: int = 0
    """Samples drawn for it (every attempt), since the worker started."""
    rejections: tuple[tuple[str, int], ...] = ()
    """Of those, the rejected ones by reason (``no_end_tag``, ``near_copy`` ...)."""


class WorkerBeat(msgspec.Struct, frozen=True, kw_only=True):
    """A worker's latest heartbeat. Counters are cumulative since the worker started."""

    worker_id: str
    host: str
    kind: str
    pid: int
    started_at: float
    seen_at: float
    interval_s: float
    state: WorkerState = "running"
    models: tuple[str, ...] = ()
    personas: tuple[PersonaState, ...] = ()
    batches: int = 0
    answered: int = 0
    failed: int = 0
    poisoned: int = 0
    tokens: int = 0
    generated_s: float = 0.0
    tokens_per_s: float = 0.0
    """Over the interval since the previous heartbeat (0 when it generated nothing)."""
    batch_buckets: tuple[int, ...] = ()
    """Cumulative counts per :data:`BATCH_BUCKETS` bound, then +Inf."""
    batch_sum: int = 0
    latency_buckets: tuple[int, ...] = ()
    """Cumulative counts per :data:`LATENCY_BUCKETS` bound, then +Inf (one per request)."""
    latency_sum: float = 0.0
    last_error: str = ""
    last_error_at: float = 0.0

    def alive(self, now: float) -> bool:
        """Running and heard from within three intervals."""
        return self.state != "stopped" and now - self.seen_at <= 3 * self.interval_s + 5


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    """One point of a time series: a worker's deltas, or a web instance's queue depths."""

    source: str
    """``worker:<id>`` or ``web:<instance>``."""
    at: float
    interval_s: float
    answered: int = 0
    failed: int = 0
    tokens: int = 0
    generated_s: float = 0.0
    latency_sum: float = 0.0
    latency_count: int = 0
    depths: tuple[tuple[str, int], ...] = ()


def hour_key(at: float) -> str:
    """Partition key of a sample taken at ``at``: hours since the epoch, zero-padded."""
    return f"{int(at // 3600):08d}"


def _row_key(at: float, source: str) -> str:
    return f"{int(at * 1000):015d}-{source.replace('/', '_')}"


class WorkerRepo:
    """The ``workers`` table: the latest heartbeat of every worker."""

    def __init__(self, tables: Tables) -> None:
        self.t = tables

    async def beat(self, beat: WorkerBeat) -> None:
        await self.t.upsert(TABLE_WORKERS, to_entity(beat, PK_WORKERS, beat.worker_id),
                            f"heartbeat of {beat.worker_id}")

    async def all(self) -> list[WorkerBeat]:
        entities = await self.t.query(TABLE_WORKERS, "PartitionKey eq @pk", "workers",
                                      parameters={"pk": PK_WORKERS}, limit=1000)
        return [from_entity(e, WorkerBeat) for e in entities]

    async def forget_before(self, cutoff: float) -> int:
        """Delete the rows of workers last seen before ``cutoff``; returns how many."""
        gone = 0
        for beat in await self.all():
            if beat.seen_at < cutoff and await self.t.delete(
                TABLE_WORKERS, PK_WORKERS, beat.worker_id, f"worker {beat.worker_id}"
            ):
                gone += 1
        return gone


class MetricsRepo:
    """The ``metrics`` table: samples partitioned by hour."""

    def __init__(self, tables: Tables) -> None:
        self.t = tables

    async def add(self, sample: Sample) -> None:
        entity = to_entity(sample, hour_key(sample.at), _row_key(sample.at, sample.source))
        await self.t.upsert(TABLE_METRICS, entity, f"sample of {sample.source}")

    async def since(self, start: float, *, limit: int = 20_000) -> list[Sample]:
        """Samples taken at or after ``start``, oldest first."""
        flt = "PartitionKey ge @lo and PartitionKey le @hi and RowKey ge @rk"
        params = {"lo": hour_key(start), "hi": hour_key(time.time() + 3600),
                  "rk": _row_key(start, "")}
        entities = await self.t.query(TABLE_METRICS, flt, "recent samples",
                                      parameters=params, limit=limit)
        return sorted((from_entity(e, Sample) for e in entities), key=lambda s: s.at)

    async def prune(self, before: float, *, limit: int = 2000) -> int:
        """Delete up to ``limit`` samples from the hours wholly before ``before``."""
        entities = await self.t.query(
            TABLE_METRICS, "PartitionKey lt @cut", "old samples",
            parameters={"cut": hour_key(before)}, select=["PartitionKey", "RowKey"], limit=limit,
        )
        if not entities:
            return 0
        done = len(await self.t.submit(
            TABLE_METRICS,
            (("delete", {"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"]})
             for e in entities),
            "prune samples",
        ))
        log.info("samples.pruned", count=done)
        return done
