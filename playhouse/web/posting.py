"""A person's post: validate, store first, then announce and ask the bots it calls.

:func:`store_post` checks the text and writes the thread or comment; only after it
returns does the caller acknowledge, and only then :func:`announce` broadcasts the post
and, in the background, submits a generation request per bot called (a mention, a
reply to a bot, the room's default bot on a new thread) and broadcasts its "thinking"
placeholder. A failure after the write never loses the post: it is already stored.
A post that calls bots writes its call to the ``bot-calls`` queue before the post itself
(:mod:`playhouse.web.calls`), so the call is not lost either when this process dies
after the ack: another instance (or this one restarted) makes it after a grace period.

The room's counters (threads, comments, last activity) move last, in
:func:`count_in_room` after the broadcast: they feed the room list only, and every post
in a room contends for that one row (a read-modify-write with ETag retries), so keeping
it off the path from post to ack to broadcast leaves that path at the post's own writes.
The socket awaits it before reading its next frame, so one socket never has two of these
writes in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from math import ceil
from typing import TYPE_CHECKING

import structlog

from playhouse import ids, jobs
from playhouse.constants import COMMENT_MAX_CHARS, QUEUE_IMAGE, QUEUE_INTERACTIVE, TITLE_MAX_CHARS
from playhouse.errors import Forbidden, NotFound, PlayhouseError, StorageUnavailable
from playhouse.grammar import clean_text
from playhouse.storage.models import Comment, Room, Thread
from playhouse.storage.queues import Received
from playhouse.storage.threads import no_thread
from playhouse.web import calls, views
from playhouse.web.context import WebContext, room_channel, thread_channel
from playhouse.web.protocol import (
    CommentEvent,
    ErrorCode,
    Post,
    Thinking,
    ThreadEvent,
    encode,
)

if TYPE_CHECKING:
    from playhouse.personas import Persona

log = structlog.get_logger()


class PostRefused(Exception):
    """A post that is not stored; ``code`` and ``reason`` go back to the poster."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code: ErrorCode = code
        self.reason = reason


@dataclass(frozen=True)
class Stored:
    """What a post wrote: a new thread, or a comment in an existing one."""

    room: Room
    """As read before the post: its counters move after the broadcast."""
    thread: Thread
    comment: Comment | None
    parent: Comment | None
    call: Received | None = None
    """The ``bot-calls`` message written before the post; deleted once the bots are asked."""
    called: tuple[str, ...] = ()
    """The bots this post asks (decided once, before the write: see :func:`decide_calls`)."""
    not_called: tuple[str, ...] = ()
    """The bots it named but does not ask (over the per-post cap or the user's rate)."""
    notice: str | None = None
    """What the poster is told about ``not_called``."""


def check_text(text: str, what: str, max_chars: int, *, allow_empty: bool = False) -> str:
    """The cleaned text, or PostRefused with the reason (empty, too long, NUL)."""
    if "\x00" in text:
        raise PostRefused("bad_message", f"the {what} contains a NUL character")
    if len(text) > max_chars:
        raise PostRefused("too_long", f"the {what} is {len(text)} characters, at most {max_chars}")
    if allow_empty and not text.strip():
        return ""
    try:
        return clean_text(text, max_chars=max_chars)
    except Exception as exc:  # InvalidInput: "empty" or "too long"
        code: ErrorCode = "empty" if str(exc) == "empty" else "too_long"
        reason = f"the {what} is empty" if code == "empty" else f"the {what} is {exc}"
        raise PostRefused(code, reason) from exc


async def check_rate(ctx: WebContext, user: str, ip: str) -> None:
    wait = max(await ctx.limits.posts_per_user.take(user),
               await ctx.limits.posts_per_ip.take(ip))
    if wait > 0:
        raise PostRefused("rate_limited", f"too many posts; try again in {wait:.0f} s")


async def store_post(ctx: WebContext, user: str, msg: Post) -> Stored:
    """Validate ``msg`` and write it; PostRefused (nothing written) when it is refused."""
    try:
        room, member = await ctx.readable_room(msg.room, user)
    except NotFound as exc:
        raise PostRefused("not_found", str(exc)) from exc
    except Forbidden as exc:
        raise PostRefused("forbidden", str(exc)) from exc
    if not room.public and not member:  # readable_room already refused; kept explicit
        raise PostRefused("forbidden", f"r/{room.name} is private")
    if msg.thread_id is None:
        return await _store_thread(ctx, user, room, msg)
    return await _store_comment(ctx, user, room, msg)


