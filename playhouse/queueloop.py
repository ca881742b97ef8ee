"""One queue consumer for every process: receive, decode, retry, settle, back off.

The worker (generation requests), the web app's results consumer and anything else that
drains an Azure queue are handlers on :class:`QueueLoop`. The loop owns what they share:

* **receive** pages of up to 32 messages from its sources in priority order (the first
  source drained before the next), hidden for ``visibility_timeout_s``; optionally wait
  ``fill_wait_s`` for a page to fill when it came only from lower-priority sources;
* **decode** each message once; one that does not decode is parked in the poison queue
  at once (``on_malformed`` hears of it first, to answer whom it can);
* **retry** under one :class:`RetryPolicy`, keyed on the queue's dequeue count: a message
  delivered more often than ``max_deliveries`` is given up before it is handled (earlier
  deliveries died without settling it), and a handler's failure on the last allowed
  delivery gives it up too (``on_exhausted`` hears of it, then it is parked);
* **settle**: the handler says of each delivery :meth:`QueueLoop.done` (delete),
  :meth:`QueueLoop.failed` (retry, or give up on the last delivery),
  :meth:`QueueLoop.poison` or :meth:`QueueLoop.hand_back` (a fresh copy for another
  consumer, without spending a delivery); what it leaves unsettled reappears when its
  visibility runs out. While a page is in hand its messages are kept hidden (renewed at
  half the timeout), so a long batch is not delivered twice;
* **back off** when idle (:class:`Polling`), quickly while work is recent or an answer is
  expected (``hurry``), and wait out a storage outage without exiting;
* ``burst``: return once the sources are empty (tests, one-shot runs); :meth:`stop`:
  finish the page in hand, take no new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Generic, TypeVar

import structlog

from playhouse.constants import RECEIVE_MAX
from playhouse.errors import Conflict, InvalidInput, PlayhouseError, StorageUnavailable

if TYPE_CHECKING:
    from playhouse.storage.queues import QueueStore, Received

log = structlog.get_logger()

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a message may be handled before it is given up and parked in poison."""

    max_deliveries: int = 3
    """Deliveries of one message at most; the last failed one parks it."""

    def __post_init__(self) -> None:
        if self.max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")

    def exhausted(self, dequeue_count: int) -> bool:
        """Delivered more often than allowed: earlier deliveries died without settling it."""
        return dequeue_count > self.max_deliveries

    def last(self, dequeue_count: int) -> bool:
        """This delivery is the last allowed one: a failure now gives the message up."""
        return dequeue_count >= self.max_deliveries


@dataclass(frozen=True, slots=True)
class Polling:
    """How long to wait after an empty receive.

    Every receive is a billed request (and CPU here), so an idle loop backs off
    exponentially from ``min_s`` to ``max_s``. It stays at ``min_s`` for ``linger_s`` after
    the last work (conversations come in bursts). While an answer is expected the wait
    grows with the time it has been expected (``expect_ratio`` of it), so a fast answer is
    seen within a few milliseconds of arriving and a slow one costs a few dozen polls, not
    thousands.
    """

    min_s: float = 0.05
    max_s: float = 2.0
    linger_s: float = 0.0
    expect_ratio: float = 0.1
    hurry_min_s: float = 0.02
    outage_max_s: float = 15.0

    def after_empty(self, previous_s: float, *, since_work_s: float,
                    expected_for_s: float | None = None) -> float:
        """The wait after an empty receive: ``previous_s`` was the last one,
        ``since_work_s`` the time since something was handled, ``expected_for_s`` how long
        the oldest answer awaited has been awaited (None: nothing is)."""
        idle = self.min_s if since_work_s < self.linger_s else min(
            max(previous_s * 2, self.min_s), self.max_s
        )
        if expected_for_s is None:
            return idle
        hurried = min(max(expected_for_s * self.expect_ratio, self.hurry_min_s), self.max_s)
        return min(idle, hurried)

    def polls_while_expecting(self, seconds: float) -> int:
        """Receives made while one answer is awaited for ``seconds`` (for the docs and the
        tests of the request budget): the waits follow :meth:`after_empty`."""
        t, polls = 0.0, 0
        while t < seconds:
            polls += 1
            t += self.after_empty(self.max_s, since_work_s=math.inf, expected_for_s=t)
        return polls


@dataclass(slots=True)
class Delivery(Generic[T]):
    """One received message and its decoded body; ``message`` is the latest handle (the
    loop renews it in place while the page is in hand)."""

    message: Received
    body: T
    settled: bool = False

    @property
    def id(self) -> str:
        return self.message.id

    @property
    def queue(self) -> str:
        return self.message.queue

    @property
    def dequeue_count(self) -> int:
        return self.message.dequeue_count


