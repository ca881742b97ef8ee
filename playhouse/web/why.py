""""Why this reply?": a bot answer's explanation, as a page, a panel and JSON under /api.

The explanation is read from the answer's job row (the asker's call, the worker's trace,
the timings) and, for a trace too large for the row, its blob; it is shown under the same
access rule as the thread it belongs to (:meth:`WebContext.readable_thread`), checked
before anything else is read, so a private room's answers explain nothing to others —
through the page, the panel, the API or the blob (which has no address of its own). An
answer whose job kept no explanation (older comments) says so.

Routes: the page ``/r/<room>/t/<thread>/why/<comment>`` (``?part=1``: the panel alone, what
the thread page's disclosure loads) and ``/r/<room>/t/<thread>/why`` for a bot's own thread;
``/api/threads/<thread>/comments/<comment>/why`` and ``/api/threads/<thread>/why``; where
a thread's placeholders stand, ``/api/threads/<thread>/waiting?ids=…``; and a bot's "now",
``/api/personas/<name>/now``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Controller, Request, get
from litestar.params import Parameter
from litestar.response import Template

from playhouse import availability, explain, ids
from playhouse.asking import decode_job_request
from playhouse.constants import CONTAINER_EXPLANATIONS, PATH_MAX
from playhouse.errors import InvalidInput, NotFound, PlayhouseError
from playhouse.explain import Explanation
from playhouse.messages import GenerationRequest
from playhouse.storage.models import Comment, Room, Thread
from playhouse.views import PersonaNow, WaitState
from playhouse.web.context import WebContext, context_of, current_user
from playhouse.web.templating import page

log = structlog.get_logger()

Part = Annotated[bool, Parameter(query="part")]


async def _trace(ctx: WebContext, room: Room, blob: str | None,
                 inline: str) -> explain.Trace | None:
    if blob is None:
        return explain.decode_trace(inline)
    if not blob.startswith(f"{room.name}/"):
        log.warning("trace.elsewhere", blob=blob, room=room.name)  # never another room's
        return None
    try:
        data, _ = await ctx.storage.blobs.get(CONTAINER_EXPLANATIONS, blob)
    except NotFound:
        return None
    return explain.decode_trace(data)


def _missing(thread: Thread, answer_id: str, persona: str, kind: str,
             reason: str = explain.MISSING) -> Explanation:
    return Explanation(request_id="", persona=persona, kind=kind, room=thread.room,
                       thread_id=thread.thread_id, answer_id=answer_id, state="unknown",
                       missing=reason)


async def _explained(ctx: WebContext, thread: Thread, room: Room, job_id: str | None,
                     *, answer_id: str, persona: str, kind: str) -> Explanation:
    """The explanation of the answer ``answer_id`` (made by job ``job_id``)."""
    if not job_id or not ids.is_id(job_id):
        return _missing(thread, answer_id, persona, kind)
    try:
        job = await ctx.storage.jobs.get(job_id)
    except NotFound:
        return _missing(thread, answer_id, persona, kind)
    if job.room.casefold() != room.name.casefold():  # never explain another room's job
        return _missing(thread, answer_id, persona, kind)
    request: GenerationRequest | None
    try:
        request = decode_job_request(job)
    except (msgspec.DecodeError, msgspec.ValidationError, InvalidInput):
        request = None
    trace = await _trace(ctx, room, job.trace_blob, job.trace)
    made = explain.explanation(job, request, trace, answer_id=answer_id)
    if made.call is None and made.trace is None and job.state in ("done", "failed"):
        return msgspec.structs.replace(made, missing=explain.MISSING)
    return made


async def comment_explanation(ctx: WebContext, thread_id: str, comment_id: str,
                              user: str | None) -> tuple[Explanation, Thread, Room, Comment]:
    """The explanation of a bot's comment; NotFound (before anything is read) when the
    thread's room is private to others, as when it is no bot's comment."""
    thread, room = await ctx.readable_thread(thread_id, user)
    if not ids.is_id(comment_id):
        raise NotFound(f"no comment {comment_id!r}")
    comment = await ctx.storage.comments.get(thread.thread_id, comment_id)
    if not comment.is_bot:
        raise NotFound("that comment is a person's: there is no bot's reasoning to show")
    made = await _explained(ctx, thread, room, comment.job_id, answer_id=comment.comment_id,
                            persona=comment.persona or comment.author,
                            kind="image" if comment.image_blob else "reply")
    return made, thread, room, comment


async def post_explanation(ctx: WebContext, thread_id: str,
                           user: str | None) -> tuple[Explanation, Thread, Room]:
    """The explanation of a bot's own thread."""
    thread, room = await ctx.readable_thread(thread_id, user)
    if not thread.is_bot:
        raise NotFound("that thread is a person's: there is no bot's reasoning to show")
    made = await _explained(ctx, thread, room, thread.job_id, answer_id=thread.thread_id,
                            persona=thread.persona or thread.author, kind="post")
    return made, thread, room


