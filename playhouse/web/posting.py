"""A person's post: validate, store it with its bot calls, then show it and ask the bots.

:func:`store_post` checks the text, reads what the post needs, and writes the thread or
comment together with the job rows of the bots it calls (:mod:`playhouse.asking`: a
mention, a reply to a bot, the room's default bot on a new thread); only after it returns
does the socket acknowledge. Storage is met in at most three steps in series: the room,
thread, parent and the poster's standing (their membership of the room and of the site:
one query, which says whether a ban or a private room keeps them out; all together);
the ancestors a bot's prompt needs (when wanted); the post and its jobs (together). The
calls are worked out once, here, and carried on :class:`Stored`. A locked or removed
thread takes no comment (a moderator's note in a locked one calls no bot); the word
filter refuses a post, or holds it unseen for a moderator (``[moderation] filter_mode``).

:func:`announce` then broadcasts the post, counts it in its room (coalesced, see
:mod:`playhouse.web.counters`) and, in the background, dispatches each call: its
placeholder shown as "thinking", its request queued. A failure after the write never
loses the post nor its calls: the jobs are stored, and the call recovery dispatches any
the process did not (:mod:`playhouse.web.calls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Collection, Sequence
from dataclasses import dataclass
from math import ceil
from typing import TYPE_CHECKING, TypeVar

import msgspec
import structlog

from playhouse import asking, availability, ids
from playhouse.constants import (
    COMMENT_MAX_CHARS,
    FILTER_REPORTER,
    PATH_MAX,
    QUEUE_IMAGE,
    QUEUE_INTERACTIVE,
    TITLE_MAX_CHARS,
)
from playhouse.errors import (
    BadRequest,
    BlockedWord,
    Conflict,
    Empty,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    StorageUnavailable,
    TooLong,
)
from playhouse.grammar import clean_text
from playhouse.moderation.roles import Powers, refuse_post
from playhouse.storage.accounts import Standing
from playhouse.storage.models import Comment, Job, Report, Room, Thread
from playhouse.storage.moderation import report_id_for
from playhouse.storage.threads import no_thread
from playhouse.views import sees_held
from playhouse.web.context import WebContext
from playhouse.web.inbox import notify
from playhouse.web.protocol import PostMessage

if TYPE_CHECKING:
    from playhouse.explain import Decline
    from playhouse.messages import GenerationRequest
    from playhouse.personas import Persona

log = structlog.get_logger()

P = TypeVar("P")

CALL_RETRY_S = 600.0
"""How long a bot call keeps retrying while storage is unreachable (the post is stored)."""


@dataclass(frozen=True)
class Stored:
    """What a post wrote: a new thread, or a comment in an existing one, and its calls."""

    room: Room
    thread: Thread
    comment: Comment | None
    parent: Comment | None
    calls: tuple[Job, ...] = ()
    """The bots' jobs, recorded with the post (``called``); dispatched after the ack."""
    unrecorded: tuple[Job, ...] = ()
    """Jobs whose write failed while the post's own landed: recorded after the ack (the
    post is stored, so it is acknowledged; its calls are retried, not refused)."""
    called: tuple[str, ...] = ()
    """The bots this post asks (decided once, before the write: see :func:`decide_calls`)."""
    not_called: tuple[str, ...] = ()
    """The bots it named but does not ask (over the per-post cap or the user's rate)."""
    notice: str | None = None
    """What the poster is told about ``not_called``, or that the post is held."""
    held: bool = False
    """The word filter held it for a moderator: stored, shown to nobody else yet."""


@dataclass(frozen=True)
class Calls:
    """Which of the bots a post names it asks, and what the poster is told about the rest."""

    called: tuple[asking.Call, ...]
    not_called: tuple[str, ...] = ()
    notice: str | None = None


def _names(personas: Sequence[str]) -> str:
    shown = [f"u/{name}" for name in personas]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


