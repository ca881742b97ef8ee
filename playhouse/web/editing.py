"""Taking back what you wrote: editing and deleting your own threads and comments.

Only a thread's or a comment's author edits or deletes it; besides, the author of a
thread may delete the bots' replies under it. Anyone else is refused with 403 and the
reason. An edit keeps the text it replaces as a revision (:mod:`playhouse.storage.
revisions`, written first) and marks the item edited, with the time; a deletion keeps
the text the same way, empties the row and leaves its tombstone (``gone`` = ``deleted``:
"[deleted]", see :func:`playhouse.views.visible_comment`), so the replies below keep
their place. The row is written only if unchanged since read (its ETag); a lost race
reads it again.

Bots read only what is stored now (:func:`playhouse.asking.in_prompt`): a request made
before an edit carries the text its bot saw, and its answer lands under the edited
comment as any answer does; every later prompt reads the new text, and never a deleted
one. An edit or deletion also writes its thread's row, whose ETag the bots' scheduler
keys its cached comments on, so its next round reads the thread again.

Each change is shown live on the open pages (``comment_changed``, ``thread_changed``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import structlog
from litestar import MediaType, Request, Response, post
from litestar.response import Redirect

from playhouse import ids, views
from playhouse.constants import COMMENT_MAX_CHARS, TITLE_MAX_CHARS
from playhouse.errors import BadRequest, Conflict, Forbidden, InvalidInput, LoginRequired
from playhouse.storage.models import Comment, Revision, Thread
from playhouse.web.context import WebContext, context_of, current_user
from playhouse.web.forms import read_form
from playhouse.web.posting import hold_for_review, post_text, screen

log = structlog.get_logger()

S = TypeVar("S", Comment, Thread)
WRITE_TRIES = 5
"""Attempts at a conditional write before a contended item gives up with Conflict."""


# ------------------------------------------------------------------ the rules
def _check_id(value: str, what: str) -> str:
    if not ids.is_id(value):
        raise BadRequest(f"`{what}` {value[:64]!r} is not an id")
    return value


def may_edit_comment(comment: Comment, user: str) -> None:
    """Forbidden unless ``user`` wrote ``comment`` (a person's); Conflict when it is gone."""
    if comment.is_bot:
        raise Forbidden(f"this comment is u/{comment.author}'s, a bot's: nobody edits what "
                        "a bot said")
    if comment.author.casefold() != user.casefold():
        raise Forbidden(f"this comment is u/{comment.author}'s: only its author can edit it")
    if comment.gone:
        raise Conflict(f"this comment is {comment.gone}: there is nothing left to edit")


def may_delete_comment(comment: Comment, thread: Thread, user: str) -> None:
    """Forbidden unless ``user`` wrote ``comment``, or it is a bot's reply in a thread
    ``user`` started; Conflict when it is gone already."""
    if comment.gone:
        raise Conflict(f"this comment is {comment.gone} already")
    mine = not comment.is_bot and comment.author.casefold() == user.casefold()
    my_thread = not thread.is_bot and not thread.gone and \
        thread.author.casefold() == user.casefold()
    if mine or (comment.is_bot and my_thread):
        return
    if comment.is_bot:
        raise Forbidden(f"this is a reply by u/{comment.author}, a bot, in u/{thread.author}'s "
                        "thread: only the thread's author can delete it")
    raise Forbidden(f"this comment is u/{comment.author}'s: only its author can delete it")


def may_change_thread(thread: Thread, user: str, what: str) -> None:
    if thread.is_bot or thread.author.casefold() != user.casefold():
        raise Forbidden(f"this thread is u/{thread.author}'s: only its author can {what} it")
    if thread.gone:
        raise Conflict(f"this thread is {thread.gone}: there is nothing left to {what}")


# ------------------------------------------------------------------ the writes
async def _conditional(read: Callable[[], Awaitable[S]], check: Callable[[S], None],
                       write: Callable[[S], Awaitable[S]], what: str) -> S:
    """Read, ``check`` (which refuses by raising), then ``write`` (which writes only if
    the row is unchanged since it was read: Conflict otherwise), again on a lost race."""
    for _ in range(WRITE_TRIES):
        current = await read()
        check(current)
        try:
            return await write(current)
        except Conflict:
            continue  # changed since it was read: read it again
    raise Conflict(f"{what} kept changing while it was saved: try again")


async def _touch(ctx: WebContext, thread_id: str) -> None:
    """Write the thread's row (nothing in it changes but its ETag): what caches its
    comments reads them again."""
    await ctx.storage.threads.touch(thread_id, at=0.0)


def _revision(item_id: str, thread: Thread, *, author: str, text: str, title: str = "",
              image_blob: str | None = None, written_at: float, reason: str,
              by: str, now: float) -> Revision:
    return Revision(item_id=item_id, thread_id=thread.thread_id, room=thread.room,
                    author=author, title=title, text=text, image_blob=image_blob,
                    written_at=written_at, replaced_at=now,
                    reason="edit" if reason == "edit" else "delete", by=by)


async def edit_comment(ctx: WebContext, user: str, thread_id: str, comment_id: str,
                       text: str) -> Comment:
    """``user`` edits their comment to ``text``."""
    thread, _ = await ctx.readable_thread(_check_id(thread_id, "thread_id"), user)
    _check_id(comment_id, "comment_id")
    cleaned = post_text(text, "text", COMMENT_MAX_CHARS)
    held = screen(ctx, "comment", cleaned)  # the word filter holds edits as it does posts
    edits: list[float] = []

    async def write(current: Comment) -> Comment:
        if current.text == cleaned:
            return current
        now = time.time()
        await ctx.storage.revisions.add(_revision(
            comment_id, thread, author=current.author, text=current.text,
            written_at=current.edited_at or current.created_at, reason="edit", by=user,
            now=now))
        edited = await ctx.storage.comments.replace(msgspec.structs.replace(
            current, text=cleaned, edited_at=now, held=current.held or held is not None))
        if held is not None and not current.held:
            await hold_for_review(ctx, thread, edited, held)
        edits.append(now)
        return edited

    comment = await _conditional(
        lambda: ctx.storage.comments.get(thread.thread_id, comment_id),
        lambda c: may_edit_comment(c, user), write, "the comment")
    if edits:
        await _touch(ctx, thread.thread_id)
        ctx.broadcast.changed(comment)
        log.info("comment.edited", thread_id=thread.thread_id, comment_id=comment_id,
                 username=user)
    return comment


async def delete_comment(ctx: WebContext, user: str, thread_id: str,
                         comment_id: str) -> Comment:
    """``user`` deletes their comment, or a bot's reply in their thread: its tombstone."""
    thread, _ = await ctx.readable_thread(_check_id(thread_id, "thread_id"), user)
    _check_id(comment_id, "comment_id")

    async def write(current: Comment) -> Comment:
        now = time.time()
        kept = [(s.text, s.image_blob) for s in current.alternatives if s.job_id != current.job_id]
        for text, blob in [(current.text, current.image_blob), *kept]:
            if text or blob:
                await ctx.storage.revisions.add(_revision(
                    comment_id, thread, author=current.author, text=text, image_blob=blob,
                    written_at=current.edited_at or current.created_at, reason="delete",
                    by=user, now=now))
        status = "ok" if current.status == "placeholder" else current.status
        return await ctx.storage.comments.replace(msgspec.structs.replace(
            current, text="", image_blob=None, alternatives=(), shown=0, gone="deleted",
            status=status))

    comment = await _conditional(
        lambda: ctx.storage.comments.get(thread.thread_id, comment_id),
        lambda c: may_delete_comment(c, thread, user), write, "the comment")
    await _touch(ctx, thread.thread_id)
    ctx.broadcast.changed(comment)
    log.info("comment.deleted", thread_id=thread.thread_id, comment_id=comment_id,
             username=user, bot=comment.is_bot)
    return comment


async def edit_thread(ctx: WebContext, user: str, thread_id: str, *, title: str | None,
                      text: str) -> Thread:
    """``user`` edits their thread's post: its text, and its title when given."""
    found, _ = await ctx.readable_thread(_check_id(thread_id, "thread_id"), user)
    may_change_thread(found, user, "edit")
    body = post_text(text, "text", COMMENT_MAX_CHARS, allow_empty=True)
    new_title = (" ".join(post_text(title, "title", TITLE_MAX_CHARS).split())
                 if title is not None else None)
    held = (screen(ctx, "title", new_title) if new_title is not None else None) or screen(
        ctx, "post", body)  # the word filter holds edits as it does posts

    async def write(current: Thread) -> Thread:
        wanted_title = new_title if new_title is not None else current.title
        if current.body == body and current.title == wanted_title:
            return current
        now = time.time()
        await ctx.storage.revisions.add(_revision(
            thread_id, current, author=current.author, text=current.body,
            title=current.title, written_at=current.edited_at or current.created_at,
            reason="edit", by=user, now=now))
        edited = await ctx.storage.threads.replace(msgspec.structs.replace(
            current, title=wanted_title, body=body, edited_at=now,
            held=current.held or held is not None))
        if held is not None and not current.held:
            await hold_for_review(ctx, edited, None, held)
        return edited

    thread = await _conditional(lambda: ctx.storage.threads.get(thread_id),
                                lambda t: may_change_thread(t, user, "edit"), write,
                                "the thread")
    if thread.edited_at != found.edited_at:
        ctx.broadcast.thread_changed(thread)
        log.info("thread.edited", thread_id=thread_id, username=user)
    return thread


async def delete_thread(ctx: WebContext, user: str, thread_id: str) -> Thread:
    """``user`` deletes their thread's post: its tombstone; its comments stay."""
    found, _ = await ctx.readable_thread(_check_id(thread_id, "thread_id"), user)
    may_change_thread(found, user, "delete")

    async def write(current: Thread) -> Thread:
        now = time.time()
        await ctx.storage.revisions.add(_revision(
            thread_id, current, author=current.author, text=current.body or current.url or "",
            title=current.title, image_blob=current.image_blob,
            written_at=current.edited_at or current.created_at, reason="delete", by=user,
            now=now))
        return await ctx.storage.threads.replace(msgspec.structs.replace(
            current, title="", body="", url=None, image_blob=None, gone="deleted"))

    thread = await _conditional(lambda: ctx.storage.threads.get(thread_id),
                                lambda t: may_change_thread(t, user, "delete"), write,
                                "the thread")
    ctx.broadcast.thread_changed(thread)
    log.info("thread.deleted", thread_id=thread_id, username=user)
    return thread


# ------------------------------------------------------------------ HTTP
def wants_json(request: Request[Any, Any, Any]) -> bool:
    content_type, _ = request.content_type
    return content_type == MediaType.JSON or "application/json" in request.headers.get(
        "accept", "")


async def fields(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The request's fields: a JSON object, or a form."""
    content_type, _ = request.content_type
    if content_type == MediaType.JSON:
        try:
            value = msgspec.json.decode(await request.body())
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise InvalidInput("the body is a JSON object")
        return value
    return dict((await read_form(request)).items())


def text_field(data: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"`{name}` is a text field")
    return value


def require_user(request: Request[Any, Any, Any]) -> str:
    user = current_user(request)
    if user is None:
        raise LoginRequired("log in first")
    return user


def answer(request: Request[Any, Any, Any], *, comment: Comment | None = None,
           thread: Thread | None = None) -> Response[Any] | Redirect:
    """JSON for the page's script, a redirect back to the item for a plain form."""
    if wants_json(request):
        body: dict[str, Any] = {}
        if comment is not None:
            body["comment"] = views.comment_out(comment)
        if thread is not None:
            body["thread"] = views.thread_out(thread)
        return Response(msgspec.to_builtins(body), media_type=MediaType.JSON, status_code=200)
    item = comment or thread
    assert item is not None
    anchor = f"#c-{comment.comment_id}" if comment is not None else "#post"
    return Redirect(path=f"/r/{item.room}/t/{item.thread_id}{anchor}")


@post("/t/{thread_id:str}/edit")
async def edit_thread_route(request: Request[Any, Any, Any],
                            thread_id: str) -> Response[Any] | Redirect:
    """Edit your thread's post (``text``; ``title`` too when sent)."""
    user = require_user(request)
    data = await fields(request)
    thread = await edit_thread(context_of(request), user, thread_id,
                               title=text_field(data, "title", required=False),
                               text=text_field(data, "text") or "")
    return answer(request, thread=thread)


@post("/t/{thread_id:str}/delete")
async def delete_thread_route(request: Request[Any, Any, Any],
                              thread_id: str) -> Response[Any] | Redirect:
    thread = await delete_thread(context_of(request), require_user(request), thread_id)
    return answer(request, thread=thread)


@post("/t/{thread_id:str}/c/{comment_id:str}/edit")
async def edit_comment_route(request: Request[Any, Any, Any], thread_id: str,
                             comment_id: str) -> Response[Any] | Redirect:
    """Edit your comment (``text``)."""
    user = require_user(request)
    data = await fields(request)
    comment = await edit_comment(context_of(request), user, thread_id, comment_id,
                                 text_field(data, "text") or "")
    return answer(request, comment=comment)


@post("/t/{thread_id:str}/c/{comment_id:str}/delete")
async def delete_comment_route(request: Request[Any, Any, Any], thread_id: str,
                               comment_id: str) -> Response[Any] | Redirect:
    """Delete your comment, or a bot's reply in your thread."""
    comment = await delete_comment(context_of(request), require_user(request), thread_id,
                                   comment_id)
    return answer(request, comment=comment)


ROUTES = [edit_thread_route, delete_thread_route, edit_comment_route, delete_comment_route]
