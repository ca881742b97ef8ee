"""Moderation pages and forms: reports, the queue at ``/mod``, the mod log, the actions.

Anyone logged in reports a thread or a comment (``POST /report``; rate limited per user,
``web.reports_per_hour``). ``/mod`` is the queue: the open reports, and what the word
filter held, of the rooms the viewer moderates (every room for a site admin), each item
shown with its thread and the comment it answers. The actions are forms
(``POST /mod/<action>``) checked by :mod:`playhouse.moderation.actions` against the room
the item is stored in; each answers with a redirect back to where it was asked from, or
with the error page that says why not (403 for a moderator of another room). The mod
log (``/mod/log``) shows the rooms the viewer moderates (all for admins), the text of
every removal included. An owner appoints moderators and edits the room
(``/r/<room>/edit``: description, bots, default bot, whether bots start threads).
"""

from __future__ import annotations

import asyncio
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import ceil
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Request, get, post
from litestar.datastructures import MultiDict
from litestar.params import Parameter
from litestar.response import Redirect, Template

from playhouse import ids
from playhouse.constants import FILTER_REPORTER
from playhouse.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidInput,
    LoginRequired,
    NotFound,
    RateLimited,
)
from playhouse.moderation.roles import OWNER, Powers
from playhouse.storage.models import Comment, Report, Room, Thread
from playhouse.storage.moderation import report_id_for
from playhouse.views import room_out, visible_comment
from playhouse.web.auth import safe_next
from playhouse.web.context import WebContext, context_of, current_user
from playhouse.web.forms import read_form
from playhouse.web.posting import approved
from playhouse.web.templating import page

log = structlog.get_logger()

REPORT_REASONS: dict[str, str] = {
    "spam": "Spam or advertising",
    "harassment": "Harassment or bullying",
    "hate": "Hate against a group",
    "sexual": "Sexual content",
    "violence": "Violence or threats",
    "private": "Someone's private information",
    "other": "Something else (say what)",
}
"""The reasons a report offers (key: what is stored)."""
DETAILS_MAX_CHARS = 1000
QUEUE_ITEMS_MAX = 100
"""Items the queue shows at once (the oldest reported first)."""
LOG_PAGE = 100
DESCRIPTION_MAX_CHARS = 500


@dataclass
class QueueItem:
    """One reported (or held) thread or comment, with what it is shown in."""

    room: str
    thread: Thread
    comment: Comment | None
    parent: Comment | None
    reports: list[Report] = field(default_factory=list)

    @property
    def held(self) -> bool:
        """The word filter held it (it waits for approval)."""
        return any(r.reporter == FILTER_REPORTER for r in self.reports)

    @property
    def item(self) -> Thread | Comment:
        return self.comment if self.comment is not None else self.thread


def _user(request: Request[Any, Any, Any]) -> str:
    user = current_user(request)
    if user is None:
        raise LoginRequired("log in first")
    return user


def _id(form: MultiDict[str], name: str, *, required: bool = True) -> str | None:
    value = form.get(name, "").strip()
    if not value:
        if required:
            raise BadRequest(f"the form has no {name}")
        return None
    if not ids.is_id(value):
        raise BadRequest(f"{name} {value[:64]!r} is not an id")
    return value


def _back(form: MultiDict[str], default: str = "/mod") -> Redirect:
    return Redirect(path=safe_next(form.get("next") or default))


