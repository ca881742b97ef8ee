"""The inbox: who is told of a reply or a mention, the unread count, ``/inbox``.

A comment notifies the author of what it answers (a person's comment, or a person's
thread for a top-level reply), whoever wrote it, bot or person; and a person's comment
or thread notifies the people it mentions as ``u/name`` (:data:`MENTIONS_MAX` at most).
Nobody is told of their own words, of a bot they muted or of someone they blocked, and
nobody is told of anything in a private room they are not a member of: that is checked
when the notification is made and again whenever the inbox is read (a member who left,
or was removed, sees nothing of the room any more). The notification is stored in the
recipient's partition (:mod:`playhouse.storage.inbox`), once per comment, and announced
on their user channel, so every page they have open, on any instance, moves its badge.

What an inbox item says is read from the comment when the inbox is shown, through the
one visibility rule (:func:`playhouse.views.visible_comment`): an edit shows as edited,
a deletion as its tombstone, never the text it replaced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Annotated, Any

import structlog
from litestar import Request, get, post
from litestar.params import Parameter
from litestar.response import Redirect, Template

from playhouse import views
from playhouse.constants import PATH_MAX
from playhouse.errors import LoginRequired, NotFound, PlayhouseError
from playhouse.events import InboxEvent
from playhouse.personas import mentioned
from playhouse.storage.inbox import UNREAD_CAP
from playhouse.storage.models import Comment, Notification, NotificationKind, Room, Thread
from playhouse.web.context import WebContext, context_of, current_user
from playhouse.web.forms import read_form
from playhouse.web.prefs import Viewer, viewer_of
from playhouse.web.templating import page

log = structlog.get_logger()

MENTIONS_MAX = 10
"""People one comment notifies by mentioning them (the first ones written)."""
INBOX_PAGE = 50
_Token = Annotated[str | None, Parameter(query="page", max_length=2000)]


# ------------------------------------------------------------------ who is told
async def notify(ctx: WebContext, *, comment: Comment | None, thread: Thread,
                 parent: Comment | None, room: Room | None = None) -> int:
    """Tell the people ``comment`` (None: ``thread``'s own post) answers or mentions;
    how many were told. ``parent`` is the comment it answers (None: the post)."""
    item_id = comment.comment_id if comment is not None else thread.thread_id
    author = comment.author if comment is not None else thread.author
    is_bot = comment.is_bot if comment is not None else thread.is_bot
    if comment is not None and comment.gone:
        return 0
    wanted: dict[str, NotificationKind] = {}
    if comment is not None:
        if parent is not None and not parent.is_bot and not parent.gone:
            wanted[parent.author.casefold()] = "reply"
        elif (parent is None and comment.parent_id is None and not thread.is_bot
              and not thread.gone):
            wanted[thread.author.casefold()] = "reply"
    if not is_bot:
        text = comment.text if comment is not None else f"{thread.title}\n{thread.body}"
        named = [n for n in mentioned(text) if not ctx.is_persona(n)][:MENTIONS_MAX]
        for name in named:
            wanted.setdefault(name, "mention")
    wanted.pop(author.casefold(), None)
    if not wanted:
        return 0
    if room is None:
        room = ctx.counters.known_room(thread.room) or await ctx.storage.rooms.get(thread.room)
    now = time.time()
    told = await asyncio.gather(*(
        _tell(ctx, name, kind, room=room, thread=thread, item_id=item_id, author=author,
              is_bot=is_bot, at=now)
        for name, kind in wanted.items()
    ))
    return sum(told)


async def _tell(ctx: WebContext, name: str, kind: NotificationKind, *, room: Room,
                thread: Thread, item_id: str, author: str, is_bot: bool, at: float) -> bool:
    recipient = await ctx.storage.users.find(name)
    if recipient is None or recipient.disabled:
        return False
    if Viewer.of(recipient.username, recipient).hides(author, is_bot):
        log.info("inbox.muted", username=recipient.username, by=author)
        return False
    if not room.public and not await ctx.storage.members.is_member(room.name,
                                                                    recipient.username):
        log.info("inbox.not_member", username=recipient.username, room=room.name)
        return False
    note = Notification(username=recipient.username, kind=kind, room=room.name,
                        thread_id=thread.thread_id, comment_id=item_id, by=author,
                        by_bot=is_bot, created_at=at)
    if not await ctx.storage.inbox.add(note):
        return False  # this comment told them already
    ctx.broadcast.inbox(recipient.username, InboxEvent(added=1, latest=note_out(note)))
    return True


async def notify_answer(ctx: WebContext, comment: Comment) -> int:
    """Tell the person a bot's answer (just applied) answers."""
    thread = ctx.counters.known_thread(comment.thread_id)
    parent: Comment | None = None
    if comment.parent_id is not None:
        parent = await ctx.storage.comments.get(comment.thread_id, comment.parent_id)
    if thread is None:
        thread = await ctx.storage.threads.get(comment.thread_id)
    return await notify(ctx, comment=comment, thread=thread, parent=parent)


# ------------------------------------------------------------------ reading
async def readable_rooms(ctx: WebContext, user: str, rooms: Iterable[str]) -> set[str]:
    """Which of ``rooms`` (casefolded) ``user`` may read now: public ones, and private
    ones while a member."""
    names = {r.casefold() for r in rooms}
    if not names:
        return set()

    async def get(name: str) -> Room | None:
        try:
            return ctx.counters.known_room(name) or await ctx.storage.rooms.get(name)
        except NotFound:
            return None

    found = [r for r in await asyncio.gather(*(get(n) for n in names)) if r is not None]
    allowed = {r.name.casefold() for r in found if r.public}
    if any(not r.public for r in found):
        mine = {m.room.casefold() for m in await ctx.storage.members.of_user(user)}
        allowed |= {r.name.casefold() for r in found if not r.public
                    and r.name.casefold() in mine}
    return allowed


def _shown(notes: Iterable[Notification], allowed: set[str], viewer: Viewer) -> list[Notification]:
    return [n for n in notes if n.room.casefold() in allowed and not viewer.hides(n.by, n.by_bot)]


async def unread_count(ctx: WebContext, viewer: Viewer) -> int:
    """The viewer's unread notifications they may still see (at most UNREAD_CAP)."""
    if viewer.user is None:
        return 0
    unread = await ctx.storage.inbox.unread(viewer.user)
    if not unread:
        return 0
    allowed = await readable_rooms(ctx, viewer.user, (n.room for n in unread))
    return len(_shown(unread, allowed, viewer))


def badge(count: int | None) -> str:
    """What the header's badge says."""
    if not count:
        return ""
    return f"{UNREAD_CAP - 1}+" if count >= UNREAD_CAP else str(count)


def note_out(n: Notification, *, text: str = "", title: str = "") -> views.NotificationOut:
    on_post = n.comment_id == n.thread_id
    link = (f"/r/{n.room}/t/{n.thread_id}#post" if on_post
            else views.comment_link(n.room, n.thread_id, n.comment_id))
    return views.NotificationOut(
        kind=n.kind, room=n.room, thread_id=n.thread_id, comment_id=n.comment_id, by=n.by,
        by_bot=n.by_bot, created_at=views.iso(n.created_at), read=n.read, link=link,
        text=text, thread_title=title,
    )


async def _contents(ctx: WebContext, notes: list[Notification]
                    ) -> tuple[dict[str, Comment], dict[str, Thread]]:
    """The comments and threads ``notes`` point to, as stored now (missing: left out)."""
    by_thread: dict[str, list[str]] = {}
    for n in notes:
        if n.comment_id != n.thread_id:
            by_thread.setdefault(n.thread_id, []).append(n.comment_id)

    async def comments(thread_id: str, wanted: list[str]) -> list[Comment]:
        found: list[Comment] = []
        for start in range(0, len(wanted), PATH_MAX):
            found += await ctx.storage.comments.some(thread_id, wanted[start:start + PATH_MAX])
        return found

    async def thread(thread_id: str) -> Thread | None:
        try:
            return await ctx.storage.threads.get(thread_id)
        except NotFound:
            return None

    thread_ids = list(dict.fromkeys(n.thread_id for n in notes))
    found_comments, found_threads = await asyncio.gather(
        asyncio.gather(*(comments(t, ids) for t, ids in by_thread.items())),
        asyncio.gather(*(thread(t) for t in thread_ids)),
    )
    return ({c.comment_id: c for group in found_comments for c in group},
            {t.thread_id: t for t in found_threads if t is not None})


async def inbox_items(ctx: WebContext, viewer: Viewer, token: str | None = None
                      ) -> tuple[list[views.NotificationOut], str | None]:
    """A page of the viewer's inbox as they may see it now, and the next page's token."""
    assert viewer.user is not None
    listed = await ctx.storage.inbox.list(viewer.user, limit=INBOX_PAGE, token=token)
    allowed = await readable_rooms(ctx, viewer.user, (n.room for n in listed.items))
    notes = _shown(listed.items, allowed, viewer)
    comments, threads = await _contents(ctx, notes)
    items = []
    for n in notes:
        thread = threads.get(n.thread_id)
        if thread is None:
            continue
        shown_thread = views.visible_thread(thread)
        if n.comment_id == n.thread_id:
            text = shown_thread.body or shown_thread.title
        elif (comment := comments.get(n.comment_id)) is not None:
            text = views.visible_comment(comment).text
        else:
            continue
        items.append(note_out(n, text=text[:300], title=shown_thread.title))
    return items, listed.next


async def announce_count(ctx: WebContext, viewer: Viewer) -> None:
    """Tell the viewer's open pages their unread count (after reading some)."""
    if viewer.user is not None:
        ctx.broadcast.inbox(viewer.user, InboxEvent(unread=await unread_count(ctx, viewer)))


# ------------------------------------------------------------------ pages
def _require(request: Request[Any, Any, Any]) -> str:
    user = current_user(request)
    if user is None:
        raise LoginRequired("log in first")
    return user


@get("/inbox", name="inbox")
async def inbox_page(request: Request[Any, Any, Any], token: _Token = None) -> Template | Redirect:
    """Replies to you and mentions of you, newest first."""
    if current_user(request) is None:
        return Redirect(path="/login?next=/inbox")
    ctx = context_of(request)
    viewer = await viewer_of(request)
    items, nxt = await inbox_items(ctx, viewer, token)
    return page(request, "inbox.html", items=items, next_page=nxt)


@post("/inbox/read")
async def mark_read(request: Request[Any, Any, Any]) -> Redirect:
    """Mark one notification read (``comment_id``), or all of them (``all``)."""
    _require(request)
    ctx = context_of(request)
    viewer = await viewer_of(request)
    assert viewer.user is not None
    form = await read_form(request)
    if form.get("all"):
        marked = await ctx.storage.inbox.mark_all_read(viewer.user)
    else:
        wanted = [c for c in form.getall("comment_id", []) if c]
        if not wanted:
            raise NotFound("say which notification to mark read (or all)")
        marked = await ctx.storage.inbox.mark_read(viewer.user, wanted)
    log.info("inbox.read", username=viewer.user, marked=marked)
    try:
        await announce_count(ctx, viewer)
    except PlayhouseError as exc:  # the pages' badges catch up on their next load
        log.warning("inbox.count_failed", reason=str(exc)[:200])
    return Redirect(path="/inbox")


UNREAD_KEY = "unread"
"""Where a page request keeps its header's unread count (``request.state``)."""


async def before_page(request: Request[Any, Any, Any]) -> None:
    """Litestar ``before_request`` hook: a page (an HTML GET by someone logged in) reads
    its viewer and the header's unread count; a count that cannot be read now shows no
    badge rather than no page."""
    if (request.method != "GET" or current_user(request) is None
            or "text/html" not in request.headers.get("accept", "")):
        return
    try:
        viewer = await viewer_of(request)
        request.state[UNREAD_KEY] = await unread_count(context_of(request), viewer)
    except PlayhouseError as exc:
        log.warning("inbox.count_failed", reason=str(exc)[:200])


ROUTES = [inbox_page, mark_read]
