"""Generation jobs: one row per request, its state and its attempts.

PK is the first :data:`BUCKET_CHARS` hex digits of the request id (its creation time in
buckets of about 4.5 minutes), RK the request id. Jobs spread over partitions, and
"pending jobs older than T" is a range over partition keys instead of a table scan.

State moves ``pending → done | failed`` only, with the row's ETag as the precondition:
two writers (the results consumer and the housekeeper, or two web instances) cannot both
finish a job. A lost race raises :class:`~playhouse.errors.Conflict` when the job has left
the expected state, and retries when only another field changed.
"""

from __future__ import annotations

import time

import msgspec
import structlog

from playhouse import ids
from playhouse.constants import TABLE_JOBS
from playhouse.errors import Conflict, InvalidInput, NotFound
from playhouse.storage.models import Job, JobState
from playhouse.storage.tables import Tables, from_entity, to_entity

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

    async def get(self, request_id: str) -> Job:
        pk = job_partition(request_id)
        entity = await self.t.get(TABLE_JOBS, pk, request_id, f"job {request_id}")
        if entity is None:
            raise NotFound(f"no job {request_id!r}")
        job = from_entity(entity, Job)
        return job

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
        """Pending jobs last updated before ``cutoff``, created at or after ``since``."""
        hi = f"{int(cutoff * 1_000_000):016x}"[:BUCKET_CHARS]
        flt = "PartitionKey le @hi and state eq 'pending' and updated_at lt @cutoff"
        params: dict[str, object] = {"hi": hi, "cutoff": float(cutoff)}
        if since is not None:
            flt += " and PartitionKey ge @lo"
            params["lo"] = f"{int(since * 1_000_000):016x}"[:BUCKET_CHARS]
        entities = await self.t.query(TABLE_JOBS, flt, "pending jobs", parameters=params,
                                      limit=limit)
        return [from_entity(e, Job) for e in entities]
