"""What every web handler works with: storage, the cast, settings, limits and channels.

One :class:`WebContext` is built by :func:`playhouse.web.app.create_app` and handed to
handlers through dependency injection (``ctx: WebContext``). The access rule for rooms
lives here too, because pages, the REST API and the websocket must apply the same one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from playhouse.errors import Forbidden, NotFound
from playhouse.storage.accounts import room_key
from playhouse.storage.models import Room, Thread
from playhouse.storage.threads import no_thread
from playhouse.web.metrics import WebMetrics
from playhouse.web.presence import PresenceAnnouncer, PresenceBook

if TYPE_CHECKING:
    from litestar.channels import ChannelsPlugin
    from litestar.connection import ASGIConnection

    from playhouse.config import Settings
    from playhouse.personas import Cast
    from playhouse.storage import Storage
    from playhouse.web.budget import SocketSlots
    from playhouse.web.limits import Limits
    from playhouse.web.sessions import SessionGuard

log = structlog.get_logger()

SESSION_USER = "user"
"""Key of the user name in the session cookie."""
SESSION_ISSUED = "at"
"""Key of the time the session was issued (logging out everywhere voids sessions issued
before; a session older than :data:`SESSION_MAX_AGE_S` is void)."""
SESSION_ID = "sid"
"""Key of the session's own id (logging out of one browser voids that id)."""
SESSION_MAX_AGE_S = 14 * 24 * 3600
"""A session's lifetime: the cookie's max-age, and enforced on the issue time as well."""


def room_channel(room: str) -> str:
    """Channel of a room's events: new threads, thread activity, presence."""
    return f"room.{room_key(room)}"


def user_channel(username: str) -> str:
    """Channel that tells the sockets of ``username`` (on any instance) they logged out."""
    return f"user.{username.casefold()}"


LOGGED_OUT = "logged_out"
"""On a user's channel: ``logged_out`` closes all of the user's sockets,
``logged_out:<session id>`` those of that one session."""


def ends_session(event: bytes | str, session_id: object) -> bool:
    """Whether a :data:`LOGGED_OUT` event on the user's channel ends ``session_id``."""
    text = event.decode(errors="replace") if isinstance(event, bytes) else event
    return text == LOGGED_OUT or (
        isinstance(session_id, str) and text == f"{LOGGED_OUT}:{session_id}"
    )


def thread_channel(thread_id: str) -> str:
    """Channel of one thread's comments, placeholders and replacements."""
    return f"thread.{thread_id}"


@dataclass
class WebContext:
    settings: Settings
    storage: Storage
    cast: Cast
    limits: Limits
    channels: ChannelsPlugin
    instance: str
    sessions: SessionGuard
    slots: SocketSlots
    """Open sockets per address and per user (capped)."""
    presence: PresenceBook = field(default_factory=PresenceBook)
    metrics: WebMetrics = field(default_factory=WebMetrics)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    results_expected: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when this instance asked a bot for something: its results consumer wakes up."""
    announcer: PresenceAnnouncer = field(init=False)
    """Publishes this instance's viewers of a room when they change (coalesced)."""

    def __post_init__(self) -> None:
        self.announcer = PresenceAnnouncer(
            self.presence, self.instance, lambda text, room: self.publish(text, room_channel(room))
        )

    def spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run ``work`` in the background, logging (never raising) a failure."""

        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("task.failed", task=what)

        task = asyncio.create_task(guarded())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self) -> None:
        """Wait for the background tasks still running (shutdown, tests)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    def publish(self, text: str, *channels: str) -> None:
        self.channels.publish(text, list(channels))

    def is_persona(self, name: str) -> bool:
        folded = name.casefold()
        return any(p.casefold() == folded for p in self.cast.personas)

    async def readable_room(self, name: str, user: str | None) -> tuple[Room, bool]:
        """The room and whether ``user`` is a member; Forbidden when private to others."""
        room = await self.storage.rooms.get(name)
        member = user is not None and await self.storage.members.is_member(room.name, user)
        if not room.public and not member:
            raise Forbidden(f"r/{room.name} is private: only its members can read it")
        return room, member

    async def readable_thread(self, thread_id: str, user: str | None) -> tuple[Thread, Room]:
        """A thread, checked against its room's access rule. A thread of a private room
        is, to anyone else, a thread that does not exist: the same NotFound, naming
        nothing (not even its room)."""
        thread = await self.storage.threads.get(thread_id)
        try:
            room, _ = await self.readable_room(thread.room, user)
        except Forbidden:
            raise no_thread(thread_id) from None
        return thread, room


def current_user(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The logged-in user's name from the (encrypted, authenticated) session cookie."""
    session = connection.scope.get("session")
    if not isinstance(session, dict):
        return None
    user = session.get(SESSION_USER)
    return user if isinstance(user, str) and user else None


def client_ip(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    client = connection.client
    return client.host if client is not None else "unknown"


def context_of(connection: ASGIConnection[Any, Any, Any, Any]) -> WebContext:
    ctx = connection.app.state["playhouse"]
    assert isinstance(ctx, WebContext)
    return ctx


__all__ = [
    "NotFound",
    "PresenceBook",
    "WebContext",
    "client_ip",
    "context_of",
    "current_user",
    "room_channel",
    "thread_channel",
]