async def _store_thread(ctx: WebContext, user: str, room: Room, msg: Post) -> Stored:
    if msg.parent_id is not None:
        raise PostRefused("bad_message", "a new thread has no parent_id")
    title = check_text(msg.title, "title", TITLE_MAX_CHARS)
    body = check_text(msg.text, "text", COMMENT_MAX_CHARS, allow_empty=True)
    now = time.time()
    thread = Thread(
        thread_id=ids.new_id(now), room=room.name, title=" ".join(title.split()), body=body,
        url=None, author=user, is_bot=False, persona=None, created_at=now, last_activity=now,
    )
    calls_ = await decide_calls(ctx, user, _called(ctx, room, thread, None, None))
    call = await _reserve_call(ctx, room, thread, None, calls_.called)
    # A failed write leaves the call to the recovery: the write may have landed after all
    # (a timeout), and a call whose post is not stored is dropped there.
    await ctx.storage.threads.create(thread)
    return Stored(room=room, thread=thread, comment=None, parent=None, call=call,
                  called=calls_.called, not_called=calls_.not_called, notice=calls_.notice)


async def _store_comment(ctx: WebContext, user: str, room: Room, msg: Post) -> Stored:
    assert msg.thread_id is not None
    if msg.title:
        raise PostRefused("bad_message", "a reply has no title")
    text = check_text(msg.text, "text", COMMENT_MAX_CHARS)
    try:
        thread = await ctx.storage.threads.get(msg.thread_id)
    except NotFound:
        thread = None
    if thread is None or thread.room.casefold() != room.name.casefold():
        # Missing or elsewhere (a private room's thread, say): one answer for both.
        raise PostRefused("not_found", str(no_thread(msg.thread_id, room.name)))
    parent: Comment | None = None
    if msg.parent_id is not None:
        try:
            parent = await ctx.storage.comments.get(thread.thread_id, msg.parent_id)
        except NotFound as exc:
            raise PostRefused("not_found", f"no comment {msg.parent_id!r} to reply to") from exc
        if parent.status == "placeholder":
            raise PostRefused("bad_message", "that bot has not answered yet")
    now = time.time()
    comment = Comment(
        comment_id=ids.new_id(now), thread_id=thread.thread_id, room=thread.room,
        parent_id=parent.comment_id if parent else None, author=user, is_bot=False,
        persona=None, text=text, created_at=now, depth=parent.depth + 1 if parent else 0,
    )
    calls_ = await decide_calls(ctx, user, _called(ctx, room, thread, comment, parent))
    call = await _reserve_call(ctx, room, thread, comment, calls_.called)
    comment = await ctx.storage.comments.add(comment)  # on failure: as in _store_thread
    thread = await ctx.storage.threads.touch(thread.thread_id, comments=1, at=now)
    return Stored(room=room, thread=thread, comment=comment, parent=parent, call=call,
                  called=calls_.called, not_called=calls_.not_called, notice=calls_.notice)


def _called(
    ctx: WebContext, room: Room, thread: Thread, comment: Comment | None, parent: Comment | None
) -> list[Persona]:
    """The personas a post calls (``comment`` None: the thread itself is the post)."""
    return jobs.bots_to_call(
        ctx.cast, room_bots=views.room_bots(room, ctx.cast), default_bot=room.default_bot,
        text=comment.text if comment else f"{thread.title}\n{thread.body}", parent=parent,
        is_top_level_post=comment is None, author=comment.author if comment else thread.author,
    )


@dataclass(frozen=True)
class Calls:
    """Which of the bots a post names it asks, and what the poster is told about the rest."""

    called: tuple[str, ...]
    not_called: tuple[str, ...] = ()
    notice: str | None = None


def _names(personas: Sequence[str]) -> str:
    shown = [f"u/{name}" for name in personas]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


async def decide_calls(ctx: WebContext, user: str, wanted: Sequence[Persona]) -> Calls:
    """Cap the bots one post asks (``web.bots_per_post``, in the order
    :func:`~playhouse.jobs.bots_to_call` gives) and the bot calls one user makes a minute
    (``web.bot_calls_per_minute``); the post itself is never refused for it."""
    cap = ctx.settings.web.bots_per_post
    called: list[str] = []
    limited: list[str] = []
    wait = 0.0
    for persona in wanted[:cap]:
        waited = await ctx.limits.bot_calls_per_user.take(user)
        (limited if waited else called).append(persona.name)
        wait = max(wait, waited)
    over = [p.name for p in wanted[cap:]]
    if not over and not limited:
        return Calls(called=tuple(called))
    parts = []
    if called:
        parts.append(f"{_names(called)} will answer")
    if over:
        parts.append(f"{_names(over)} not: one post calls at most {cap} bots")
    if limited:
        parts.append(f"{_names(limited)} not: you called bots too often; call them again "
                     f"in {max(1, ceil(wait))} s")
    log.info("bot.calls_capped", user=user, called=called, over=over, limited=limited)
    return Calls(called=tuple(called), not_called=tuple(over + limited),
                 notice="; ".join(parts))


async def _reserve_call(
    ctx: WebContext, room: Room, thread: Thread, comment: Comment | None,
    called: tuple[str, ...],
) -> Received | None:
    """Write the post's bot call before the post (None when it calls nobody), so that a
    process that dies after acknowledging the post leaves the call to another instance."""
    if not called:
        return None
    call = calls.BotCall(
        room=room.name, thread_id=thread.thread_id,
        comment_id=comment.comment_id if comment else None, personas=called, at=time.time(),
    )
    return await calls.reserve(ctx.storage, call, grace_s=ctx.settings.web.bot_call_grace_s)