async def decide_calls(ctx: WebContext, user: str, wanted: Sequence[asking.Call],
                       muted: Collection[str] = ()) -> Calls:
    """Leave out the bots ``user`` muted (never called by their posts), cap the bots one
    post asks (``web.bots_per_post``, in the order :func:`~playhouse.asking.calls_for`
    gives) and the bot calls one user makes a minute (``web.bot_calls_per_minute``); the
    post itself is never refused for it."""
    cap = ctx.settings.web.bots_per_post
    silenced = [c.persona.name for c in wanted if c.persona.name in muted]
    wanted = [c for c in wanted if c.persona.name not in muted]
    called: list[asking.Call] = []
    limited: list[str] = []
    wait = 0.0
    for call in wanted[:cap]:
        waited = await ctx.limits.bot_calls_per_user.take(user)
        if waited:
            limited.append(call.persona.name)
        else:
            called.append(call)
        wait = max(wait, waited)
    over = [c.persona.name for c in wanted[cap:]]
    if not over and not limited and not silenced:
        return Calls(called=tuple(called))
    parts = []
    if called:
        parts.append(f"{_names([c.persona.name for c in called])} will answer")
    if silenced:
        parts.append(f"{_names(silenced)} not: you muted "
                     f"{'it' if len(silenced) == 1 else 'them'} (unmute in your settings)")
    if over:
        parts.append(f"{_names(over)} not: one post calls at most {cap} bots")
    if limited:
        parts.append(f"{_names(limited)} not: you called bots too often; call them again "
                     f"in {max(1, ceil(wait))} s")
    log.info("bot.calls_capped", user=user, called=[c.persona.name for c in called],
             over=over, limited=limited, muted=silenced)
    return Calls(called=tuple(called), not_called=tuple(silenced + over + limited),
                 notice="; ".join(parts))


def post_text(text: str, what: str, max_chars: int, *, allow_empty: bool = False) -> str:
    """The cleaned text; an InvalidInput of the right kind (empty, too long, NUL) when it
    cannot be posted."""
    if "\x00" in text:
        raise InvalidInput(f"the {what} contains a NUL character")
    if len(text) > max_chars:
        raise TooLong(f"the {what} is {len(text)} characters, at most {max_chars}")
    if allow_empty and not text.strip():
        return ""
    try:
        return clean_text(text, max_chars=max_chars)
    except Empty as exc:
        raise Empty(f"the {what} is empty") from exc
    except TooLong as exc:
        raise TooLong(f"the {what} is {exc}") from exc


async def check_rate(ctx: WebContext, user: str, ip: str) -> None:
    wait = max(await ctx.limits.posts_per_user.take(user),
               await ctx.limits.posts_per_ip.take(ip))
    if wait > 0:
        raise RateLimited(f"too many posts; try again in {wait:.0f} s")


async def store_post(ctx: WebContext, user: str, msg: PostMessage,
                     muted: Collection[str] = ()) -> Stored:
    """Validate ``msg`` and write it with its calls (none to the bots in ``muted``, the
    ones ``user`` muted); a PlayhouseError (nothing written) when it is refused."""
    if msg.thread_id is None:
        if msg.parent_id is not None:
            raise InvalidInput("a new thread has no parent_id")
        title = " ".join(post_text(msg.title, "title", TITLE_MAX_CHARS).split())
        body = post_text(msg.text, "text", COMMENT_MAX_CHARS, allow_empty=True)
        held = screen(ctx, "title", title) or screen(ctx, "post", body)
        room, standing = await asyncio.gather(_room(ctx, msg.room),
                                              ctx.storage.members.standing(msg.room, user))
        refuse_post(room, standing)
        return await _store_thread(ctx, user, room, title, body, held, muted)
    if msg.title:
        raise InvalidInput("a reply has no title")
    text = post_text(msg.text, "text", COMMENT_MAX_CHARS)
    return await _store_comment(ctx, user, msg, text, screen(ctx, "comment", text),
                                muted)


