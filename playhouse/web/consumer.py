"""The results consumer: apply what workers answered and show it live.

Reads ``gen-results-interactive`` (what people asked for) before ``gen-results`` (the
bots' traffic), in pages of up to 32, applies each result through
:func:`playhouse.jobs.apply_result` (idempotent on the request id), broadcasts the
replaced placeholder or the new thread, and only then deletes the message. A page's
results are applied concurrently, one task per thread (results for the same thread in
order), and each result queue has its own loop, so a person's answer never queues behind
a page of bot traffic. When idle it backs off to ``poll_max_s``; a bot call made on this
instance (``ctx.results_expected``) wakes it to poll quickly for ``hot_s`` seconds. A message
that cannot be decoded goes to the poison queue at once; one whose application keeps
failing goes there after ``max_attempts`` deliveries. A failed generation is applied
like any result: its placeholder becomes a visible "… could not answer" comment.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog

from playhouse.constants import RECEIVE_MAX, RESULT_QUEUES
from playhouse.errors import InvalidInput, PlayhouseError
from playhouse.jobs import Applied, apply_result
from playhouse.messages import GenerationResult, decode_result
from playhouse.storage.queues import Received
from playhouse.web import views
from playhouse.web.context import WebContext, room_channel, thread_channel
from playhouse.web.loops import BackgroundLoop
from playhouse.web.protocol import CommentReplaced, ThreadEvent, encode

log = structlog.get_logger()


class ResultsConsumer(BackgroundLoop):
    """Polls the results queue; ``run_once`` handles one page (what tests call)."""

    name = "consumer"

    def __init__(
        self,
        ctx: WebContext,
        *,
        poll_min_s: float = 0.05,
        poll_max_s: float = 2.0,
        hot_s: float = 120.0,
        hot_poll_s: float = 0.02,
        max_attempts: int = 5,
        visibility_timeout: int = 60,
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.poll_min_s = poll_min_s
        self.poll_max_s = poll_max_s
        self.hot_s = hot_s
        self.hot_poll_s = hot_poll_s
        self.max_attempts = max_attempts
        self.visibility_timeout = visibility_timeout

    async def run_once(self, queues: Sequence[str] = RESULT_QUEUES) -> int:
        """Apply one page of results from ``queues`` (in order); returns how many
        messages were handled."""
        messages: list[Received] = []
        for queue in queues:
            if len(messages) >= RECEIVE_MAX:
                break
            messages += await self.ctx.storage.queues.receive(
                queue, max_messages=RECEIVE_MAX - len(messages),
                visibility_timeout=self.visibility_timeout,
            )
        lanes: dict[str, list[tuple[Received, GenerationResult | InvalidInput]]] = {}
        for message in messages:
            decoded: GenerationResult | InvalidInput
            try:
                decoded = decode_result(message.content)
                key = decoded.thread_id or decoded.room or message.id
            except InvalidInput as exc:
                decoded, key = exc, message.id
            lanes.setdefault(key, []).append((message, decoded))

        async def lane(batch: list[tuple[Received, GenerationResult | InvalidInput]]) -> None:
            for message, decoded in batch:
                await self.handle(message, decoded)

        await asyncio.gather(*(lane(batch) for batch in lanes.values()))
        return len(messages)

    async def handle(self, message: Received, result: GenerationResult | InvalidInput) -> None:
        """Apply one decoded result (or poison the message that could not be decoded)."""
        queues = self.ctx.storage.queues
        if isinstance(result, InvalidInput):
            log.warning("result.malformed", message_id=message.id, reason=str(result))
            await queues.to_poison(message, str(result))
            return
        try:
            applied = await apply_result(self.ctx.storage, result)
        except PlayhouseError as exc:
            if message.dequeue_count >= self.max_attempts:
                log.error("result.poisoned", request_id=result.request_id, reason=str(exc))
                await queues.to_poison(message, f"could not apply: {exc}")
            else:
                log.warning("result.retry", request_id=result.request_id, reason=str(exc),
                            attempt=message.dequeue_count)
            self.ctx.metrics.errors.labels("consumer").inc()
            return
        if applied.kind != "duplicate":
            self.ctx.metrics.result_applied(result)
        await self.broadcast(applied)
        await queues.delete(message)
        log.info("result.applied", request_id=result.request_id, kind=applied.kind,
                 failed=applied.failed, elapsed_ms=result.elapsed_ms,
                 comment_id=applied.comment.comment_id if applied.comment else None)

    async def broadcast(self, applied: Applied) -> None:
        thread = applied.thread
        if applied.kind == "duplicate" or thread is None:
            return
        if applied.comment is not None:
            comment = applied.comment
            self.ctx.publish(
                encode(CommentReplaced(comment=views.comment_out(comment))),
                thread_channel(comment.thread_id),
            )
            with contextlib.suppress(PlayhouseError):  # fresh reply count for room pages
                thread = await self.ctx.storage.threads.get(thread.thread_id)
        self.ctx.publish(
            encode(ThreadEvent(thread=views.thread_out(thread))), room_channel(thread.room)
        )

    async def run(self) -> None:
        """Poll until :meth:`stop`, one loop per result queue: a page of bot results being
        applied never holds up the answer a person is waiting for."""
        await asyncio.gather(*(self._poll(queue) for queue in RESULT_QUEUES))

    async def _poll(self, queue: str) -> None:
        """Quickly while results come, backing off when idle; the people's queue is woken
        by a bot call on this instance."""
        loop = asyncio.get_running_loop()
        wait = self.poll_min_s
        hot_until = 0.0
        expected = self.ctx.results_expected if queue == RESULT_QUEUES[0] else asyncio.Event()
        while not self.stopping:
            if expected.is_set():
                expected.clear()
                hot_until = loop.time() + self.hot_s
            try:
                handled = await self.run_once((queue,))
            except PlayhouseError as exc:
                log.warning("consumer.failed", reason=str(exc))
                handled = 0
            if handled:
                wait = self.poll_min_s
                continue
            hot = loop.time() < hot_until
            wait = self.hot_poll_s if hot else min(wait * 2, self.poll_max_s)
            stop, wake = asyncio.ensure_future(self._stop.wait()), asyncio.ensure_future(
                expected.wait()
            )
            try:
                await asyncio.wait({stop, wake}, timeout=wait,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in (stop, wake):
                    waiter.cancel()