def _check_room(room: Room, asked: str) -> None:
    if room.name.casefold() != asked.casefold():
        raise NotFound(f"no such thread in r/{asked}")


@get("/r/{room:str}/t/{thread_id:str}/why/{comment_id:str}", name="why_comment")
async def why_comment_page(request: Request[Any, Any, Any], room: str, thread_id: str,
                           comment_id: str, part: Part = False) -> Template:
    ctx = context_of(request)
    made, thread, found, comment = await comment_explanation(ctx, thread_id, comment_id,
                                                             current_user(request))
    _check_room(found, room)
    return page(request, "_why_part.html" if part else "why.html", x=made, thread=thread,
                room=found, comment=comment, now=await _now_of(ctx, made.persona))


@get("/r/{room:str}/t/{thread_id:str}/why", name="why_post")
async def why_post_page(request: Request[Any, Any, Any], room: str, thread_id: str,
                        part: Part = False) -> Template:
    ctx = context_of(request)
    made, thread, found = await post_explanation(ctx, thread_id, current_user(request))
    _check_room(found, room)
    return page(request, "_why_part.html" if part else "why.html", x=made, thread=thread,
                room=found, comment=None, now=await _now_of(ctx, made.persona))


async def _now_of(ctx: WebContext, persona: str) -> PersonaNow | None:
    try:
        return await bot_now(ctx, persona)
    except NotFound:  # a persona no longer in the cast
        return None


async def bot_now(ctx: WebContext, name: str) -> PersonaNow:
    """A bot's "now", its hourly replies counted over every room's row (one query)."""
    found = await bots_now(ctx, [name])
    if not found:
        raise NotFound(f"no bot u/{name}")
    return found[0]


async def bots_now(ctx: WebContext, names: Sequence[str]) -> list[PersonaNow]:
    """The "now" of the bots ``names`` (those in the cast), their hourly replies counted
    over every room's row: one query for them all."""
    folded = {n.casefold(): p for n, p in ctx.cast.personas.items()}
    personas = [folded[n.strip().casefold()] for n in names if n.strip().casefold() in folded]
    if not personas:
        return []
    at = time.time()
    scale = ctx.settings.scheduler.time_scale
    rooms = await ctx.storage.rooms.all()
    since = at - availability.HOUR_S / scale
    return [availability.persona_now(
        p, at, replies_last_hour=len(availability.recent_answers(rooms, p.name, since)),
        time_scale=scale) for p in personas]


class WhyApi(Controller):
    path = "/api"
    tags = ["api"]

    @get("/threads/{thread_id:str}/comments/{comment_id:str}/why")
    async def comment_why(self, request: Request[Any, Any, Any], thread_id: str,
                          comment_id: str) -> Explanation:
        """Why a bot wrote this comment: who called it, the prompt, the attempts, the
        timings (for the room's readers only)."""
        made, *_ = await comment_explanation(context_of(request), thread_id, comment_id,
                                             current_user(request))
        return made

    @get("/threads/{thread_id:str}/why")
    async def post_why(self, request: Request[Any, Any, Any], thread_id: str) -> Explanation:
        """Why a bot started this thread."""
        made, *_ = await post_explanation(context_of(request), thread_id,
                                          current_user(request))
        return made

    @get("/threads/{thread_id:str}/waiting")
    async def waiting(
        self, request: Request[Any, Any, Any], thread_id: str,
        ids_: Annotated[str, Parameter(query="ids", max_length=2000)] = "",
    ) -> dict[str, WaitState]:
        """Where the placeholders ``ids`` (comma-separated) of a thread stand; they change
        live from then on (``waiting`` events)."""
        ctx = context_of(request)
        thread, _ = await ctx.readable_thread(thread_id, current_user(request))
        wanted = [c for c in dict.fromkeys(ids_.split(",")) if ids.is_id(c)][:PATH_MAX]
        if not wanted or ctx.waiting is None:
            return {}
        comments = await ctx.storage.comments.some(thread.thread_id, wanted)
        try:
            return await ctx.waiting.states_of(comments)
        except PlayhouseError as exc:
            log.warning("waiting.unread", reason=str(exc)[:200])
            return {}

    @get("/personas/{name:str}/now")
    async def now(self, request: Request[Any, Any, Any], name: str) -> PersonaNow:
        """A bot right now: awake or asleep (and until when), its next expected thread,
        the replies its hourly cap leaves."""
        return await bot_now(context_of(request), name)


ROUTES: list[Any] = [why_comment_page, why_post_page, WhyApi]