def screen(ctx: WebContext, what: str, text: str) -> str | None:
    """The word filter on a person's ``text``: BlockedWord (the word, and what to do)
    when the site refuses such posts; the notice for the poster when it holds them for a
    moderator; None when the text is clean."""
    hit = ctx.word_filter.find(text)
    if hit is None:
        return None
    written = f'"{hit.written}"' + (f' (as "{hit.word}")'
                                    if hit.written.casefold() != hit.word.casefold() else "")
    log.info("post.filtered", what=what, word=hit.word,
             mode=ctx.settings.moderation.filter_mode)
    if ctx.settings.moderation.filter_mode == "hold":
        return (f"your {what} uses {written}, a word this site holds for review: it waits "
                "for a moderator, and others see it once approved")
    raise BlockedWord(f"your {what} uses {written}, a word this site does not allow: take "
                      "it out and send again (your text is kept)")


async def _room(ctx: WebContext, name: str) -> Room:
    room = await ctx.storage.rooms.get(name)
    ctx.counters.saw_room(room)
    return room


async def _store_thread(ctx: WebContext, user: str, room: Room, title: str,
                        body: str, held: str | None, muted: Collection[str]) -> Stored:
    now = time.time()
    thread = Thread(
        thread_id=ids.new_id(now), room=room.name, title=title, body=body, url=None,
        author=user, is_bot=False, persona=None, created_at=now, last_activity=now,
        held=held is not None,
    )
    if held is not None:  # no bot answers what nobody else sees yet
        thread, _ = await asyncio.gather(ctx.storage.threads.create(thread),
                                         hold_for_review(ctx, thread, None, held))
        return Stored(room=room, thread=thread, comment=None, parent=None, notice=held,
                      held=True)
    calls = await decide_calls(ctx, user, _called(ctx, room, thread, None, None), muted)
    jobs = _jobs(ctx, list(calls.called), room, thread, [], None, now)
    thread, recorded, unrecorded = await _write(ctx, ctx.storage.threads.create(thread), jobs)
    return Stored(room=room, thread=thread, comment=None, parent=None, calls=recorded,
                  unrecorded=unrecorded, called=tuple(c.persona.name for c in calls.called),
                  not_called=calls.not_called, notice=calls.notice)


def _may_comment(room: Room, thread: Thread, parent: Comment | None, standing: Standing,
                 user: str, admins: tuple[str, ...]) -> None:
    """Raise what keeps ``user`` from replying there (a moderator may still write in a
    locked thread: a note, which calls no bot)."""
    refuse_post(room, standing)
    moderates = Powers.of(user, room.name, standing, admins).moderates
    if thread.gone == "removed":
        raise Forbidden("this thread was removed by a moderator: it takes no new comments")
    if thread.locked and not moderates:
        raise Forbidden("this thread is locked by a moderator: it takes no new comments")
    if thread.held:
        if not sees_held(thread.author, user, moderator=moderates):
            raise no_thread(thread.thread_id, room.name)  # for them it is not there yet
        raise Forbidden("this thread waits for a moderator's approval: it takes comments "
                        "once approved")
    if parent is not None and parent.held:
        raise Forbidden("that comment waits for a moderator's approval: reply once it is "
                        "approved")


