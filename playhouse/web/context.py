"""What every web handler works with: storage, the cast, settings, limits and channels.

One :class:`WebContext` is built by the web entrypoint (:mod:`playhouse.commands.web`) and
reaches handlers through the app's state (:func:`context_of`). The access rule for rooms
lives here too, because pages, the REST API and the websocket must apply the same one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from playhouse import views
from playhouse.errors import Forbidden
from playhouse.moderation.actions import Moderation
from playhouse.moderation.filter import WordFilter
from playhouse.priority import PeopleFirst
from playhouse.storage.models import Room, Thread
from playhouse.storage.threads import no_thread
from playhouse.web.metrics import WebMetrics
from playhouse.web.presence import PresenceAnnouncer, PresenceBook

if TYPE_CHECKING:
    from litestar.channels import ChannelsPlugin
    from litestar.connection import ASGIConnection

    from playhouse.config import Settings
    from playhouse.events import Broadcaster
    from playhouse.personas import Cast
    from playhouse.storage import Storage
    from playhouse.web.budget import SocketSlots
    from playhouse.web.counters import Counters
    from playhouse.web.limits import Limits
    from playhouse.web.scores import ScoreFeed
    from playhouse.web.sessions import SessionGuard
    from playhouse.web.waiting import Waiting

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


async def _nothing() -> None:
    return None


@dataclass
class WebContext:
    """What a web instance's handlers share; built once by its entrypoint."""

    settings: Settings
    storage: Storage
    cast: Cast
    limits: Limits
    channels: ChannelsPlugin
    """The fan-out (memory, or Redis across instances): sockets subscribe through it."""
    instance: str
    sessions: SessionGuard
    broadcast: Broadcaster
    """The one way anything is shown live (:mod:`playhouse.events`)."""
    counters: Counters
    """Room and thread counters, coalesced."""
    slots: SocketSlots
    """Open sockets per address and per user (capped)."""
    scores: ScoreFeed
    """Votes' score events and index moves, coalesced (:mod:`playhouse.web.scores`)."""
    word_filter: WordFilter = field(default_factory=lambda: WordFilter(()))
    """``[moderation] blocked_words``, folded once."""
    presence: PresenceBook = field(default_factory=PresenceBook)
    metrics: WebMetrics = field(default_factory=WebMetrics)
    people: PeopleFirst = field(default_factory=PeopleFirst)
    """The person's work in progress, which the bots' work yields to
    (:mod:`playhouse.priority`)."""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    expecting: Callable[[str, bool], None] = lambda request_id, interactive: None
    """Told of every request this instance asks a bot for (request id, asked by a person):
    the results consumer then polls quickly until its answer comes."""
    watch_status: Callable[[], Awaitable[None]] = _nothing
    """Told when someone looks at the status page or ``/metrics``: the sampler samples."""
    waiting: Waiting | None = None
    """Where the bots' pending answers stand (:mod:`playhouse.web.waiting`)."""
    announcer: PresenceAnnouncer = field(init=False)
    """Publishes this instance's viewers of a room when they change (coalesced)."""
    moderation: Moderation = field(init=False)
    """The moderators' actions (:mod:`playhouse.moderation.actions`)."""

    def __post_init__(self) -> None:
        self.announcer = PresenceAnnouncer(self.presence, self.instance, self.broadcast.send)
        self.moderation = Moderation(self.storage, self.broadcast, self.settings.web.admins,
                                     on_site_ban=self.sessions.forget)

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

    async def sees_held(self, room: str, user: str | None) -> bool:
        """Whether ``user`` moderates ``room`` (sees everything the word filter held there,
        not only their own)."""
        if user is None:
            return False
        return (await self.moderation.powers(user, room)).moderates

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

    async def shown_thread(self, thread_id: str, user: str | None) -> tuple[Thread, Room]:
        """:meth:`readable_thread`, and a thread the word filter held is, to anyone but its
        author and the room's moderators, one that does not exist (the same NotFound)."""
        thread, room = await self.readable_thread(thread_id, user)
        if thread.held and not views.sees_held(thread.author, user,
                                               moderator=await self.sees_held(room.name, user)):
            raise no_thread(thread_id)
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


__all__ = ["PresenceBook", "WebContext", "client_ip", "context_of", "current_user"]