# ------------------------------------------------------------------------- reports
@post("/report")
async def file_report(request: Request[Any, Any, Any]) -> Template:
    """Report a thread (no ``comment_id``) or a comment to its room's moderators."""
    ctx = context_of(request)
    user = _user(request)
    form = await read_form(request)
    thread_id = _id(form, "thread_id")
    comment_id = _id(form, "comment_id", required=False)
    assert thread_id is not None
    reason = form.get("reason", "")
    if reason not in REPORT_REASONS:
        raise InvalidInput(f"choose a reason: {', '.join(REPORT_REASONS)}")
    details = " ".join(form.get("details", "").split())
    if len(details) > DETAILS_MAX_CHARS:
        raise InvalidInput(f"the details are {len(details)} characters, at most "
                           f"{DETAILS_MAX_CHARS}")
    if "\x00" in details:
        raise InvalidInput("the details contain a NUL character")
    if reason == "other" and not details:
        raise InvalidInput("say what is wrong with it: “something else” needs the details")
    thread, room = await ctx.readable_thread(thread_id, user)
    powers = await ctx.moderation.powers(user, room.name)
    if powers.site_banned is not None:
        raise Forbidden("you are banned from the site")
    item: Thread | Comment = thread
    if comment_id is not None:
        item = await ctx.storage.comments.get(thread.thread_id, comment_id)
    if item.held and not powers.moderates and item.author.casefold() != user.casefold():
        raise NotFound("no such comment" if comment_id else "no such thread")
    if item.gone:
        raise Conflict(f"that {'comment' if comment_id else 'thread'} is {item.gone} already: "
                       "there is nothing left to report")
    if item.author.casefold() == user.casefold():
        raise InvalidInput("that is yours: delete it instead of reporting it")
    report_id = report_id_for(comment_id or thread.thread_id, user)
    if await ctx.storage.reports.find(room.name, report_id) is not None:
        raise Conflict(f"you reported that {'comment' if comment_id else 'thread'} already; "
                       f"the moderators of r/{room.name} have it")
    if wait := await ctx.limits.reports_per_user.take(user):
        raise RateLimited(f"you filed {ctx.settings.web.reports_per_hour} reports within the "
                          f"hour: file the next one in {max(1, ceil(wait / 60))} min")
    try:
        await ctx.storage.reports.file(Report(
            report_id=report_id, room=room.name,
            thread_id=thread.thread_id, comment_id=comment_id, author=item.author,
            reporter=user, reason=reason, details=details, created_at=time.time(),
        ))
    except Conflict:  # the same report, sent twice at once
        await ctx.limits.reports_per_user.give_back(user)
        raise Conflict(f"you reported that {'comment' if comment_id else 'thread'} already; "
                       f"the moderators of r/{room.name} have it") from None
    return page(request, "reported.html", room=room_out(room, ctx.cast), thread=thread,
                comment_id=comment_id, reason=REPORT_REASONS[reason])


# ------------------------------------------------------------------------- the queue
async def _moderated_rooms(ctx: WebContext, user: str) -> tuple[Powers, list[str] | None]:
    """The viewer's site powers and the rooms they moderate (None: every room, an admin);
    Forbidden for someone who moderates nothing."""
    site = await ctx.moderation.powers(user, None)
    if site.site_banned is not None:
        raise Forbidden("you are banned from the site")
    if site.site_admin:
        return site, None
    rooms = await ctx.moderation.rooms_of(user)
    if not rooms:
        raise Forbidden("the moderation pages are for moderators: you moderate no room")
    return site, rooms


async def _queue(ctx: WebContext, rooms: list[str] | None) -> list[QueueItem]:
    if rooms is None:
        reports = await ctx.storage.reports.open_everywhere()
    else:
        found = await asyncio.gather(*(ctx.storage.reports.open_in(r) for r in rooms))
        reports = [r for rs in found for r in rs]
    groups: dict[tuple[str, str, str | None], list[Report]] = {}
    for r in sorted(reports, key=lambda r: r.created_at):
        groups.setdefault((r.room.casefold(), r.thread_id, r.comment_id), []).append(r)
    limit = asyncio.Semaphore(8)

    async def load(reps: list[Report]) -> QueueItem | None:
        first = reps[0]
        async with limit:
            try:
                thread = await ctx.storage.threads.get(first.thread_id)
                comment = parent = None
                if first.comment_id is not None:
                    comment = await ctx.storage.comments.get(first.thread_id,
                                                             first.comment_id)
                    if comment.parent_id is not None:
                        try:
                            parent = await ctx.storage.comments.get(first.thread_id,
                                                                    comment.parent_id)
                        except NotFound:
                            parent = None
            except NotFound:
                return None  # gone from storage altogether
        return QueueItem(room=thread.room, thread=thread, comment=comment,
                         parent=visible_comment(parent) if parent else None, reports=reps)

    loaded = await asyncio.gather(*(load(r) for r in list(groups.values())[:QUEUE_ITEMS_MAX]))
    return [item for item in loaded if item is not None]


@get("/mod", name="mod_queue", cache=False)
async def mod_queue(request: Request[Any, Any, Any]) -> Template | Redirect:
    ctx = context_of(request)
    user = current_user(request)
    if user is None:
        return Redirect(path="/login?next=/mod")
    site, rooms = await _moderated_rooms(ctx, user)
    items = await _queue(ctx, rooms)
    return page(request, "mod.html", items=items, rooms=rooms, admin=site.site_admin,
                reasons=REPORT_REASONS)


