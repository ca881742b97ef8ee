"""Stored rows as people see them: the view structs of pages, the API and live events.

One frozen msgspec struct per thing shown (a comment, a thread, a room, a persona's look),
built from the storage rows by the functions below, with times in ISO 8601 UTC. Pages,
the REST API, the websocket and live events all show these, so a comment reads the same
wherever it appears.

Texts travel twice: raw (``text``, ``title``, ``body``) and as the server's safe HTML
(``html``, ``title_html``, ``body_html``, made by :mod:`playhouse.markdown`), which is what
pages show: a browser never turns text into HTML itself.

Tombstones are decided here and nowhere else: :func:`visible_comment` and
:func:`visible_thread` turn a deleted or removed row into what anyone sees of it
("[deleted]" / "[removed]", no author, no picture); every view struct is built through
them. What a person chose not to see (a bot they muted, someone they blocked) is
:func:`hidden_reason`, applied per viewer by the pages and the sockets. What the word
filter held is shown to its author and the room's moderators only (:func:`sees_held`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import TYPE_CHECKING

import msgspec

from playhouse.markdown import render, render_title

if TYPE_CHECKING:
    from playhouse.personas import Cast, Persona
    from playhouse.storage.models import Alternative, Comment, ListingRow, Room, Thread

IMAGE_PREFIX = "/images/"
TOMBSTONES = {"deleted": "[deleted]", "removed": "[removed]"}
"""What a gone thread or comment shows in place of its text and its author."""


def tombstone(gone: str) -> str:
    """The marker of a gone item (an unknown kind of gone reads as deleted)."""
    return TOMBSTONES.get(gone, TOMBSTONES["deleted"])


class PersonaLook(msgspec.Struct, frozen=True):
    name: str
    display_name: str
    kind: str
    colour: str
    avatar: str
    bio: str = ""
    rooms: tuple[str, ...] = ()


class AlternativeOut(msgspec.Struct, frozen=True, kw_only=True):
    """One answer of a re-rolled bot comment."""

    text: str
    image_url: str | None = None
    html: str = ""
    """``text`` rendered (safe Markdown), as the page shows it."""


class WaitState(msgspec.Struct, frozen=True, kw_only=True):
    """Where a bot's answer stands while people wait for it (or why it will not come).

    ``state`` is one of ``queued``, ``generating``, ``retrying``, ``no_worker``,
    ``model_unavailable``, ``answered`` (on its way to the page) — the bot still answers —
    or, ``final``, ``asleep``, ``thread_cap``, ``hour_cap``: it will not. ``text`` says it
    in a sentence (times in UTC); pages rewrite the times in the viewer's own.
    """

    state: str
    text: str
    final: bool = False
    position: int | None = None
    """Requests ahead of it in its queue (about)."""
    estimate_s: float | None = None
    """Seconds until it is likely answered, from the workers' recent figures."""
    attempt: int | None = None
    max_attempts: int | None = None
    reason: str = ""
    """Why the last sample was rejected (retrying), or why the model does not load."""
    active_hours: tuple[int, int] | None = None
    """The bot's active hours, UTC (asleep)."""
    wakes_at: str | None = None
    """ISO 8601: when an asleep bot wakes."""
    next_at: str | None = None
    """ISO 8601: when a cap lets the bot answer again."""
    since: str | None = None
    """ISO 8601: since when it has been in this state."""


class PersonaNow(msgspec.Struct, frozen=True, kw_only=True):
    """A bot right now: awake or asleep, when it posts next, what its caps leave."""

    name: str
    awake: bool
    active_hours: tuple[int, int]
    """UTC, ``[start, end)``."""
    wakes_at: str | None
    """ISO 8601, when asleep."""
    sleeps_at: str | None
    """ISO 8601, when awake (None: awake all day)."""
    posts_per_day: float
    next_post_at: str | None
    """ISO 8601: when its next thread is expected, on average (None: it never posts)."""
    replies_last_hour: int
    per_hour_cap: int
    replies_left: int
    """Replies its hourly cap still allows."""
    at: str


