"""Housekeeping: jobs stuck in ``pending`` (or never queued) and old poison messages.

A job still pending ``pending_deadline_s`` after it was last (re-)queued lost its message
(a worker died past its retries, a queue was cleared, a send failed after the row was
written). It is re-queued from the payload stored on its row, with its attempt count
bumped first, so that a concurrent completion wins (the bump then fails with Conflict
and nothing is sent). Once it has been queued ``max_queued`` times it is failed
*visibly*: a failed :class:`~playhouse.messages.GenerationResult` goes on ``gen-results``,
and the results consumer turns the placeholder into "… could not answer" and shows it
live, exactly as for a failure a worker reports. Re-queueing can duplicate a
generation that was only slow; applying results is idempotent on the request id, so the
playhouse shows one answer.

Once an hour it also prunes the workers' progress rows and the scheduler's recorded
decisions older than :data:`TRAIL_KEEP_S` (they serve the waiting placeholders and the status
page only).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from playhouse.asking import decode_job_request, dispatch
from playhouse.constants import QUEUES, RECEIVE_MAX, results_queue
from playhouse.errors import Conflict, InvalidInput, NotFound
from playhouse.messages import GenerationRequest, GenerationResult, encode
from playhouse.storage.poison import peek_poison

if TYPE_CHECKING:
    from playhouse.storage import Storage
    from playhouse.storage.models import Job

log = structlog.get_logger()

LOOKBACK_S = 7 * 86400.0
"""Pending jobs older than this are not looked at (they were failed long ago or are junk)."""
TRAIL_KEEP_S = 86400.0
"""Progress rows and recorded decisions are kept this long."""
PRUNE_EVERY_S = 3600.0


@dataclass(slots=True)
class HousekeepingReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    poison: dict[str, int] = field(default_factory=dict)
    """Poison queue → depth, for the queues that hold anything."""


class Housekeeper:
    def __init__(
        self,
        storage: Storage,
        *,
        pending_deadline_s: float,
        max_queued: int = 3,
        poison_age_s: float = 3600.0,
    ) -> None:
        self.storage = storage
        self.pending_deadline_s = pending_deadline_s
        self.max_queued = max_queued
        self.poison_age_s = poison_age_s
        self._pruned_at = 0.0

    async def run(self, now: float) -> HousekeepingReport:
        report = HousekeepingReport()
        await self.stuck_jobs(now, report)
        await self.summarise_poison(now, report)
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            await self.storage.progress.prune(now - TRAIL_KEEP_S)
            await self.storage.decisions.prune(now - TRAIL_KEEP_S)
        return report

    async def stuck_jobs(self, now: float, report: HousekeepingReport) -> None:
        cutoff = now - self.pending_deadline_s
        stuck = await self.storage.jobs.pending_before(cutoff, since=now - LOOKBACK_S)
        for job in stuck:
            structlog.contextvars.bind_contextvars(request_id=job.request_id)
            try:
                await self._handle(job, now, report)
            finally:
                structlog.contextvars.unbind_contextvars("request_id")

    async def _handle(self, job: Job, now: float, report: HousekeepingReport) -> None:
        stuck_s = round(now - job.updated_at)
        queued = job.attempts + 1  # the first send, then one per re-queue
        try:
            request = decode_job_request(job)
        except (ValueError, InvalidInput) as exc:  # msgspec errors are ValueErrors
            await self._fail(job, f"stored request is unreadable: {exc}", report)
            return
        if job.state == "called":  # recorded, never queued (its asker died meanwhile)
            try:
                claimed = await self.storage.jobs.advance(job, "called")
            except (Conflict, NotFound):
                return  # another instance took it
            await dispatch(self.storage, claimed)
            report.requeued.append(job.request_id)
            log.warning("job.dispatched", persona=job.persona, kind=job.kind, queue=job.queue,
                        stuck_s=stuck_s)
            return
        if queued >= self.max_queued:
            await self._fail(job, f"no answer after {queued} attempts", report)
            return
        try:
            await self.storage.jobs.touch(job.request_id)
        except (Conflict, NotFound):
            return  # finished meanwhile
        await self.storage.queues.send(request.queue or job.queue, job.payload.encode())
        report.requeued.append(job.request_id)
        log.warning("job.requeued", persona=job.persona, kind=job.kind, queue=job.queue,
                    attempt=queued + 1, stuck_s=stuck_s)

    async def _fail(self, job: Job, reason: str, report: HousekeepingReport) -> None:
        try:  # bump updated_at: the next pass does not report it again at once
            await self.storage.jobs.touch(job.request_id)
        except (Conflict, NotFound):
            return
        try:
            asked = decode_job_request(job)
        except (ValueError, InvalidInput):
            kind = job.kind if job.kind in ("post", "reply", "image") else "reply"
            asked = GenerationRequest(
                request_id=job.request_id, kind=kind,  # type: ignore[arg-type]
                persona=job.persona, room=job.room, queue=job.queue, thread_id=job.thread_id,
                parent_id=job.parent_id,
            )
        result = GenerationResult.failure(asked, reason, attempts=job.attempts + 1)
        await self.storage.queues.send(results_queue(job.queue), encode(result))
        report.failed.append(job.request_id)
        log.error("job.abandoned", persona=job.persona, kind=job.kind, queue=job.queue,
                  reason=reason)

    async def summarise_poison(self, now: float, report: HousekeepingReport) -> None:
        """One ``poison.summary`` line per poison queue that holds anything."""
        for found in await peek_poison(self.storage.queues, QUEUES, limit=RECEIVE_MAX):
            report.poison[found.queue] = found.depth
            reasons: Counter[str] = Counter()
            old = 0
            oldest = 0.0
            for shown in found.shown:
                entry = shown.entry
                if entry is None:
                    reasons["(unreadable entry)"] += 1
                    continue
                reasons[entry.reason.split(":")[0][:80]] += shown.copies
                age = now - entry.at
                oldest = max(oldest, age)
                if age >= self.poison_age_s:
                    old += shown.copies
            log.warning("poison.summary", queue=found.queue, depth=found.depth,
                        old_in_sample=old,
                        oldest_s=round(oldest), reasons=dict(reasons.most_common(5)))
