"""Room and thread counters, moved in coalesced writes after what they count is shown.

A room's and a thread's counters (threads, comments, last activity) feed the room list
and the reply counts only, and every post in a room contends for that one room row. So
they move last: :meth:`Counters.count` adds to a per-row tally, and the tally is written
``window_s`` later, one write per row for everything counted meanwhile (a person's
comment and the bot answering it a moment later are one write). A write starts from the
row as this instance last saw it (its ETag), so it costs one round trip unless another
writer came between (then it reads the row again). A thread's fresh counts are broadcast
once written. A process that dies before a flush loses those counts: they are figures
for the room list, never anyone's words.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import structlog

from playhouse.errors import NotFound, PlayhouseError
from playhouse.storage.accounts import room_key

if TYPE_CHECKING:
    from playhouse.events import Broadcaster
    from playhouse.storage import Storage
    from playhouse.storage.models import Room, Thread

log = structlog.get_logger()

R = TypeVar("R")

KNOWN_MAX = 5000
"""Rows remembered for their ETags (the oldest forgotten first)."""


@dataclass(slots=True)
class _Tally:
    name: str
    threads: int = 0
    comments: int = 0
    at: float = 0.0
    answers: list[tuple[str, float]] = field(default_factory=list)
    """(bot, when) of each bot answer counted: the caps people's calls meet."""


@dataclass
class Counters:
    """Coalesces counter moves per room and thread; :meth:`flush` writes them now."""

    storage: Storage
    broadcast: Broadcaster
    window_s: float = 1.0
    _rooms: dict[str, _Tally] = field(default_factory=dict)
    _threads: dict[str, _Tally] = field(default_factory=dict)
    _known_rooms: dict[str, Room] = field(default_factory=dict)
    _known_threads: dict[str, Thread] = field(default_factory=dict)
    _timer: asyncio.TimerHandle | None = None
    _flushing: asyncio.Task[None] | None = None

    def saw_room(self, room: Room) -> None:
        """Remember ``room`` as read (its ETag makes the next write a single one)."""
        _remember(self._known_rooms, room_key(room.name), room)

    def saw_thread(self, thread: Thread) -> None:
        _remember(self._known_threads, thread.thread_id, thread)

    def known_room(self, name: str) -> Room | None:
        """The room as this instance last read or wrote it (None: not lately)."""
        return self._known_rooms.get(room_key(name))

    def known_thread(self, thread_id: str) -> Thread | None:
        return self._known_threads.get(thread_id)

    def count(self, *, room: str, thread: str | None = None, threads: int = 0,
              comments: int = 0, at: float | None = None, bot: str | None = None) -> None:
        """Count a new thread or comment in ``room`` (and ``thread``); written soon.
        ``bot`` names the bot whose answer it is (counted towards its caps)."""
        when = time.time() if at is None else at
        tally = self._rooms.setdefault(room_key(room), _Tally(room))
        tally.threads += threads
        tally.comments += comments
        tally.at = max(tally.at, when)
        if bot is not None:
            tally.answers.append((bot, when))
        if thread is not None:
            own = self._threads.setdefault(thread, _Tally(room))
            own.comments += comments
            own.at = max(own.at, when)
            if bot is not None:
                own.answers.append((bot, when))
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.window_s, self._start_flush)

    def _start_flush(self) -> None:
        self._timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self.flush())
        else:  # a flush is still running: try again after it
            self._timer = asyncio.get_running_loop().call_later(self.window_s,
                                                                self._start_flush)

    async def flush(self) -> None:
        """Write every tally now (threads first, then rooms), broadcasting threads."""
        threads, self._threads = self._threads, {}
        rooms, self._rooms = self._rooms, {}
        await asyncio.gather(*(self._write_thread(tid, t) for tid, t in threads.items()),
                             *(self._write_room(key, t) for key, t in rooms.items()))

    async def _write_thread(self, thread_id: str, tally: _Tally) -> None:
        try:
            thread = await self.storage.threads.touch(
                thread_id, comments=tally.comments, at=tally.at,
                known=self._known_threads.get(thread_id),
                answers=[name for name, _ in tally.answers],
            )
        except NotFound:
            log.warning("thread.gone", thread_id=thread_id, room=tally.name)
            return
        except PlayhouseError as exc:
            log.warning("thread.count_failed", thread_id=thread_id, reason=str(exc)[:200])
            return
        self.saw_thread(thread)
        self.broadcast.thread(thread)

    async def _write_room(self, key: str, tally: _Tally) -> None:
        try:
            room = await self.storage.rooms.touch(
                tally.name, threads=tally.threads, comments=tally.comments, at=tally.at,
                known=self._known_rooms.get(key), answers=tally.answers,
            )
        except NotFound:
            log.warning("room.gone", room=tally.name)
            return
        except PlayhouseError as exc:
            log.warning("room.count_failed", room=tally.name, reason=str(exc)[:200])
            return
        self.saw_room(room)

    async def close(self) -> None:
        """Write what is still counted (shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
        await self.flush()


def _remember(known: dict[str, R], key: str, row: R) -> None:
    known.pop(key, None)
    known[key] = row
    while len(known) > KNOWN_MAX:
        known.pop(next(iter(known)))
