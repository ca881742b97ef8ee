"""Asking bots for work and applying what they answer: the two ends of a job.

``submit`` writes the job row (and, for a reply, a placeholder comment people see as
"thinking") before the request goes on its queue, so nothing is asked that storage
does not know about. ``apply_result`` is idempotent on the request id: the bot's
comment takes the placeholder's row key (derived from the request id) and a thread
made by a "post" request takes a thread id derived the same way, so a redelivered
result changes nothing.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import msgspec
import structlog

from playhouse import ids
from playhouse.constants import COMMENT_MAX_CHARS, QUEUE_IMAGE, TITLE_MAX_CHARS
from playhouse.errors import Conflict, NotFound
from playhouse.messages import (
    ChainComment,
    GenerationRequest,
    GenerationResult,
    PostContext,
    fit_request,
)
from playhouse.storage.models import Comment, Job, JobState, Thread

if TYPE_CHECKING:
    from playhouse.personas import Cast, Persona
    from playhouse.storage import Storage

log = structlog.get_logger()

PLACEHOLDER_SALT = "c"
THREAD_SALT = "t"


def placeholder_id(request_id: str) -> str:
    """Row key of the comment a reply request will fill."""
    return ids.derived_id(request_id, PLACEHOLDER_SALT)


def thread_id_for(request_id: str) -> str:
    """Id of the thread a post request will create."""
    return ids.derived_id(request_id, THREAD_SALT)


def _post_context(thread: Thread) -> PostContext:
    return PostContext(author=thread.author, title=thread.title, body=thread.body, url=thread.url)


def image_caption(prompt: str, by: str | None, *, own_thread: bool = False,
                  limit: int = COMMENT_MAX_CHARS) -> str:
    """What an image persona's answer says: the prompt it painted, quoted as the words of
    ``by`` (who asked, or whose post it painted), so a bot never appears to say what a
    person wrote. ``own_thread``: the title of a picture thread of the persona's own,
    after someone's post. ``by`` None: the prompt is the persona's own (the room's seeded
    description) and is shown as it is. The prompt is shortened to fit ``limit``."""
    if by is None:
        return prompt[:limit]
    head = f"after u/{by}: “" if own_thread else f"painted for u/{by}: “"
    room = limit - len(head) - 1
    quoted = prompt if len(prompt) <= room else prompt[: max(0, room - 1)] + "…"
    return f"{head}{quoted}”"


def image_prompt_of(text: str, persona: Persona) -> str:
    """A person's words as a picture's prompt: without the mentions of the painter."""
    mention = re.compile(rf"(?<![A-Za-z0-9_])/?u/{re.escape(persona.name)}(?![A-Za-z0-9_])",
                         re.IGNORECASE)
    return " ".join(mention.sub(" ", text).split())


def chain_comment(comment: Comment, chain: Sequence[Comment], thread: Thread) -> ChainComment:
    """``comment`` as a reply prompt shows it. An image persona's picture is shown as a
    picture made for its requester (the author of what it answered), never as the
    painter's own words: its caption quotes a person."""
    if not (comment.is_bot and comment.image_blob):
        return ChainComment(author=comment.author, text=comment.text)
    if comment.parent_id is None:
        by: str | None = thread.author
    else:
        by = next((c.author for c in chain if c.comment_id == comment.parent_id), None)
    text = f"[an image, painted for u/{by}]" if by else "[an image]"
    return ChainComment(author=comment.author, text=text)


def reply_request(
    *,
    persona: Persona,
    thread: Thread,
    chain: Sequence[Comment],
    parent_id: str | None,
    queue: str,
    request_id: str | None = None,
) -> GenerationRequest:
    """Ask ``persona`` to answer the last comment of ``chain`` (or the post when empty)."""
    return GenerationRequest(
        request_id=request_id or ids.new_id(),
        kind="reply",
        persona=persona.name,
        room=thread.room,
        queue=queue,
        thread_id=thread.thread_id,
        parent_id=parent_id,
        post=_post_context(thread),
        chain=tuple(chain_comment(c, chain, thread) for c in chain if c.status == "ok"),
        created_at=time.time(),
    )


def image_request(
    *,
    persona: Persona,
    thread: Thread,
    parent_id: str | None,
    prompt: str,
    requester: str | None,
    queue: str = QUEUE_IMAGE,
    request_id: str | None = None,
) -> GenerationRequest:
    """Ask ``persona`` to paint ``prompt``, the words of ``requester`` (who asked, or whose
    post it answers): its answer shows them as the requester's (:func:`image_caption`)."""
    return GenerationRequest(
        request_id=request_id or ids.new_id(),
        kind="image",
        persona=persona.name,
        room=thread.room,
        queue=queue,
        thread_id=thread.thread_id,
        parent_id=parent_id,
        post=_post_context(thread),
        image_prompt=prompt,
        caption=image_caption(prompt, requester),
        created_at=time.time(),
    )


