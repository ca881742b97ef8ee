"""The call recovery: bot calls that outlive the process that recorded them.

A bot call is recorded as a ``called`` job before the post that makes it is acknowledged
(or before the scheduler queues it), and dispatched right after (:mod:`playhouse.asking`).
A process that dies in between leaves the job ``called``. Every web instance runs
:class:`CallRecovery` as a periodic chore: a job still ``called`` ``web.bot_call_grace_s``
after it was recorded is dispatched here — its placeholder shown, its request queued —
exactly as its own process would have. Of several instances finding one, the one whose
conditional write of the row lands first dispatches it; a slow first try racing the
recovery may queue a request twice, and its answer is applied once.

A job whose post was never stored (its write failed, so nobody was told it was accepted)
is dropped once it is older than :data:`ORPHAN_AFTER_S`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog

from playhouse import asking
from playhouse.errors import Conflict, NotFound, PlayhouseError

if TYPE_CHECKING:
    from playhouse.events import Broadcaster
    from playhouse.storage import Storage
    from playhouse.storage.models import Job

log = structlog.get_logger()

ORPHAN_AFTER_S = 60.0
"""A call older than this whose post is not stored is dropped: the post was refused or its
process died before writing it, so nobody was told it was accepted."""
RECOVERY_LOOKBACK_S = 3600.0
"""Calls answering posts older than this are left to housekeeping (people's calls answer
posts made a moment before; the scheduler's are queued at once or found stuck there)."""


class CallRecovery:
    """Dispatches the calls their process left ``called``; :meth:`run_once` is one pass."""

    def __init__(self, storage: Storage, broadcast: Broadcaster, *, grace_s: float,
                 orphan_after_s: float = ORPHAN_AFTER_S) -> None:
        self.storage = storage
        self.broadcast = broadcast
        self.grace_s = grace_s
        self.orphan_after_s = max(orphan_after_s, grace_s)

    async def run_once(self, now: float | None = None) -> int:
        """Dispatch what waits; how many calls were recovered."""
        at = time.time() if now is None else now
        waiting = await self.storage.jobs.called_before(at - self.grace_s,
                                                        since=at - RECOVERY_LOOKBACK_S)
        recovered = 0
        for job in waiting:
            try:
                recovered += await self._recover(job, at)
            except PlayhouseError as exc:  # the next pass tries again
                log.warning("bot_call.retry", request_id=job.request_id, reason=str(exc)[:200])
        return recovered

    async def _recover(self, job: Job, now: float) -> bool:
        if not await self._post_stored(job):
            age = now - job.created_at
            if age < self.orphan_after_s:
                log.info("bot_call.post_not_found_yet", request_id=job.request_id,
                         age_s=round(age))
                return False
            try:
                await self.storage.jobs.advance(job, "failed", error="its post was not stored")
            except (Conflict, NotFound):
                return False
            log.info("bot_call.orphan_dropped", request_id=job.request_id, age_s=round(age))
            return False
        try:  # the claim: of several instances finding it, one goes on
            job = await self.storage.jobs.advance(job, "called")
        except (Conflict, NotFound):
            return False
        shown = await asking.dispatch(self.storage, job)
        if shown is not None:
            self.broadcast.thinking(shown)
        log.info("bot_call.recovered", request_id=job.request_id, persona=job.persona,
                 thread_id=job.thread_id, age_s=round(now - job.created_at))
        return True

    async def _post_stored(self, job: Job) -> bool:
        """Whether what the call answers is stored (a comment, or a thread's post)."""
        try:
            if job.parent_id is not None and job.thread_id is not None:
                await self.storage.comments.get(job.thread_id, job.parent_id)
            elif job.thread_id is not None:
                await self.storage.threads.get(job.thread_id)
        except NotFound:
            return False
        return True