@get("/mod/log", name="mod_log", cache=False)
async def mod_log(
    request: Request[Any, Any, Any],
    room: Annotated[str | None, Parameter(query="room", max_length=64)] = None,
) -> Template | Redirect:
    """The mod log of one room (``room``), or of every room the viewer moderates."""
    ctx = context_of(request)
    user = current_user(request)
    if user is None:
        return Redirect(path="/login?next=/mod/log")
    site, rooms = await _moderated_rooms(ctx, user)
    if room is not None:
        found = await ctx.storage.rooms.get(room)
        await ctx.moderation.moderator(user, found)
        entries = (await ctx.storage.modlog.of_room(found.name, limit=LOG_PAGE)).items
    elif rooms is None:
        entries = (await ctx.storage.modlog.everything(limit=LOG_PAGE)).items
    else:
        pages = await asyncio.gather(*(ctx.storage.modlog.of_room(r, limit=LOG_PAGE)
                                       for r in rooms))
        entries = sorted((e for p in pages for e in p.items), key=lambda e: -e.at)[:LOG_PAGE]
    return page(request, "modlog.html", entries=entries, room=room, rooms=rooms,
                admin=site.site_admin)


# ------------------------------------------------------------------------- actions
async def _item_action(request: Request[Any, Any, Any], action: str) -> Redirect:
    ctx = context_of(request)
    user = _user(request)
    form = await read_form(request)
    thread_id = _id(form, "thread_id")
    comment_id = _id(form, "comment_id", required=False)
    assert thread_id is not None
    reason = form.get("reason", "")
    mod = ctx.moderation
    if action == "remove":
        await mod.remove(user, thread_id, comment_id, reason)
    elif action == "restore":
        await mod.restore(user, thread_id, comment_id, reason)
    elif action in ("lock", "unlock"):
        if comment_id is not None:
            raise BadRequest("a thread is locked, not a comment")
        await mod.lock(user, thread_id, locked=action == "lock", reason=reason)
    elif action == "approve":
        room, thread, comment = await mod.approve(user, thread_id, comment_id)
        await approved(ctx, room, thread, comment)
    return _back(form)


@post("/mod/remove")
async def mod_remove(request: Request[Any, Any, Any]) -> Redirect:
    return await _item_action(request, "remove")


@post("/mod/restore")
async def mod_restore(request: Request[Any, Any, Any]) -> Redirect:
    return await _item_action(request, "restore")


@post("/mod/lock")
async def mod_lock(request: Request[Any, Any, Any]) -> Redirect:
    return await _item_action(request, "lock")


@post("/mod/unlock")
async def mod_unlock(request: Request[Any, Any, Any]) -> Redirect:
    return await _item_action(request, "unlock")


@post("/mod/approve")
async def mod_approve(request: Request[Any, Any, Any]) -> Redirect:
    return await _item_action(request, "approve")


@post("/mod/dismiss")
async def mod_dismiss(request: Request[Any, Any, Any]) -> Redirect:
    ctx = context_of(request)
    user = _user(request)
    form = await read_form(request)
    room = form.get("room", "").strip()
    report_id = form.get("report_id", "").strip()
    if not room or not report_id:
        raise BadRequest("the form names no room or no report")
    await ctx.moderation.dismiss(user, room, report_id, form.get("reason", ""))
    return _back(form)


async def _people_action(request: Request[Any, Any, Any], action: str) -> Redirect:
    """Ban or unban (``scope`` ``site`` or a ``room``), grant or revoke a moderator."""
    ctx = context_of(request)
    user = _user(request)
    form = await read_form(request)
    target = form.get("username", "").strip()
    if not target:
        raise BadRequest("the form names nobody (username)")
    room: Room | None = None
    if form.get("scope", "room") != "site":
        room = await ctx.storage.rooms.get(form.get("room", "").strip() or "-")
    reason = form.get("reason", "")
    mod = ctx.moderation
    if action == "ban":
        await mod.ban(user, target, room, reason)
    elif action == "unban":
        await mod.unban(user, target, room, reason)
    elif action == "grant":
        await mod.grant(user, target, room, reason)
    else:
        await mod.revoke(user, target, room, reason)
    return _back(form)


@post("/mod/ban")
async def mod_ban(request: Request[Any, Any, Any]) -> Redirect:
    return await _people_action(request, "ban")


@post("/mod/unban")
async def mod_unban(request: Request[Any, Any, Any]) -> Redirect:
    return await _people_action(request, "unban")


@post("/mod/moderators")
async def mod_grant(request: Request[Any, Any, Any]) -> Redirect:
    """An owner (or an admin) makes someone a moderator of the room."""
    return await _people_action(request, "grant")