class CommentOut(msgspec.Struct, frozen=True, kw_only=True):
    """A comment as pages, the API and the websocket show it."""

    id: str
    thread_id: str
    room: str
    parent_id: str | None
    author: str
    is_bot: bool
    text: str
    created_at: str
    """ISO 8601, UTC."""
    status: str = "ok"
    """``ok``, ``placeholder`` (the bot is thinking) or ``failed``."""
    depth: int = 0
    persona: str | None = None
    image_url: str | None = None
    edited_at: str | None = None
    """When its author last edited it (ISO 8601, UTC); None: never."""
    gone: str = ""
    """``deleted`` or ``removed``: a tombstone (``text`` and ``author`` say so)."""
    held: bool = False
    """Held by the word filter for a moderator (only its author and moderators see it)."""
    alternatives: tuple[AlternativeOut, ...] = ()
    """A re-rolled bot answer's answers, oldest first (``text`` is ``alternatives[shown]``);
    empty when it has one answer."""
    shown: int = 0
    rerolls: int = 0
    """Times another answer was asked for."""
    hidden: str = ""
    """For one viewer: ``muted`` (a bot they muted) or ``blocked`` (someone they blocked);
    its text, picture and answers are then left out."""
    notice: WaitState | None = None
    """Why a bot declined to answer (``status`` ``declined``)."""
    html: str = ""
    """``text`` rendered (safe Markdown); empty while the bot is thinking."""


class ThreadOut(msgspec.Struct, frozen=True, kw_only=True):
    """A thread's post and its activity."""

    id: str
    room: str
    title: str
    body: str
    author: str
    is_bot: bool
    created_at: str
    last_activity: str
    comment_count: int
    url: str | None = None
    persona: str | None = None
    image_url: str | None = None
    title_html: str = ""
    """``title`` rendered inline, without links (listings show it inside a link)."""
    body_html: str = ""
    edited_at: str | None = None
    gone: str = ""
    held: bool = False
    locked: bool = False
    """No new comments, by people or bots."""


class NotificationOut(msgspec.Struct, frozen=True, kw_only=True):
    """One item of a person's inbox; ``link`` opens the comment in its thread."""

    kind: str
    """``reply`` (to their thread or comment) or ``mention`` (``u/name``)."""
    room: str
    thread_id: str
    comment_id: str
    by: str
    by_bot: bool
    created_at: str
    read: bool
    link: str
    text: str = ""
    """What the comment says now (a tombstone when it is gone); empty in live events."""
    thread_title: str = ""


def comment_link(room: str, thread_id: str, comment_id: str) -> str:
    """The comment in context: its thread's page, scrolled to it."""
    return f"/r/{room}/t/{thread_id}#c-{comment_id}"


