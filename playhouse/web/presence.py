"""Who watches each room, per instance, and how instances keep each other's pages current.

Each instance counts the sockets watching a room through it (:class:`PresenceBook`) and
publishes its own list on the room's channel when it changes, at most once per
:data:`COALESCE_S` per room (:class:`PresenceAnnouncer`): changes in between are merged
into the next list, and a list equal to the last one published is not sent again, so a
socket that subscribes and unsubscribes a hundred times costs its watchers about one
event a second, in which it counts once. Pages merge the lists by instance.

A newcomer's list carries ``ask``, and every other instance with viewers of that room
answers with its list (at most once per :data:`ANSWER_S` per room), so a page sees
everyone at once. Every instance also republishes its lists every :data:`REFRESH_S`, and a
page forgets an instance it has not heard from for three of those (one that died).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from playhouse.events import Presence
from playhouse.storage.accounts import room_key

COALESCE_S = 1.0
"""An instance publishes its list of a room at most this often (changes are merged)."""
ANSWER_S = 1.0
"""An instance answers another's newcomer in a room at most this often."""
REFRESH_S = 30.0
"""How often an instance republishes who watches each room through it (live.js forgets an
instance after three silent periods)."""

@dataclass
class PresenceBook:
    """Who watches each room through this instance (users by name, and how many sockets)."""

    users: dict[str, Counter[str]] = field(default_factory=dict)
    anonymous: Counter[str] = field(default_factory=Counter)
    names: dict[str, str] = field(default_factory=dict)
    """Room key → the room's name as written."""
    answered: dict[str, float] = field(default_factory=dict)
    """Room key → when this instance last answered another's newcomer (loop time)."""

    def enter(self, room: str, user: str | None) -> None:
        key = room_key(room)
        self.names[key] = room
        if user is None:
            self.anonymous[key] += 1
        else:
            self.users.setdefault(key, Counter())[user] += 1

    def leave(self, room: str, user: str | None) -> None:
        key = room_key(room)
        if user is None:
            self.anonymous[key] -= 1
            if self.anonymous[key] <= 0:
                del self.anonymous[key]
        else:
            names = self.users.get(key)
            if names is not None:
                names[user] -= 1
                if names[user] <= 0:
                    del names[user]
                if not names:
                    del self.users[key]
        if not self.watched(room):
            self.names.pop(key, None)
            self.answered.pop(key, None)

    def of(self, room: str) -> tuple[tuple[str, ...], int]:
        key = room_key(room)
        return tuple(sorted(self.users.get(key, Counter()))), self.anonymous.get(key, 0)

    def watched(self, room: str) -> bool:
        key = room_key(room)
        return key in self.users or self.anonymous.get(key, 0) > 0

    def rooms(self) -> list[str]:
        """The rooms someone watches through this instance, as their names are written."""
        return [self.names.get(key, key) for key in {*self.users, *self.anonymous}]

    def event(self, room: str, instance: str, *, ask: bool = False) -> Presence:
        users, anonymous = self.of(room)
        return Presence(room=room, instance=instance, users=users, anonymous=anonymous,
                        ask=ask)

    def to_answer(self, asked: Presence, instance: str, now: float) -> str | None:
        """The room whose list this instance should publish in answer to ``asked``, or
        None: only another instance's question about a room watched here, once per
        :data:`ANSWER_S`."""
        if not asked.ask or asked.instance == instance or not self.watched(asked.room):
            return None
        key = room_key(asked.room)
        if now - self.answered.get(key, float("-inf")) < ANSWER_S:
            return None
        self.answered[key] = now
        return asked.room


class PresenceAnnouncer:
    """Publishes this instance's list of a room when it changed, at most once per
    ``interval_s`` per room: the first change at once, later ones merged into one list
    sent when the interval is over."""

    def __init__(self, book: PresenceBook, instance: str,
                 publish: Callable[[Presence], None], interval_s: float = COALESCE_S) -> None:
        self.book = book
        self.instance = instance
        self.publish = publish
        self.interval_s = interval_s
        self._names: dict[str, str] = {}
        self._ask: set[str] = set()
        self._force: set[str] = set()
        self._last: dict[str, float] = {}
        """Room key → when its list was last published (loop time)."""
        self._sent: dict[str, Presence] = {}
        """Room key → the list last published (not sent again unchanged)."""
        self._due: dict[str, asyncio.TimerHandle] = {}

    def changed(self, room: str, *, ask: bool = False, force: bool = False) -> None:
        """``room``'s viewers here changed (``ask``: a newcomer, whom the other instances
        answer); ``force`` publishes the list even if unchanged (answering a newcomer on
        another instance)."""
        key = room_key(room)
        self._names[key] = room
        if ask:
            self._ask.add(key)
        if force:
            self._force.add(key)
        if key in self._due:
            return  # merged into the list already due
        loop = asyncio.get_running_loop()
        wait = self._last.get(key, float("-inf")) + self.interval_s - loop.time()
        if wait <= 0:
            self._flush(key)
        else:
            self._due[key] = loop.call_later(wait, self._flush, key)

    def _flush(self, key: str) -> None:
        self._due.pop(key, None)
        room = self._names.pop(key, key)
        ask, force = key in self._ask, key in self._force
        self._ask.discard(key)
        self._force.discard(key)
        event = self.book.event(room, self.instance, ask=ask)
        if event == self._sent.get(key) and not force:
            return  # nothing to tell (a socket that came and went)
        now = asyncio.get_running_loop().time()
        self._last[key], self._sent[key] = now, event
        self.publish(event)
        if len(self._last) > _MAX_ROOMS:
            self._forget(now)

    def _forget(self, now: float) -> None:
        """Drop what is known of rooms nobody watches here and nothing was sent for lately."""
        for key in [k for k, at in self._last.items()
                    if now - at > self.interval_s and k not in self._due
                    and not self.book.watched(k)]:
            self._last.pop(key, None)
            self._sent.pop(key, None)

    def close(self) -> None:
        for handle in self._due.values():
            handle.cancel()
        self._due.clear()


_MAX_ROOMS = 10_000


class PresenceRefresh:
    """Republishes this instance's lists (a chore every :data:`REFRESH_S` seconds)."""

    def __init__(self, book: PresenceBook, instance: str,
                 publish: Callable[[Presence], None]) -> None:
        self.book = book
        self.instance = instance
        self.publish = publish

    async def refresh(self) -> int:
        rooms = self.book.rooms()
        for room in rooms:
            self.publish(self.book.event(room, self.instance))
        return len(rooms)
