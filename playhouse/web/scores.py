"""Score changes, coalesced: the live ``score`` events and the indexes that follow votes.

A vote is stored (and its tally known) before :meth:`ScoreFeed.voted` hears of it. For
each item the feed then, at most once per ``interval_s`` (the first change at once, the
rest of a burst as one trailing update with the newest tally):

* sends a :class:`~playhouse.events.ScoreEvent` through the one broadcaster (on the
  thread's channel and, for a thread's own votes, its room's);
* moves the item in its author's history and karma (:mod:`playhouse.storage.authored`)
  and, for a thread, in its room's listings (:mod:`playhouse.storage.listings`).

Activity on a thread (a new comment) moves its listings where the thread's counters are
written (:mod:`playhouse.web.counters`, coalesced too, off the path from a post to its
acknowledgement: :meth:`~playhouse.storage.threads.ThreadRepo.touch`). Both index writes
keep the newest version whatever order they land in, so a late flush never undoes a newer
one, and a flush that fails is tried again (:data:`FLUSH_RETRIES` times). What a process had not
flushed when it stopped cleanly is flushed by :meth:`ScoreFeed.stop`; a process that dies
leaves those indexes a vote behind until the item's next vote.

The feed is one of the web app's services: when it starts it also indexes, in the
background, what was stored before the listings and histories existed
(:mod:`playhouse.storage.reindex`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from playhouse.errors import PlayhouseError
from playhouse.storage.authored import of_comment, of_thread
from playhouse.storage.models import Tally
from playhouse.storage.reindex import index_all

if TYPE_CHECKING:
    from playhouse.events import Broadcaster
    from playhouse.storage import Storage

log = structlog.get_logger()

INTERVAL_S = 1.0
FLUSH_RETRIES = 3


@dataclass(frozen=True)
class Target:
    """What a vote was on."""

    room: str
    thread_id: str
    item_id: str
    author: str

    @property
    def is_thread(self) -> bool:
        return self.item_id == self.thread_id


class ScoreFeed:
    """Coalesces each item's score changes; a web service (:meth:`start`, :meth:`stop`)."""

    def __init__(self, storage: Storage, broadcast: Broadcaster | None, *,
                 interval_s: float = INTERVAL_S) -> None:
        self.storage = storage
        self.broadcast = broadcast
        """Where the score events go (None: nowhere, only the indexes move)."""
        self.interval_s = interval_s
        self._votes: dict[str, tuple[Target, Tally, int]] = {}
        """item id → newest tally not flushed yet, and its failed attempts."""
        self._last: dict[str, float] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.published = 0
        """Score events published (tests count them)."""

    # -- the service ----------------------------------------------------------------

    async def start(self) -> None:
        """Index, in the background, what was stored before the indexes existed."""
        self._track(asyncio.get_running_loop().create_task(self._index_old()))

    async def _index_old(self) -> None:
        try:
            await index_all(self.storage)
        except Exception:
            log.exception("index.crashed")

    async def stop(self) -> None:
        """Flush what is still pending (a clean shutdown loses no index move)."""
        with contextlib.suppress(Exception):
            await self.drain()

    # -- what happened -------------------------------------------------------------

    def voted(self, target: Target, tally: Tally) -> None:
        held = self._votes.get(target.item_id)
        if held is None or tally.version > held[1].version:
            self._votes[target.item_id] = (target, tally, 0)
        self._schedule(target.item_id)

    # -- when -----------------------------------------------------------------------

    def _schedule(self, key: str) -> None:
        if key in self._timers or key in self._running:
            return  # the flush already due (or running) takes the newest
        loop = asyncio.get_running_loop()
        wait = self._last.get(key, float("-inf")) + self.interval_s - loop.time()
        if wait <= 0:
            self._start(key)
        else:
            self._timers[key] = loop.call_later(wait, self._start, key)

    def _start(self, key: str) -> None:
        self._timers.pop(key, None)
        self._running.add(key)
        self._track(asyncio.get_running_loop().create_task(self._flush(key)))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, key: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._last[key] = loop.time()
            self._forget_old(loop.time())
            await self._flush_votes(key)
        finally:
            self._running.discard(key)
            if key in self._votes:
                self._schedule(key)

    def _forget_old(self, now: float) -> None:
        if len(self._last) > 10_000:
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval_s}

    # -- what a flush does ----------------------------------------------------------

    async def _flush_votes(self, item_id: str) -> None:
        held = self._votes.pop(item_id, None)
        if held is None:
            return
        target, tally, failures = held
        if failures == 0:
            try:
                self._publish(target, tally)
            except Exception:  # the indexes still follow the vote
                log.exception("score.publish_failed", item_id=item_id)
        try:
            await self._index(target, tally)
        except PlayhouseError as exc:
            log.warning("score.index_failed", item_id=item_id, attempt=failures + 1,
                        reason=str(exc))
            if failures + 1 < FLUSH_RETRIES and item_id not in self._votes:
                self._votes[item_id] = (target, tally, failures + 1)

    def _publish(self, target: Target, tally: Tally) -> None:
        if self.broadcast is not None:
            self.broadcast.score(target.room, tally)
        self.published += 1

    async def _index(self, target: Target, tally: Tally) -> None:
        storage = self.storage
        steps: list[Awaitable[object]] = [self._history(target, tally)]
        if target.is_thread:
            steps.append(storage.listings.apply(
                target.room, target.thread_id, tally=tally,
                load=lambda: storage.threads.get(target.thread_id)))
        for outcome in await asyncio.gather(*steps, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    async def _history(self, target: Target, tally: Tally) -> None:
        authored = self.storage.authored
        if await authored.apply(target.author, target.item_id, tally) is not None:
            return
        # Made before histories were kept: add it, then count its votes.
        if target.is_thread:
            await authored.add(of_thread(await self.storage.threads.get(target.thread_id)))
        else:
            comment = await self.storage.comments.get(target.thread_id, target.item_id)
            await authored.add(of_comment(comment))
        await authored.apply(target.author, target.item_id, tally)

    # -- the end --------------------------------------------------------------------

    async def drain(self) -> None:
        """Flush everything pending now (tests, shutdown)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        while self._tasks or self._votes:
            for item_id in list(self._votes):
                if item_id not in self._running:
                    self._start(item_id)
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