class RoomOut(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str
    public: bool
    threads: int
    comments: int
    last_activity: str | None
    bots: tuple[str, ...]
    default_bot: str | None = None
    member: bool = False
    bots_post: bool = True
    """Whether bots start threads here."""


def iso(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds (``2025-01-02T03:04:05.678Z``)."""
    when = dt.datetime.fromtimestamp(ts, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def image_url(blob: str | None) -> str | None:
    return None if not blob else IMAGE_PREFIX + blob


def sees_held(author: str, viewer: str | None, *, moderator: bool) -> bool:
    """Whether ``viewer`` sees an item by ``author`` that the word filter held: its author
    does (marked as waiting), and the room's moderators (who decide); nobody else."""
    return moderator or (viewer is not None and viewer.casefold() == author.casefold())


_wait_decoder = msgspec.json.Decoder(WaitState)


def decode_notice(text: str) -> WaitState | None:
    """A comment's stored notice; None when it has none (or it does not decode)."""
    if not text:
        return None
    try:
        return _wait_decoder.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def visible_comment(c: Comment) -> Comment:
    """The stored comment as anyone sees it: a gone one is its tombstone (the marker as
    text and author, no picture, no answers); the tree below it stays."""
    if not c.gone:
        return c
    mark = tombstone(c.gone)
    return msgspec.structs.replace(c, text=mark, author=mark, is_bot=False, persona=None,
                                   image_blob=None, alternatives=(), shown=0, notice="",
                                   status=("ok" if c.status in ("placeholder", "declined")
                                           else c.status))


def visible_thread(t: Thread) -> Thread:
    """The stored thread as anyone sees it: a gone one keeps its place and its comments,
    with the marker as title and author, and no body, link or picture."""
    if not t.gone:
        return t
    mark = tombstone(t.gone)
    return msgspec.structs.replace(t, title=mark, body="", url=None, author=mark,
                                   is_bot=False, persona=None, image_blob=None)


def visible_listing(row: ListingRow) -> ListingRow:
    """A room's listing row as anyone sees it (as :func:`visible_thread`)."""
    if not row.gone:
        return row
    mark = tombstone(row.gone)
    return msgspec.structs.replace(row, title=mark, author=mark, is_bot=False, persona=None,
                                   image_blob=None, url=None)


def hidden_reason(author: str, is_bot: bool, *, muted: Collection[str],
                  blocked: Collection[str]) -> str:
    """Why one viewer does not see what ``author`` wrote: ``muted`` (a bot in ``muted``,
    persona names), ``blocked`` (a person in ``blocked``, canonical names), or ``""``."""
    if is_bot:
        return "muted" if author in muted else ""
    return "blocked" if author.casefold() in blocked else ""


def _alternative_out(s: Alternative) -> AlternativeOut:
    return AlternativeOut(text=s.text, image_url=image_url(s.image_blob),
                          html=str(render(s.text)))


def comment_out(c: Comment, *, hidden: str = "") -> CommentOut:
    """``c`` as it is shown (:func:`visible_comment`); ``hidden`` (for one viewer) leaves
    out what it says."""
    c = visible_comment(c)
    out = CommentOut(
        id=c.comment_id, thread_id=c.thread_id, room=c.room, parent_id=c.parent_id,
        author=c.author, is_bot=c.is_bot, text=c.text, created_at=iso(c.created_at),
        status=c.status, depth=c.depth, persona=c.persona, image_url=image_url(c.image_blob),
        edited_at=iso(c.edited_at) if c.edited_at else None, gone=c.gone, held=c.held,
        alternatives=(tuple(_alternative_out(a) for a in c.alternatives)
                      if len(c.alternatives) > 1 else ()),
        shown=c.shown if len(c.alternatives) > 1 else 0, rerolls=c.rerolls,
        notice=decode_notice(c.notice),
        html="" if c.status == "placeholder" else str(render(c.text)),
    )
    return hide(out, hidden) if hidden else out


def hide(out: CommentOut, why: str) -> CommentOut:
    """``out`` for a viewer who does not see its author's words (``why``)."""
    return msgspec.structs.replace(out, text="", html="", image_url=None, alternatives=(),
                                   shown=0, notice=None, hidden=why)


def thread_out(t: Thread) -> ThreadOut:
    """``t`` as it is shown (:func:`visible_thread`)."""
    t = visible_thread(t)
    return ThreadOut(
        id=t.thread_id, room=t.room, title=t.title, body=t.body, author=t.author,
        is_bot=t.is_bot, created_at=iso(t.created_at), last_activity=iso(t.last_activity),
        comment_count=t.comment_count, url=t.url, persona=t.persona,
        image_url=image_url(t.image_blob), title_html=str(render_title(t.title, links=False)),
        body_html=str(render(t.body)),
        edited_at=iso(t.edited_at) if t.edited_at else None, gone=t.gone, held=t.held,
        locked=t.locked,
    )


def room_bots(room: Room, cast: Cast) -> tuple[str, ...]:
    """The bots living in a room: the room's own list and the personas naming it (only the
    room's list once its owner edited it: ``own_bots``)."""
    names = [b for b in room.bots if b in cast.personas] if room.own_bots else list(room.bots)
    if room.own_bots:
        return tuple(names)
    for persona in cast.in_room(room.name):
        if persona.name not in names:
            names.append(persona.name)
    return tuple(names)


def room_out(room: Room, cast: Cast, *, member: bool = False) -> RoomOut:
    return RoomOut(
        name=room.name, description=room.description, public=room.public,
        threads=room.thread_count, comments=room.comment_count,
        last_activity=iso(room.last_activity) if room.last_activity else None,
        bots=room_bots(room, cast), default_bot=room.default_bot, member=member,
        bots_post=room.bots_post,
    )


def persona_look(p: Persona) -> PersonaLook:
    return PersonaLook(
        name=p.name, display_name=p.display_name, kind=p.kind, colour=p.look.colour,
        avatar=p.look.avatar, bio=p.bio, rooms=p.rooms,
    )
