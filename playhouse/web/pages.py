"""Server-rendered pages: rooms, a room's threads, a thread's comment tree, room forms.

Pages render what storage holds at request time; ``web/static/live.js`` then keeps them
current over the websocket. Every user-supplied string goes through Jinja's autoescape.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import structlog
from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.params import Parameter
from litestar.response import Redirect, Template

from playhouse.errors import Conflict, Forbidden, NotFound, PlayhouseError
from playhouse.personas import ROOM_NAME_PATTERN
from playhouse.storage.models import Comment, Room
from playhouse.web import sorting, views
from playhouse.web.context import WebContext, context_of, current_user
from playhouse.web.sorting import SortParam, WindowParam
from playhouse.web.templating import page

log = structlog.get_logger()

MAX_NEST = 8
"""Deeper replies are shown at this level (a phone screen has no room for more)."""
THREAD_COMMENTS_MAX = 2000
ROOM_NAME = re.compile(ROOM_NAME_PATTERN)
Token = Annotated[str | None, Parameter(query="page", max_length=2000)]


@dataclass
class Node:
    """A comment in the rendered tree; ``replies`` nest up to :data:`MAX_NEST`."""

    comment: Comment
    level: int
    replies: list[Node] = field(default_factory=list)


def comment_tree(comments: list[Comment]) -> list[Node]:
    """Oldest-first comments as a tree; an orphan (parent gone) becomes top-level."""
    roots: list[Node] = []
    nodes: dict[str, Node] = {}
    home: dict[str, list[Node]] = {}
    for comment in comments:
        parent = nodes.get(comment.parent_id) if comment.parent_id else None
        if parent is None:
            node, target = Node(comment, 0), roots
        elif parent.level < MAX_NEST:
            node, target = Node(comment, parent.level + 1), parent.replies
        else:
            node, target = Node(comment, parent.level), home[parent.comment.comment_id]
        target.append(node)
        nodes[comment.comment_id] = node
        home[comment.comment_id] = target
    return roots


async def visible_rooms(ctx: WebContext, user: str | None) -> list[tuple[Room, bool]]:
    rooms = await ctx.storage.rooms.all()
    mine = set()
    if user is not None:
        mine = {m.room for m in await ctx.storage.members.of_user(user)}
    shown = [(r, r.name.lower() in mine) for r in rooms if r.public or r.name.lower() in mine]
    shown.sort(key=lambda pair: -pair[0].last_activity)
    return shown


@get("/", name="home")
async def home(request: Request[Any, Any, Any]) -> Template:
    ctx = context_of(request)
    rooms = [views.room_out(r, ctx.cast, member=m)
             for r, m in await visible_rooms(ctx, current_user(request))]
    return page(request, "rooms.html", rooms=rooms)


@get("/r/{room:str}", name="room")
async def room_page(request: Request[Any, Any, Any], room: str, token: Token = None,
                    sort: SortParam = None, t: WindowParam = None) -> Template:
    """A room's threads in the order asked for (hot, new, top of a period, active): one
    range query on its listings (``storage.listings``) per page."""
    ctx = context_of(request)
    user = current_user(request)
    found, member = await ctx.readable_room(room, user)
    order, window = await sorting.room_order(ctx, user, sort, t)
    threads = await ctx.storage.listings.page(
        found.name, order, window=window, limit=ctx.settings.web.history_page, token=token)
    mine = {}
    if user is not None and threads.items:
        mine = await ctx.storage.votes.mine_threads(user, [r.thread_id for r in threads.items])
    owner = False
    if member and user is not None:
        membership = await ctx.storage.members.get(found.name, user)
        owner = membership is not None and membership.role == "owner"
    return page(request, "room.html", room=views.room_out(found, ctx.cast, member=member),
                threads=threads.items, next_page=threads.next, owner=owner, sort=order,
                window=window, mine=mine, loaded_at=time.time(), request_page=token is not None,
                newest=max((r.thread_id for r in threads.items), default=""))


@get("/r/{room:str}/t/{thread_id:str}", name="thread")
async def thread_page(request: Request[Any, Any, Any], room: str, thread_id: str,
                      sort: SortParam = None) -> Template:
    ctx = context_of(request)
    user = current_user(request)
    thread, found = await ctx.readable_thread(thread_id, user)
    if found.name.casefold() != room.casefold():
        raise NotFound(f"no thread {thread_id!r} in r/{room}")
    comments: list[Comment] = []
    token: str | None = None
    while len(comments) < THREAD_COMMENTS_MAX:
        listed = await ctx.storage.comments.list(thread.thread_id, limit=500, token=token)
        comments.extend(listed.items)
        token = listed.next
        if token is None:
            break
    order = await sorting.comment_order(ctx, user, sort)
    tallies = await ctx.storage.votes.tallies(thread.thread_id)
    mine = await ctx.storage.votes.mine(user, thread.thread_id) if user is not None else {}
    tree = comment_tree(comments)
    sorting.sort_tree(tree, order, tallies)
    return page(request, "thread.html", room=views.room_out(found, ctx.cast), thread=thread,
                tree=tree, truncated=token is not None,
                last_id=max((c.comment_id for c in comments), default=""),
                pending=[c.comment_id for c in comments if c.status == "placeholder"],
                sort=order, tallies=tallies, mine=mine)


@get("/rooms/new", name="new_room")
async def new_room_page(request: Request[Any, Any, Any]) -> Template | Redirect:
    if current_user(request) is None:
        return Redirect(path="/login?next=/rooms/new")
    return page(request, "new_room.html", error=None, form={},
                personas=sorted(context_of(request).cast.personas))


@post("/rooms/new")
async def create_room(request: Request[Any, Any, Any]) -> Template | Redirect:
    ctx = context_of(request)
    user = current_user(request)
    if user is None:
        return Redirect(path="/login?next=/rooms/new")
    form = await request.form()
    name = str(form.get("name", "")).strip()
    description = " ".join(str(form.get("description", "")).split())
    public = form.get("public") == "on"
    bots = tuple(
        b for b in form.getall("bots", []) if isinstance(b, str) and b in ctx.cast.personas
    )
    default_bot = str(form.get("default_bot", "")) or None
    error = None
    if not ROOM_NAME.match(name):
        error = "room names are 3-32 letters, digits or '_'"
    elif len(description) > 500 or "\x00" in description:
        error = "the description is at most 500 characters"
    elif default_bot is not None and default_bot not in bots:
        error = "the default bot must be one of the room's bots"
    if error is None:
        now = time.time()
        try:
            await ctx.storage.rooms.create(Room(
                name=name, description=description, public=public, default_bot=default_bot,
                bots=bots, created_by=user, created_at=now, last_activity=now,
            ))
        except Conflict:
            error = f"r/{name} exists already"
    if error is not None:
        return page(request, "new_room.html", status_code=400, error=error,
                    personas=sorted(ctx.cast.personas),
                    form={"name": name, "description": description, "public": public})
    await ctx.storage.members.join(name, user, role="owner")
    return Redirect(path=f"/r/{name}")


@post("/r/{room:str}/join")
async def join_room(request: Request[Any, Any, Any], room: str) -> Redirect:
    ctx = context_of(request)
    user = _require_user(request)
    found = await ctx.storage.rooms.get(room)
    if not found.public and not await ctx.storage.members.is_member(found.name, user):
        raise Forbidden(f"r/{found.name} is private: its owner adds members")
    await ctx.storage.members.join(found.name, user)
    return Redirect(path=f"/r/{found.name}")


@post("/r/{room:str}/leave")
async def leave_room(request: Request[Any, Any, Any], room: str) -> Redirect:
    ctx = context_of(request)
    user = _require_user(request)
    found = await ctx.storage.rooms.get(room)
    await ctx.storage.members.leave(found.name, user)
    return Redirect(path="/" if not found.public else f"/r/{found.name}")


@post("/r/{room:str}/members")
async def add_member(request: Request[Any, Any, Any], room: str) -> Redirect:
    """The owner of a room adds someone to it (how private rooms get members)."""
    ctx = context_of(request)
    user = _require_user(request)
    found = await ctx.storage.rooms.get(room)
    membership = await ctx.storage.members.get(found.name, user)
    if membership is None or membership.role != "owner":
        raise Forbidden(f"only the owner of r/{found.name} adds members")
    form = await request.form()
    invited = await ctx.storage.users.get(str(form.get("username", "")).strip() or "-")
    await ctx.storage.members.join(found.name, invited.display_name)
    return Redirect(path=f"/r/{found.name}")


@get("/images/{name:path}", name="image")
async def image(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    """A generated image from the ``images`` container, under the access rule of the room
    it was made in (blobs are named ``<room>/<request id>.png``): a private room's images
    are for its members only, like its pages."""
    from playhouse.constants import CONTAINER_IMAGES

    ctx = context_of(request)
    blob = name.lstrip("/")
    room, sep, _ = blob.partition("/")
    if not sep or not ROOM_NAME.match(room):
        raise NotFound(f"no image {name!r}")
    await ctx.readable_room(room, current_user(request))  # NotFound / Forbidden
    try:
        data, content_type = await ctx.storage.blobs.get(CONTAINER_IMAGES, blob)
    except PlayhouseError as exc:
        raise NotFound(f"no image {name!r}") from exc
    if not content_type.startswith("image/"):
        content_type = "application/octet-stream"
    return Response(data, media_type=content_type,
                    headers={"cache-control": "private, max-age=86400",
                             "x-content-type-options": "nosniff"})


def _require_user(request: Request[Any, Any, Any]) -> str:
    user = current_user(request)
    if user is None:
        raise HTTPException(status_code=401, detail="log in first")
    return user


ROUTES = [home, room_page, thread_page, new_room_page, create_room, join_room, leave_room,
          add_member, image]
