"""The :class:`Scheduler`: the periodic chores that make the bots post and answer.

Three chores on the process's :class:`~playhouse.periodic.Periodic` (APScheduler:
coalesced, one run at a time, so a slow round never piles up):

* ``lease`` (every ``lease_s / 3``): renew or try to take the leadership
  (:mod:`~playhouse.scheduling.leader`); only the leader runs the other two;
* ``round`` (every ``sweep_interval_s``): unless ``gen-background`` is deeper than
  ``background_max_depth`` (then the round is skipped and the log says so), each awake
  persona may start a thread, and each recent comment is offered to the personas of its
  room (:class:`~playhouse.scheduling.policy.Policy`); a reply's request id derives from
  the comment and the persona, so its job row is the claim and a restarted or second
  scheduler (or a person calling the same bot) never asks twice;
* ``housekeeping`` (every ``housekeeping_interval_s``): stuck jobs and poison queues.

Every decision is logged with the parts of its score (``reply.scheduled``,
``reply.passed``, ``reply.blocked``, ``post.scheduled``, ``round.skipped`` ...), and the
ones logged are kept in the ``decisions`` table for the status page. A reply's job carries
its :class:`~playhouse.explain.CallInfo`: the score term by term, the draw, and the caps
that held other bots back from the same comment in that round ("why this reply?"). A
comment's bots are all considered before any of them is asked (the draws come in the
same order), and each reply is checked against the caps again just before it is asked.

:meth:`Scheduler.start` must run inside the event loop (APScheduler needs the running
loop): it takes part in the leadership and adds its chores to the ``periodic`` it was
given (a web instance's), or to one of its own that it starts. :meth:`Scheduler.stop`
stops its own chores (waiting for those in flight) and releases the lease. The same
chores can be driven without APScheduler by calling :meth:`Scheduler.run_round` and
:meth:`Scheduler.housekeeping` under a fake clock (the simulation test does).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from azure.core.exceptions import AzureError

from playhouse import asking
from playhouse.constants import QUEUE_BACKGROUND, QUEUE_IMAGE, QUEUE_RESULTS, SEED_CREATOR
from playhouse.errors import PlayhouseError
from playhouse.explain import CallInfo, HeldBack
from playhouse.periodic import Chore, Periodic
from playhouse.scheduling.housekeeping import Housekeeper, HousekeepingReport
from playhouse.scheduling.leader import Leadership
from playhouse.scheduling.policy import (
    BotAct,
    Clock,
    Ledger,
    Policy,
    ReplyDecision,
    ThreadView,
    hour_of,
)
from playhouse.scheduling.snapshot import Snapshot, SnapshotReader
from playhouse.storage.models import Verdict

if TYPE_CHECKING:
    from playhouse.config import SchedulerSettings
    from playhouse.messages import GenerationRequest
    from playhouse.personas import Cast, Persona
    from playhouse.storage import Storage
    from playhouse.storage.models import Comment

log = structlog.get_logger()

PICTURE_CHOICES = 5
"""An image persona's own thread paints one of its room's newest this many titles."""


@dataclass(slots=True)
class RoundReport:
    skipped: str = ""
    """Why the round did nothing: ``follower``, ``backpressure``, ``storage``; empty if run."""
    posts: list[GenerationRequest] = field(default_factory=list)
    replies: list[GenerationRequest] = field(default_factory=list)
    decisions: int = 0
    verdicts: list[Verdict] = field(default_factory=list)
    """The decisions logged this round (kept for the status page)."""


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
        on_asked: Callable[[str], None] | None = None,
        periodic: Periodic | None = None,
    ) -> None:
        """``leadership=None`` makes this instance always the leader (one instance only);
        ``on_placeholder`` is told of each "thinking" placeholder a scheduled reply writes
        (to show it live), ``on_asked`` of each request id asked for (a web instance's
        results consumer then expects its answer); ``periodic`` is the process's chores
        (None: the scheduler runs its own)."""
        self.on_placeholder = on_placeholder
        self.on_asked = on_asked
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
            max_queued=settings.max_queued, poison_age_s=settings.poison_age_s,
        )
        self.rounds = 0
        self._memory = Ledger()
        self._images_possible: bool | None = None
        """Whether an image worker was alive at the last round (logged when it changes)."""
        self._periodic = periodic
        self._own: Periodic | None = None
        self._running = False
        self._was_leader = False

    @classmethod
    def create(cls, storage: Storage, cast: Cast, settings: SchedulerSettings, *,
               on_placeholder: Callable[[Comment], None] | None = None,
               on_asked: Callable[[str], None] | None = None,
               periodic: Periodic | None = None) -> Scheduler:
        """A scheduler that competes for the lease with the other instances."""
        leadership = Leadership(storage.blobs, lease_s=settings.lease_s)
        return cls(storage, cast, settings, leadership=leadership,
                   on_placeholder=on_placeholder, on_asked=on_asked, periodic=periodic)

    # -- lifecycle ------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.leadership is None or self.leadership.is_leader

    @property
    def running(self) -> bool:
        return self._running

    def chores(self) -> list[Chore]:
        """The scheduler's chores; the first round comes soon after start."""
        chores = [
            Chore("round", self.settings.sweep_interval_s, self.run_round,
                  first_in_s=min(self.settings.sweep_interval_s, 1.0)),
            Chore("housekeeping", self.settings.housekeeping_interval_s, self.housekeeping),
        ]
        if self.leadership is not None:
            chores.insert(0, Chore("lease", self.leadership.step_s, self.lease_step))
        return chores

    async def start(self) -> None:
        """Take part in the leadership and start the chores (inside the running loop)."""
        if self._running:
            return
        if self.leadership is not None:
            await self.lease_step()
        periodic = self._periodic
        if periodic is None:
            periodic = self._own = Periodic()
        for chore in self.chores():
            periodic.add(chore)
        if self._own is not None:
            await self._own.start()
        self._running = True
        log.info("scheduler.started", chores=[c.name for c in self.chores()],
                 personas=len(self.cast.personas), leader=self.is_leader,
                 owner=self.leadership.owner if self.leadership else "-")

    async def stop(self, *, release: bool = True) -> None:
        """Stop its own chores (waiting for the runs in flight) and release the lease; the
        chores on a process's ``periodic`` stop with it.

        ``release=False`` keeps the lease until it lapses, as a crash would (tests).
        """
        if self._own is not None:
            await self._own.stop()
            self._own = None
        self._running = False
        if self.leadership is not None:
            if release:
                await self.leadership.release()
            else:
                self.leadership.abandon()
        log.info("scheduler.stopped", rounds=self.rounds)

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
            await self._keep(report.verdicts)
        log.info("round.done", posts=len(report.posts), replies=len(report.replies),
                 decisions=report.decisions, threads=len(snapshot.views), depth=depth,
                 hour_utc=hour_of(now))
        return report

    async def _keep(self, verdicts: list[Verdict]) -> None:
        """Store the round's logged decisions (a failure costs only the status page)."""
        if not verdicts:
            return
        try:
            await self.storage.decisions.add(verdicts)
        except (PlayhouseError, AzureError) as exc:
            log.warning("decisions.unstored", count=len(verdicts), reason=str(exc)[:200])

    @staticmethod
    def _verdict(decision: ReplyDecision, now: float) -> Verdict:
        item = decision.item
        return Verdict(persona=decision.persona, at=now, outcome=decision.outcome,
                       reason=decision.reason, room=item.room, thread_id=item.thread_id,
                       target=item.key, target_author=item.author,
                       probability=round(decision.probability, 4),
                       draw=round(decision.draw, 4))

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
                request = asking.post_request(
                    persona=persona, room=decision.room, queue=QUEUE_IMAGE,
                    image_prompt=prompt, prompt_by=prompt_by,
                )
            else:
                request = asking.post_request(persona=persona, room=decision.room,
                                              queue=QUEUE_BACKGROUND)
            call = CallInfo(reason="scheduler", at=now,
                            probability=round(decision.probability, 6),
                            draw=round(decision.draw, 6),
                            terms=(("posts_in_day", float(decision.posts_in_day)),
                                   ("cap", float(decision.cap))),
                            budget=budget - len(report.posts))
            try:
                await asking.submit(self.storage, request, call=call)
            except PlayhouseError as exc:
                log.warning("post.failed", persona=name, reason=str(exc)[:200])
                continue
            self._asked(request)
            activity = BotAct(name, decision.room, asking.thread_id_for(request.request_id),
                                now)
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
                considered: list[tuple[Persona, ReplyDecision]] = []
                for persona in awake:
                    decision = self.policy.consider(persona, view, item, now, ledger)
                    if decision is not None:
                        report.decisions += 1
                        considered.append((persona, decision))
                for persona, decision in considered:
                    decision = self.policy.recheck(persona, view, decision, now, ledger)
                    if decision.outcome != "reply":
                        if decision.log:
                            event = "reply.passed" if decision.outcome == "pass" else (
                                "reply.blocked")
                            log.info(event, **decision.fields())
                            report.verdicts.append(self._verdict(decision, now))
                        continue
                    if len(report.replies) >= budget:
                        log.info("round.budget_spent", replies=len(report.replies),
                                 budget=budget)
                        return
                    held = tuple(HeldBack(persona=d.persona, reason=d.reason, target=item.key)
                                 for _, d in considered
                                 if d.outcome == "blocked" and d.persona != persona.name)
                    call = CallInfo(
                        reason="scheduler", answered=item.key, answered_author=item.author,
                        at=now, probability=round(decision.probability, 6),
                        draw=round(decision.draw, 6),
                        terms=tuple((k, round(v, 6) + 0.0)  # + 0.0: no "-0.00"
                                    for k, v in decision.parts.items()),
                        held_back=held, budget=budget - len(report.replies),
                    )
                    await self._reply(persona, view, decision, ledger, now, report, call)

    async def _reply(self, persona: Persona, view: ThreadView, decision: ReplyDecision,
                     ledger: Ledger, now: float, report: RoundReport,
                     call: CallInfo | None = None) -> None:
        item = decision.item
        request_id = asking.request_id_for(item.key, persona.name)
        self.policy.settle(item.key, persona.name, now)
        parent_id = None if item.is_post else item.key
        request: GenerationRequest
        if persona.kind == "image":
            prompt = (view.thread.title if item.is_post else item.text).strip()[:500]
            request = asking.image_request(persona=persona, thread=view.thread,
                                           parent_id=parent_id, prompt=prompt,
                                           requester=item.author, queue=QUEUE_IMAGE,
                                           request_id=request_id)
        else:
            request = asking.reply_request(persona=persona, thread=view.thread,
                                           chain=view.chain(item), parent_id=parent_id,
                                           queue=QUEUE_BACKGROUND, request_id=request_id)
        depth = 0 if item.is_post else item.depth + 1
        job = asking.new_job(request, depth=depth, call=call)
        try:
            todo = await asking.record(self.storage, [job])
            if not todo:
                log.info("reply.skipped", reason="claimed", **decision.fields())
                return
            shown = await asking.dispatch(self.storage, todo[0])
        except PlayhouseError as exc:
            log.warning("reply.failed", reason=str(exc)[:200], request_id=request_id,
                        **decision.fields())
            return
        self._asked(request)
        key = asking.answer_id(request_id, asking.decode_job_request(job).comment_id)
        activity = BotAct(persona.name, view.thread.room, view.thread.thread_id, now)
        ledger.replies[key] = activity
        self._memory.replies[key] = activity
        view.answered.setdefault(item.key, set()).add(persona.name)
        view.bot_comments += 1
        if shown is not None:
            self.reader.remember(shown)
            if self.on_placeholder is not None:
                self.on_placeholder(shown)
        report.replies.append(request)
        report.verdicts.append(self._verdict(decision, now))
        log.info("reply.scheduled", request_id=request_id, queue=request.queue,
                 **decision.fields())


    def _asked(self, request: GenerationRequest) -> None:
        if self.on_asked is not None:
            self.on_asked(request.request_id)


@contextlib.asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[Scheduler]:
    """``async with running(scheduler):`` start it, and stop it (lease released) after."""
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop()
