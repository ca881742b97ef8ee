"""The results consumer: apply what workers answered and show it live.

Two :class:`~playhouse.queueloop.QueueLoop`\\ s, one per result queue:
``gen-results-interactive`` (what people asked for) and ``gen-results`` (the bots'
traffic), so a page of bot results being applied never holds up the answer a person
waits for. A page's results are applied concurrently, one lane per thread (results for
the same thread in order), through :mod:`playhouse.applying` (idempotent on the
request id); the replaced placeholder or the new thread is broadcast, and only then is
the message deleted; the person an answer answers is told in their inbox
(:mod:`playhouse.web.inbox`). A message that cannot be decoded is parked at once; one whose
application keeps failing is parked after ``web.max_deliveries`` deliveries. A failed
generation is applied like any result: its placeholder becomes a visible "… could not
answer" comment.

Polling costs what it must: idle, each loop backs off to ``web.results_poll_max_s``; while
this instance awaits an answer (:meth:`ResultsConsumer.expect`, called when it asks a
bot) the loop that will carry it polls quickly, slowing as the wait grows, until the
answer is applied (here or by another instance) or ``web.expect_s`` has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from functools import partial

import structlog

from playhouse.applying import Applied, apply_answer, finish_job
from playhouse.constants import QUEUE_RESULTS, QUEUE_RESULTS_INTERACTIVE, RESULT_QUEUES
from playhouse.errors import PlayhouseError, StorageUnavailable
from playhouse.messages import GenerationResult, decode_result
from playhouse.priority import PEOPLE_FIRST_S
from playhouse.queueloop import Delivery, Polling, QueueLoop, RetryPolicy
from playhouse.storage.models import Comment
from playhouse.web.context import WebContext
from playhouse.web.inbox import notify_answer

log = structlog.get_logger()

class Expectations:
    """Answers this instance awaits, per result queue: request id → when it was asked."""

    def __init__(self, expect_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.expect_s = expect_s
        self.clock = clock
        self._waiting: dict[str, dict[str, float]] = {q: {} for q in RESULT_QUEUES}
        self.none_waiting = {q: asyncio.Event() for q in RESULT_QUEUES}
        """Per queue: set while no answer on it is awaited."""
        for event in self.none_waiting.values():
            event.set()

    def expect(self, queue: str, request_id: str) -> None:
        self._waiting.setdefault(queue, {}).setdefault(request_id, self.clock())
        self.none_waiting[queue].clear()

    def settled(self, queue: str, request_id: str) -> None:
        waiting = self._waiting.get(queue, {})
        waiting.pop(request_id, None)
        if not waiting:
            self.none_waiting[queue].set()

    def oldest(self, queue: str) -> float | None:
        """Seconds the oldest awaited answer on ``queue`` has been awaited (None: none);
        an answer awaited longer than ``expect_s`` is forgotten (another instance applied
        it, or it will come at the idle pace)."""
        waiting = self._waiting.get(queue, {})
        now = self.clock()
        for request_id in [r for r, at in waiting.items() if now - at > self.expect_s]:
            del waiting[request_id]
        if not waiting:
            self.none_waiting[queue].set()
            return None
        return now - min(waiting.values())

    def count(self) -> int:
        return sum(len(w) for w in self._waiting.values())


class ResultsConsumer:
    """Applies results; ``run_once`` handles one page of each queue (what tests call)."""

    name = "consumer"

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        web = ctx.settings.web
        self.expectations = Expectations(web.expect_s)
        self.loops: dict[str, QueueLoop[GenerationResult]] = {
            queue: QueueLoop(
                name=f"results-{queue}", queues=ctx.storage.queues, sources=(queue,),
                decode=decode_result, handle=self._handle,
                retry=RetryPolicy(web.max_deliveries),
                polling=Polling(min_s=0.05, max_s=web.results_poll_max_s),
                visibility_timeout_s=60,
                hurry=partial(self.expectations.oldest, queue),
            )
            for queue in RESULT_QUEUES
        }
        self._tasks: list[asyncio.Task[None]] = []

    def expect(self, request_id: str, interactive: bool = True) -> None:
        """This instance asked for ``request_id``: poll its queue quickly until it comes."""
        queue = QUEUE_RESULTS_INTERACTIVE if interactive else QUEUE_RESULTS
        self.expectations.expect(queue, request_id)
        self.loops[queue].wake()

    async def run_once(self) -> int:
        """Apply one page from each result queue, people's first; how many were handled."""
        handled = 0
        for queue in RESULT_QUEUES:
            handled += await self.loops[queue].run_once()
        return handled

    async def _handle(self, loop: QueueLoop[GenerationResult],
                      deliveries: list[Delivery[GenerationResult]]) -> None:
        people = deliveries[0].queue == QUEUE_RESULTS_INTERACTIVE
        lanes: dict[str, list[Delivery[GenerationResult]]] = {}
        for delivery in deliveries:
            result = delivery.body
            lanes.setdefault(result.thread_id or result.room or delivery.id, []).append(delivery)

        async def lane(batch: list[Delivery[GenerationResult]]) -> None:
            for delivery in batch:
                if not people:  # before each bots' result, not only each page
                    await self.ctx.people.turn()
                    await self._people_first()
                await self.handle(loop, delivery)

        if people:
            with self.ctx.people.working():
                await asyncio.gather(*(lane(batch) for batch in lanes.values()))
        else:
            await asyncio.gather(*(lane(batch) for batch in lanes.values()))

    async def handle(self, loop: QueueLoop[GenerationResult],
                     delivery: Delivery[GenerationResult]) -> None:
        """Apply one result; settle its message."""
        result = delivery.body
        try:
            applied = await apply_answer(self.ctx.storage, result)
        except StorageUnavailable as exc:
            log.warning("result.retry", request_id=result.request_id, reason=str(exc)[:200])
            self.ctx.metrics.errors.labels("consumer").inc()
            return  # not the result's fault: it reappears after its visibility timeout
        except PlayhouseError as exc:
            self.ctx.metrics.errors.labels("consumer").inc()
            await loop.failed(delivery, f"could not apply: {exc}")
            return
        if applied.kind != "duplicate":
            self.ctx.metrics.result_applied(result)
        self.expectations.settled(delivery.queue, result.request_id)
        self.show(applied, result)  # shown first: the job's bookkeeping is nobody's wait
        try:
            await finish_job(self.ctx.storage, result, applied)
        except PlayhouseError as exc:  # shown and stored: the next delivery closes the job
            await loop.failed(delivery, f"could not record the job's end: {exc}")
            return
        await loop.done(delivery)
        log.info("result.applied", request_id=result.request_id, kind=applied.kind,
                 failed=applied.failed, elapsed_ms=result.elapsed_ms,
                 comment_id=applied.comment.comment_id if applied.comment else None)

    def show(self, applied: Applied, result: GenerationResult) -> None:
        """Broadcast what applying ``result`` changed and count it in its room (the
        thread's fresh counts are broadcast once written, see :mod:`~playhouse.web.counters`)."""
        if applied.kind == "duplicate":
            return
        if applied.comment is not None:
            self.ctx.broadcast.replaced(applied.comment)
            if applied.counts:
                self.ctx.counters.count(room=result.room, thread=applied.comment.thread_id,
                                        comments=1, at=applied.at, bot=result.persona)
                # The person it answers is told (an answer asked again told them before).
                self.ctx.spawn(self._notify(applied.comment), "notify")
        elif applied.thread is not None:
            self.ctx.broadcast.thread(applied.thread)
            self.ctx.counters.saw_thread(applied.thread)
            self.ctx.counters.count(room=result.room, threads=1, at=applied.at)

    async def _notify(self, comment: Comment) -> None:
        await notify_answer(self.ctx, comment)

    async def _people_first(self) -> None:
        """Before each of the bots' results: while a person here waits for an answer (from
        the post until it is applied: queued, generating, on its way back), the bots'
        results wait, so their writes do not stand in the way of the person's request
        and answer on the one storage account; at most
        :data:`~playhouse.priority.PEOPLE_FIRST_S` at a time."""
        people = QUEUE_RESULTS_INTERACTIVE
        if self.expectations.oldest(people) is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.expectations.none_waiting[people].wait(),
                                   PEOPLE_FIRST_S)

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._tasks = [asyncio.create_task(loop.run(), name=loop.name)
                       for loop in self.loops.values()]

    async def stop(self) -> None:
        for loop in self.loops.values():
            loop.stop()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
