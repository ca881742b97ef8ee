"""Generation jobs: one row per request, its state and its attempts.

PK is the first :data:`BUCKET_CHARS` hex digits of the request id (its creation time in
buckets of about 4.5 minutes), RK the request id. Jobs spread over partitions, and
"pending jobs older than T" is a range over partition keys instead of a table scan.

State moves ``called → pending → done | failed`` (``called``: a person's call recorded
before the post is acknowledged, not queued yet), with the row's ETag as the precondition
of every move but the last: two writers (the results consumer and the housekeeper, or
two web instances) cannot both queue a job. A lost race raises
:class:`~playhouse.errors.Conflict`. Inserting the row is the claim: a request id is
derived from what it answers and who answers, so a second ask finds the row.
"""

from __future__ import annotations

import time

import msgspec
import structlog
from azure.data.tables import UpdateMode

from playhouse import ids
from playhouse.constants import TABLE_JOBS
from playhouse.errors import Conflict, InvalidInput, NotFound
from playhouse.storage.models import Job, JobState
from playhouse.storage.tables import Tables, from_entity, text_properties, to_entity

log = structlog.get_logger()

BUCKET_CHARS = 9
"""2**28 µs ≈ 268 s per partition."""


def job_partition(request_id: str) -> str:
    if not ids.is_id(request_id):
        raise InvalidInput(f"request id {request_id!r} is not an id")
    return request_id[:BUCKET_CHARS]


