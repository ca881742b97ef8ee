"""Stored rows as the web shows them: the protocol's view structs, times in ISO 8601."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from playhouse.web.markdown import render, render_title
from playhouse.web.protocol import CommentOut, PersonaLook, RoomOut, ThreadOut

if TYPE_CHECKING:
    from playhouse.personas import Cast, Persona
    from playhouse.storage.models import Comment, Room, Thread

IMAGE_PREFIX = "/images/"


def iso(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds (``2025-01-02T03:04:05.678Z``)."""
    when = dt.datetime.fromtimestamp(ts, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def image_url(blob: str | None) -> str | None:
    return None if not blob else IMAGE_PREFIX + blob


def comment_out(c: Comment) -> CommentOut:
    return CommentOut(
        id=c.comment_id, thread_id=c.thread_id, room=c.room, parent_id=c.parent_id,
        author=c.author, is_bot=c.is_bot, text=c.text, created_at=iso(c.created_at),
        status=c.status, depth=c.depth, persona=c.persona, image_url=image_url(c.image_blob),
        html="" if c.status == "placeholder" else str(render(c.text)),
    )


def thread_out(t: Thread) -> ThreadOut:
    return ThreadOut(
        id=t.thread_id, room=t.room, title=t.title, body=t.body, author=t.author,
        is_bot=t.is_bot, created_at=iso(t.created_at), last_activity=iso(t.last_activity),
        comment_count=t.comment_count, url=t.url, persona=t.persona,
        image_url=image_url(t.image_blob), title_html=str(render_title(t.title, links=False)),
        body_html=str(render(t.body)),
    )


def room_bots(room: Room, cast: Cast) -> tuple[str, ...]:
    """The bots living in a room: the room's own list and the personas naming it."""
    names = list(room.bots)
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
    )


def persona_look(p: Persona) -> PersonaLook:
    return PersonaLook(
        name=p.name, display_name=p.display_name, kind=p.kind, colour=p.look.colour,
        avatar=p.look.avatar, bio=p.bio, rooms=p.rooms,
    )