Handler = Callable[["QueueLoop[T]", list[Delivery[T]]], Awaitable[None]]
"""Handles one page of deliveries and settles each (``loop.done`` / ``loop.failed`` ...)."""


@dataclass
class LoopStats:
    pages: int = 0
    received: int = 0
    done: int = 0
    failed: int = 0
    poisoned: int = 0
    handed_back: int = 0
    renewals: int = 0
    receives: int = 0
    """Receive requests made (empty ones included): what polling costs."""


@dataclass
class QueueLoop(Generic[T]):
    """Drains ``sources`` (priority order) through ``handle``; see the module docstring."""

    name: str
    queues: QueueStore
    sources: Sequence[str]
    decode: Callable[[bytes], T]
    handle: Handler[T]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    polling: Polling = field(default_factory=Polling)
    visibility_timeout_s: int = 60
    page_size: int = RECEIVE_MAX
    fill_wait_s: float = 0.0
    """Wait this long for a page to fill, unless it holds something from ``sources[0]``
    (bot traffic may wait a moment to batch better; a person's request never does)."""
    on_malformed: Callable[[Received, str], Awaitable[None]] | None = None
    on_exhausted: Callable[[Delivery[T], str], Awaitable[None]] | None = None
    burst: bool = False
    hurry: Callable[[], float | None] | None = None
    """Seconds the oldest awaited answer has been awaited, or None: polls quickly then."""
    stats: LoopStats = field(default_factory=LoopStats)

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("a queue loop needs at least one source")
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._in_hand: dict[str, Delivery[T]] = {}
        self._lock = asyncio.Lock()
        self._worked_at = -math.inf

    # ----------------------------------------------------------------- lifecycle
    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Take no new page; the one in hand is finished (or interrupted by its handler)."""
        self._stop.set()

    def wake(self) -> None:
        """Poll now (an answer was just asked for)."""
        self._wake.set()

    async def run(self) -> None:
        """Receive and handle pages until :meth:`stop` (or, in ``burst``, until empty)."""
        self._stop.clear()
        loop = asyncio.get_running_loop()
        wait = self.polling.min_s
        outage = self.polling.min_s
        log.info("queue_loop.started", loop=self.name, sources=list(self.sources),
                 burst=self.burst)
        while not self._stop.is_set():
            try:
                handled = await self.run_once()
                outage = self.polling.min_s
            except StorageUnavailable as exc:
                # Not a reason to exit: the messages in hand reappear and are redelivered.
                if self.burst:
                    raise
                log.warning("storage.unavailable", loop=self.name, retry_in=round(outage, 2),
                            reason=str(exc)[:200])
                await self._pause(outage)
                outage = min(max(outage * 2, 0.5), self.polling.outage_max_s)
                continue
            if handled:
                self._worked_at = loop.time()
                wait = self.polling.min_s
                continue
            if self.burst:
                break
            wait = self.polling.after_empty(
                wait, since_work_s=loop.time() - self._worked_at,
                expected_for_s=self.hurry() if self.hurry is not None else None,
            )
            await self._pause(wait)
        log.info("queue_loop.stopped", loop=self.name, done=self.stats.done,
                 failed=self.stats.failed, poisoned=self.stats.poisoned)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, less when stopped or woken meanwhile."""
        if self._wake.is_set():
            self._wake.clear()
            return
        stop = asyncio.ensure_future(self._stop.wait())
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stop, wake}, timeout=seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (stop, wake):
                waiter.cancel()
        self._wake.clear()

    # ----------------------------------------------------------------- one page
    async def run_once(self) -> int:
        """Receive one page and handle it; returns how many messages it held."""
        messages = await self.receive(self.page_size)
        if (messages and len(messages) < self.page_size and self.fill_wait_s > 0
                and len(self.sources) > 1
                and not any(m.queue == self.sources[0] for m in messages)):
            await asyncio.sleep(self.fill_wait_s)
            messages += await self.receive(self.page_size - len(messages))
        if not messages:
            return 0
        self.stats.pages += 1
        self.stats.received += len(messages)
        deliveries = await self.admit(messages)
        if deliveries:
            renewer = asyncio.create_task(self._renew_loop())
            try:
                await self.handle(self, deliveries)
            finally:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
                async with self._lock:
                    for delivery in deliveries:
                        self._in_hand.pop(delivery.id, None)
        return len(messages)

    async def receive(self, want: int, sources: Sequence[str] | None = None) -> list[Received]:
        """Up to ``want`` messages from ``sources`` (default: the loop's), in order."""
        got: list[Received] = []
        for queue in sources if sources is not None else self.sources:
            if len(got) >= want:
                break
            self.stats.receives += 1
            got += await self.queues.receive(
                queue, max_messages=min(RECEIVE_MAX, want - len(got)),
                visibility_timeout=self.visibility_timeout_s,
            )
        return got

    async def more(self, want: int, sources: Sequence[str]) -> list[Delivery[T]]:
        """Receive and admit more messages into the page in hand (a handler that checks
        for urgent work between two parts of a long page)."""
        return await self.admit(await self.receive(want, sources))

    async def admit(self, messages: Sequence[Received]) -> list[Delivery[T]]:
        """Decode ``messages``; park what does not decode or was delivered too often;
        the rest are in hand (renewed) until settled."""
        admitted: list[Delivery[T]] = []
        for message in messages:
            try:
                body = self.decode(message.content)
            except InvalidInput as exc:
                reason = str(exc)
                log.warning("message.malformed", loop=self.name, queue=message.queue,
                            message_id=message.id, reason=reason[:200])
                if self.on_malformed is not None:
                    await self.on_malformed(message, reason)
                await self._park(message, reason)
                continue
            delivery = Delivery(message, body)
            if self.retry.exhausted(message.dequeue_count):
                await self._give_up(
                    delivery, f"gave up after {message.dequeue_count - 1} deliveries"
                )
                continue
            async with self._lock:
                self._in_hand[message.id] = delivery
            admitted.append(delivery)
        return admitted

    # ----------------------------------------------------------------- settling
    async def _current(self, delivery: Delivery[T]) -> Received:
        """Take ``delivery`` out of the renewals; its latest handle."""
        async with self._lock:
            self._in_hand.pop(delivery.id, None)
            delivery.settled = True
            return delivery.message

    async def done(self, delivery: Delivery[T]) -> None:
        """Handled: delete the message."""
        await self.queues.delete(await self._current(delivery))
        self.stats.done += 1

    async def failed(self, delivery: Delivery[T], reason: str) -> None:
        """Handling failed: give it up on its last allowed delivery, else let it reappear
        when its visibility runs out (the next delivery tries again)."""
        self.stats.failed += 1
        if self.retry.last(delivery.dequeue_count):
            await self._give_up(delivery, reason)
            return
        await self._current(delivery)  # no longer renewed: it reappears after the timeout
        log.warning("message.retry", loop=self.name, queue=delivery.queue,
                    message_id=delivery.id, attempt=delivery.dequeue_count,
                    reason=reason[:200])

    async def poison(self, delivery: Delivery[T], reason: str) -> None:
        """Park the message in its poison queue with ``reason`` (nothing more to try)."""
        await self._park(await self._current(delivery), reason)

    async def hand_back(self, delivery: Delivery[T]) -> bool:
        """Put a fresh copy on the queue and delete this one: the message goes to another
        consumer at once without spending a delivery. The copy goes first; a crash before
        the delete leaves two (handlers are idempotent). False when the copy failed (the
        message then reappears after its timeout)."""
        message = await self._current(delivery)
        try:
            await self.queues.send(message.queue, message.content)
        except StorageUnavailable as exc:
            log.warning("message.hand_back_failed", loop=self.name, message_id=message.id,
                        reason=str(exc)[:200])
            return False
        with contextlib.suppress(StorageUnavailable, Conflict):
            await self.queues.delete(message)
        self.stats.handed_back += 1
        return True

    async def _give_up(self, delivery: Delivery[T], reason: str) -> None:
        log.error("message.given_up", loop=self.name, queue=delivery.queue,
                  message_id=delivery.id, deliveries=delivery.dequeue_count,
                  reason=reason[:200])
        if self.on_exhausted is not None:
            await self.on_exhausted(delivery, reason)
        await self._park(await self._current(delivery), reason)

    async def _park(self, message: Received, reason: str) -> None:
        await self.queues.to_poison(message, reason)
        self.stats.poisoned += 1

    # ----------------------------------------------------------------- renewal
    async def _renew_loop(self) -> None:
        """Keep what is in hand hidden while a page runs longer than half the timeout."""
        timeout = self.visibility_timeout_s
        while True:
            await asyncio.sleep(timeout / 2)
            async with self._lock:
                for key, delivery in list(self._in_hand.items()):
                    try:
                        renewed = await self.queues.renew(delivery.message, timeout)
                    except PlayhouseError as exc:  # lost it: another consumer will answer
                        log.warning("message.renew_failed", loop=self.name, message_id=key,
                                    reason=str(exc)[:200])
                        self._in_hand.pop(key, None)
                        continue
                    delivery.message = replace(delivery.message,
                                               pop_receipt=renewed.pop_receipt)
                    self.stats.renewals += 1
