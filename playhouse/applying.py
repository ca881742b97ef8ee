"""Applying what bots answer: exactly once, whatever the number of deliveries.

A reply's answer takes its placeholder's row key (carried by the request, chosen when it
was asked) and replaces the placeholder only if it is still the placeholder that was read
(its ETag), so of two results for one request (a redelivery, a late success racing the
housekeeper's failure) one is shown and the other is a duplicate. A post's thread takes
an id derived from the request id the same way. Then the job row records the end, in one
write. The room's and thread's counters are the caller's to move (the web app coalesces
them): :class:`Applied` says what to count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import structlog
from msgspec.structs import replace as replace_struct

from playhouse.asking import answer_id, decode_job_request, thread_id_for
from playhouse.errors import Conflict, InvalidInput, NotFound
from playhouse.explain import TRACE_INLINE_MAX, shortened, to_json
from playhouse.messages import GenerationResult
from playhouse.storage.models import Alternative, Comment, JobState, Thread

if TYPE_CHECKING:
    from playhouse.storage import Storage

log = structlog.get_logger()


@dataclass(frozen=True)
class Applied:
    """What applying a result changed: show ``comment`` or ``thread`` unless duplicate."""

    kind: Literal["comment", "thread", "duplicate"]
    thread: Thread | None = None
    """The new thread (a post's answer)."""
    comment: Comment | None = None
    """The answer that replaced its placeholder (or the one already there, duplicate)."""
    failed: bool = False
    dropped: str = ""
    """Why the result was dropped (its room or thread is gone): the job ends failed."""
    at: float = 0.0
    """When it was applied (the activity it counts happened then)."""
    again: bool = False
    """Another answer to a comment that had one (a re-roll): it replaces what was shown."""

    @property
    def counts(self) -> bool:
        """Whether it adds a visible comment or thread to its room's counters."""
        return self.kind != "duplicate" and not self.failed and not self.again


def failure_text(persona: str, reason: str) -> str:
    return f"{persona} could not answer: {reason}"


async def apply_result(storage: Storage, result: GenerationResult) -> Applied:
    """Apply a worker's result exactly once, whatever the number of deliveries, and
    record its job's end."""
    applied = await apply_answer(storage, result)
    await finish_job(storage, result, applied)
    return applied


async def apply_answer(storage: Storage, result: GenerationResult) -> Applied:
    """The answer's own writes (what is shown); :func:`finish_job` records the end after
    (the results consumer shows the answer in between)."""
    structlog.contextvars.bind_contextvars(request_id=result.request_id)
    try:
        if result.kind == "post":
            applied = await _apply_post(storage, result)
        else:
            applied = await _apply_reply(storage, result)
        return replace(applied, at=time.time())
    finally:
        structlog.contextvars.unbind_contextvars("request_id")


async def _apply_post(storage: Storage, result: GenerationResult) -> Applied:
    thread_id = thread_id_for(result.request_id)
    try:  # made already (a redelivery; or a late success before this failure)
        return Applied("duplicate", thread=await storage.threads.get(thread_id))
    except NotFound:
        pass
    if not result.ok:
        log.warning("post.failed", persona=result.persona, room=result.room, reason=result.error)
        return Applied("thread", failed=True)
    try:
        await storage.rooms.get(result.room)
    except NotFound:
        log.warning("result.dropped", reason="room gone", room=result.room,
                    persona=result.persona)
        return Applied("duplicate", failed=True, dropped=f"room {result.room!r} is gone")
    now = time.time()
    is_link = result.text.startswith(("http://", "https://")) and " " not in result.text
    thread = Thread(
        thread_id=thread_id, room=result.room, title=result.title,
        body="" if is_link else result.text, url=result.text if is_link else None,
        author=result.persona, is_bot=True, persona=result.persona, created_at=now,
        last_activity=now, comment_count=0, image_blob=result.image_blob,
        job_id=result.request_id,
    )
    try:
        thread = await storage.threads.create(thread)
    except Conflict:
        return Applied("duplicate", thread=await storage.threads.get(thread_id))
    log.info("post.created", persona=result.persona, room=result.room, thread_id=thread_id)
    return Applied("thread", thread=thread)


async def _apply_reply(storage: Storage, result: GenerationResult) -> Applied:
    if not result.thread_id:
        log.warning("result.orphan", reason="reply without thread")
        return Applied("duplicate", failed=not result.ok)
    comment_id = await _answer_row(storage, result)
    current: Comment | None
    try:
        current = await storage.comments.get(result.thread_id, comment_id)
    except NotFound:
        current = None
    if current is not None and current.status != "placeholder":
        return Applied("duplicate", comment=current)
    if current is not None and current.job_id and current.job_id != result.request_id:
        # The placeholder awaits another request (a re-roll asked after this one was
        # answered): this is a late copy of an earlier answer.
        return Applied("duplicate", comment=current)
    if current is None:  # no placeholder (yet): make sure the thread still takes answers
        try:
            thread = await storage.threads.get(result.thread_id)
        except NotFound:
            log.warning("result.dropped", reason="thread gone", thread_id=result.thread_id,
                        room=result.room, persona=result.persona)
            return Applied("duplicate", failed=True,
                           dropped=f"thread {result.thread_id!r} is gone")
        if thread.locked or thread.gone == "removed":
            log.warning("result.dropped", reason="thread closed", thread_id=result.thread_id,
                        room=result.room, persona=result.persona)
            return Applied("duplicate", failed=True,
                           dropped=f"thread {result.thread_id!r} is locked or removed")
        comment = Comment(
            comment_id=comment_id,
            thread_id=result.thread_id,
            room=result.room,
            parent_id=result.parent_id,
            author=result.persona,
            is_bot=True,
            persona=result.persona,
            text=result.text if result.ok else failure_text(result.persona, result.error),
            image_blob=result.image_blob if result.ok else None,
            job_id=result.request_id,
            created_at=time.time(),
            status="ok" if result.ok else "failed",
        )
    else:
        comment = _answered(current, result)
    # Another answer replaces one; the first answer of a call that was declined or
    # failed is a new one (it counts, and its asker is told).
    again = current is not None and current.rerolls > 0 and bool(current.alternatives)
    try:
        if current is None:
            comment = await storage.comments.add(comment)
        else:
            comment = await storage.comments.replace(comment)
    except Conflict:  # another delivery of this request (or its failure) came first
        return Applied("duplicate", comment=await storage.comments.get(result.thread_id,
                                                                      comment_id))
    log.info("reply.posted" if result.ok else "reply.failed", persona=result.persona,
             thread_id=result.thread_id, comment_id=comment_id, again=again)
    return Applied("comment", comment=comment, failed=not result.ok, again=again)


def _answered(current: Comment, result: GenerationResult) -> Comment:
    """The placeholder ``current`` filled with ``result``; everything else it holds (its
    place in the tree, an edit mark, earlier answers) stays. A re-roll's answer is added
    to the answers and shown; a re-roll that failed shows the answer shown before."""
    if current.rerolls and not result.ok and current.alternatives:
        back = current.alternatives[min(current.shown, len(current.alternatives) - 1)]
        log.warning("reroll.failed", persona=result.persona, comment_id=current.comment_id,
                    reason=result.error)
        return replace_struct(current, text=back.text, image_blob=back.image_blob,
                              job_id=back.job_id, status="ok")
    alternatives = current.alternatives
    if current.rerolls and result.ok:
        alternatives = (*alternatives, Alternative(text=result.text, image_blob=result.image_blob,
                                    job_id=result.request_id, created_at=time.time()))
    return replace_struct(
        current,
        text=result.text if result.ok else failure_text(result.persona, result.error),
        image_blob=result.image_blob if result.ok else None,
        job_id=result.request_id,
        status="ok" if result.ok else "failed",
        alternatives=alternatives,
        shown=max(0, len(alternatives) - 1),
    )


async def _answer_row(storage: Storage, result: GenerationResult) -> str:
    """The row ``result`` fills: the id it carries, else (a worker from before results
    carried it) the one its job recorded."""
    if result.comment_id is not None:
        return result.comment_id
    try:
        request = decode_job_request(await storage.jobs.get(result.request_id))
    except (NotFound, ValueError, InvalidInput):
        return answer_id(result.request_id, None)
    return answer_id(result.request_id, request.comment_id)


async def finish_job(storage: Storage, result: GenerationResult, applied: Applied) -> None:
    """Record the end of the job ``applied`` came from. A duplicate's first application
    recorded it, unless that one failed to (then its row is still open: it is closed now,
    with what is shown)."""
    if applied.kind == "duplicate" and not applied.dropped:
        try:
            job = await storage.jobs.get(result.request_id)
        except NotFound:
            return
        if job.state in ("done", "failed"):
            return
        if applied.comment is not None and applied.comment.status != "placeholder":
            result = replace_struct(result, ok=applied.comment.status == "ok",
                                    error="" if applied.comment.status == "ok" else result.error)
    state: JobState = "done" if result.ok and not applied.dropped else "failed"
    result_id = None
    if applied.comment is not None:
        result_id = applied.comment.comment_id
    elif applied.thread is not None:
        result_id = applied.thread.thread_id
    trace = ""
    if result.trace is not None and result.trace_blob is None:
        trace = to_json(shortened(result.trace, TRACE_INLINE_MAX))
    try:
        await storage.jobs.finish(result.request_id, state, result_id=result_id,
                                  error=applied.dropped or result.error,
                                  attempts=result.attempts, trace=trace,
                                  trace_blob=result.trace_blob,
                                  finished_at=result.finished_at, applied_at=applied.at)
    except NotFound:
        log.info("job.unrecorded", request_id=result.request_id)
