"""The :class:`Scheduler`: APScheduler jobs that make the bots post and answer.

Three interval jobs on an ``AsyncIOScheduler`` (coalesced, one instance each, so a slow
round never piles up):

* ``lease`` (every ``lease_s / 3``): renew or try to take the leadership
  (:mod:`~playhouse.scheduling.leader`); only the leader runs the other two;
* ``round`` (every ``sweep_interval_s``): unless ``gen-background`` is deeper than
  ``background_max_depth`` (then the round is skipped and the log says so), each awake
  persona may start a thread, and each recent comment is offered to the personas of its
  room (:class:`~playhouse.scheduling.policy.Policy`); a reply is claimed in the
  ``replies`` table first, so a restarted or second scheduler never asks twice;
* ``housekeeping`` (every ``housekeeping_interval_s``): stuck jobs and poison queues.

Every decision is logged with the parts of its score (``reply.scheduled``,
``reply.passed``, ``reply.blocked``, ``post.scheduled``, ``round.skipped`` ...).

:meth:`Scheduler.start` must run inside the event loop (APScheduler needs the running
loop). :meth:`Scheduler.stop` pauses the jobs, waits for those in flight, shuts
APScheduler down and releases the lease. The same jobs can be driven without
APScheduler by calling :meth:`Scheduler.run_round` and :meth:`Scheduler.housekeeping`
under a fake clock (the simulation test does).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from azure.core.exceptions import AzureError

from playhouse import ids, jobs
from playhouse.constants import QUEUE_BACKGROUND, QUEUE_IMAGE, QUEUE_RESULTS, SEED_CREATOR
from playhouse.errors import PlayhouseError
from playhouse.scheduling.housekeeping import Housekeeper, HousekeepingReport
from playhouse.scheduling.leader import Leadership
from playhouse.scheduling.policy import (
    Activity,
    Clock,
    Ledger,
    Policy,
    ReplyDecision,
    ThreadView,
    hour_of,
)
from playhouse.scheduling.snapshot import Snapshot, SnapshotReader

if TYPE_CHECKING:
    from playhouse.config import SchedulerSettings
    from playhouse.messages import GenerationRequest
    from playhouse.personas import Cast, Persona
    from playhouse.storage import Storage
    from playhouse.storage.models import Comment

log = structlog.get_logger()

PICTURE_CHOICES = 5
"""An image persona's own thread paints one of its room's newest this many titles."""

STOP_WAIT_S = 30.0
"""How long :meth:`Scheduler.stop` waits for the jobs in flight."""


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One periodic job: what APScheduler runs (and what a simulation drives)."""

    name: str
    interval_s: float
    run: Callable[[], Awaitable[object]]


@dataclass(slots=True)
class RoundReport:
    skipped: str = ""
    """Why the round did nothing: ``follower``, ``backpressure``, ``storage``; empty if run."""
    posts: list[GenerationRequest] = field(default_factory=list)
    replies: list[GenerationRequest] = field(default_factory=list)
    decisions: int = 0


