"""Asking a bot again: another answer in place of the one shown, the earlier kept.

The person a bot's comment answers, or the thread's author, may ask that bot for
another answer (a re-roll), at most ``web.rerolls_per_comment`` times per comment, each
taking one of the asker's bot calls (``web.bot_calls_per_minute``, the same budget a
post's calls take). The re-roll is a bot call like any other, through
:mod:`playhouse.asking`: its request id is derived from what the comment answers, the
persona and the attempt (:func:`~playhouse.asking.request_id_for`), it is recorded as a
job and dispatched, and its answer is applied by :mod:`playhouse.applying` into the
same comment row (the request carries its id). The comment becomes the placeholder
first, its answer kept as the first of its ``alternatives``; the answer is added to them and
shown; a failed re-roll shows the answer shown before. Its prompt is read from storage
as it stands now (an edited comment's new text, nothing deleted). Like any person's call
it is explained (its job's call says ``again``, who asked and the how-many-th time: "why
this reply?" of that answer shows its own prompt and attempts) and its placeholder says
where it stands while it waits (:mod:`playhouse.web.waiting`).

A bot asleep, or at its hourly cap in the room (``web.people_meet_caps``), is not asked
again: the refusal says why and when to ask (nothing changes, no call is spent). A call
the bot declined (status ``declined``) may be asked again the same way: once the bot is
awake, that asks it for its first answer (then the thread's cap counts too).

Those who may ask again also choose which answer is shown (``< 2/3 >``): what everyone
sees by default and what later prompts read. Everyone else may step through the answers
on their own page.
"""

from __future__ import annotations

import asyncio
import time
from math import ceil
from typing import Any

import msgspec
import structlog
from litestar import Request, Response, post
from litestar.response import Redirect

from playhouse import asking, availability
from playhouse.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    StorageUnavailable,
)
from playhouse.explain import CallInfo
from playhouse.moderation.roles import refuse_post
from playhouse.storage.models import Alternative, Comment, Job, Thread
from playhouse.web.context import WebContext, context_of
from playhouse.web.editing import answer, fields, require_user
from playhouse.web.posting import declined, make_calls, request_for

log = structlog.get_logger()


async def _answered(ctx: WebContext, thread: Thread, comment: Comment) -> Comment | None:
    """The comment ``comment`` answers (None: the thread's post, or gone from storage)."""
    if comment.parent_id is None:
        return None
    try:
        return await ctx.storage.comments.get(thread.thread_id, comment.parent_id)
    except NotFound:
        return None


def may_choose(comment: Comment, parent: Comment | None, thread: Thread, user: str) -> None:
    """Forbidden unless ``user`` is the person ``comment`` answers or the thread's author."""
    asker = parent.author if parent is not None and not parent.is_bot else None
    if parent is None and comment.parent_id is None and not thread.is_bot:
        asker = thread.author
    allowed = {n.casefold() for n in (asker, None if thread.is_bot else thread.author) if n}
    if user.casefold() in allowed:
        return
    who = " or ".join(f"u/{n}" for n in dict.fromkeys(
        n for n in (asker, None if thread.is_bot else thread.author) if n)) or "nobody here"
    raise Forbidden(f"only the person u/{comment.author} answered, or the thread's author "
                    f"({who}), can choose its answer")


def _bot_comment(comment: Comment) -> str:
    if not comment.is_bot or not comment.persona:
        raise BadRequest(f"this comment is u/{comment.author}'s, a person's: only a bot's "
                         "answer can be asked for again")
    if comment.gone:
        raise Conflict(f"this answer is {comment.gone}")
    return comment.persona


async def reroll(ctx: WebContext, user: str, thread_id: str, comment_id: str) -> Comment:
    """Ask the bot of ``comment_id`` for another answer; the comment, now its placeholder."""
    thread, room = await ctx.readable_thread(thread_id, user)
    comment, standing = await asyncio.gather(
        ctx.storage.comments.get(thread.thread_id, comment_id),
        ctx.storage.members.standing(room.name, user))
    refuse_post(room, standing)  # banned here or from the site: no bot is called
    if thread.locked or thread.gone == "removed" or thread.held:
        raise Forbidden("this thread is locked or waits for a moderator: no bot is asked "
                        "again in it")
    name = _bot_comment(comment)
    if comment.status == "placeholder":
        raise Conflict(f"u/{name} is answering this already: wait for its answer")
    persona = ctx.cast.personas.get(name)
    if persona is None:
        raise BadRequest(f"u/{name} is not one of the bots any more: it cannot answer again")
    bound = ctx.settings.web.rerolls_per_comment
    if comment.rerolls >= bound:
        raise Conflict(f"u/{name} was asked again {comment.rerolls} times for this answer, "
                       f"the most one comment allows ({bound})")
    parent = await _answered(ctx, thread, comment)
    may_choose(comment, parent, thread, user)
    if (parent is not None and parent.gone) or (parent is None and thread.gone):
        raise Conflict("what this answer answers is deleted: there is nothing to answer again")
    now = time.time()
    # A first answer (the call was declined, or failed) adds one to the thread: its cap
    # counts; another answer replaces one, so only sleep and the hourly cap hold it.
    first = not comment.alternatives and comment.status != "ok"
    why = declined(ctx, persona, now, room=room, thread=thread if first else None)
    if why is not None:
        said = availability.notice(name, why, now, outcome="ask it again then")
        raise Conflict(said.text)
    wait = await ctx.limits.bot_calls_per_user.take(user)
    if wait:
        raise RateLimited(f"you called bots too often; ask again in {max(1, ceil(wait))} s")
    try:
        return await _ask_again(ctx, user, thread, comment, parent, persona.name, now)
    except BaseException:
        await ctx.limits.bot_calls_per_user.give_back(user)  # nothing was asked
        raise