async def _store_comment(ctx: WebContext, user: str, msg: PostMessage, text: str,
                         held: str | None, muted: Collection[str]) -> Stored:
    assert msg.thread_id is not None
    if not ids.is_id(msg.thread_id):  # as the socket's subscribe answers it: not there
        raise no_thread(msg.thread_id, msg.room)
    if msg.parent_id is not None and not ids.is_id(msg.parent_id):
        raise BadRequest(f"`parent_id` {msg.parent_id[:64]!r} is not an id")

    async def parent_of() -> Comment | None:
        if msg.parent_id is None or msg.thread_id is None:
            return None
        try:
            return await ctx.storage.comments.get(msg.thread_id, msg.parent_id)
        except NotFound as exc:
            raise NotFound(f"no comment {msg.parent_id!r} to reply to") from exc

    async def thread_of() -> Thread:
        assert msg.thread_id is not None
        try:
            return await ctx.storage.threads.get(msg.thread_id, room=msg.room)
        except NotFound:  # missing or elsewhere (a private room's, say): one answer for both
            raise no_thread(msg.thread_id, msg.room) from None

    room, thread, parent, standing = await asyncio.gather(
        _room(ctx, msg.room), thread_of(), parent_of(),
        ctx.storage.members.standing(msg.room, user))
    if parent is not None and parent.status == "placeholder":
        raise InvalidInput("that bot has not answered yet")
    if parent is not None and parent.gone:
        raise InvalidInput(f"that comment is {parent.gone}: reply to the thread, or to "
                           "another comment")
    _may_comment(room, thread, parent, standing, user, ctx.settings.web.admins)
    ctx.counters.saw_thread(thread)
    now = time.time()
    comment = Comment(
        comment_id=ids.new_id(now), thread_id=thread.thread_id, room=thread.room,
        parent_id=parent.comment_id if parent else None, author=user, is_bot=False,
        persona=None, text=text, created_at=now, depth=parent.depth + 1 if parent else 0,
        path=(*parent.path, parent.comment_id)[-PATH_MAX:] if parent else (),
        held=held is not None,
    )
    if held is not None:  # no bot answers what nobody else sees yet
        comment, _ = await asyncio.gather(ctx.storage.comments.add(comment),
                                          hold_for_review(ctx, thread, comment, held))
        return Stored(room=room, thread=thread, comment=comment, parent=parent, notice=held,
                      held=True)
    wanted = [] if thread.locked else _called(ctx, room, thread, comment, parent)
    calls = await decide_calls(ctx, user, wanted, muted)
    chain = await _chain(ctx, calls, parent, comment)
    jobs = _jobs(ctx, list(calls.called), room, thread, chain, comment, now)
    comment, recorded, unrecorded = await _write(ctx, ctx.storage.comments.add(comment), jobs)
    return Stored(room=room, thread=thread, comment=comment, parent=parent, calls=recorded,
                  unrecorded=unrecorded, called=tuple(c.persona.name for c in calls.called),
                  not_called=calls.not_called, notice=calls.notice)


async def hold_for_review(ctx: WebContext, thread: Thread, comment: Comment | None,
                      notice: str) -> None:
    """Put what the word filter held in its room's queue at ``/mod``: a report by the
    filter itself (its id derived from the item: written once whatever the retries)."""
    item_id = comment.comment_id if comment is not None else thread.thread_id
    with contextlib.suppress(Conflict):  # filed already: a retried post
        await ctx.storage.reports.file(Report(
            report_id=report_id_for(item_id, FILTER_REPORTER), room=thread.room,
            thread_id=thread.thread_id, comment_id=comment.comment_id if comment else None,
            author=comment.author if comment is not None else thread.author,
            reporter=FILTER_REPORTER, reason="blocked word", details=notice,
            created_at=time.time(),
        ))


async def _chain(ctx: WebContext, calls: Calls, parent: Comment | None,
                 comment: Comment) -> list[Comment]:
    """What the called bots' prompts show: the ancestors (one query), the parent, the
    comment (none when no bot is called)."""
    if not calls.called:
        return []
    above = await ctx.storage.comments.ancestors(parent) if parent is not None else []
    return [*above, *([parent] if parent else []), comment]


