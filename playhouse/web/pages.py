"""Server-rendered pages: rooms, a room's threads, a thread's comment tree, room forms.

Pages render what storage holds at request time; ``web/static/live.js`` then keeps them
current over the websocket. Every user-supplied string goes through Jinja's autoescape.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from math import ceil
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.params import Parameter
from litestar.response import Redirect, Template

from playhouse import views
from playhouse.errors import Banned, Conflict, Forbidden, NotFound, PlayhouseError
from playhouse.moderation.roles import OWNER, Powers
from playhouse.personas import ROOM_NAME_PATTERN
from playhouse.storage.models import Comment, Membership, Room, Thread
from playhouse.storage.threads import no_thread
from playhouse.web import sorting
from playhouse.web.context import WebContext, context_of, current_user
from playhouse.web.forms import read_form
from playhouse.web.moderation import REPORT_REASONS, check_description
from playhouse.web.prefs import Viewer, viewer_of
from playhouse.web.sorting import SortParam, WindowParam
from playhouse.web.templating import page
from playhouse.web.why import bots_now

log = structlog.get_logger()

MAX_NEST = 8
"""Deeper replies are shown at this level (a phone screen has no room for more)."""
THREAD_COMMENTS_MAX = 2000
ROOM_NAME = re.compile(ROOM_NAME_PATTERN)
Token = Annotated[str | None, Parameter(query="page", max_length=2000)]


@dataclass
class Node:
    """A comment in the rendered tree (as shown: :func:`views.visible_comment`);
    ``replies`` nest up to :data:`MAX_NEST`."""

    comment: Comment
    level: int
    replies: list[Node] = field(default_factory=list)
    hidden: str = ""
    """For the viewer: ``muted`` or ``blocked`` (shown as a stub, its replies kept)."""
    answers_to: str = ""
    """The person whose comment (or post) it answers (who may ask a bot again)."""
    alternatives: str = ""
    """A re-rolled answer's answers as JSON (what the page steps through)."""


def comment_tree(comments: list[Comment], viewer: Viewer | None = None,
                 thread: Thread | None = None) -> list[Node]:
    """Oldest-first comments as a tree, as ``viewer`` sees them; an orphan (parent gone)
    becomes top-level."""
    roots: list[Node] = []
    nodes: dict[str, Node] = {}
    home: dict[str, list[Node]] = {}
    by_id = {c.comment_id: c for c in comments}
    for stored in comments:
        comment = views.visible_comment(stored)
        parent = nodes.get(comment.parent_id) if comment.parent_id else None
        if parent is None:
            node, target = Node(comment, 0), roots
        elif parent.level < MAX_NEST:
            node, target = Node(comment, parent.level + 1), parent.replies
        else:
            node, target = Node(comment, parent.level), home[parent.comment.comment_id]
        if len(comment.alternatives) > 1:
            shown = views.comment_out(comment).alternatives
            node.alternatives = msgspec.json.encode(shown).decode()
        if viewer is not None:
            node.hidden = viewer.hides(stored.author, stored.is_bot) if not stored.gone else ""
        above = by_id.get(stored.parent_id) if stored.parent_id else None
        if above is not None and not above.is_bot and not above.gone:
            node.answers_to = above.author
        elif stored.parent_id is None and thread is not None and not thread.is_bot:
            node.answers_to = thread.author
        target.append(node)
        nodes[comment.comment_id] = node
        home[comment.comment_id] = target
    return roots


async def visible_rooms(ctx: WebContext, user: str | None) -> list[tuple[Room, bool]]:
    rooms = await ctx.storage.rooms.all()
    mine = set()
    if user is not None:
        mine = {m.room for m in await ctx.storage.members.of_user(user) if m.role != "banned"}
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
    threads, staff, powers, viewer = await asyncio.gather(
        ctx.storage.listings.page(found.name, order, window=window,
                                  limit=ctx.settings.web.history_page, token=token),
        ctx.storage.members.staff(found.name),
        ctx.moderation.powers(user, found.name) if user is not None else _nobody(),
        viewer_of(request),
    )
    moderates = powers is not None and powers.moderates
    shown = [views.visible_listing(r) for r in threads.items
             if (not r.held or views.sees_held(r.author, user, moderator=moderates))
             and (r.gone or not viewer.hides(r.author, r.is_bot))]
    mine = {}
    if user is not None and shown:
        mine = await ctx.storage.votes.mine_threads(user, [r.thread_id for r in shown])
    members: list[Membership] = []
    if powers is not None and powers.owns:
        members = sorted(await ctx.storage.members.of_room(found.name),
                         key=lambda m: (ROLE_ORDER.get(m.role, 9), m.username))
    shown_room = views.room_out(found, ctx.cast, member=member)
    return page(request, "room.html", room=shown_room, threads=shown,
                next_page=threads.next,
                owner=powers is not None and powers.owns, moderates=moderates,
                banned=powers is not None and powers.role == "banned",
                moderators=sorted(m.username for m in staff),
                members=members, bots_now=await bots_now(ctx, shown_room.bots),
                sort=order, window=window, mine=mine, loaded_at=time.time(),
                request_page=token is not None,
                newest=max((r.thread_id for r in threads.items), default=""))


