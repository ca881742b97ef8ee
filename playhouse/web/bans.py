"""Site bans made outside this web instance, when no Redis carries them.

A ban made here, or anywhere with Redis (``web.redis_url``: every instance and the
operator's ``playhouse admin`` publish on it), reaches the banned user's sockets through
their user channel at once. A web instance alone, without Redis, cannot hear the
operator's command: this chore reads the site's bans made since it last looked (one
query on the site's member partition, every :data:`WATCH_S` seconds) and tells this
instance's sockets of each, as a ban made here would.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from playhouse.constants import SITE_ROOM
from playhouse.events import Broadcaster
from playhouse.storage import Storage

log = structlog.get_logger()

WATCH_S = 10.0
SKEW_S = 2.0
"""How far back each look reaches before the last one (clocks of two machines differ)."""


class BanWatch:
    def __init__(self, storage: Storage, broadcast: Broadcaster,
                 forget: Callable[[str], None], *, clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.broadcast = broadcast
        self.forget = forget
        self.clock = clock
        self.since = clock()
        """Bans made before this were told when they were made (or need no telling)."""
        self._told: set[tuple[str, float]] = set()
        """Bans told lately (the look back overlaps the last by :data:`SKEW_S`)."""

    async def check(self) -> int:
        """Tell this instance's sockets of the bans made since the last check; how many."""
        now = self.clock()
        rows = await self.storage.members.of_room(SITE_ROOM)
        fresh = [m for m in rows if m.role == "banned" and m.joined_at >= self.since - SKEW_S
                 and (m.username, m.joined_at) not in self._told]
        self._told = {(u, at) for u, at in self._told if at >= self.since - SKEW_S}
        self.since = now
        for member in fresh:
            self._told.add((member.username, member.joined_at))
            self.forget(member.username)
            self.broadcast.banned(member.username, None, member.reason)
            log.info("ban.noticed", username=member.username)
        return len(fresh)