class Scheduler:
    """The bots' scheduler for one process; only the lease holder schedules."""

    def __init__(
        self,
        storage: Storage,
        cast: Cast,
        settings: SchedulerSettings,
        *,
        leadership: Leadership | None = None,
        clock: Clock = time.time,
        on_placeholder: Callable[[Comment], None] | None = None,
    ) -> None:
        """``leadership=None`` makes this instance always the leader (one instance only);
        ``on_placeholder`` is told of each "thinking" placeholder a scheduled reply writes
        (the web app hosting the scheduler shows it live)."""
        self.on_placeholder = on_placeholder
        self.storage = storage
        self.cast = cast
        self.settings = settings
        self.leadership = leadership
        self.clock = clock
        self.policy = Policy(cast, time_scale=settings.time_scale,
                             reply_delay_s=settings.reply_delay_s, seed=settings.seed)
        self.reader = SnapshotReader(storage, cast, threads_per_room=settings.threads_per_room)
        self.housekeeper = Housekeeper(
            storage, pending_deadline_s=settings.pending_deadline_s,
            max_attempts=settings.requeue_max_attempts, poison_age_s=settings.poison_age_s,
        )
        self.rounds = 0
        self._memory = Ledger()
        self._images_possible: bool | None = None
        """Whether an image worker was alive at the last round (logged when it changes)."""
        self._aps: Any = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._was_leader = False

    @classmethod
    def create(cls, storage: Storage, cast: Cast, settings: SchedulerSettings, *,
               on_placeholder: Callable[[Comment], None] | None = None) -> Scheduler:
        """A scheduler that competes for the lease with the other instances."""
        leadership = Leadership(storage.blobs, lease_s=settings.lease_s)
        return cls(storage, cast, settings, leadership=leadership,
                   on_placeholder=on_placeholder)

    # -- lifecycle ------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.leadership is None or self.leadership.is_leader

    @property
    def running(self) -> bool:
        return self._aps is not None

    def job_specs(self) -> list[JobSpec]:
        specs = [
            JobSpec("round", self.settings.sweep_interval_s, self.run_round),
            JobSpec("housekeeping", self.settings.housekeeping_interval_s, self.housekeeping),
        ]
        if self.leadership is not None:
            specs.insert(0, JobSpec("lease", self.leadership.step_s, self.lease_step))
        return specs

    async def start(self) -> None:
        """Take part in the leadership and start the jobs (inside the running loop)."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        if self._aps is not None:
            return
        aps = AsyncIOScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 1,
            "misfire_grace_time": max(1, int(self.settings.sweep_interval_s)),
        })
        if self.leadership is not None:
            await self.lease_step()
        now = datetime.now(UTC)
        for spec in self.job_specs():
            # The first round soon after start; the lease was just stepped above.
            delay = min(spec.interval_s, 1.0) if spec.name == "round" else spec.interval_s
            first = now + timedelta(seconds=delay)
            aps.add_job(self._tracked, IntervalTrigger(seconds=spec.interval_s),
                        args=(spec,), id=spec.name, name=spec.name, next_run_time=first)
        aps.start()
        self._aps = aps
        log.info("scheduler.started", jobs=[s.name for s in self.job_specs()],
                 personas=len(self.cast.personas), leader=self.is_leader,
                 owner=self.leadership.owner if self.leadership else "-")

    async def stop(self, *, release: bool = True) -> None:
        """Pause, wait for the jobs in flight, shut down, release the lease.

        ``release=False`` keeps the lease until it lapses, as a crash would (tests).
        """
        aps, self._aps = self._aps, None
        if aps is not None:
            aps.pause()
            pending = [t for t in self._inflight if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=STOP_WAIT_S)
            aps.shutdown(wait=False)
            await asyncio.sleep(0)  # let APScheduler's shutdown take effect
        if self.leadership is not None:
            if release:
                await self.leadership.release()
            else:
                self.leadership.abandon()
        log.info("scheduler.stopped", rounds=self.rounds)

    async def _tracked(self, spec: JobSpec) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await spec.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job.crashed", job=spec.name)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def lease_step(self) -> bool:
        assert self.leadership is not None
        leader = await self.leadership.step()
        if leader != self._was_leader:
            log.info("scheduler.leading" if leader else "scheduler.following",
                     owner=self.leadership.owner)
            self._was_leader = leader
        return leader

    # -- housekeeping ---------------------------------------------------------------

    async def housekeeping(self) -> HousekeepingReport | None:
        if not self.is_leader:
            return None
        try:
            return await self.housekeeper.run(self.clock())
        except (PlayhouseError, AzureError) as exc:
            log.warning("housekeeping.failed", reason=str(exc)[:200])
            return None

    # -- a round --------------------------------------------------------------------

    async def run_round(self) -> RoundReport:
        """Posts and replies for one interval (nothing unless this instance leads)."""
        report = RoundReport()
        if not self.is_leader:
            report.skipped = "follower"
            return report
        now = self.clock()
        self.rounds += 1
        try:
            depth = await self.storage.queues.depth(QUEUE_BACKGROUND)
            results = await self.storage.queues.depth(QUEUE_RESULTS)
            limit = self.settings.background_max_depth
            # A deep results queue means the consumers are behind: more bot traffic would
            # only delay the answers people are waiting for.
            for queue, seen in ((QUEUE_BACKGROUND, depth), (QUEUE_RESULTS, results)):
                if seen > limit:
                    report.skipped = "backpressure"
                    log.info("round.skipped", reason="backpressure", queue=queue,
                             depth=seen, threshold=limit)
                    return report
            image_depth = await self.storage.queues.depth(QUEUE_IMAGE)
            window = self.policy.reply_window_s(self.cast.personas.values())
            snapshot = await self.reader.load(now, window)
            ledger = snapshot.ledger()
            self._memory.prune(now - self.policy.day_s)
            ledger.merge(self._memory)
            budget = min(self.settings.max_replies_per_sweep, limit - depth)
            images = image_depth <= limit and await self._image_worker()
            await self._posts(snapshot, ledger, now, report, budget=budget, images=images)
            await self._replies(snapshot, ledger, now, report,
                                budget=budget - len(report.posts), images=images)
        except (PlayhouseError, AzureError) as exc:
            report.skipped = report.skipped or "storage"
            log.warning("round.failed", reason=str(exc)[:200], posts=len(report.posts),
                        replies=len(report.replies))
            return report
        finally:
            self.policy.forget(now - 2 * self.policy.reply_window_s(self.cast.personas.values()))
        log.info("round.done", posts=len(report.posts), replies=len(report.replies),
                 decisions=report.decisions, threads=len(snapshot.views), depth=depth,
                 hour_utc=hour_of(now))
        return report

    async def _image_worker(self) -> bool:
        """Whether an image worker is alive (by its heartbeat, in wall-clock time): with
        none, scheduled image replies would only pile up on gen-image. People's calls are
        queued all the same (housekeeping answers them with a failure past the deadline)."""
        now = time.time()
        alive = any(b.kind == "image" and b.alive(now) for b in await self.storage.workers.all())
        if alive != self._images_possible:
            self._images_possible = alive
            log.info("scheduler.image_worker", alive=alive)
        return alive

    async def _posts(self, snapshot: Snapshot, ledger: Ledger, now: float,
                     report: RoundReport, *, budget: int, images: bool) -> None:
        by_persona: dict[str, list[str]] = {}
        for room in snapshot.rooms.values():
            for persona in room.personas:
                by_persona.setdefault(persona.name, []).append(room.name)
        for name in sorted(by_persona):
            if len(report.posts) >= budget:
                return
            persona = self.cast.personas[name]
            if persona.kind == "image" and not images:
                continue
            decision = self.policy.consider_post(
                persona, by_persona[name], now, self.settings.sweep_interval_s, ledger
            )
            if decision is None:
                continue
            if persona.kind == "image":
                prompt, prompt_by = self._picture_of(snapshot, decision.room, persona)
                request = jobs.post_request(
                    persona=persona, room=decision.room, queue=QUEUE_IMAGE,
                    image_prompt=prompt, prompt_by=prompt_by,
                )
            else:
                request = jobs.post_request(persona=persona, room=decision.room,
                                            queue=QUEUE_BACKGROUND)
            try:
                await jobs.submit(self.storage, request)
            except PlayhouseError as exc:
                log.warning("post.failed", persona=name, reason=str(exc)[:200])
                continue
            activity = Activity(name, decision.room, jobs.thread_id_for(request.request_id), now)
            ledger.posts[activity.thread_id] = activity
            self._memory.posts[activity.thread_id] = activity
            report.posts.append(request)
            log.info("post.scheduled", request_id=request.request_id, **decision.fields())

    def _picture_of(self, snapshot: Snapshot, room: str,
                    persona: Persona) -> tuple[str, str | None]:
        """What an image persona paints for a thread of its own, and whose words those are
        (None: the playhouse's own): the title of one of the room's recent threads (not its
        own, not a picture), else the room's description (its creator's words)."""
        titles = [(t.title, t.author) for t in snapshot.threads
                  if t.room == room and t.author != persona.name and not t.image_blob
                  and t.title.strip()][:PICTURE_CHOICES]
        if titles:
            title, author = self.policy.rng.choice(titles)
            return title.strip()[:500], author
        view = snapshot.rooms.get(room)
        description = view.room.description.strip() if view is not None else ""
        if not description:
            return f"r/{room}", None
        creator = view.room.created_by if view is not None else SEED_CREATOR
        return description[:500], None if creator == SEED_CREATOR else creator

    async def _replies(self, snapshot: Snapshot, ledger: Ledger, now: float,
                       report: RoundReport, *, budget: int, images: bool) -> None:
        hour = hour_of(now)
        for view in snapshot.views:
            room = snapshot.rooms.get(view.thread.room)
            if room is None:
                continue
            awake = [p for p in room.personas if p.is_active(hour)
                     and (images or p.kind != "image")]
            for item in list(view.items.values()):
                for persona in awake:
                    decision = self.policy.consider(persona, view, item, now, ledger)
                    if decision is None:
                        continue
                    report.decisions += 1
                    if decision.outcome != "reply":
                        if decision.log:
                            event = "reply.passed" if decision.outcome == "pass" else (
                                "reply.blocked")
                            log.info(event, **decision.fields())
                        continue
                    if len(report.replies) >= budget:
                        log.info("round.budget_spent", replies=len(report.replies),
                                 budget=budget)
                        return
                    await self._reply(persona, view, decision, ledger, now, report)

    async def _reply(self, persona: Persona, view: ThreadView, decision: ReplyDecision,
                     ledger: Ledger, now: float, report: RoundReport) -> None:
        item = decision.item
        request_id = ids.new_id()
        self.policy.settle(item.key, persona.name, now)
        if not await self.storage.replies.claim(item.key, persona.name, request_id):
            log.info("reply.skipped", reason="claimed", **decision.fields())
            return
        parent_id = None if item.is_post else item.key
        request: GenerationRequest
        if persona.kind == "image":
            prompt = (view.thread.title if item.is_post else item.text).strip()[:500]
            request = jobs.image_request(persona=persona, thread=view.thread,
                                         parent_id=parent_id, prompt=prompt,
                                         requester=item.author, queue=QUEUE_IMAGE,
                                         request_id=request_id)
        else:
            request = jobs.reply_request(persona=persona, thread=view.thread,
                                         chain=view.chain(item), parent_id=parent_id,
                                         queue=QUEUE_BACKGROUND, request_id=request_id)
        try:
            shown = await jobs.submit(self.storage, request)
        except PlayhouseError as exc:
            log.warning("reply.failed", reason=str(exc)[:200], request_id=request_id,
                        **decision.fields())
            return
        key = jobs.placeholder_id(request_id)
        activity = Activity(persona.name, view.thread.room, view.thread.thread_id, now)
        ledger.replies[key] = activity
        self._memory.replies[key] = activity
        view.answered.setdefault(item.key, set()).add(persona.name)
        view.bot_comments += 1
        if shown is not None:
            self.reader.remember(shown)
            if self.on_placeholder is not None:
                self.on_placeholder(shown)
        report.replies.append(request)
        log.info("reply.scheduled", request_id=request_id, queue=request.queue,
                 **decision.fields())


@contextlib.asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[Scheduler]:
    """``async with running(scheduler):`` start it, and stop it (lease released) after."""
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop()