ROLE_ORDER = {"owner": 0, "moderator": 1, "member": 2, "banned": 3}
"""How an owner's list of members is ordered."""


async def _nobody() -> None:
    return None


@get("/r/{room:str}/t/{thread_id:str}", name="thread")
async def thread_page(request: Request[Any, Any, Any], room: str, thread_id: str,
                      sort: SortParam = None) -> Template:
    ctx = context_of(request)
    user = current_user(request)
    try:
        thread, found = await ctx.readable_thread(thread_id, user)
    except NotFound:
        found = None
    if found is None or found.name.casefold() != room.casefold():
        raise no_thread(thread_id, room)  # missing, private or elsewhere: one answer
    comments: list[Comment] = []
    token: str | None = None
    while len(comments) < THREAD_COMMENTS_MAX:
        listed = await ctx.storage.comments.list(thread.thread_id, limit=500, token=token)
        comments.extend(listed.items)
        token = listed.next
        if token is None:
            break
    powers = await ctx.moderation.powers(user, found.name) if user is not None else None
    moderates = powers is not None and powers.moderates
    if thread.held and not views.sees_held(thread.author, user, moderator=moderates):
        raise no_thread(thread_id, room)
    comments = [c for c in comments
                if not c.held or views.sees_held(c.author, user, moderator=moderates)]
    order = await sorting.comment_order(ctx, user, sort)
    tallies = await ctx.storage.votes.tallies(thread.thread_id)
    mine = await ctx.storage.votes.mine(user, thread.thread_id) if user is not None else {}
    viewer = await viewer_of(request)
    tree = comment_tree(comments, viewer, thread)
    sorting.sort_tree(tree, order, tallies)
    return page(request, "thread.html", room=views.room_out(found, ctx.cast),
                thread=views.visible_thread(thread), stored_thread=thread,
                tree=tree, truncated=token is not None, muted=sorted(viewer.muted),
                last_id=max((c.comment_id for c in comments), default=""),
                pending=[c.comment_id for c in comments if c.status == "placeholder"],
                sort=order, tallies=tallies, mine=mine,
                moderates=moderates, reasons=REPORT_REASONS,
                banned=powers is not None and powers.rank < 0,
                may_comment=not (thread.locked or thread.gone == "removed" or thread.held)
                or moderates)


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
    form = await read_form(request)
    name = form.get("name", "").strip()
    description = " ".join(form.get("description", "").split())
    public = form.get("public") == "on"
    bots = tuple(b for b in form.getall("bots", []) if b in ctx.cast.personas)
    default_bot = form.get("default_bot", "") or None
    error = None
    status = 400
    if not ROOM_NAME.match(name):
        error = "room names are 3-32 letters, digits or '_'"
    elif (problem := check_description(ctx, description)) is not None:
        error = problem
    elif default_bot is not None and default_bot not in bots:
        error = "the default bot must be one of the room's bots"
    elif (await ctx.moderation.powers(user, None)).site_banned is not None:
        error, status = "you are banned from the site", 403
    if error is None and (wait := await ctx.limits.rooms_per_user.take(user)):
        status = 429
        per_hour = ctx.settings.web.rooms_per_hour
        error = (f"you can create {per_hour} rooms an hour; try again in "
                 f"{max(1, ceil(wait / 60))} min")
    if error is None:
        now = time.time()
        try:
            await ctx.storage.rooms.create(Room(
                name=name, description=description, public=public, default_bot=default_bot,
                bots=bots, created_by=user, created_at=now, last_activity=now,
            ))
        except Conflict:
            await ctx.limits.rooms_per_user.give_back(user)  # nothing was created
            error = f"r/{name} exists already"
    if error is not None:  # the form comes back as it was filled in
        return page(request, "new_room.html", status_code=status, error=error,
                    personas=sorted(ctx.cast.personas),
                    form={"name": name, "description": description, "public": public,
                          "bots": bots, "default_bot": default_bot})
    await ctx.storage.members.join(name, user, role="owner")
    return Redirect(path=f"/r/{name}")


