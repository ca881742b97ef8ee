"""Asking bots: whom a post calls, the requests, the jobs that record them, sending them.

A bot is asked in three steps, each idempotent:

1. :func:`record` inserts the job rows in state ``called``, with the request as payload.
   A request's id derives from what it answers and who answers (:func:`request_id_for`),
   so the insert is the claim: a person's call, a retried call and the scheduler asking
   the same persona about the same comment find one row, and only its recorder goes on.
   A person's post records its calls in the same step as the post itself, before it is acknowledged.
2. :func:`dispatch` writes the "thinking" placeholder (a reply's answer takes its row key)
   and puts the request on its queue, then moves the job to ``pending``. If the process
   dies in between, the call recovery (:mod:`playhouse.web.calls`) finds the job still
   ``called`` and dispatches it; a request sent twice is generated twice and applied once.
3. The answer is applied by :mod:`playhouse.applying`.

:func:`submit` is steps 1 and 2 at once (the scheduler's way).

Every job carries its :class:`~playhouse.explain.CallInfo` ("why this reply?": a mention,
a reply to the bot, the room's default bot, or the scheduler's score), written with the
row. A person's call the bot declines (asleep, a cap reached: :mod:`playhouse.availability`)
is recorded and dispatched like any other, but its dispatch writes a ``declined`` comment
saying why instead of a placeholder, and ends the job; nothing is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
import structlog

from playhouse import ids
from playhouse.availability import notice
from playhouse.constants import COMMENT_MAX_CHARS, QUEUE_IMAGE, TITLE_MAX_CHARS
from playhouse.errors import Conflict, NotFound
from playhouse.explain import CallInfo, CallReason, decode_call, to_json
from playhouse.messages import (
    ChainComment,
    GenerationRequest,
    PostContext,
    fitted_request,
)
from playhouse.storage.models import Comment, Job, Thread
from playhouse.views import tombstone, visible_comment

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


def request_id_for(answered: str, persona: str, attempt: int = 0) -> str:
    """The request id of ``persona`` answering ``answered`` (a comment, or a thread's
    post): derived, so whoever asks, and however often, it is the same request.
    ``attempt`` n > 0 is the n-th re-roll of that answer: a request of its own, derived
    the same way (two clicks asking for the same re-roll are one request)."""
    salt = f"call:{persona}" if attempt == 0 else f"call:{persona}:again:{attempt}"
    return ids.derived_id(answered, salt)


def in_prompt(comment: Comment) -> bool:
    """The prompt-side rule: a bot reads a comment only as it stands now, and never a
    gone one (deleted or removed: skipped, as if its replies answered what it answered),
    one the word filter holds, a placeholder or a failure note."""
    return comment.status == "ok" and not comment.gone and not comment.held


def _post_context(thread: Thread) -> PostContext:
    """The post header a prompt shows: a gone post is its tombstone, nothing of its text."""
    if thread.gone:
        return PostContext(author="", title=tombstone(thread.gone), body="", url=None)
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
    """``comment`` as a reply prompt shows it: as anyone sees it
    (:func:`~playhouse.views.visible_comment`: a deleted or removed one is its tombstone,
    its words never reach a prompt). An image persona's picture is shown as a picture
    made for its requester (the author of what it answered), never as the painter's own
    words: its caption quotes a person."""
    comment = visible_comment(comment)
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
        request_id=request_id or request_id_for(parent_id or thread.thread_id, persona.name),
        kind="reply",
        persona=persona.name,
        room=thread.room,
        queue=queue,
        thread_id=thread.thread_id,
        parent_id=parent_id,
        post=_post_context(thread),
        chain=tuple(chain_comment(c, chain, thread) for c in chain if in_prompt(c)),
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
        request_id=request_id or request_id_for(parent_id or thread.thread_id, persona.name),
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


@dataclass(frozen=True)
class Call:
    """A persona a post calls, and why (what its job's explanation starts with)."""

    persona: Persona
    info: CallInfo


def calls_for(
    cast: Cast,
    *,
    default_bot: str | None,
    text: str,
    parent: Comment | None,
    is_top_level_post: bool,
    author: str,
    answered: str = "",
) -> list[Call]:
    """Which personas a person's post or comment calls, and why, most expected first.

    Replying to a bot's comment calls that bot; a new thread in a room with a default bot
    calls the default bot; a mention ``u/Name`` calls that persona (mentions in the order
    they are written). A persona never answers itself. Any persona may be called by name:
    the room's bots matter only to the scheduler. The caller caps how many are asked
    (``web.bots_per_post``): the first ones of this list. ``answered`` is the id of the
    post or comment the calls answer.
    """
    from playhouse.personas import mentions

    names: list[tuple[str, CallReason]] = []
    if parent is not None and parent.is_bot and parent.persona:
        names.append((parent.persona, "reply"))
    if is_top_level_post and default_bot:
        names.append((default_bot, "default_bot"))
    folded = text.casefold()
    names += [(name, "mention") for name in sorted(
        mentions(text, cast.personas),
        key=lambda name: (folded.find("u/" + name.casefold()), name))]
    seen: set[str] = set()
    called: list[Call] = []
    for name, reason in names:
        persona = cast.personas.get(name)
        if persona is None or name in seen or name == author:
            continue
        seen.add(name)
        called.append(Call(persona, CallInfo(reason=reason, by=author, answered=answered,
                                             answered_author=author)))
    return called


def new_job(request: GenerationRequest, *, depth: int = 0, now: float | None = None,
            call: CallInfo | None = None) -> Job:
    """The ``called`` row of ``request``: everything needed to send it again, and why it
    was asked (``call``). A reply's answer gets its comment id here, fresh (time-ordered:
    a late answer to an old comment still sorts as what it is, the newest comment)."""
    at = time.time() if now is None else now
    if request.kind != "post" and request.comment_id is None:
        request = msgspec.structs.replace(request, comment_id=ids.new_id(at))
    fitted, payload = fitted_request(request)
    explained = ""
    if call is not None:
        sent = len(fitted.chain) if request.kind == "reply" else 0
        above = depth if request.kind == "reply" else 0
        explained = to_json(msgspec.structs.replace(
            call, at=call.at or at, ancestors=above, not_sent=max(0, above - sent)))
    return Job(
        request_id=request.request_id, kind=request.kind, persona=request.persona,
        room=request.room, thread_id=request.thread_id, parent_id=request.parent_id,
        queue=request.queue, state="called", attempts=0, created_at=at, updated_at=at,
        payload=payload.decode(), depth=depth, call=explained,
    )


def answer_id(request_id: str, comment_id: str | None) -> str:
    """The row a reply's answer fills: the id its request carries, or (requests from before
    it was carried) one derived from the request id."""
    return comment_id or placeholder_id(request_id)


def placeholder_for(job: Job) -> Comment | None:
    """The "thinking" comment a reply or image job shows until its answer (None: a post);
    for a declined call, the ``declined`` comment saying why."""
    if job.kind == "post" or not job.thread_id:
        return None
    request = decode_job_request(job)
    placeholder = Comment(
        comment_id=answer_id(job.request_id, request.comment_id), thread_id=job.thread_id,
        room=job.room,
        parent_id=job.parent_id, author=job.persona, is_bot=True, persona=job.persona,
        text="", image_blob=None, job_id=job.request_id, created_at=job.created_at,
        depth=job.depth, status="placeholder",
    )
    call = decode_call(job.call)
    if call is None or call.declined is None:
        return placeholder
    said = notice(job.persona, call.declined, job.created_at)
    return msgspec.structs.replace(placeholder, status="declined", text=said.text,
                                   notice=msgspec.json.encode(said).decode())


async def record(storage: Storage, jobs: Sequence[Job]) -> list[Job]:
    """Insert ``jobs`` (one transaction when they share a partition, as the bots of one
    post do). Returns the jobs this call created, to dispatch: the insert is the claim, so
    a job that exists already is someone else's to dispatch (its recorder's, or the call
    recovery's once it is left ``called`` too long) and is left out."""
    if not jobs:
        return []
    try:
        return await storage.jobs.create_many(list(jobs))
    except Conflict:
        pass  # some exist: one by one, to learn which
    created: list[Job] = []
    for job in jobs:
        try:
            created.append(await storage.jobs.create(job))
        except Conflict:
            log.info("job.exists", request_id=job.request_id)
    return created


async def dispatch(storage: Storage, job: Job) -> Comment | None:
    """Queue a ``called`` job: its placeholder and its message (together), then move it
    to ``pending``. Returns the placeholder to show (None when there is none to show: a
    post, or an answer that was quicker than its placeholder)."""
    shown = placeholder_for(job)
    if shown is not None and shown.status == "declined":
        return await _decline(storage, job, shown)

    async def placeholder() -> Comment | None:
        if shown is None:
            return None
        try:
            return await storage.comments.add(shown)
        except Conflict:  # a retry, or the answer came first
            current = await storage.comments.get(shown.thread_id, shown.comment_id)
            return current if current.status == "placeholder" else None

    written, _ = await asyncio.gather(
        placeholder(), storage.queues.send(job.queue, job.payload.encode())
    )
    log.info("job.submitted", request_id=job.request_id, persona=job.persona, kind=job.kind,
             queue=job.queue)
    with contextlib.suppress(Conflict, NotFound):  # moved on: recovered, or answered
        await storage.jobs.advance(job, "pending")
    return written


async def _decline(storage: Storage, job: Job, shown: Comment) -> Comment | None:
    """A declined call: its comment says why, and the job ends (nothing is queued)."""
    try:
        written: Comment | None = await storage.comments.add(shown)
    except Conflict:  # a retry, or the recovery came first
        written = None
    with contextlib.suppress(Conflict, NotFound):
        await storage.jobs.advance(job, "failed", error=shown.text,
                                   result_id=shown.comment_id)
    log.info("job.declined", request_id=job.request_id, persona=job.persona,
             reason=shown.text[:120])
    return written


async def submit(storage: Storage, request: GenerationRequest, *,
                 depth: int = 0, call: CallInfo | None = None) -> Comment | None:
    """Record and dispatch one request now (what the scheduler does); None when it was
    already asked (the claim is someone else's) or has no placeholder."""
    todo = await record(storage, [new_job(request, depth=depth, call=call)])
    if not todo:
        return None
    return await dispatch(storage, todo[0])


def decode_job_request(job: Job) -> GenerationRequest:
    return msgspec.json.decode(job.payload.encode(), type=GenerationRequest)
