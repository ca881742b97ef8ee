""""Why this reply?": a bot answer's explanation, as a page, a panel and JSON under /api.

The explanation is read from the answer's job row (the asker's call, the worker's trace,
the timings) and, for a trace too large for the row, its blob; it is shown under the same
access rule as the thread it belongs to (:meth:`WebContext.readable_thread`), checked
before anything else is read, so a private room's answers explain nothing to others —
through the page, the panel, the API or the blob (which has no address of its own). An
answer whose job kept no explanation (older comments) says so.

An explanation never brings back words that are gone. A deleted bot answer (or bot
thread) has none; and when the post or a comment the prompt quoted was deleted, or edited
after the bot was asked, the prompt, the ancestors and the attempts' outputs are left out
(the call, the verdicts, the parameters and the timings stay), saying why
(:func:`withheld`). A re-rolled answer has an explanation per answer (its own job):
``?answer=N`` explains the N-th, by default the one shown.

Routes: the page ``/r/<room>/t/<thread>/why/<comment>`` (``?part=1``: the panel alone, what
the thread page's disclosure loads) and ``/r/<room>/t/<thread>/why`` for a bot's own thread;
``/api/threads/<thread>/comments/<comment>/why`` and ``/api/threads/<thread>/why``; where
a thread's placeholders stand, ``/api/threads/<thread>/waiting?ids=…``; and a bot's "now",
``/api/personas/<name>/now``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
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
from playhouse.views import PersonaNow, WaitState, tombstone, visible_comment, visible_thread
from playhouse.web.context import WebContext, context_of, current_user
from playhouse.web.templating import page

log = structlog.get_logger()

Part = Annotated[bool, Parameter(query="part")]
AnswerNumber = Annotated[int | None, Parameter(query="answer", ge=1)]

WITHHELD = ("The prompt and the samples are not shown: the post or a comment they quoted "
            "has since been edited or deleted, and what it said then is not shown again.")


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


def _changed_since(at: float, rows: Sequence[Comment | Thread]) -> bool:
    """Whether any of ``rows`` was deleted, or edited after ``at`` (a removal is the
    moderators' to show or not: :func:`_unless_gone`)."""
    return any(r.gone == "deleted" or (r.edited_at or 0.0) > at for r in rows)


async def _quoted(ctx: WebContext, comment: Comment, want: int) -> list[Comment]:
    """The ancestors of ``comment`` a prompt could have quoted: its stored path, and for
    a deep one (a chain longer than the path) the path of the oldest of those."""
    if not comment.path:
        if comment.parent_id is None:
            return []
        return await ctx.storage.comments.chain(comment.thread_id, comment.parent_id)
    found = await ctx.storage.comments.ancestors(comment)
    if want > len(found) and found and found[0].path:
        older = list(found[0].path)[-PATH_MAX:]
        found = [*await ctx.storage.comments.some(comment.thread_id, older), *found]
    return found


def withheld(made: Explanation) -> Explanation:
    """``made`` without the words it quoted: the prompt, the ancestors and the samples'
    outputs (what was decided, and why, stays)."""
    trace = made.trace
    if trace is not None:
        trace = msgspec.structs.replace(
            trace, prompt="", cut_at=0,
            attempts=tuple(msgspec.structs.replace(a, output="") for a in trace.attempts))
    return msgspec.structs.replace(made, trace=trace, ancestors=(), withheld=WITHHELD)


def _answer_job(comment: Comment, answer: int | None) -> str | None:
    """The job that made answer ``answer`` (1-based) of ``comment``; the one shown when
    None."""
    if answer is None:
        return comment.job_id
    if not comment.alternatives and answer == 1:
        return comment.job_id
    if not 1 <= answer <= len(comment.alternatives):
        raise InvalidInput(f"this comment has {max(1, len(comment.alternatives))} "
                           f"answer(s): there is no answer {answer}")
    return comment.alternatives[answer - 1].job_id


async def comment_explanation(ctx: WebContext, thread_id: str, comment_id: str,
                              user: str | None, *, answer: int | None = None,
                              ) -> tuple[Explanation, Thread, Room, Comment]:
    """The explanation of a bot's comment (of its ``answer``-th answer, 1-based, when it
    was asked again); NotFound (before anything is read) when the thread's room is
    private to others, or the thread is held for a moderator, as when it is no bot's
    comment or its author's thread deleted it. What was removed since shows nothing of
    itself to those who do not moderate the room (:func:`_unless_gone`); what was edited
    or deleted since is withheld (:func:`withheld`)."""
    thread, room = await ctx.shown_thread(thread_id, user)
    if not ids.is_id(comment_id):
        raise NotFound(f"no comment {comment_id!r}")
    comment = await ctx.storage.comments.get(thread.thread_id, comment_id)
    if not comment.is_bot:
        raise NotFound("that comment is a person's: there is no bot's reasoning to show")
    if comment.gone == "deleted":
        raise NotFound("that reply is deleted: there is nothing of it to show")
    above = await ctx.storage.comments.ancestors(comment)
    sent = [c for c in above if c.status == "ok" and not c.held]  # as the chain was made
    made = await _unless_gone(
        ctx, room, user, gone=[_mark(c.gone) for c in sent], answer_gone=comment.gone != "",
        answered=_mark(above[-1].gone if above else thread.gone), post_gone=thread.gone != "",
        explained=lambda: _explained(ctx, thread, room, _answer_job(comment, answer),
                                     answer_id=comment.comment_id,
                                     persona=comment.persona or comment.author,
                                     kind="image" if comment.image_blob else "reply"),
        missing=lambda: _missing(thread, comment.comment_id, tombstone(comment.gone),
                                 "image" if comment.image_blob else "reply", explain.GONE))
    if made.missing or made.created_at <= 0:
        return made, thread, room, comment
    quoted = await _quoted(ctx, comment, len(made.ancestors))
    if _changed_since(made.created_at, [thread, *quoted]):
        made = withheld(made)
    return made, thread, room, comment


async def post_explanation(ctx: WebContext, thread_id: str,
                           user: str | None) -> tuple[Explanation, Thread, Room]:
    """The explanation of a bot's own thread (nothing of it once removed, but to the
    room's moderators)."""
    thread, room = await ctx.shown_thread(thread_id, user)
    if not thread.is_bot:
        raise NotFound("that thread is a person's: there is no bot's reasoning to show")
    if thread.gone == "deleted":
        raise NotFound("that thread is deleted: there is nothing of it to show")
    gone = thread.gone != ""
    made = await _unless_gone(
        ctx, room, user, gone=[], answer_gone=gone, answered="", post_gone=gone,
        explained=lambda: _explained(ctx, thread, room, thread.job_id,
                                     answer_id=thread.thread_id,
                                     persona=thread.persona or thread.author, kind="post"),
        missing=lambda: _missing(thread, thread.thread_id, tombstone(thread.gone), "post",
                                 explain.GONE))
    return made, thread, room


def _mark(gone: str) -> str:
    """A gone item's tombstone; empty for one still shown."""
    return tombstone(gone) if gone else ""


async def _unless_gone(ctx: WebContext, room: Room, user: str | None, *, gone: list[str],
                       answer_gone: bool, answered: str, post_gone: bool,
                       explained: Callable[[], Awaitable[Explanation]],
                       missing: Callable[[], Explanation]) -> Explanation:
    """The explanation as ``user`` may see it. Nothing removed (or deleted) since the bot
    answered shows through it, except to the room's moderators (who read it in the mod
    log anyway): a gone answer explains nothing, and one whose post or ancestors are gone
    loses its prompt, its attempts' outputs and the gone text
    (:func:`~playhouse.explain.without_gone`)."""
    if not (answer_gone or answered or post_gone or any(gone)):
        return await explained()
    if await ctx.sees_held(room.name, user):  # the room's moderators see it all
        return await explained()
    if answer_gone:
        return missing()
    return explain.without_gone(await explained(), gone=gone, answered=answered,
                                post_gone=post_gone)


def _check_room(room: Room, asked: str) -> None:
    if room.name.casefold() != asked.casefold():
        raise NotFound(f"no such thread in r/{asked}")


@get("/r/{room:str}/t/{thread_id:str}/why/{comment_id:str}", name="why_comment")
async def why_comment_page(request: Request[Any, Any, Any], room: str, thread_id: str,
                           comment_id: str, part: Part = False,
                           answer: AnswerNumber = None) -> Template:
    ctx = context_of(request)
    made, thread, found, comment = await comment_explanation(ctx, thread_id, comment_id,
                                                             current_user(request),
                                                             answer=answer)
    _check_room(found, room)
    return page(request, "_why_part.html" if part else "why.html", x=made,
                thread=visible_thread(thread), room=found, comment=visible_comment(comment),
                now=await _now_of(ctx, made.persona))


@get("/r/{room:str}/t/{thread_id:str}/why", name="why_post")
async def why_post_page(request: Request[Any, Any, Any], room: str, thread_id: str,
                        part: Part = False) -> Template:
    ctx = context_of(request)
    made, thread, found = await post_explanation(ctx, thread_id, current_user(request))
    _check_room(found, room)
    return page(request, "_why_part.html" if part else "why.html", x=made,
                thread=visible_thread(thread), room=found, comment=None,
                now=await _now_of(ctx, made.persona))


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
                          comment_id: str, answer: AnswerNumber = None) -> Explanation:
        """Why a bot wrote this comment (its ``answer``-th answer when it was asked
        again): who called it, the prompt, the attempts, the timings (for the room's
        readers only)."""
        made, *_ = await comment_explanation(context_of(request), thread_id, comment_id,
                                             current_user(request), answer=answer)
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
        thread, _ = await ctx.shown_thread(thread_id, current_user(request))
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
