"""Honest waiting: where each pending bot answer stands, shown live under its placeholder.

A web instance watches the placeholders it shows (every "thinking" event its broadcaster
sends: people's calls, the call recovery, the scheduler it hosts) and those its pages ask
about (``GET /api/threads/<id>/waiting``: a page that loads, or that sees a placeholder
from another process). Once one has waited ``web.waiting_grace_s`` (a quick answer costs
nothing), every ``web.waiting_interval_s`` the chore reads what storage knows — the jobs'
rows and the workers' progress rows (one query per partition each), the workers'
heartbeats and the depth of the queues that hold queued requests — and broadcasts a
:class:`~playhouse.events.WaitUpdate` for each placeholder whose state changed:

* ``queued``: about how many requests are ahead of it, and an estimate from the live
  workers' recent latency and batch sizes;
* ``no_worker``: no live worker (by heartbeat) serves its kind — it is answered when one
  starts (its request waits on the queue);
* ``model_unavailable``: the live workers that serve it failed to load its model;
* ``generating`` and ``retrying`` (after a rejected sample, with the reason): from the
  worker's progress row.

A placeholder stops being watched when its answer is shown (this instance's broadcaster
sent it) or its job ended (another instance applied it), or after :data:`WATCH_MAX_S`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from playhouse import ids
from playhouse.asking import request_id_for
from playhouse.constants import QUEUE_BACKGROUND, QUEUE_IMAGE, QUEUE_INTERACTIVE
from playhouse.errors import PlayhouseError
from playhouse.events import (
    CommentChanged,
    CommentEvent,
    CommentReplaced,
    LiveEvent,
    Thinking,
)
from playhouse.views import WaitState, iso

if TYPE_CHECKING:
    from playhouse.events import Broadcaster
    from playhouse.personas import Cast
    from playhouse.storage import Storage
    from playhouse.storage.models import Comment, Job, JobProgress
    from playhouse.storage.ops import WorkerBeat
    from playhouse.views import CommentOut

log = structlog.get_logger()

WATCH_MAX_S = 3600.0
"""A placeholder is watched at most this long (housekeeping fails a job stuck longer)."""
WATCH_MAX = 500
"""Placeholders watched at once by one instance (the oldest are dropped first)."""

QUEUE_NAMES = {QUEUE_INTERACTIVE: "people's requests", QUEUE_BACKGROUND: "the bots' own",
               QUEUE_IMAGE: "pictures"}


@dataclass
class Watched:
    """One placeholder being watched."""

    comment_id: str
    thread_id: str
    request_id: str
    persona: str
    created_at: float
    """When its job was recorded (epoch seconds)."""
    seen_at: float
    """When this instance started watching it (epoch seconds)."""
    shown: WaitState | None = None


@dataclass
class WaitFigures:
    """What the estimates are made of, read once per look."""

    workers: list[WorkerBeat] = field(default_factory=list)
    depths: dict[str, int] = field(default_factory=dict)
    at: float = 0.0


def _ordinal_ahead(ahead: int) -> str:
    if ahead <= 0:
        return "next in line"
    return f"{ahead} ahead of it" if ahead != 1 else "1 ahead of it"


def _seconds(s: float) -> str:
    if s < 1.5:
        return "a second"
    if s < 90:
        return f"{round(s)} s"
    return f"{round(s / 60)} min"


def estimate_s(workers: Sequence[WorkerBeat], kind: str, ahead: int, now: float) -> float | None:
    """Seconds until a request with ``ahead`` requests before it is answered, from the
    live ``kind`` workers' figures: each request's batch time, the mean batch size, the
    number of workers sharing the queue. None without figures."""
    live = [w for w in workers if w.kind == kind and w.alive(now)]
    counted = sum(w.latency_buckets[-1] for w in live if w.latency_buckets)
    spent = sum(w.latency_sum for w in live)
    batches = sum(w.batches for w in live)
    if not live or counted <= 0 or batches <= 0:
        return None
    per_batch = spent / counted  # seconds one request's batch took, on average
    size = max(1.0, sum(w.batch_sum for w in live) / batches)
    rounds = math.ceil((ahead + 1) / (size * len(live)))
    return round(rounds * per_batch, 1)


def wait_state(entry: Watched, job: Job | None, progress: JobProgress | None,
               figures: WaitFigures, *, kind: str, ahead: int) -> WaitState | None:
    """Where ``entry`` stands (no I/O); None when its job ended (its answer is on the way
    to the page) or is unknown."""
    now = figures.at
    if job is None or job.state in ("done", "failed"):
        return None
    if progress is not None and progress.state == "retrying":
        return WaitState(
            state="retrying", attempt=progress.attempt, max_attempts=progress.max_attempts,
            reason=progress.reason, since=iso(progress.at),
            text=(f"retrying: attempt {progress.attempt} of {progress.max_attempts}, the "
                  f"last sample was rejected ({progress.reason.replace('_', ' ')})"))
    if progress is not None and progress.state == "generating":
        usual = estimate_s(figures.workers, kind, 0, now)
        text = f"generating (attempt 1 of {progress.max_attempts})"
        if usual is not None:
            text += f"; it usually takes about {_seconds(usual)}"
        return WaitState(state="generating", attempt=1, max_attempts=progress.max_attempts,
                         estimate_s=usual, since=iso(progress.at), text=text)
    live = [w for w in figures.workers if w.kind == kind and w.alive(now)]
    if not live:
        return WaitState(
            state="no_worker", since=iso(entry.seen_at),
            text=(f"no worker running for {kind} bots right now: it will be answered "
                  "when one starts"))
    states = [p for w in live for p in w.personas if p.name == entry.persona]
    if states and all(p.model == "unavailable" for p in states):
        reason = next((p.reason for p in states if p.reason), "")
        return WaitState(state="model_unavailable", reason=reason, since=iso(entry.seen_at),
                         text=f"its model failed to load: {reason or 'unknown reason'}")
    eta = estimate_s(figures.workers, kind, ahead, now)
    text = f"queued: {_ordinal_ahead(ahead)}"
    if job.queue == QUEUE_BACKGROUND:
        text += " (people's requests go first)"
    text += f"; likely answered in about {_seconds(eta)}" if eta is not None else (
        "; no estimate yet")
    return WaitState(state="queued", position=ahead, estimate_s=eta,
                     since=iso(entry.seen_at), text=text)


class Waiting:
    """The placeholders one web instance watches; :meth:`look` is one chore run."""

    def __init__(self, storage: Storage, cast: Cast, broadcast: Broadcaster, *,
                 grace_s: float, interval_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.cast = cast
        self.broadcast = broadcast
        self.grace_s = grace_s
        self.interval_s = interval_s
        self.clock = clock
        self.watched: dict[str, Watched] = {}
        self._figures: WaitFigures | None = None

    # -- what is watched ----------------------------------------------------------
    def observe(self, event: LiveEvent) -> None:
        """Watch the placeholders this instance shows; forget them once answered."""
        match event:
            case Thinking():
                self.watch(event.comment)
            case CommentReplaced() | CommentEvent():
                self.watched.pop(event.comment.id, None)
            case CommentChanged() if event.comment.status != "placeholder":
                self.watched.pop(event.comment.id, None)  # deleted, or no longer asked
            case _:
                pass

    def watch(self, comment: CommentOut) -> None:
        """Watch a placeholder shown live (its request id derives from what it answers,
        who answers and, asked again, the how-many-th time:
        :func:`~playhouse.asking.request_id_for`)."""
        if comment.status != "placeholder":
            return
        persona = comment.persona or comment.author
        request_id = request_id_for(comment.parent_id or comment.thread_id, persona,
                                    comment.rerolls)
        known = self.watched.get(comment.id)
        if known is not None and known.request_id == request_id:
            return  # (a placeholder asked again is the same row awaiting another request)
        self._add(Watched(comment_id=comment.id, thread_id=comment.thread_id,
                          request_id=request_id, persona=persona,
                          created_at=self.clock(), seen_at=self.clock()))

    def _add(self, entry: Watched) -> None:
        self.watched[entry.comment_id] = entry
        while len(self.watched) > WATCH_MAX:
            self.watched.pop(next(iter(self.watched)))

    # -- looking ------------------------------------------------------------------
    async def look(self) -> int:
        """Look at the placeholders that have waited long enough; broadcast the ones whose
        state changed. Returns how many were broadcast."""
        now = self.clock()
        for cid in [c for c, e in self.watched.items() if now - e.seen_at > WATCH_MAX_S]:
            del self.watched[cid]
        due = [e for e in self.watched.values() if now - e.seen_at >= self.grace_s]
        if not due:
            return 0
        try:
            states = await self._states(due, now)
        except PlayhouseError as exc:
            log.warning("waiting.unread", reason=str(exc)[:200], watched=len(due))
            return 0
        sent = 0
        for entry in due:
            state = states.get(entry.comment_id)
            if state is None:
                self.watched.pop(entry.comment_id, None)
                continue
            if entry.shown is not None and entry.shown.text == state.text:
                continue
            entry.shown = state
            self.broadcast.waiting(entry.thread_id, entry.comment_id, state)
            sent += 1
        return sent

    async def states_of(self, comments: Iterable[Comment]) -> dict[str, WaitState]:
        """Where the placeholders ``comments`` stand now (a page asks); they are watched
        from now on."""
        now = self.clock()
        entries: list[Watched] = []
        for c in comments:
            if c.status != "placeholder" or not c.job_id:
                continue
            entry = self.watched.get(c.comment_id)
            if entry is None or entry.request_id != c.job_id:
                entry = Watched(comment_id=c.comment_id, thread_id=c.thread_id,
                                request_id=c.job_id, persona=c.persona or c.author,
                                created_at=c.created_at, seen_at=now)
                self._add(entry)
            entries.append(entry)
        if not entries:
            return {}
        states = await self._states(entries, now)
        for entry in entries:
            if entry.comment_id in states:
                entry.shown = states[entry.comment_id]
        return states

    async def _states(self, entries: Sequence[Watched], now: float) -> dict[str, WaitState]:
        request_ids = [e.request_id for e in entries if ids.is_id(e.request_id)]
        jobs = {j.request_id: j for j in await self.storage.jobs.some(request_ids)}
        progress = {p.request_id: p for p in await self.storage.progress.some(request_ids)}
        queued = {j.queue for j in jobs.values()
                  if j.state in ("called", "pending") and j.request_id not in progress}
        if QUEUE_BACKGROUND in queued:
            queued.add(QUEUE_INTERACTIVE)  # people's requests go first
        figures = await self._read_figures(now, queued)
        out: dict[str, WaitState] = {}
        for entry in entries:
            job = jobs.get(entry.request_id)
            persona = self.cast.personas.get(entry.persona)
            kind = persona.kind if persona is not None else "text"
            ahead = 0
            if job is not None:
                later = sum(1 for j in jobs.values() if j.queue == job.queue
                            and j.state in ("called", "pending")
                            and j.created_at > job.created_at and j.request_id not in progress)
                ahead = max(0, figures.depths.get(job.queue, 0) - 1 - later)
                if job.queue == QUEUE_BACKGROUND:
                    ahead += figures.depths.get(QUEUE_INTERACTIVE, 0)
            state = wait_state(entry, job, progress.get(entry.request_id), figures,
                               kind=kind, ahead=ahead)
            if state is not None:
                out[entry.comment_id] = state
        return out

    async def _read_figures(self, now: float, queues: set[str]) -> WaitFigures:
        """Heartbeats and queue depths, read at most once per ``interval_s``."""
        cached = self._figures
        if cached is not None and now - cached.at < self.interval_s * 0.9 and \
                queues <= set(cached.depths):
            return cached
        workers = await self.storage.workers.all()
        depths = {q: await self.storage.queues.depth(q) for q in sorted(queues)}
        self._figures = WaitFigures(workers=workers, depths=depths, at=now)
        return self._figures