def post_request(
    *, persona: Persona, room: str, queue: str, request_id: str | None = None,
    image_prompt: str = "", prompt_by: str | None = None,
) -> GenerationRequest:
    """Ask ``persona`` for a new thread in ``room``: a text persona writes its title and
    body in one go; an image persona paints ``image_prompt`` (the words of ``prompt_by``,
    None when they are the persona's own) and its title says so."""
    return GenerationRequest(
        request_id=request_id or ids.new_id(),
        kind="post",
        persona=persona.name,
        room=room,
        queue=queue,
        image_prompt=image_prompt,
        caption=image_caption(image_prompt, prompt_by, own_thread=True,
                              limit=TITLE_MAX_CHARS) if image_prompt else "",
        created_at=time.time(),
    )


def bots_to_call(
    cast: Cast,
    *,
    room_bots: Sequence[str],
    default_bot: str | None,
    text: str,
    parent: Comment | None,
    is_top_level_post: bool,
    author: str,
) -> list[Persona]:
    """Which personas a person's post or comment calls, most expected first.

    Replying to a bot's comment calls that bot; a new thread in a room with a default bot
    calls the default bot; a mention ``u/Name`` calls that persona (mentions in the order
    they are written). A persona never answers itself. The caller caps how many are
    asked (``web.bots_per_post``): the first ones of this list.
    """
    from playhouse.personas import mentions

    names: list[str] = []
    if parent is not None and parent.is_bot and parent.persona:
        names.append(parent.persona)
    if is_top_level_post and default_bot:
        names.append(default_bot)
    folded = text.casefold()
    names += sorted(mentions(text, cast.personas),
                    key=lambda name: (folded.find("u/" + name.casefold()), name))
    seen: set[str] = set()
    called: list[Persona] = []
    for name in names:
        persona = cast.personas.get(name)
        if persona is None or name in seen or name == author:
            continue
        seen.add(name)
        called.append(persona)
    del room_bots  # any persona may be called by name; the room's bots matter to the scheduler
    return called


async def submit(
    storage: Storage, request: GenerationRequest, *, placeholder: bool = True
) -> Comment | None:
    """Record the job (and a placeholder), then queue the request. Idempotent."""
    payload = fit_request(request)
    now = time.time()
    job = Job(
        request_id=request.request_id,
        kind=request.kind,
        persona=request.persona,
        room=request.room,
        thread_id=request.thread_id,
        parent_id=request.parent_id,
        queue=request.queue,
        state="pending",
        attempts=0,
        created_at=now,
        updated_at=now,
        result_id=None,
        error="",
        payload=payload.decode(),
        etag=None,
    )
    try:
        await storage.jobs.create(job)
    except Conflict:
        # A retry of the same request: finished means nothing to do; still pending means
        # the first try may have died before queueing, so queue it again (a duplicate
        # message costs one more generation; its result applies only once).
        if (await storage.jobs.get(request.request_id)).state != "pending":
            log.info("job.exists", request_id=request.request_id)
            return None
        log.info("job.resubmitted", request_id=request.request_id)
    shown: Comment | None = None
    if placeholder and request.kind != "post" and request.thread_id:
        parent_depth = -1
        if request.parent_id:
            try:
                parent = await storage.comments.get(request.thread_id, request.parent_id)
                parent_depth = parent.depth
            except NotFound:
                parent_depth = 0
        shown = Comment(
            comment_id=placeholder_id(request.request_id),
            thread_id=request.thread_id,
            room=request.room,
            parent_id=request.parent_id,
            author=request.persona,
            is_bot=True,
            persona=request.persona,
            text="",
            image_blob=None,
            job_id=request.request_id,
            created_at=now,
            depth=parent_depth + 1,
            status="placeholder",
        )
        try:
            await storage.comments.add(shown)
        except Conflict:
            shown = await storage.comments.get(request.thread_id, shown.comment_id)
    await storage.queues.send(request.queue, payload)
    log.info("job.submitted", request_id=request.request_id, persona=request.persona,
             kind=request.kind, queue=request.queue)
    return shown


@dataclass(frozen=True)
class Applied:
    """What applying a result changed: broadcast ``comment`` or ``thread`` unless duplicate."""

    kind: Literal["comment", "thread", "duplicate"]
    thread: Thread | None = None
    comment: Comment | None = None
    failed: bool = False
    dropped: str = ""
    """Why the result was dropped (its room or thread is gone): the job ends failed."""


def failure_text(persona: str, reason: str) -> str:
    return f"{persona} could not answer: {reason}"


async def apply_result(storage: Storage, result: GenerationResult) -> Applied:
    """Apply a worker's result exactly once, whatever the number of deliveries."""
    structlog.contextvars.bind_contextvars(request_id=result.request_id)
    try:
        if result.kind == "post":
            applied = await _apply_post(storage, result)
        else:
            applied = await _apply_reply(storage, result)
        await _finish_job(storage, result, applied)
        return applied
    finally:
        structlog.contextvars.unbind_contextvars("request_id")


