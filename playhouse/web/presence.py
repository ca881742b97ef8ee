"""Who watches each room, per instance, and how instances keep each other's pages current.

Each instance counts the sockets watching a room through it (:class:`PresenceBook`) and
publishes its own list on the room's channel whenever it changes; pages merge the lists by
instance. A newcomer's list carries ``ask``, and every other instance with viewers of that
room answers with its list (at most once per :data:`ANSWER_S` per room), so a page sees
everyone at once. Every instance also republishes its lists every :data:`REFRESH_S`, and a
page forgets an instance it has not heard from for three of those (one that died).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from playhouse.events import Presence
from playhouse.storage.accounts import room_key

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
