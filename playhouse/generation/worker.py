"""The worker: generation requests in, batches through an engine, results out.

A handler on :class:`~playhouse.queueloop.QueueLoop` in the shape of arq's worker:
collaborators injected, ``main()`` runs the loop, ``burst`` returns once the queues are
empty (tests), SIGTERM finishes the batch in hand and exits; a batch still running
``worker.finish_within_s`` after SIGTERM is interrupted and its messages are handed back.
The only place where queue messages meet batches.

People first: a page is generated group by group (one persona each); between two groups,
and every ``worker.preempt_poll_s`` while a group of bots' requests generates, the first
queue (a person's requests) is looked at again. A person's request found mid-group stops
that group between two steps; it runs again right after the person's (still in hand, not
re-queued, and never stopped twice). A group's results are sent while the next group
generates.

Delivery guarantees: a request message is deleted only after its result is on the
results queue (a crash in between re-delivers it; the results consumer is idempotent on
the request id). A message delivered more than ``max_deliveries`` times, malformed, for
an unknown persona, or whose output stays invalid, produces a failure result (when it has
a request id) and moves to the poison queue with the reason. A fatal device error (CUDA)
stops the worker with :data:`EXIT_DEVICE_FAILED`, so its supervisor restarts it.

Honest waiting: with a ``progress`` store the worker writes each request's progress row
when its batch starts and before each re-sampling round (in the background: generation
never waits for it). Every result carries the request's trace ("why this reply?"): the
engine's (prompt, attempts, parameters) with who generated it and when; a trace too large
for a queue message goes to the explanations container and the result names its blob.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import msgspec
import structlog

from playhouse.config import WorkerSettings
from playhouse.constants import (
    CONTAINER_EXPLANATIONS,
    CONTAINER_IMAGES,
    QUEUE_MESSAGE_MAX_BYTES,
    results_queue,
)
from playhouse.errors import Interrupted, PlayhouseError, StorageUnavailable
from playhouse.explain import TRACE_INLINE_MAX, Trace, shortened, to_json, trace_blob_name
from playhouse.generation.completion import Outcome
from playhouse.generation.engines import Engine
from playhouse.generation.progress import Retry, reporting
from playhouse.generation.stats import WorkerStats
from playhouse.ids import is_id
from playhouse.messages import GenerationRequest, GenerationResult, decode_request, encode
from playhouse.periodic import Chore, Periodic
from playhouse.priority import PeopleFirst
from playhouse.queueloop import Delivery, Polling, QueueLoop, RetryPolicy
from playhouse.storage.models import JobProgress

if TYPE_CHECKING:
    from playhouse.personas import Cast, Persona
    from playhouse.storage.blobs import BlobStore
    from playhouse.storage.progress import ProgressRepo
    from playhouse.storage.queues import QueueStore, Received

log = structlog.get_logger()

EXIT_DEVICE_FAILED = 75
"""Exit code after a fatal device error (EX_TEMPFAIL): the supervisor restarts the worker."""


class Reporter(Protocol):
    """Where a worker reports its heartbeat (:class:`playhouse.generation.heartbeat.Heartbeat`)."""

    interval_s: float

    async def report(self, worker: Worker, state: str) -> None: ...


Group = tuple["Persona", list[Delivery[GenerationRequest]]]


@dataclass
class _Pending:
    """A group of a page still to generate."""

    persona: Persona
    group: list[Delivery[GenerationRequest]]
    stopped: bool = False
    """A person's request stopped it once: it is not stopped again."""


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
        progress: ProgressRepo | None = None,
        worker_id: str = "",
    ) -> None:
        self.queues = queues
        self.blobs = blobs
        self.cast = cast
        self.engine = engine
        self.settings = settings
        self.seed = seed
        self.reporter = reporter
        self.progress = progress
        """Where requests' progress rows go (None: nobody is told until the answer)."""
        self.worker_id = worker_id or str(getattr(reporter, "worker_id", "")) or (
            f"{engine.kind}-worker")
        self._received: dict[str, float] = {}
        """Message id → when this worker received it."""
        self._writes: set[asyncio.Task[None]] = set()
        self._last_write: asyncio.Task[None] | None = None
        self.stats = WorkerStats()
        self.exit_code = 0
        """0 after a clean stop; :data:`EXIT_DEVICE_FAILED` after a fatal device error."""
        self._abort = threading.Event()
        """Set ``finish_within_s`` after :meth:`stop`: the engine gives up its batch."""
        self._aborts: set[threading.Event] = set()
        self.people = PeopleFirst()
        """A person's group generating or its results being sent: the bots' results wait."""
        """The abort event of each group generating now (set by :meth:`_abort_now` too)."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self.loop: QueueLoop[GenerationRequest] = QueueLoop(
            name=f"worker-{engine.kind}",
            queues=queues,
            sources=engine.queues,
            decode=decode_request,
            handle=self._handle,
            retry=RetryPolicy(settings.max_deliveries),
            polling=Polling(min_s=settings.poll_min_s, max_s=settings.poll_max_s,
                            linger_s=settings.poll_linger_s),
            visibility_timeout_s=settings.visibility_timeout_s,
            page_size=settings.batch_size,
            fill_wait_s=settings.gather_ms / 1000,
            on_malformed=self._malformed,
            on_exhausted=self._exhausted,
            burst=burst,
        )

    # ----------------------------------------------------------------- lifecycle
    def stop(self) -> None:
        """Take no new work; let the batch in hand run on for ``finish_within_s``, then
        interrupt it and hand its messages back."""
        if self.loop.stopping:
            return
        finish_within_s = self.settings.finish_within_s
        log.info("worker.stopping", kind=self.engine.kind, finish_within_s=finish_within_s)
        self.loop.stop()
        try:
            asyncio.get_running_loop().call_later(finish_within_s, self._abort_now)
        except RuntimeError:  # called outside the loop: nothing can be in hand
            self._abort_now()

    def _abort_now(self) -> None:
        self._abort.set()
        for abort in list(self._aborts):
            abort.set()

    async def main(self) -> None:
        log.info("worker.started", kind=self.engine.kind, queues=list(self.engine.queues),
                 burst=self.loop.burst)
        await self._report("running")
        beats = Periodic()
        if self.reporter is not None:
            beats.add(Chore("heartbeat", self.reporter.interval_s, self._beat))
            await beats.start()
        try:
            await self.loop.run()
        finally:
            await beats.stop()
            self._executor.shutdown(wait=True)
            await asyncio.gather(*self._writes, return_exceptions=True)
            await self._report("stopped")
            self.stats.renewals = self.loop.stats.renewals
            log.info("worker.stopped", kind=self.engine.kind, answered=self.stats.answered,
                     failed=self.stats.failed, batches=self.stats.batches,
                     exit_code=self.exit_code)

    async def async_run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        await self.main()
        return self.exit_code

    async def _beat(self) -> None:
        await self._report("stopping" if self.loop.stopping else "running")

    async def _report(self, state: str) -> None:
        """Write a heartbeat; a failure is logged, never raised (the work comes first)."""
        if self.reporter is None:
            return
        self.stats.renewals = self.loop.stats.renewals
        try:
            await self.reporter.report(self, state)
        except Exception as exc:
            log.warning("heartbeat.failed", error=str(exc))

    # ----------------------------------------------------------------- a page
    async def _handle(self, loop: QueueLoop[GenerationRequest],
                      deliveries: list[Delivery[GenerationRequest]]) -> None:
        """Generate a page group by group (one persona each), a person's requests before
        the bots' (see the module's docstring): a person waits for at most the few steps
        of bot traffic before their request is noticed, not for a whole page of it."""
        self._arrived(deliveries)
        pending = [_Pending(persona, group) for persona, group in await self._group(deliveries)]
        finishing: list[asyncio.Task[None]] = []
        try:
            while pending:
                item = pending.pop(0)
                if self._abort.is_set():
                    await self._hand_back(item.persona, item.group)
                    continue
                urgent: list[Delivery[GenerationRequest]] = []
                done = await self._generate_group(item, loop, urgent, finishing)
                if not done and not self._abort.is_set():
                    item.stopped = True  # a person's request stopped it: it goes next
                    pending.insert(0, item)
                    log.info("batch.preempted", persona=item.persona.name,
                             size=len(item.group), by=len(urgent))
                if pending and not urgent and self._people_queue() and not loop.stopping:
                    urgent = await loop.more(self.settings.batch_size, self._people_queue())
                self._arrived(urgent)
                pending[:0] = [_Pending(p, g) for p, g in await self._group(urgent)]
        finally:
            finished = await asyncio.gather(*finishing, return_exceptions=True)
        for error in finished:
            if isinstance(error, BaseException):
                raise error

    def _people_queue(self) -> tuple[str, ...]:
        """The queue that goes first, when this worker serves more than one."""
        return self.engine.queues[:1] if len(self.engine.queues) > 1 else ()

    def _arrived(self, deliveries: Sequence[Delivery[GenerationRequest]]) -> None:
        now = time.time()
        for delivery in deliveries:
            self._received.setdefault(delivery.id, now)

    # ----------------------------------------------------------------- progress
    def _tell(self, rows: list[JobProgress]) -> None:
        """Write progress rows in the background, in the order they were told (a row
        overwrites the request's last one: a "generating" landing after the "retrying"
        that followed it would undo it). A failure is logged: it only costs the
        placeholder its live detail."""
        if self.progress is None or not rows:
            return
        store = self.progress
        before = self._last_write

        async def write() -> None:
            if before is not None:
                await asyncio.wait({before})
            try:
                await store.mark(rows)
            except (PlayhouseError, ValueError) as exc:
                log.warning("progress.unwritten", size=len(rows), reason=str(exc)[:200])

        task = asyncio.create_task(write())
        self._last_write = task
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _started(self, persona: Persona, group: list[Delivery[GenerationRequest]],
                 at: float) -> None:
        attempts = max(1, persona.generation.max_attempts) if persona.kind == "text" else 1
        self._tell([
            JobProgress(request_id=d.body.request_id, state="generating", at=at, attempt=1,
                        max_attempts=attempts, worker=self.worker_id,
                        received_at=self._received.get(d.id, at))
            for d in group if is_id(d.body.request_id)
        ])

    def _retrying(self, retries: Sequence[Retry],
                  by_key: dict[str, Delivery[GenerationRequest]]) -> None:
        now = time.time()
        self._tell([
            JobProgress(request_id=by_key[r.key].body.request_id, state="retrying", at=now,
                        attempt=r.attempt, max_attempts=r.max_attempts, reason=r.reason,
                        worker=self.worker_id,
                        received_at=self._received.get(r.key, now))
            for r in retries if r.key in by_key and is_id(by_key[r.key].body.request_id)
        ])

    async def _group(self, deliveries: Sequence[Delivery[GenerationRequest]]) -> list[Group]:
        """Deliveries by persona, in arrival order; a request for a persona this worker
        cannot serve is answered with a failure and parked here."""
        groups: dict[str, Group] = {}
        for delivery in deliveries:
            request = delivery.body
            persona = self.cast.personas.get(request.persona)
            if persona is None or persona.kind != self.engine.kind:
                reason = f"unknown {self.engine.kind} persona {request.persona!r}"
                await self._exhausted(delivery, reason)
                await self.loop.poison(delivery, reason)
                continue
            groups.setdefault(persona.name, (persona, []))[1].append(delivery)
        return list(groups.values())

    async def _generate_group(
        self, item: _Pending, loop: QueueLoop[GenerationRequest],
        urgent: list[Delivery[GenerationRequest]], finishing: list[asyncio.Task[None]],
    ) -> bool:
        """Generate one group and start sending its results (a task added to
        ``finishing``). False when a person's request (added to ``urgent``) stopped it."""
        if self._is_people(item):
            with self.people.working():
                return await self._generate(item, loop, urgent, finishing)
        return await self._generate(item, loop, urgent, finishing)

    async def _generate(
        self, item: _Pending, loop: QueueLoop[GenerationRequest],
        urgent: list[Delivery[GenerationRequest]], finishing: list[asyncio.Task[None]],
    ) -> bool:
        persona, group = item.persona, item.group
        entries = [(d.id, d.body) for d in group]
        seed = self._seed_for(entries)
        by_key = {d.id: d for d in group}
        started_at = time.time()
        self._started(persona, group, started_at)
        abort = threading.Event()
        self._aborts.add(abort)
        if self._abort.is_set():
            abort.set()
        watch = None
        watched = asyncio.Event()  # set once the group is over: the watch ends
        if self._preemptible(item):
            watch = asyncio.create_task(self._watch_for_people(loop, abort, watched, urgent))
        running = asyncio.get_running_loop()

        def told(retries: Sequence[Retry]) -> None:  # in the executor's thread
            running.call_soon_threadsafe(self._retrying, list(retries), by_key)

        def run() -> list[Outcome]:
            with reporting(told):
                return self.engine.run(persona, entries, seed, abort)

        started = time.perf_counter()
        try:
            outcomes = await running.run_in_executor(self._executor, run)
        except Interrupted:
            if self._abort.is_set():
                await self._hand_back(persona, group)
                return True
            return False
        except Exception as exc:  # a crashed batch: leave the messages to reappear
            log.exception("batch.crashed", persona=persona.name, size=len(entries),
                          error=str(exc))
            self.stats.error(None, f"batch for {persona.name} crashed: {exc}")
            if _is_fatal_device_error(exc):
                log.error("worker.device_failed", reason=str(exc)[:300],
                          exit_code=EXIT_DEVICE_FAILED)
                self.exit_code = EXIT_DEVICE_FAILED
                self.stop()
            return True
        finally:
            self._aborts.discard(abort)
            watched.set()
            if watch is not None:  # not cancelled: a receive cut short would hide its messages
                await watch
        elapsed = time.perf_counter() - started
        self.stats.batch(len(entries), elapsed)
        self.stats.tokens += sum(o.tokens for o in outcomes)
        log.info("batch.generated", persona=persona.name, size=len(entries),
                 ok=sum(o.ok for o in outcomes), seconds=round(elapsed, 3))
        sending = self._finish_group(group, outcomes, persona, elapsed, started_at,
                                     people=self._is_people(item))
        if self._is_people(item):
            await sending  # within the person's turn: the bots' results wait
        else:
            finishing.append(asyncio.create_task(sending))
        return True

    def _is_people(self, item: _Pending) -> bool:
        return any(d.queue in self._people_queue() for d in item.group)

    def _preemptible(self, item: _Pending) -> bool:
        """Whether a person's request may stop this group: a group of the bots' queue,
        not stopped before, on a worker that looks for people's requests."""
        people = self._people_queue()
        return (bool(people) and self.settings.preempt_poll_s > 0 and not item.stopped
                and not self._is_people(item))

    async def _watch_for_people(self, loop: QueueLoop[GenerationRequest],
                                abort: threading.Event, over: asyncio.Event,
                                urgent: list[Delivery[GenerationRequest]]) -> None:
        """Every ``preempt_poll_s`` until ``over``: take a person's requests into the page
        and stop the group (``abort``) for them."""
        while not loop.stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(over.wait(), self.settings.preempt_poll_s)
            if over.is_set():
                return
            try:
                found = await loop.more(self.settings.batch_size, self._people_queue())
            except StorageUnavailable as exc:  # the group goes on; the next poll may work
                log.warning("preempt.poll_failed", reason=str(exc)[:200])
                continue
            if found:
                urgent.extend(found)
                abort.set()
                return

    async def _finish_group(self, group: list[Delivery[GenerationRequest]],
                            outcomes: list[Outcome], persona: Persona,
                            elapsed: float, started_at: float, *, people: bool) -> None:
        by_key = {d.id: d for d in group}

        async def finish(outcome: Outcome) -> None:
            if not people:
                await self.people.turn()
            await self._finish(by_key[outcome.key], outcome, persona, elapsed, started_at)

        # Each outcome is written then settled in order, but the outcomes go concurrently:
        # one after the other they cost two storage round trips each.
        finished = await asyncio.gather(
            *(finish(o) for o in outcomes if o.key in by_key), return_exceptions=True,
        )
        for delivery in group:
            self._received.pop(delivery.id, None)
        for error in finished:
            if isinstance(error, BaseException):
                raise error

    async def _hand_back(self, persona: Persona,
                         group: list[Delivery[GenerationRequest]]) -> None:
        """Put ``group`` back on its queue at once (the worker is stopping): an
        interruption is not a failed delivery, so it does not count towards
        ``max_deliveries``."""
        handed = 0
        for delivery in group:
            handed += await self.loop.hand_back(delivery)
        log.info("batch.interrupted", persona=persona.name, size=len(group), handed_back=handed)

    def _seed_for(self, entries: Sequence[tuple[str, GenerationRequest]]) -> int:
        """The batch's seed: from the worker's and the requests' seeds when set, else
        drawn here, so that every trace says which seed its samples came from."""
        if self.seed is None and all(req.seed is None for _, req in entries):
            return random.getrandbits(31)
        base = self.seed or 0
        for _, req in entries:
            base = zlib.crc32(f"{base}:{req.seed}:{req.request_id}".encode())
        return base

    async def _finish(self, delivery: Delivery[GenerationRequest], outcome: Outcome,
                      persona: Persona, elapsed: float, started_at: float) -> None:
        request = outcome.request
        structlog.contextvars.bind_contextvars(request_id=request.request_id)
        try:
            image_blob = None
            if outcome.ok and outcome.png is not None and self.blobs is not None:
                image_blob = f"{request.room}/{request.request_id}.png"
                await self.blobs.put(CONTAINER_IMAGES, image_blob, outcome.png, "image/png")
            attempts = max(outcome.attempts, delivery.dequeue_count)
            trace = msgspec.structs.replace(
                outcome.trace or Trace(chain=len(request.chain), error=outcome.error),
                model=persona.model, worker=self.worker_id,
                deliveries=delivery.dequeue_count,
                received_at=self._received.get(delivery.id, started_at),
                started_at=started_at, generated_s=round(elapsed, 4),
            )
            self.stats.persona(request.persona).sampled(trace)
            if outcome.ok:
                result = GenerationResult.success(
                    request, title=outcome.title, text=outcome.text, image_blob=image_blob,
                    attempts=attempts, model=persona.model,
                    elapsed_ms=round(elapsed * 1000, 1),
                )
            else:
                result = GenerationResult.failure(request, outcome.error, attempts=attempts,
                                                  model=persona.model)
            data = await self._with_trace(result, trace)
            await self.queues.send(results_queue(delivery.queue), data)
            if outcome.ok:
                await self.loop.done(delivery)
                self.stats.answered += 1
                counters = self.stats.persona(request.persona)
                counters.answered += 1
                counters.last_answer_at = time.time()
                log.info("request.answered", persona=request.persona, kind=request.kind,
                         attempts=outcome.attempts)
            else:
                await self.loop.poison(delivery, outcome.error)
                self.stats.failed += 1
                self.stats.poisoned += 1
                self.stats.error(request.persona, outcome.error)
                log.warning("request.failed", persona=request.persona, reason=outcome.error)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")

    async def _with_trace(self, result: GenerationResult, trace: Trace) -> bytes:
        """``result`` with its trace, encoded: carried when small, else kept in a blob
        (the result names it) — or, with no blob store, cut to fit (marked truncated)."""
        data = encode(msgspec.structs.replace(result, trace=trace))
        if len(to_json(trace)) <= TRACE_INLINE_MAX and len(data) <= QUEUE_MESSAGE_MAX_BYTES:
            return data
        if self.blobs is not None and is_id(result.request_id):
            name = trace_blob_name(result.room, result.request_id)
            try:
                await self.blobs.put(CONTAINER_EXPLANATIONS, name, to_json(trace).encode(),
                                     "application/json")
                return encode(msgspec.structs.replace(result, trace_blob=name))
            except (PlayhouseError, ValueError) as exc:
                log.warning("trace.unstored", reason=str(exc)[:200])
        room = max(0, QUEUE_MESSAGE_MAX_BYTES - len(encode(result)) - 1024)
        cut = shortened(trace, min(TRACE_INLINE_MAX, room // 2))
        return encode(msgspec.structs.replace(result, trace=cut))

    # ----------------------------------------------------------------- giving up
    async def _exhausted(self, delivery: Delivery[GenerationRequest], reason: str) -> None:
        """Tell the asker that its request failed (the loop parks the message)."""
        await self._answer_failure(delivery.message, delivery.body, reason)

    async def _malformed(self, message: Received, reason: str) -> None:
        """Tell the asker of a malformed request, when it can still be made out."""
        request = _salvage_request(message.content)
        if request is not None:
            await self._answer_failure(message, request, reason)
        else:
            self.stats.error(None, reason)
            self.stats.poisoned += 1

    async def _answer_failure(self, message: Received, request: GenerationRequest,
                              reason: str) -> None:
        result = GenerationResult.failure(request, reason, attempts=message.dequeue_count)
        await self.queues.send(results_queue(message.queue), encode(result))
        self.stats.failed += 1
        self.stats.poisoned += 1
        self.stats.error(request.persona, reason)
        log.warning("request.poisoned", queue=message.queue, message_id=message.id,
                    reason=reason, dequeue_count=message.dequeue_count)


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
