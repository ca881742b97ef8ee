"""The worker loop: queues in, batches through an engine, results out.

In the shape of arq's worker: collaborators injected, ``async main()`` polls, ``burst``
returns once the queues are empty (tests), SIGTERM finishes the batch in hand and
exits; a batch still running ``worker.finish_within_s`` after SIGTERM is interrupted and
its messages are handed back to their queue. The only place where queue messages meet
batches.

Delivery guarantees: a request message is deleted only after its result is on the
results queue (a crash in between re-delivers it; the results consumer is idempotent
on the request id). A message delivered more than ``max_attempts`` times, malformed,
for an unknown persona, or whose output stays invalid, produces a failure result
(when it has a request id) and moves to the poison queue with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import msgspec
import structlog

from playhouse.config import WorkerSettings
from playhouse.constants import CONTAINER_IMAGES, results_queue
from playhouse.errors import Conflict, Interrupted, InvalidInput, StorageUnavailable
from playhouse.generation.completion import Outcome
from playhouse.generation.engines import Engine
from playhouse.ids import is_id
from playhouse.messages import GenerationRequest, GenerationResult, decode_request, encode
from playhouse.storage.ops import BATCH_BUCKETS, LATENCY_BUCKETS

if TYPE_CHECKING:
    from playhouse.personas import Cast, Persona
    from playhouse.storage.blobs import BlobStore
    from playhouse.storage.queues import QueueStore, Received

log = structlog.get_logger()

OUTAGE_WAIT_MAX_S = 15.0
"""Longest pause between polls while storage is unreachable."""


@dataclass
class PersonaStats:
    answered: int = 0
    failed: int = 0
    last_answer_at: float = 0.0
    last_error: str = ""


@dataclass
class WorkerStats:
    batches: int = 0
    answered: int = 0
    failed: int = 0
    poisoned: int = 0
    renewals: int = 0
    generated_s: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)
    tokens: int = 0
    batch_counts: list[int] = field(default_factory=lambda: [0] * (len(BATCH_BUCKETS) + 1))
    """Batches per :data:`BATCH_BUCKETS` bound (not cumulative), the last one +Inf."""
    latency_counts: list[int] = field(
        default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1)
    )
    """Requests per :data:`LATENCY_BUCKETS` bound of their batch's generation time."""
    latency_sum: float = 0.0
    personas: dict[str, PersonaStats] = field(default_factory=dict)
    last_error: str = ""
    last_error_at: float = 0.0

    def batch(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.generated_s += seconds
        self.batch_sizes.append(size)
        self.batch_counts[_bucket(BATCH_BUCKETS, size)] += 1
        self.latency_counts[_bucket(LATENCY_BUCKETS, seconds)] += size
        self.latency_sum += seconds * size

    def persona(self, name: str) -> PersonaStats:
        return self.personas.setdefault(name, PersonaStats())

    def error(self, persona: str | None, reason: str) -> None:
        self.last_error, self.last_error_at = reason[:500], time.time()
        if persona:
            stats = self.persona(persona)
            stats.failed += 1
            stats.last_error = reason[:500]


def _bucket(bounds: Sequence[float], value: float) -> int:
    return next((i for i, bound in enumerate(bounds) if value <= bound), len(bounds))


class Reporter(Protocol):
    """Where a worker reports its heartbeat (:class:`playhouse.generation.heartbeat.Heartbeat`)."""

    interval_s: float

    async def report(self, worker: Worker, state: str) -> None: ...


class Worker:
    def __init__(
        self,
        *,
        queues: QueueStore,
        blobs: BlobStore | None,
        cast: Cast,
        engine: Engine,
        settings: WorkerSettings,
        burst: bool = False,
        seed: int | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.queues = queues
        self.blobs = blobs
        self.cast = cast
        self.engine = engine
        self.settings = settings
        self.burst = burst
        self.seed = seed
        self.reporter = reporter
        self.stats = WorkerStats()
        self._stopping = asyncio.Event()
        self._abort = threading.Event()
        """Set ``finish_within_s`` after :meth:`stop`: the engine gives up its batch."""
        self._poll = settings.poll_min_s
        self._worked_at = time.monotonic()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self._handles: dict[str, Received] = {}
        self._handle_lock = asyncio.Lock()

    # ----------------------------------------------------------------- lifecycle
    def stop(self) -> None:
        """Take no new work; let the batch in hand run on for ``finish_within_s``, then
        interrupt it and hand its messages back."""
        if self._stopping.is_set():
            return
        finish_within_s = self.settings.finish_within_s
        log.info("worker.stopping", kind=self.engine.kind, finish_within_s=finish_within_s)
        self._stopping.set()
        try:
            asyncio.get_running_loop().call_later(finish_within_s, self._abort.set)
        except RuntimeError:  # called outside the loop: nothing can be in hand
            self._abort.set()

    async def main(self) -> None:
        log.info("worker.started", kind=self.engine.kind, queues=list(self.engine.queues),
                 burst=self.burst)
        await self._report("running")
        beats = asyncio.create_task(self._beat_loop()) if self.reporter is not None else None
        try:
            outage_wait = self.settings.poll_min_s
            while not self._stopping.is_set():
                try:
                    messages = await self._receive()
                    if not messages:
                        if self.burst:
                            break
                        await self._idle()
                        continue
                    self._poll = self.settings.poll_min_s
                    self._worked_at = time.monotonic()
                    await self._process(messages)
                    outage_wait = self.settings.poll_min_s
                except StorageUnavailable as exc:
                    # An outage is not a reason to exit: the messages in hand become visible
                    # again and are redelivered (results apply idempotently). A burst run
                    # (tests, one-shot jobs) still fails fast.
                    if self.burst:
                        raise
                    log.warning("storage.unavailable", retry_in=outage_wait, reason=str(exc))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=outage_wait)
                    outage_wait = min(max(outage_wait * 2, 0.5), OUTAGE_WAIT_MAX_S)
        finally:
            if beats is not None:
                beats.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beats
            self._executor.shutdown(wait=True)
            await self._report("stopped")
            log.info("worker.stopped", kind=self.engine.kind, answered=self.stats.answered,
                     failed=self.stats.failed, batches=self.stats.batches)

    async def async_run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        await self.main()

    async def _beat_loop(self) -> None:
        assert self.reporter is not None
        while True:
            await asyncio.sleep(self.reporter.interval_s)
            await self._report("stopping" if self._stopping.is_set() else "running")

    async def _report(self, state: str) -> None:
        """Write a heartbeat; a failure is logged, never raised (the work comes first)."""
        if self.reporter is None:
            return
        try:
            await self.reporter.report(self, state)
        except Exception as exc:
            log.warning("heartbeat.failed", error=str(exc))

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=self._poll)
        if time.monotonic() - self._worked_at >= self.settings.poll_linger_s:
            # Conversations come in bursts: stay quick for a while after work, then back off.
            self._poll = min(self._poll * 2, self.settings.poll_max_s)

    # ----------------------------------------------------------------- receiving
    async def _receive(self) -> list[Received]:
        want = self.settings.batch_size
        got = await self._receive_up_to(want)
        someone_waits = len(self.engine.queues) > 1 and any(
            m.queue == self.engine.queues[0] for m in got
        )
        if got and len(got) < want and self.settings.gather_ms > 0 and not someone_waits:
            # Bot traffic is live: give the queue a moment to fill the batch (never when
            # it is empty, and never while a person's request is in hand).
            await asyncio.sleep(self.settings.gather_ms / 1000)
            got += await self._receive_up_to(want - len(got))
        return got

    async def _receive_up_to(self, want: int) -> list[Received]:
        got: list[Received] = []
        for queue in self.engine.queues:  # priority order: interactive before background
            if len(got) >= want:
                break
            got += await self.queues.receive(
                queue,
                max_messages=min(32, want - len(got)),
                visibility_timeout=self.settings.visibility_timeout_s,
            )
        return got

    # ----------------------------------------------------------------- processing
    async def _process(self, messages: Sequence[Received]) -> None:
        """Generate ``messages`` group by group (one persona each). Between two groups the
        first queue (interactive) is checked again, and what people asked for in the
        meantime goes before the groups still waiting: a person waits for at most one
        group of bot traffic, not for a whole page of it."""
        pending = list((await self._group(messages)).values())
        if not pending:
            return
        renewer = asyncio.create_task(self._renew_loop())
        try:
            while pending:
                persona, entries = pending.pop(0)
                if self._abort.is_set():
                    await self._hand_back(persona, entries)
                    continue
                await self._generate_group(persona, entries)
                if pending and not self._stopping.is_set():
                    urgent = await self._receive_priority()
                    if urgent:
                        pending[:0] = (await self._group(urgent)).values()
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            self._handles.clear()

    async def _receive_priority(self) -> list[Received]:
        """Whatever waits on the engine's first queue, when it has more than one."""
        if len(self.engine.queues) < 2:
            return []
        return await self.queues.receive(
            self.engine.queues[0],
            max_messages=self.settings.batch_size,
            visibility_timeout=self.settings.visibility_timeout_s,
        )

    async def _group(
        self, messages: Sequence[Received]
    ) -> dict[str, tuple[Persona, list[tuple[str, GenerationRequest]]]]:
        """Requests by persona, in arrival order; what cannot be generated is answered
        with a failure and parked in the poison queue here."""
        groups: dict[str, tuple[Persona, list[tuple[str, GenerationRequest]]]] = {}
        for message in messages:
            try:
                request = decode_request(message.content)
            except InvalidInput as exc:
                await self._poison(message, str(exc), request=None)
                continue
            structlog.contextvars.bind_contextvars(request_id=request.request_id)
            try:
                persona = self.cast.personas.get(request.persona)
                if persona is None or persona.kind != self.engine.kind:
                    await self._poison(
                        message, f"unknown {self.engine.kind} persona {request.persona!r}",
                        request=request,
                    )
                    continue
                if message.dequeue_count > self.settings.max_attempts:
                    await self._poison(
                        message,
                        f"gave up after {message.dequeue_count - 1} deliveries",
                        request=request,
                    )
                    continue
                self._handles[message.id] = message
                groups.setdefault(persona.name, (persona, []))[1].append((message.id, request))
            finally:
                structlog.contextvars.unbind_contextvars("request_id")
        return groups

    async def _generate_group(
        self, persona: Persona, entries: list[tuple[str, GenerationRequest]]
    ) -> None:
        loop = asyncio.get_running_loop()
        seed = self._seed_for(entries)
        started = time.perf_counter()
        try:
            outcomes = await loop.run_in_executor(
                self._executor, self.engine.run, persona, entries, seed, self._abort
            )
        except Interrupted:
            await self._hand_back(persona, entries)
            return
        except Exception as exc:  # a crashed batch: leave the messages to reappear
            log.exception("batch.crashed", persona=persona.name, size=len(entries),
                          error=str(exc))
            self.stats.error(None, f"batch for {persona.name} crashed: {exc}")
            if _is_fatal_device_error(exc):
                self.stop()
            return
        elapsed = time.perf_counter() - started
        self.stats.batch(len(entries), elapsed)
        self.stats.tokens += sum(o.tokens for o in outcomes)
        log.info("batch.generated", persona=persona.name, size=len(entries),
                 ok=sum(o.ok for o in outcomes), seconds=round(elapsed, 3))
        # Each outcome is written then deleted in order, but the outcomes go concurrently:
        # one after the other they cost two storage round trips each.
        finished = await asyncio.gather(
            *(self._finish(outcome, persona, elapsed) for outcome in outcomes),
            return_exceptions=True,
        )
        for error in finished:
            if isinstance(error, BaseException):
                raise error

    async def _hand_back(
        self, persona: Persona, entries: list[tuple[str, GenerationRequest]]
    ) -> None:
        """Put ``entries`` back on their queue at once (the worker is stopping), as fresh
        messages: an interruption is not a failed delivery, so it must not count towards
        ``max_attempts``. The copy goes first; a crash before the original is deleted
        leaves two (their results apply once). A message that cannot be copied stays as
        it is and reappears when its visibility runs out."""
        handed = 0
        for key, _ in entries:
            async with self._handle_lock:
                message = self._handles.pop(key, None)
            if message is None:
                continue
            try:
                await self.queues.send(message.queue, message.content)
            except StorageUnavailable as exc:
                log.warning("batch.hand_back_failed", message_id=message.id, error=str(exc))
                continue
            with contextlib.suppress(StorageUnavailable, Conflict):
                await self.queues.delete(message)
            handed += 1
        log.info("batch.interrupted", persona=persona.name, size=len(entries), handed_back=handed)

    def _seed_for(self, entries: Sequence[tuple[str, GenerationRequest]]) -> int | None:
        if self.seed is None and all(req.seed is None for _, req in entries):
            return None
        base = self.seed or 0
        for _, req in entries:
            base = zlib.crc32(f"{base}:{req.seed}:{req.request_id}".encode())
        return base

    async def _finish(self, outcome: Outcome, persona: Persona, elapsed: float) -> None:
        request = outcome.request
        structlog.contextvars.bind_contextvars(request_id=request.request_id)
        try:
            message = self._handles.get(outcome.key)
            if message is None:
                return
            image_blob = None
            if outcome.ok and outcome.png is not None and self.blobs is not None:
                image_blob = f"{request.room}/{request.request_id}.png"
                await self.blobs.put(CONTAINER_IMAGES, image_blob, outcome.png, "image/png")
            result = GenerationResult(
                request_id=request.request_id,
                kind=request.kind,
                persona=request.persona,
                room=request.room,
                ok=outcome.ok,
                thread_id=request.thread_id,
                parent_id=request.parent_id,
                title=outcome.title,
                text=outcome.text,
                image_blob=image_blob,
                error="" if outcome.ok else outcome.error,
                attempts=max(outcome.attempts, message.dequeue_count),
                model=persona.model,
                elapsed_ms=round(elapsed * 1000, 1),
                finished_at=time.time(),
            )
            await self.queues.send(results_queue(message.queue), encode(result))
            async with self._handle_lock:
                # Popped (with its latest pop receipt) under the lock, the renew loop no
                # longer touches it, so the delete itself need not hold the lock.
                message = self._handles.pop(outcome.key, message)
            if outcome.ok:
                await self.queues.delete(message)
                self.stats.answered += 1
                counters = self.stats.persona(request.persona)
                counters.answered += 1
                counters.last_answer_at = time.time()
                log.info("request.answered", persona=request.persona, kind=request.kind,
                         attempts=outcome.attempts)
            else:
                await self.queues.to_poison(message, outcome.error)
                self.stats.failed += 1
                self.stats.poisoned += 1
                self.stats.error(request.persona, outcome.error)
                log.warning("request.failed", persona=request.persona, reason=outcome.error)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")

    async def _poison(
        self, message: Received, reason: str, *, request: GenerationRequest | None
    ) -> None:
        """Answer with a failure (when we know whom to answer) and park the message."""
        if request is None:
            request = _salvage_request(message.content)
        if request is not None:
            result = GenerationResult(
                request_id=request.request_id,
                kind=request.kind,
                persona=request.persona,
                room=request.room,
                ok=False,
                thread_id=request.thread_id,
                parent_id=request.parent_id,
                error=reason,
                attempts=message.dequeue_count,
                finished_at=time.time(),
            )
            await self.queues.send(results_queue(message.queue), encode(result))
            self.stats.failed += 1
        self.stats.error(request.persona if request is not None else None, reason)
        await self.queues.to_poison(message, reason)
        self.stats.poisoned += 1
        log.warning("request.poisoned", queue=message.queue, message_id=message.id,
                    reason=reason, dequeue_count=message.dequeue_count)

    async def _renew_loop(self) -> None:
        """Keep the batch in hand invisible while it runs longer than half the timeout."""
        timeout = self.settings.visibility_timeout_s
        while True:
            await asyncio.sleep(timeout / 2)
            async with self._handle_lock:
                for key, message in list(self._handles.items()):
                    try:
                        self._handles[key] = await self.queues.renew(message, timeout)
                        self.stats.renewals += 1
                    except Exception as exc:  # lost it: another worker will answer
                        log.warning("message.renew_failed", message_id=key, error=str(exc))
                        self._handles.pop(key, None)


def _salvage_request(content: bytes) -> GenerationRequest | None:
    """Enough of a malformed request to tell its sender it failed, when possible.

    Needs a JSON object whose ``request_id`` looks like an id; every other field is taken
    only when it has the right type, so one wrong field does not hide whom to answer.
    """
    try:
        data = msgspec.json.decode(content)
    except msgspec.DecodeError:
        return None
    if not isinstance(data, dict) or not is_id(str(data.get("request_id", ""))):
        return None

    def text(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) else None

    kind = text("kind")
    return GenerationRequest(
        request_id=str(data["request_id"]),
        kind=kind if kind in ("post", "reply", "image") else "reply",  # type: ignore[arg-type]
        persona=text("persona") or "",
        room=text("room") or "",
        queue="",
        thread_id=text("thread_id"),
        parent_id=text("parent_id"),
    )


def _is_fatal_device_error(exc: BaseException) -> bool:
    text = str(exc)
    return "CUDA error" in text or "device-side assert" in text
