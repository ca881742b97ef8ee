"""Voting: one rule, two ways in (a ``vote`` frame on the websocket, ``POST /vote``).

:func:`cast_vote` is the rule both apply: the voter is logged in; within their rate
(``web.votes_per_minute``, per person: :attr:`Limits.votes_per_user`, shared by the
instances through Redis when there is one); the thread exists and its room is readable by
them (a private room's items are its members' only: to anyone else they do not exist, the
same ``not_found`` as a missing one); a comment exists in that thread and has something
to vote on (not a bot still thinking). The vote itself is
:meth:`playhouse.storage.votes.VoteRepo.cast` (one vote per person per item, idempotent,
race-free); then the voter's own copy for the arrows, and the coalesced score event and
index writes (:mod:`playhouse.web.scores`). A refusal is a
:class:`~playhouse.errors.PlayhouseError`, answered as every other one is.

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
from playhouse.errors import (
    BadRequest,
    InvalidInput,
    LoginRequired,
    NotFound,
    NotSubscribed,
    PlayhouseError,
    RateLimited,
    describe,
)
from playhouse.moderation.roles import refuse_post
from playhouse.storage.threads import no_thread
from playhouse.web.auth import safe_next
from playhouse.web.context import WebContext, context_of, current_user
from playhouse.web.forms import read_form
from playhouse.web.protocol import Voted, VoteMessage
from playhouse.web.scores import Target

if TYPE_CHECKING:
    from playhouse.storage.votes import VoteCast
    from playhouse.web.live import Session

log = structlog.get_logger()


@dataclass(frozen=True)
class VoteDone:
    target: Target
    cast: VoteCast

    def answer(self, client_id: str | None) -> Voted:
        tally = self.cast.tally
        return Voted(client_id=client_id, thread_id=tally.thread_id, item_id=tally.item_id,
                     value=self.cast.value, ups=tally.ups, downs=tally.downs,
                     score=tally.score, version=tally.version)


async def cast_vote(ctx: WebContext, user: str | None, *, thread_id: str,
                    comment_id: str | None, value: int, room: str | None = None) -> VoteDone:
    """Store ``user``'s vote (a PlayhouseError says why not); ``room``: the item must be
    in it (the socket's subscription)."""
    if user is None:
        raise LoginRequired("log in to vote")
    if value not in (-1, 0, 1):
        raise InvalidInput("a vote is 1, -1 or 0")
    wait = await ctx.limits.votes_per_user.take(user.casefold())
    if wait > 0:
        raise RateLimited(f"too many votes; try again in {max(1.0, wait):.0f} s")
    target = await _target(ctx, user, thread_id, comment_id, room)
    cast = await ctx.storage.votes.cast(target.thread_id, target.item_id, user, value)
    try:
        await ctx.storage.votes.remember(user, cast, is_thread=target.is_thread)
    except PlayhouseError as exc:  # only the arrows: the vote is stored
        log.warning("vote.remember_failed", user=user, item_id=target.item_id,
                    reason=str(exc))
    if cast.changed:
        ctx.scores.voted(target, cast.tally)
    return VoteDone(target=target, cast=cast)


async def _target(ctx: WebContext, user: str, thread_id: str, comment_id: str | None,
                  room: str | None) -> Target:
    if not ids.is_id(thread_id):
        raise no_thread(thread_id, room)
    thread, found = await ctx.shown_thread(thread_id, user)  # private, held: not found
    if room is not None and found.name.casefold() != room.casefold():
        raise no_thread(thread_id, room)
    refuse_post(found, await ctx.storage.members.standing(found.name, user))  # banned
    if thread.gone:
        raise InvalidInput(f"that thread is {thread.gone}: there is nothing to vote on")
    if comment_id is None:
        return Target(room=found.name, thread_id=thread.thread_id,
                      item_id=thread.thread_id, author=thread.author)
    if not ids.is_id(comment_id):
        raise NotFound(f"no comment {comment_id!r}")
    comment = await ctx.storage.comments.get(thread.thread_id, comment_id)
    if comment.status != "ok" or comment.gone or comment.held:
        raise InvalidInput("there is nothing to vote on" + ("" if comment.gone or comment.held
                                                             else " yet"))
    return Target(room=found.name, thread_id=thread.thread_id, item_id=comment.comment_id,
                  author=comment.author)


async def on_socket_vote(session: Session, msg: VoteMessage) -> None:
    """A ``vote`` frame: answered with ``voted`` (a refusal is raised, and the socket
    answers it with an ``error`` carrying the frame's client id)."""
    if session.user is None:
        raise LoginRequired("log in to vote")
    if session.room is None or session.room.casefold() != msg.room.casefold():
        raise NotSubscribed(f"subscribe to r/{msg.room} before voting there")
    done = await cast_vote(session.ctx, session.user, thread_id=msg.thread_id,
                           comment_id=msg.comment_id, value=msg.value, room=session.room)
    await session.send(done.answer(msg.client_id))


@post("/vote", name="vote")
async def vote_form(request: Request[Any, Any, Any]) -> Response[Any] | Redirect:
    """A vote from a form (CSRF token required, as for every form): back to the page, or
    the ``voted`` answer as JSON for a client that asks for it. A refusal is answered
    with its error class's HTTP status (:data:`playhouse.errors.CODES`)."""
    form = await read_form(request)
    try:
        try:
            value = int(form.get("value", ""))
        except ValueError:
            raise BadRequest("a vote is 1, -1 or 0") from None
        done = await cast_vote(context_of(request), current_user(request),
                               thread_id=form.get("thread_id", ""),
                               comment_id=form.get("comment_id") or None, value=value)
    except PlayhouseError as exc:
        _, status, reason = describe(exc)
        raise HTTPException(status_code=status, detail=reason) from exc
    if "application/json" in request.headers.get("accept", ""):
        return Response(msgspec.to_builtins(done.answer(None)))
    back = safe_next(form.get("next"))
    if back == "/":
        back = f"/r/{done.target.room}/t/{done.target.thread_id}"
    return Redirect(path=back)


ROUTES = [vote_form]