async def approved(ctx: WebContext, room: Room, thread: Thread,
                   comment: Comment | None) -> None:
    """Show a post the word filter held, now approved, as if just posted: broadcast,
    counted, and the bots it calls asked (on its author's budget) — none when the thread
    is locked, or its author may no longer call bots there (banned since it was held)."""
    author = comment.author if comment is not None else thread.author

    async def parent_of() -> Comment | None:
        if comment is None or comment.parent_id is None:
            return None
        try:
            return await ctx.storage.comments.get(thread.thread_id, comment.parent_id)
        except NotFound:
            return None

    parent, standing = await asyncio.gather(parent_of(),
                                            ctx.storage.members.standing(room.name, author))
    try:
        refuse_post(room, standing)
        may_call = not thread.locked
    except Forbidden:
        may_call = False
    wanted = _called(ctx, room, thread, comment, parent) if may_call else []
    calls = await decide_calls(ctx, author, wanted)
    now = time.time()
    chain = [] if comment is None else await _chain(ctx, calls, parent, comment)
    jobs = _jobs(ctx, list(calls.called), room, thread, chain, comment, now)
    recorded = await asking.record(ctx.storage, jobs)
    announce(ctx, Stored(room=room, thread=thread, comment=comment, parent=parent,
                         calls=tuple(recorded),
                         called=tuple(c.persona.name for c in calls.called)))


async def _write(ctx: WebContext, post: Awaitable[P], jobs: list[Job]
                 ) -> tuple[P, tuple[Job, ...], tuple[Job, ...]]:
    """Write the post and its calls together: (the stored post, the recorded calls, the
    calls still to record). A post that fails is refused whatever became of its calls
    (jobs without their post are dropped by the call recovery); calls that fail after the
    post landed are recorded again after the ack."""
    stored, recorded = await asyncio.gather(post, asking.record(ctx.storage, jobs),
                                            return_exceptions=True)
    if isinstance(stored, BaseException):
        raise stored
    if isinstance(recorded, StorageUnavailable):
        log.warning("bot.call_unrecorded", jobs=len(jobs), reason=str(recorded)[:200])
        return stored, (), tuple(jobs)
    if isinstance(recorded, BaseException):
        raise recorded
    return stored, tuple(recorded), ()


def _called(ctx: WebContext, room: Room, thread: Thread, comment: Comment | None,
            parent: Comment | None) -> list[asking.Call]:
    """The personas a post calls, and why (``comment`` None: the thread itself is the
    post). A removed comment answered calls nobody back (its bot would answer a
    tombstone)."""
    return asking.calls_for(
        ctx.cast, default_bot=room.default_bot,
        text=comment.text if comment else f"{thread.title}\n{thread.body}",
        parent=parent if parent is not None and not parent.gone else None,
        is_top_level_post=comment is None, author=comment.author if comment else thread.author,
        answered=comment.comment_id if comment else thread.thread_id,
    )


def _jobs(ctx: WebContext, calls: list[asking.Call], room: Room, thread: Thread,
          chain: list[Comment], comment: Comment | None, now: float) -> list[Job]:
    """The jobs of ``calls``; a call the bot declines (asleep, a cap reached, read off
    the room's and thread's rows: no extra request) is recorded with why."""
    jobs: list[Job] = []
    for call in calls:
        why = declined(ctx, call.persona, now, room=room, thread=thread if comment else None)
        info = msgspec.structs.replace(call.info, declined=why, at=now)
        jobs.append(asking.new_job(request_for(call.persona, thread, chain, comment),
                                   depth=comment.depth + 1 if comment else 0, now=now,
                                   call=info))
    return jobs


def declined(ctx: WebContext, persona: Persona, now: float, *, room: Room,
             thread: Thread | None) -> Decline | None:
    """Why ``persona`` will not take a person's call now (asleep; at its caps in ``room``
    or, given, ``thread``, when ``web.people_meet_caps``); None when it will."""
    return availability.decline(persona, now, thread=thread, room=room,
                                hour_s=availability.HOUR_S / ctx.settings.scheduler.time_scale,
                                caps=ctx.settings.web.people_meet_caps)