async def _apply_post(storage: Storage, result: GenerationResult) -> Applied:
    if not result.ok:
        log.warning("post.failed", persona=result.persona, room=result.room, reason=result.error)
        return Applied("duplicate", failed=True) if await _job_finished(storage, result) else (
            Applied("thread", failed=True)
        )
    thread_id = thread_id_for(result.request_id)
    try:
        existing = await storage.threads.get(thread_id)
        return Applied("duplicate", thread=existing)
    except NotFound:
        pass
    try:
        await storage.rooms.get(result.room)
    except NotFound:
        log.warning("result.dropped", reason="room gone", room=result.room,
                    persona=result.persona)
        return Applied("duplicate", failed=True, dropped=f"room {result.room!r} is gone")
    now = time.time()
    is_link = result.text.startswith(("http://", "https://")) and " " not in result.text
    thread = Thread(
        thread_id=thread_id,
        room=result.room,
        title=result.title,
        body="" if is_link else result.text,
        url=result.text if is_link else None,
        author=result.persona,
        is_bot=True,
        persona=result.persona,
        created_at=now,
        last_activity=now,
        comment_count=0,
        image_blob=result.image_blob,
        job_id=result.request_id,
    )
    try:
        await storage.threads.create(thread)
    except Conflict:
        return Applied("duplicate", thread=await storage.threads.get(thread_id))
    await _touch_room(storage, result.room, threads=1, at=now)
    log.info("post.created", persona=result.persona, room=result.room, thread_id=thread_id)
    return Applied("thread", thread=thread)


async def _apply_reply(storage: Storage, result: GenerationResult) -> Applied:
    if not result.thread_id:
        log.warning("result.orphan", reason="reply without thread")
        return Applied("duplicate", failed=not result.ok)
    comment_id = placeholder_id(result.request_id)
    try:
        thread = await storage.threads.get(result.thread_id)
    except NotFound:
        log.warning("result.dropped", reason="thread gone", thread_id=result.thread_id,
                    room=result.room, persona=result.persona)
        return Applied("duplicate", failed=True,
                       dropped=f"thread {result.thread_id!r} is gone")
    current: Comment | None
    try:
        current = await storage.comments.get(result.thread_id, comment_id)
    except NotFound:
        current = None
    if current is not None and current.status != "placeholder":
        return Applied("duplicate", thread=thread, comment=current)
    depth = current.depth if current is not None else 0
    now = time.time()
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
        created_at=current.created_at if current is not None else now,
        depth=depth,
        status="ok" if result.ok else "failed",
    )
    await storage.comments.upsert(comment)
    if result.ok:
        try:
            await storage.threads.touch(thread.thread_id, comments=1, at=now)
        except NotFound:  # deleted since it was read: the reply is stored, nothing to count
            log.warning("thread.gone", thread_id=thread.thread_id, room=result.room)
        else:
            await _touch_room(storage, result.room, comments=1, at=now)
    log.info("reply.posted" if result.ok else "reply.failed", persona=result.persona,
             thread_id=result.thread_id, comment_id=comment_id)
    return Applied("comment", thread=thread, comment=comment, failed=not result.ok)


async def _touch_room(storage: Storage, room: str, *, threads: int = 0, comments: int = 0,
                      at: float) -> None:
    """Count activity in ``room``; a room deleted meanwhile is logged, not an error (the
    result is applied: raising would only make the consumer apply it again)."""
    try:
        await storage.rooms.touch(room, threads=threads, comments=comments, at=at)
    except NotFound:
        log.warning("room.gone", room=room)


async def _job_finished(storage: Storage, result: GenerationResult) -> bool:
    try:
        job = await storage.jobs.get(result.request_id)
    except NotFound:
        return False
    return job.state != "pending"


async def _finish_job(storage: Storage, result: GenerationResult, applied: Applied) -> None:
    state: JobState = "done" if result.ok and not applied.dropped else "failed"
    error = applied.dropped or result.error
    result_id = None
    if applied.comment is not None:
        result_id = applied.comment.comment_id
    elif applied.thread is not None:
        result_id = applied.thread.thread_id
    # Conflict: already finished (a redelivered result); NotFound: never recorded.
    with contextlib.suppress(Conflict, NotFound):
        await storage.jobs.transition(
            result.request_id, "pending", state, result_id=result_id, error=error,
            attempts=result.attempts,
        )


def encode_job_request(job: Job) -> bytes:
    """The queue payload of a job, for re-queueing."""
    return job.payload.encode()


def decode_job_request(job: Job) -> GenerationRequest:
    return msgspec.json.decode(job.payload.encode(), type=GenerationRequest)
