"""Voting: one rule, two ways in (a ``vote`` frame on the websocket, ``POST /vote``).

:meth:`VoteService.vote` is the rule both apply: the voter is logged in; within their
rate (``web.votes_per_minute``, per person, shared by the instances through Redis when
there is one); the thread exists and its room is readable by them (a private room's
items are its members' only: 403 for others, 404 for what does not exist); a comment
exists in that thread and has something to vote on (not a bot still thinking). The vote
itself is :meth:`playhouse.storage.votes.VoteRepo.cast` (one vote per person per item,
idempotent, race-free); then the voter's own copy for the arrows, and the coalesced
score event and index writes (:mod:`playhouse.web.scores`).

The socket also requires the vote's room to be the one it is subscribed to, as for
posts: a frame for an item of another room is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from litestar import Request, Response, post
from litestar.exceptions import HTTPException
from litestar.response import Redirect

from playhouse import ids
from playhouse.errors import Forbidden, NotFound, PlayhouseError
from playhouse.storage.votes import Cast
from playhouse.web.auth import safe_next
from playhouse.web.context import WebContext, current_user
from playhouse.web.limits import Limiter, RateLimiter, SharedRateLimiter
from playhouse.web.protocol import ErrorCode, Vote, Voted
from playhouse.web.scores import ScoreFeed, Target

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from redis.asyncio import Redis

    from playhouse.web.live import Session

log = structlog.get_logger()

STATE_KEY = "votes"
"""Where the app keeps its :class:`VoteService` (``app.state``)."""


class VoteRefused(Exception):
    """A vote that is not stored; ``code`` for the socket, ``status`` for HTTP."""

    def __init__(self, code: ErrorCode, reason: str, status: int) -> None:
        super().__init__(reason)
        self.code: ErrorCode = code
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class VoteDone:
    target: Target
    cast: Cast

    def answer(self, client_id: str | None) -> Voted:
        tally = self.cast.tally
        return Voted(client_id=client_id, thread_id=tally.thread_id, item_id=tally.item_id,
                     value=self.cast.value, ups=tally.ups, downs=tally.downs,
                     score=tally.score, version=tally.version)


def vote_limiter(per_minute: int, redis: Redis | None) -> Limiter:
    if redis is None:
        return RateLimiter(per_minute)
    return SharedRateLimiter(redis, "votes_per_user", per_minute)


class VoteService:
    def __init__(self, ctx: WebContext, limiter: Limiter, feed: ScoreFeed) -> None:
        self.ctx = ctx
        self.limiter = limiter
        self.feed = feed

    async def vote(self, user: str | None, *, thread_id: str, comment_id: str | None,
                   value: int, room: str | None = None) -> VoteDone:
        """Store ``user``'s vote (VoteRefused says why not); ``room``: the item must be in
        it (the socket's subscription)."""
        if user is None:
            raise VoteRefused("login_required", "log in to vote", 401)
        if value not in (-1, 0, 1):
            raise VoteRefused("bad_message", "a vote is 1, -1 or 0", 400)
        wait = await self.limiter.take(user.casefold())
        if wait > 0:
            raise VoteRefused("rate_limited", f"too many votes; try again in {wait:.0f} s", 429)
        target = await self._target(user, thread_id, comment_id, room)
        cast = await self.ctx.storage.votes.cast(target.thread_id, target.item_id, user, value)
        try:
            await self.ctx.storage.votes.remember(user, cast, is_thread=target.is_thread)
        except PlayhouseError as exc:  # only the arrows: the vote is stored
            log.warning("vote.remember_failed", user=user, item_id=target.item_id,
                        reason=str(exc))
        if cast.changed:
            self.feed.voted(target, cast.tally)
        return VoteDone(target=target, cast=cast)

    async def _target(self, user: str, thread_id: str, comment_id: str | None,
                      room: str | None) -> Target:
        try:
            thread, found = await self.ctx.readable_thread(thread_id, user)
        except NotFound as exc:
            raise VoteRefused("not_found", f"no thread {thread_id!r}", 404) from exc
        except Forbidden as exc:
            raise VoteRefused("forbidden", str(exc), 403) from exc
        if room is not None and found.name.casefold() != room.casefold():
            raise VoteRefused("not_found", f"no thread {thread_id!r} in r/{room}", 404)
        if comment_id is None:
            return Target(room=found.name, thread_id=thread.thread_id,
                          item_id=thread.thread_id, author=thread.author)
        if not ids.is_id(comment_id):
            raise VoteRefused("not_found", f"no comment {comment_id!r}", 404)
        try:
            comment = await self.ctx.storage.comments.get(thread.thread_id, comment_id)
        except NotFound as exc:
            raise VoteRefused("not_found", f"no comment {comment_id!r} in this thread",
                              404) from exc
        if comment.status != "ok":
            raise VoteRefused("bad_message", "there is nothing to vote on yet", 409)
        return Target(room=found.name, thread_id=thread.thread_id, item_id=comment.comment_id,
                      author=comment.author)


def service_of(connection: ASGIConnection[Any, Any, Any, Any]) -> VoteService:
    service = connection.app.state[STATE_KEY]
    assert isinstance(service, VoteService)
    return service


async def on_socket_vote(session: Session, msg: Vote) -> None:
    """A ``vote`` frame: answered with ``voted``, or an ``error`` carrying its client id."""
    try:
        if session.user is None:
            raise VoteRefused("login_required", "log in to vote", 401)
        if session.room is None or session.room.casefold() != msg.room.casefold():
            raise VoteRefused("not_subscribed",
                              f"subscribe to r/{msg.room} before voting there", 400)
        done = await service_of(session.socket).vote(
            session.user, thread_id=msg.thread_id, comment_id=msg.comment_id,
            value=msg.value, room=session.room)
    except VoteRefused as exc:
        await session.error(exc.code, exc.reason, msg.client_id)
        return
    await session.send(done.answer(msg.client_id))


@post("/vote", name="vote")
async def vote_form(request: Request[Any, Any, Any]) -> Response[Any] | Redirect:
    """A vote from a form (CSRF token required, as for every form): back to the page, or
    the ``voted`` answer as JSON for a client that asks for it."""
    form = await request.form()
    fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    try:
        value = int(fields.get("value", ""))
    except ValueError:
        raise HTTPException(status_code=400, detail="a vote is 1, -1 or 0") from None
    thread_id = fields.get("thread_id", "")
    comment_id = fields.get("comment_id") or None
    try:
        done = await service_of(request).vote(current_user(request), thread_id=thread_id,
                                              comment_id=comment_id, value=value)
    except VoteRefused as exc:
        raise HTTPException(status_code=exc.status, detail=exc.reason) from exc
    if "application/json" in request.headers.get("accept", ""):
        return Response(msgspec.to_builtins(done.answer(None)))
    back = safe_next(fields.get("next"))
    if back == "/":
        back = f"/r/{done.target.room}/t/{done.target.thread_id}"
    return Redirect(path=back)


ROUTES = [vote_form]