@post("/r/{room:str}/join")
async def join_room(request: Request[Any, Any, Any], room: str) -> Redirect:
    ctx = context_of(request)
    user = _require_user(request)
    found = await ctx.storage.rooms.get(room)
    mine = await ctx.storage.members.get(found.name, user)
    if mine is not None and mine.role == "banned":
        raise Banned(f"you are banned from r/{found.name}")
    if not found.public and mine is None:
        raise Forbidden(f"r/{found.name} is private: its owner adds members")
    await ctx.storage.members.join(found.name, user)  # a member already keeps their role
    return Redirect(path=f"/r/{found.name}")


@post("/r/{room:str}/leave")
async def leave_room(request: Request[Any, Any, Any], room: str) -> Redirect:
    ctx = context_of(request)
    user = _require_user(request)
    found = await ctx.storage.rooms.get(room)
    await _leave(ctx, found, user)
    return Redirect(path="/" if not found.public else f"/r/{found.name}")


async def _leave(ctx: WebContext, room: Room, user: str) -> None:
    """``user`` leaves ``room``; Conflict while she is its only owner (the room would be
    left without anyone who can add or remove members)."""
    membership = await ctx.storage.members.get(room.name, user)
    if membership is None:
        return
    if membership.role == "owner":
        owners = [m for m in await ctx.storage.members.of_room(room.name) if m.role == "owner"]
        if len(owners) <= 1:
            raise Conflict(f"you are the only owner of r/{room.name}: make another member "
                           "an owner first, then leave")
    await ctx.storage.members.leave(room.name, user)


async def _as_owner(request: Request[Any, Any, Any],
                    room: str) -> tuple[WebContext, Room, Powers]:
    """The room, for its owners (and the site's admins) only: Forbidden for anyone else."""
    ctx = context_of(request)
    user = _require_user(request)
    found = await ctx.storage.rooms.get(room)
    return ctx, found, await ctx.moderation.moderator(user, found, at_least=OWNER)


async def _form_user(ctx: WebContext, request: Request[Any, Any, Any]) -> str:
    """The user named by the form's ``username`` (NotFound when there is none)."""
    form = await read_form(request)
    return (await ctx.storage.users.get(form.get("username", "").strip() or "-")).display_name


@post("/r/{room:str}/members")
async def add_member(request: Request[Any, Any, Any], room: str) -> Redirect:
    """An owner of a room adds someone to it (how private rooms get members); a member
    already keeps their role, a banned one stays out until the ban is lifted."""
    ctx, found, powers = await _as_owner(request, room)
    target = await _form_user(ctx, request)
    existing = await ctx.storage.members.get(found.name, target)
    if existing is not None and existing.role == "banned":
        raise Conflict(f"u/{target} is banned from r/{found.name}: lift the ban first")
    if existing is None:
        await ctx.moderation.record(powers, "add_member", found.name, target_user=target)
        await ctx.storage.members.join(found.name, target)
    return Redirect(path=f"/r/{found.name}")


@post("/r/{room:str}/members/remove")
async def remove_member(request: Request[Any, Any, Any], room: str) -> Redirect:
    """An owner removes a member (herself: as leaving); other owners leave by themselves.
    The removed member's open pages of a private room stop at once."""
    ctx, found, powers = await _as_owner(request, room)
    user = powers.name
    target = await _form_user(ctx, request)
    if target.casefold() == user.casefold():
        await _leave(ctx, found, user)
        return Redirect(path="/" if not found.public else f"/r/{found.name}")
    membership = await ctx.storage.members.get(found.name, target)
    if membership is None or membership.role == "banned":
        raise NotFound(f"u/{target} is not a member of r/{found.name}")
    if membership.role == "owner":
        raise Forbidden(f"u/{target} is an owner of r/{found.name}: owners leave by themselves")
    await ctx.moderation.record(powers, "remove_member", found.name, target_user=target)
    await ctx.storage.members.leave(found.name, target)
    ctx.broadcast.access_ended(target, found.name, f"u/{user} removed you from r/{found.name}")
    log.info("room.member_removed", room=found.name, username=target, by=user)
    return Redirect(path=f"/r/{found.name}")


@post("/r/{room:str}/members/owner")
async def make_owner(request: Request[Any, Any, Any], room: str) -> Redirect:
    """An owner makes a member an owner too (how ownership is handed over)."""
    ctx, found, powers = await _as_owner(request, room)
    target = await _form_user(ctx, request)
    existing = await ctx.storage.members.get(found.name, target)
    if existing is None or existing.role == "banned":
        raise NotFound(f"u/{target} is not a member of r/{found.name}")
    await ctx.moderation.record(powers, "grant", found.name, target_user=target,
                                detail="owner")
    await ctx.storage.members.set_role(found.name, target, "owner")
    log.info("room.owner_added", room=found.name, username=target, by=powers.name)
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
          add_member, remove_member, make_owner, image]