class JobRepo:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    async def create(self, job: Job) -> Job:
        """Store a new job; Conflict when the request id is known (a resubmission)."""
        pk = job_partition(job.request_id)
        etag = await self.t.insert(TABLE_JOBS, to_entity(job, pk, job.request_id),
                                   f"job {job.request_id}")
        return msgspec.structs.replace(job, etag=etag)

    async def create_many(self, jobs: list[Job]) -> list[Job]:
        """Store new jobs in as few transactions as their partitions allow (one for the
        bots a post calls: their ids share the post's time); Conflict when one exists."""
        if not jobs:
            return []
        operations = [("create", to_entity(j, job_partition(j.request_id), j.request_id))
                      for j in jobs]
        etags = await self.t.submit(TABLE_JOBS, operations, f"jobs {jobs[0].request_id}")
        return [msgspec.structs.replace(j, etag=e) for j, e in zip(jobs, etags, strict=True)]

    async def advance(self, job: Job, state: JobState, **changes: object) -> Job:
        """Move ``job`` (as read, with its ETag) to ``state``; Conflict when it changed
        since (another writer moved it first)."""
        pk = job_partition(job.request_id)
        moved = msgspec.structs.replace(job, state=state, updated_at=time.time(), **changes)
        etag = await self.t.update(TABLE_JOBS, to_entity(moved, pk, job.request_id),
                                   f"job {job.request_id}", etag=job.etag or None)
        return msgspec.structs.replace(moved, etag=etag)

    async def finish(self, request_id: str, state: JobState, *, result_id: str | None,
                     error: str = "", attempts: int | None = None, trace: str = "",
                     trace_blob: str | None = None, finished_at: float = 0.0,
                     applied_at: float = 0.0) -> None:
        """Record a job's end (one merge, no read): called once its result is applied,
        which the result's own write made exactly-once; NotFound when it was never
        recorded. The worker's trace (or the name of its blob) and the times it was
        answered and shown go with it."""
        pk = job_partition(request_id)
        entity: dict[str, object] = {
            "PartitionKey": pk, "RowKey": request_id, "state": state,
            "updated_at": time.time(), "error": error[:2000],
        }
        if result_id is not None:
            entity["result_id"] = result_id
        if attempts is not None:
            entity["attempts"] = attempts
        if trace:
            entity.update(text_properties("trace", trace))
        if trace_blob is not None:
            entity["trace_blob"] = trace_blob
        if finished_at:
            entity["finished_at"] = float(finished_at)
        if applied_at:
            entity["applied_at"] = float(applied_at)
        await self.t.update(TABLE_JOBS, entity, f"job {request_id}", etag=None,
                            mode=UpdateMode.MERGE)

    async def some(self, request_ids: list[str]) -> list[Job]:
        """The jobs of ``request_ids`` that exist (one query per partition)."""
        keys = [(job_partition(r), r) for r in request_ids]
        return [from_entity(e, Job) for e in await self.t.rows(TABLE_JOBS, keys, "jobs")]

    async def get(self, request_id: str) -> Job:
        pk = job_partition(request_id)
        entity = await self.t.get(TABLE_JOBS, pk, request_id, f"job {request_id}")
        if entity is None:
            raise NotFound(f"no job {request_id!r}")
        return from_entity(entity, Job)

    async def transition(
        self,
        request_id: str,
        expected: JobState,
        state: JobState,
        *,
        result_id: str | None = None,
        error: str = "",
        attempts: int | None = None,
    ) -> Job:
        """Move a job from ``expected`` to ``state``; Conflict when it is not in ``expected``."""
        pk = job_partition(request_id)
        now = time.time()

        def change(job: Job) -> Job:
            if job.state != expected:
                raise Conflict(f"job {request_id} is {job.state}, not {expected}")
            return msgspec.structs.replace(
                job,
                state=state,
                updated_at=now,
                result_id=result_id if result_id is not None else job.result_id,
                error=error[:2000],
                attempts=max(job.attempts, attempts) if attempts is not None else job.attempts,
            )

        job, etag = await self.t.modify(TABLE_JOBS, pk, request_id, Job, change,
                                        f"job {request_id}")
        log.info("job.transitioned", request_id=request_id, state=state, previous=expected)
        return msgspec.structs.replace(job, etag=etag)

    async def touch(self, request_id: str, *, attempts: int | None = None) -> Job:
        """Bump ``updated_at`` (and the attempt count) of a pending job: a re-queue."""
        pk = job_partition(request_id)
        now = time.time()

        def change(job: Job) -> Job:
            if job.state != "pending":
                raise Conflict(f"job {request_id} is {job.state}, not pending")
            return msgspec.structs.replace(
                job, updated_at=now,
                attempts=job.attempts + 1 if attempts is None else attempts,
            )

        job, etag = await self.t.modify(TABLE_JOBS, pk, request_id, Job, change,
                                        f"job {request_id}")
        return msgspec.structs.replace(job, etag=etag)

    async def pending_before(
        self, cutoff: float, *, since: float | None = None, limit: int = 500
    ) -> list[Job]:
        """Jobs not finished (pending, or called and never queued) last updated before
        ``cutoff``, whose partition is at or after ``since``."""
        hi = f"{int(cutoff * 1_000_000):016x}"[:BUCKET_CHARS]
        flt = ("PartitionKey le @hi and (state eq 'pending' or state eq 'called') "
               "and updated_at lt @cutoff")
        params: dict[str, object] = {"hi": hi, "cutoff": float(cutoff)}
        if since is not None:
            flt += " and PartitionKey ge @lo"
            params["lo"] = f"{int(since * 1_000_000):016x}"[:BUCKET_CHARS]
        entities = await self.t.query(TABLE_JOBS, flt, "pending jobs", parameters=params,
                                      limit=limit)
        return [from_entity(e, Job) for e in entities]

    async def of_persona(self, persona: str, *, since: float, limit: int = 50) -> list[Job]:
        """``persona``'s jobs recorded at or after ``since``, oldest first (a scan of the
        partitions since then: for the status page, not for a request's path)."""
        flt = "PartitionKey ge @lo and persona eq @persona"
        params: dict[str, object] = {"lo": f"{int(since * 1_000_000):016x}"[:BUCKET_CHARS],
                                     "persona": persona}
        entities = await self.t.query(TABLE_JOBS, flt, f"jobs of {persona}",
                                      parameters=params, limit=1000)
        jobs = sorted((from_entity(e, Job) for e in entities), key=lambda j: j.created_at)
        return jobs[-limit:]

    async def called_before(self, cutoff: float, *, since: float, limit: int = 100) -> list[Job]:
        """Jobs still ``called`` (never queued) that were recorded before ``cutoff`` and
        answer something made at or after ``since`` (with their ETags)."""
        flt = ("PartitionKey ge @lo and PartitionKey le @hi and state eq 'called' "
               "and created_at lt @cutoff")
        params: dict[str, object] = {
            "lo": f"{int(since * 1_000_000):016x}"[:BUCKET_CHARS],
            "hi": f"{int(cutoff * 1_000_000):016x}"[:BUCKET_CHARS], "cutoff": float(cutoff),
        }
        entities = await self.t.query(TABLE_JOBS, flt, "called jobs", parameters=params,
                                      limit=limit)
        return [from_entity(e, Job) for e in entities]
