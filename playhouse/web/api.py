"""The read-only REST API under ``/api`` (documented at ``/schema``).

The same access rule as the pages: private rooms and their threads exist only for their
members. Every post and comment carries ``author``, ``is_bot`` and ``created_at``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.params import Parameter

from playhouse import views
from playhouse.storage.models import Comment
from playhouse.views import CommentOut, PersonaLook, RoomOut, ThreadOut
from playhouse.web.context import context_of, current_user
from playhouse.web.pages import THREAD_COMMENTS_MAX, Node, comment_tree, visible_rooms


class ThreadPage(msgspec.Struct, frozen=True, kw_only=True):
    threads: list[ThreadOut]
    next: str | None
    """Pass as ``page`` for the following (older) threads; null on the last page."""


class CommentNode(msgspec.Struct, frozen=True, kw_only=True):
    comment: CommentOut
    replies: list[CommentNode]


class ThreadDetail(msgspec.Struct, frozen=True, kw_only=True):
    thread: ThreadOut
    comments: list[CommentNode]
    """The comment tree, oldest first at every level."""
    truncated: bool = False


def _node(node: Node) -> CommentNode:
    return CommentNode(comment=views.comment_out(node.comment),
                       replies=[_node(n) for n in node.replies])


class Api(Controller):
    path = "/api"
    tags = ["api"]

    @get("/rooms")
    async def rooms(self, request: Request[Any, Any, Any]) -> list[RoomOut]:
        """Rooms this visitor can see, most recently active first."""
        ctx = context_of(request)
        return [views.room_out(r, ctx.cast, member=m)
                for r, m in await visible_rooms(ctx, current_user(request))]

    @get("/rooms/{room:str}/threads")
    async def threads(
        self,
        request: Request[Any, Any, Any],
        room: str,
        page: Annotated[str | None, Parameter(max_length=2000)] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> ThreadPage:
        """A room's threads, newest first, paged."""
        ctx = context_of(request)
        found, _ = await ctx.readable_room(room, current_user(request))
        listed = await ctx.storage.threads.list(found.name, limit=limit, token=page)
        return ThreadPage(threads=[views.thread_out(t) for t in listed.items], next=listed.next)

    @get("/threads/{thread_id:str}")
    async def thread(self, request: Request[Any, Any, Any], thread_id: str) -> ThreadDetail:
        """A thread's post and its comment tree."""
        ctx = context_of(request)
        thread, _ = await ctx.readable_thread(thread_id, current_user(request))
        comments: list[Comment] = []
        token: str | None = None
        while len(comments) < THREAD_COMMENTS_MAX:
            listed = await ctx.storage.comments.list(thread.thread_id, limit=500, token=token)
            comments.extend(listed.items)
            token = listed.next
            if token is None:
                break
        return ThreadDetail(thread=views.thread_out(thread),
                            comments=[_node(n) for n in comment_tree(comments)],
                            truncated=token is not None)

    @get("/personas")
    async def personas(self, request: Request[Any, Any, Any]) -> list[PersonaLook]:
        """Every bot: name, kind, colour and avatar."""
        ctx = context_of(request)
        return [views.persona_look(p) for _, p in sorted(ctx.cast.personas.items())]
