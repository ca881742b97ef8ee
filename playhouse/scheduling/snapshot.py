"""Reading what a scheduling round decides on: rooms, their recent threads, the comments.

One :class:`Snapshot` per round. A thread's comments are read again only when the thread
changed (its ``comment_count`` or ``last_activity`` moved), so a quiet playhouse costs one
query per room per round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import structlog

from playhouse.scheduling.policy import BotAct, Ledger, ThreadView
from playhouse.storage.models import Comment, Room, Thread
from playhouse.views import room_bots

if TYPE_CHECKING:
    from playhouse.personas import Cast, Persona
    from playhouse.storage import Storage

log = structlog.get_logger()

T = TypeVar("T")

COMMENTS_PER_THREAD = 500
"""Comments read per thread (a thread past this is long past every bot's caps)."""


@dataclass(frozen=True, slots=True)
class RoomView:
    """A room as stored, with the personas that live in it."""

    room: Room
    personas: tuple[Persona, ...]

    @property
    def name(self) -> str:
        return self.room.name


@dataclass(slots=True)
class Snapshot:
    now: float
    rooms: dict[str, RoomView] = field(default_factory=dict)
    """By room name, only rooms where some persona lives."""
    threads: list[Thread] = field(default_factory=list)
    """The recent threads of those rooms (for the posting caps), newest first per room."""
    views: list[ThreadView] = field(default_factory=list)
    """The threads active within the reply window, with their comments."""

    def ledger(self) -> Ledger:
        ledger = Ledger.from_views(self.views)
        for t in self.threads:
            if t.is_bot and t.persona:
                ledger.posts.setdefault(
                    t.thread_id, BotAct(t.persona, t.room, t.thread_id, t.created_at)
                )
        return ledger


def room_personas(cast: Cast, room: Room) -> tuple[Persona, ...]:
    """Personas that live in ``room``, by the one rule pages show
    (:func:`~playhouse.views.room_bots`): its own list, and unless its owner edited that
    list, the personas whose files name it."""
    bots = {b.casefold() for b in room_bots(room, cast)}
    return tuple(p for _, p in sorted(cast.personas.items()) if p.name.casefold() in bots)


class SnapshotReader:
    def __init__(
        self, storage: Storage, cast: Cast, *, threads_per_room: int = 50, concurrency: int = 8
    ) -> None:
        self.storage = storage
        self.cast = cast
        self.threads_per_room = threads_per_room
        self._limit = asyncio.Semaphore(concurrency)
        self._comments: dict[str, tuple[tuple[int, float, str | None], list[Comment]]] = {}

    async def _bounded(self, call: Awaitable[T]) -> T:
        async with self._limit:
            return await call

    async def load(self, now: float, window_s: float) -> Snapshot:
        """Rooms, their latest threads, and the comments of those active since
        ``now - window_s``."""
        snap = Snapshot(now=now)
        for room in sorted(await self.storage.rooms.all(), key=lambda r: r.name.casefold()):
            personas = room_personas(self.cast, room)
            if personas:
                snap.rooms[room.name] = RoomView(room, personas)
        pages = await asyncio.gather(*(
            self._bounded(self.storage.threads.list(name, limit=self.threads_per_room))
            for name in snap.rooms
        ))
        for page in pages:
            snap.threads.extend(page.items)
        active = [t for t in snap.threads if t.last_activity >= now - window_s
                  or t.created_at >= now - window_s]
        comments = await asyncio.gather(*(self._bounded(self._thread_comments(t))
                                          for t in active))
        snap.views = [ThreadView.build(t, c) for t, c in zip(active, comments, strict=True)]
        self._forget(t.thread_id for t in active)
        return snap

    async def _thread_comments(self, thread: Thread) -> list[Comment]:
        # The row's ETag moves with any write to it, an edit or deletion in the thread
        # included (:mod:`playhouse.web.editing` writes it): no stale text is kept.
        version = (thread.comment_count, thread.last_activity, thread.etag)
        cached = self._comments.get(thread.thread_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        page = await self.storage.comments.list(thread.thread_id, limit=COMMENTS_PER_THREAD)
        self._comments[thread.thread_id] = (version, page.items)
        return page.items

    def remember(self, comment: Comment) -> None:
        """Add a comment this scheduler wrote (a placeholder) to the cached thread."""
        cached = self._comments.get(comment.thread_id)
        if cached is not None and all(c.comment_id != comment.comment_id for c in cached[1]):
            cached[1].append(comment)

    def _forget(self, keep: Iterable[str]) -> None:
        wanted = set(keep)
        for thread_id in [t for t in self._comments if t not in wanted]:
            del self._comments[thread_id]