@post("/mod/moderators/remove")
async def mod_revoke(request: Request[Any, Any, Any]) -> Redirect:
    return await _people_action(request, "revoke")


# ------------------------------------------------------------------------- room edit
@get("/r/{room:str}/edit", name="edit_room", cache=False)
async def edit_room_page(request: Request[Any, Any, Any], room: str) -> Template:
    ctx = context_of(request)
    found = await ctx.storage.rooms.get(room)
    await ctx.moderation.moderator(_user(request), found, at_least=OWNER)
    return page(request, "room_edit.html", room=room_out(found, ctx.cast), error=None,
                personas=sorted(ctx.cast.personas))


@post("/r/{room:str}/edit")
async def edit_room(request: Request[Any, Any, Any], room: str) -> Template | Redirect:
    """The owner changes the description, the bots living there, the default bot and
    whether the bots start threads; the change is in the mod log."""
    ctx = context_of(request)
    user = _user(request)
    found = await ctx.storage.rooms.get(room)
    powers = await ctx.moderation.moderator(user, found, at_least=OWNER)
    form = await read_form(request)
    description = " ".join(form.get("description", "").split())
    bots = tuple(dict.fromkeys(b for b in form.getall("bots", []) if b in ctx.cast.personas))
    unknown = [b for b in form.getall("bots", []) if b not in ctx.cast.personas]
    default_bot = form.get("default_bot", "") or None
    bots_post = form.get("bots_post") == "on"
    error = check_description(ctx, description)
    if error is None and unknown:
        error = f"there is no bot called {', '.join(unknown[:3])}"
    if error is None and default_bot is not None and default_bot not in bots:
        error = "the default bot must be one of the room's bots"
    if error is not None:
        shown = msgspec.structs.replace(room_out(found, ctx.cast), description=description,
                                        bots=bots, default_bot=default_bot,
                                        bots_post=bots_post)
        return page(request, "room_edit.html", status_code=400, room=shown, error=error,
                    personas=sorted(ctx.cast.personas))
    changes = _changes(found, description, bots, default_bot, bots_post, ctx)
    if changes:
        await ctx.moderation.record(powers, "edit_room", found.name, detail="; ".join(changes),
                                    text=found.description
                                    if description != found.description else "")

        def edit(current: Room) -> Room:
            return msgspec.structs.replace(current, description=description, bots=bots,
                                           own_bots=True, default_bot=default_bot,
                                           bots_post=bots_post)

        await ctx.storage.rooms.modify(found.name, edit)
        log.info("room.edited", room=found.name, by=user, changes=changes)
    return Redirect(path=f"/r/{found.name}")


def check_description(ctx: WebContext, description: str) -> str | None:
    """What is wrong with a room's (one-line) description, or None: a control character,
    its length, a blocked word (always refused, whatever ``filter_mode`` says)."""
    if (control := _control_character(description)) is not None:
        return f"the description contains {control}"
    if len(description) > DESCRIPTION_MAX_CHARS:
        return (f"the description is {len(description)} characters, at most "
                f"{DESCRIPTION_MAX_CHARS}")
    hit = ctx.word_filter.find(description)
    if hit is not None:
        return (f'the description uses "{hit.written}", a word this site does not allow: '
                "take it out and save again")
    return None


def _control_character(text: str) -> str | None:
    """How to name the first control character of ``text`` (NUL by its name), or None."""
    for ch in text:
        if ch == "\x00":
            return "a NUL character"
        if unicodedata.category(ch) == "Cc":
            return f"a control character (U+{ord(ch):04X})"
    return None


def _changes(room: Room, description: str, bots: Sequence[str], default_bot: str | None,
             bots_post: bool, ctx: WebContext) -> list[str]:
    from playhouse.views import room_bots

    was = room_bots(room, ctx.cast)
    changes = []
    if description != room.description:
        changes.append("description")
    if set(bots) != set(was):
        added = [b for b in bots if b not in was]
        gone = [b for b in was if b not in bots]
        changes.append("bots" + (f" +{','.join(added)}" if added else "")
                       + (f" -{','.join(gone)}" if gone else ""))
    if default_bot != room.default_bot:
        changes.append(f"default bot {default_bot or 'none'}")
    if bots_post != room.bots_post:
        changes.append("bots start threads" if bots_post else "bots start no threads")
    return changes


ROUTES = [file_report, mod_queue, mod_log, mod_remove, mod_restore, mod_lock, mod_unlock,
          mod_approve, mod_dismiss, mod_ban, mod_unban, mod_grant, mod_revoke,
          edit_room_page, edit_room]