async def _ask_again(ctx: WebContext, user: str, thread: Thread, comment: Comment,
                     parent: Comment | None, name: str, now: float) -> Comment:
    persona = ctx.cast.personas[name]
    chain: list[Comment] = []
    if parent is not None:
        chain = [*await ctx.storage.comments.ancestors(parent), parent]
    attempt = comment.rerolls + 1
    request = request_for(persona, thread, chain, parent, attempt=attempt)
    request = msgspec.structs.replace(request, comment_id=comment.comment_id)
    call = CallInfo(reason="again", by=user, again=attempt, at=now,
                    answered=parent.comment_id if parent else thread.thread_id,
                    answered_author=parent.author if parent else thread.author)
    job = asking.new_job(request, depth=comment.depth, now=now, call=call)
    alternatives = comment.alternatives
    if not alternatives and comment.status == "ok":  # its one answer becomes the first
        alternatives = (Alternative(text=comment.text, image_blob=comment.image_blob,
                          job_id=comment.job_id, created_at=comment.created_at),)
    # A declined call's or a failure's note is no answer: it is not kept, nor shown.
    placeholder = msgspec.structs.replace(
        comment, status="placeholder", job_id=request.request_id, rerolls=attempt,
        alternatives=alternatives, shown=comment.shown if comment.alternatives else 0,
        notice="", text=comment.text if comment.status == "ok" else "")
    try:  # the claim: of two asking at once, the one whose write lands goes on
        placeholder = await ctx.storage.comments.replace(placeholder)
    except Conflict:
        raise Conflict("this answer changed meanwhile (asked again by someone else?): "
                       "reload the page") from None
    recorded: list[Job] = []
    unrecorded: list[Job] = []
    try:
        recorded = await asking.record(ctx.storage, [job])
    except StorageUnavailable as exc:  # the placeholder is written: retried after
        log.warning("reroll.unrecorded", request_id=job.request_id, reason=str(exc)[:200])
        unrecorded = [job]
    log.info("reroll.asked", persona=name, thread_id=thread.thread_id,
             comment_id=comment.comment_id, attempt=attempt, request_id=job.request_id)
    ctx.spawn(make_calls(ctx, recorded, unrecorded), "reroll")
    return placeholder


async def choose(ctx: WebContext, user: str, thread_id: str, comment_id: str,
                 index: int) -> Comment:
    """Show answer ``index`` (0-based) of a re-rolled bot comment."""
    thread, _ = await ctx.readable_thread(thread_id, user)
    comment = await ctx.storage.comments.get(thread.thread_id, comment_id)
    _bot_comment(comment)
    may_choose(comment, await _answered(ctx, thread, comment), thread, user)
    if comment.status == "placeholder":
        raise Conflict(f"u/{comment.author} is answering again: wait for its answer")
    if not 0 <= index < len(comment.alternatives):
        raise InvalidInput(f"this comment has {max(1, len(comment.alternatives))} answer(s): "
                           f"there is no answer {index + 1}")
    if index == comment.shown:
        return comment
    sample = comment.alternatives[index]
    try:
        chosen = await ctx.storage.comments.replace(msgspec.structs.replace(
            comment, text=sample.text, image_blob=sample.image_blob, job_id=sample.job_id,
            shown=index))
    except Conflict:
        raise Conflict("this answer changed meanwhile: reload the page") from None
    await ctx.storage.threads.touch(thread.thread_id, at=0.0)  # see editing._touch
    ctx.broadcast.changed(chosen)
    log.info("reroll.chosen", comment_id=comment_id, shown=index, username=user,
             at=time.time())
    return chosen


@post("/t/{thread_id:str}/c/{comment_id:str}/again")
async def reroll_route(request: Request[Any, Any, Any], thread_id: str,
                       comment_id: str) -> Response[Any] | Redirect:
    """Ask the bot for another answer to what it answered."""
    comment = await reroll(context_of(request), require_user(request), thread_id, comment_id)
    return answer(request, comment=comment)


@post("/t/{thread_id:str}/c/{comment_id:str}/show")
async def choose_route(request: Request[Any, Any, Any], thread_id: str,
                       comment_id: str) -> Response[Any] | Redirect:
    """Show another of a re-rolled answer's answers (``answer``: 1-based)."""
    user = require_user(request)
    data = await fields(request)
    raw = data.get("answer")
    try:
        index = int(raw) - 1 if isinstance(raw, int | str) and not isinstance(raw, bool) else -1
    except ValueError:
        index = -1
    if index < 0:
        raise InvalidInput("`answer` is the number of the answer to show (1, 2, ...)")
    comment = await choose(context_of(request), user, thread_id, comment_id, index)
    return answer(request, comment=comment)


ROUTES = [reroll_route, choose_route]
