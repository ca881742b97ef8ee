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
is dropped once it is older than :data:`ORPHAN_AFTER_S`; one whose thread a moderator
locked (or whose post or comment was removed or is held) since it was recorded is
dropped at once: it is not made.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import structlog

from playhouse import asking
from playhouse.errors import Conflict, NotFound, PlayhouseError

if TYPE_CHECKING:
    from playhouse.events import Broadcaster
    from playhouse.storage import Storage
    from playhouse.storage.models import Comment, Job

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
        answerable = await self._answerable(job)
        if answerable == "missing":
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
        if answerable:  # a moderator closed it since the call was recorded
            with contextlib.suppress(Conflict, NotFound):
                await self.storage.jobs.advance(job, "failed", error=answerable)
            log.info("bot_call.closed_dropped", request_id=job.request_id,
                     thread_id=job.thread_id, reason=answerable)
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

    async def _answerable(self, job: Job) -> str:
        """Empty when what the call answers is stored and still takes answers; else why
        not: ``missing`` (not stored), or the moderation that closed it since (a locked,
        removed or held thread, a removed or held comment)."""
        if job.thread_id is None:
            return ""

        async def comment() -> Comment | None:
            if job.parent_id is None or job.thread_id is None:
                return None
            return await self.storage.comments.get(job.thread_id, job.parent_id)

        try:
            thread, answered = await asyncio.gather(self.storage.threads.get(job.thread_id),
                                                    comment())
        except NotFound:
            return "missing"
        if thread.locked:
            return "its thread was locked"
        if thread.gone or thread.held or (answered is not None
                                          and (answered.gone or answered.held)):
            return "what it answers was removed or is held for a moderator"
        return ""