def request_for(persona: Persona, thread: Thread, chain: list[Comment],
                comment: Comment | None, *, attempt: int = 0) -> GenerationRequest:
    """What ``persona`` is asked for answering ``comment`` (None: the thread's post);
    ``attempt`` n > 0: the n-th time it is asked again (a re-roll)."""
    parent_id = comment.comment_id if comment else None
    request_id = asking.request_id_for(parent_id or thread.thread_id, persona.name, attempt)
    if persona.kind == "image":
        asked = comment.text if comment else f"{thread.title}. {thread.body}"
        return asking.image_request(
            persona=persona, thread=thread, parent_id=parent_id,
            prompt=asking.image_prompt_of(asked, persona).strip(" ."),
            requester=comment.author if comment else thread.author, queue=QUEUE_IMAGE,
            request_id=request_id)
    return asking.reply_request(persona=persona, thread=thread, chain=chain,
                                parent_id=parent_id, queue=QUEUE_INTERACTIVE,
                                request_id=request_id)


def announce(ctx: WebContext, stored: Stored) -> None:
    """Show the stored post, count it in its room, and make its calls (in the
    background); a held post is shown nowhere yet (:func:`approved` does it later)."""
    if stored.held:
        return
    if stored.comment is not None:
        ctx.broadcast.comment(stored.comment)
        ctx.counters.count(room=stored.room.name, thread=stored.thread.thread_id, comments=1,
                           at=stored.comment.created_at)
    else:
        ctx.broadcast.thread(stored.thread)
        ctx.counters.saw_thread(stored.thread)
        ctx.counters.count(room=stored.room.name, threads=1, at=stored.thread.created_at)
    if stored.calls or stored.unrecorded:
        ctx.spawn(call_bots(ctx, stored), "call_bots")
    ctx.spawn(_notify(ctx, stored), "notify")


async def _notify(ctx: WebContext, stored: Stored) -> None:
    await notify(ctx, comment=stored.comment, thread=stored.thread, parent=stored.parent,
                 room=stored.room)


async def call_bots(ctx: WebContext, stored: Stored) -> None:
    """Dispatch each call of a stored post and show its placeholder.

    The post is acknowledged before this runs; when storage fails meanwhile the calls are
    retried with back-off for up to :data:`CALL_RETRY_S` (each step is idempotent on the
    derived request id), so an outage delays the bots' answers instead of losing them.
    """
    await make_calls(ctx, stored.calls, stored.unrecorded)


async def make_calls(ctx: WebContext, recorded: Sequence[Job],
                     unrecorded: Sequence[Job] = ()) -> None:
    """Dispatch ``recorded`` jobs, and record then dispatch ``unrecorded`` ones, showing
    their placeholders: how a person's calls are made (a post's, a re-roll's)."""
    for job in (*recorded, *unrecorded):
        ctx.expecting(job.request_id, job.queue == QUEUE_INTERACTIVE)
    with ctx.people.working():  # until the requests are on their queues
        await asyncio.gather(*(_call(ctx, job, recorded=True) for job in recorded),
                             *(_call(ctx, job, recorded=False) for job in unrecorded))


async def _call(ctx: WebContext, job: Job, *, recorded: bool) -> None:
    delay = 0.5
    deadline = time.monotonic() + CALL_RETRY_S
    while True:
        try:
            if not recorded:
                todo = await asking.record(ctx.storage, [job])
                recorded = True
                if not todo:
                    return  # asked already, by someone else
                job = todo[0]
            shown = await asking.dispatch(ctx.storage, job)
            break
        except StorageUnavailable as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("bot.call_retry", request_id=job.request_id, retry_in=delay,
                        reason=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
    log.info("bot.called", persona=job.persona, thread_id=job.thread_id,
             request_id=job.request_id, queue=job.queue)
    if shown is not None:
        ctx.broadcast.thinking(shown)