def announce(ctx: WebContext, stored: Stored) -> None:
    """Broadcast the stored post (each event encoded once for all sockets), then ask the
    bots it calls (in the background)."""
    thread_event = encode(ThreadEvent(thread=views.thread_out(stored.thread)))
    if stored.comment is not None:
        ctx.publish(
            encode(CommentEvent(comment=views.comment_out(stored.comment))),
            thread_channel(stored.thread.thread_id),
        )
    ctx.publish(thread_event, room_channel(stored.room.name))
    ctx.spawn(call_bots(ctx, stored), "call_bots")


async def count_in_room(ctx: WebContext, stored: Stored) -> None:
    """Move the room's counters and last activity for a post already stored and shown;
    a failure is logged (the post itself is safe)."""
    comment = stored.comment
    try:
        if comment is None:
            await ctx.storage.rooms.touch(stored.room.name, threads=1,
                                          at=stored.thread.created_at)
        else:
            await ctx.storage.rooms.touch(stored.room.name, comments=1, at=comment.created_at)
    except PlayhouseError as exc:
        log.warning("room.count_failed", room=stored.room.name,
                    thread_id=stored.thread.thread_id, reason=str(exc))


CALL_RETRY_S = 600.0
"""How long a bot call keeps retrying while storage is unreachable (the post is stored)."""


def call_request_id(answered: str, persona: str) -> str:
    """The request id of ``persona`` answering ``answered``: derived, so a retried call
    finds its own claim and job instead of asking twice."""
    return ids.derived_id(answered, f"call:{persona}")


async def call_bots(ctx: WebContext, stored: Stored) -> None:
    """Submit one request per bot the post calls; broadcast each placeholder.

    The post is acknowledged before this runs; when storage fails meanwhile the whole call
    is retried with back-off for up to :data:`CALL_RETRY_S` (every step is idempotent on
    the derived request id), so an outage delays the bots' answers instead of losing them.
    """
    delay = 0.5
    deadline = time.monotonic() + CALL_RETRY_S
    while True:
        try:
            await _call_bots_once(ctx, stored)
            if stored.call is not None:
                await calls.release(ctx.storage, stored.call)
            return
        except StorageUnavailable as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("bot.call_retry", thread_id=stored.thread.thread_id,
                        retry_in=delay, reason=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def recover_call(
    ctx: WebContext, room: Room, thread: Thread, comment: Comment | None, parent: Comment | None,
    personas: tuple[str, ...] | None = None,
) -> None:
    """Make a call that surfaced on ``bot-calls`` (its poster's instance did not finish):
    ``personas`` as decided when the post was taken (None: worked out again, capped)."""
    if personas is None:
        wanted = _called(ctx, room, thread, comment, parent)
        personas = tuple(p.name for p in wanted[: ctx.settings.web.bots_per_post])
    await _call_bots_once(ctx, Stored(room=room, thread=thread, comment=comment, parent=parent,
                                      called=personas[: ctx.settings.web.bots_per_post]))


async def _call_bots_once(ctx: WebContext, stored: Stored) -> None:
    comment = stored.comment
    called = [ctx.cast.personas[name] for name in stored.called if name in ctx.cast.personas]
    if not called:
        return
    chain: list[Comment] = []
    if comment is not None:
        chain = await ctx.storage.comments.chain(comment.thread_id, comment.comment_id)
    answered = comment.comment_id if comment else stored.thread.thread_id
    for persona in called:
        request_id = call_request_id(answered, persona.name)
        if not await ctx.storage.replies.claim(answered, persona.name, request_id) and (
            await ctx.storage.replies.claimed_by(answered, persona.name) != request_id
        ):
            continue  # answered (or being answered) through someone else's request
        parent_id = comment.comment_id if comment else None
        if persona.kind == "image":
            asked = comment.text if comment else f"{stored.thread.title}. {stored.thread.body}"
            request = jobs.image_request(
                persona=persona, thread=stored.thread, parent_id=parent_id,
                prompt=jobs.image_prompt_of(asked, persona).strip(" ."),
                requester=comment.author if comment else stored.thread.author,
                queue=QUEUE_IMAGE, request_id=request_id,
            )
        else:
            request = jobs.reply_request(
                persona=persona, thread=stored.thread, chain=chain, parent_id=parent_id,
                queue=QUEUE_INTERACTIVE, request_id=request_id,
            )
        shown = await jobs.submit(ctx.storage, request)
        ctx.results_expected.set()  # the results consumer polls quickly for a while
        log.info("bot.called", persona=persona.name, thread_id=stored.thread.thread_id,
                 request_id=request_id, queue=request.queue)
        if shown is not None:
            ctx.publish(
                encode(Thinking(comment=views.comment_out(shown))),
                thread_channel(stored.thread.thread_id),
            )
