"""Score changes, coalesced: the live ``score`` events and the indexes that follow votes.

A vote is stored (and its tally known) before :meth:`ScoreFeed.voted` hears of it. For
each item the feed then, at most once per ``interval_s`` (the first change at once, the
rest of a burst as one trailing update with the newest tally):

* publishes a :class:`~playhouse.web.protocol.ScoreEvent` on the thread's channel (and,
  for a thread's own votes, its room's), encoded once for every socket;
* moves the item in its author's history and karma (:mod:`playhouse.storage.authored`)
  and, for a thread, in its room's listings (:mod:`playhouse.storage.listings`).

Activity on a thread (a new comment, :meth:`ThreadRepo.touch`) moves its listings the same
way (:meth:`ScoreFeed.touched`), off the path from a post to its acknowledgement. Both
index writes keep the newest version whatever order they land in, so a late flush never
undoes a newer one, and a flush that fails is tried again (:data:`RETRIES` times). What a
process had not flushed when it stopped cleanly is flushed by :meth:`close`; a process
that dies leaves those indexes a vote behind until the item's next vote.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from playhouse.errors import NotFound, PlayhouseError
from playhouse.storage.authored import of_comment, of_thread
from playhouse.storage.models import Tally, Thread
from playhouse.web.context import room_channel, thread_channel
from playhouse.web.protocol import ScoreEvent, encode

if TYPE_CHECKING:
    from playhouse.storage import Storage

log = structlog.get_logger()

INTERVAL_S = 1.0
RETRIES = 3


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
    def __init__(self, storage: Storage, publish: Callable[..., None], *,
                 interval_s: float = INTERVAL_S) -> None:
        self.storage = storage
        self.publish = publish
        """(encoded event, *channels)."""
        self.interval_s = interval_s
        self._votes: dict[str, tuple[Target, Tally, int]] = {}
        """item id → newest tally not flushed yet, and its failed attempts."""
        self._touched: dict[str, tuple[Thread, int]] = {}
        self._last: dict[str, float] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.published = 0
        """Score events published (tests count them)."""

    # -- what happened -------------------------------------------------------------

    def voted(self, target: Target, tally: Tally) -> None:
        held = self._votes.get(target.item_id)
        if held is None or tally.version > held[1].version:
            self._votes[target.item_id] = (target, tally, 0)
        self._schedule(f"v:{target.item_id}")

    def touched(self, thread: Thread) -> None:
        held = self._touched.get(thread.thread_id)
        if held is None or (thread.last_activity, thread.comment_count) >= (
            held[0].last_activity, held[0].comment_count
        ):
            self._touched[thread.thread_id] = (thread, 0)
        self._schedule(f"t:{thread.thread_id}")

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
        task = asyncio.get_running_loop().create_task(self._flush(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, key: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._last[key] = loop.time()
            self._forget_old(loop.time())
            kind, _, ident = key.partition(":")
            if kind == "v":
                await self._flush_votes(ident)
            else:
                await self._flush_touch(ident)
        finally:
            self._running.discard(key)
            kind, _, ident = key.partition(":")
            if ident in (self._votes if kind == "v" else self._touched):
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
            if failures + 1 < RETRIES and item_id not in self._votes:
                self._votes[item_id] = (target, tally, failures + 1)

    def _publish(self, target: Target, tally: Tally) -> None:
        event = encode(ScoreEvent(room=target.room, thread_id=target.thread_id,
                                  item_id=target.item_id, ups=tally.ups, downs=tally.downs,
                                  score=tally.score, version=tally.version))
        channels = [thread_channel(target.thread_id)]
        if target.is_thread:
            channels.append(room_channel(target.room))
        self.publish(event, *channels)
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

    async def _flush_touch(self, thread_id: str) -> None:
        held = self._touched.pop(thread_id, None)
        if held is None:
            return
        thread, failures = held
        try:
            await self.storage.listings.apply(thread.room, thread_id, thread=thread)
        except NotFound:
            return
        except PlayhouseError as exc:
            log.warning("listing.index_failed", thread_id=thread_id, attempt=failures + 1,
                        reason=str(exc))
            if failures + 1 < RETRIES and thread_id not in self._touched:
                self._touched[thread_id] = (thread, failures + 1)

    # -- the end --------------------------------------------------------------------

    async def drain(self) -> None:
        """Flush everything pending now (tests, shutdown)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        while self._tasks or self._votes or self._touched:
            for item_id in list(self._votes):
                if f"v:{item_id}" not in self._running:
                    self._start(f"v:{item_id}")
            for thread_id in list(self._touched):
                if f"t:{thread_id}" not in self._running:
                    self._start(f"t:{thread_id}")
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.drain()
