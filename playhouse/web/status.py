"""Operations endpoints: ``/healthz``, ``/readyz``, ``/metrics`` and the admin status page.

* ``/healthz`` answers 200 while the process serves requests (liveness: no storage call).
* ``/readyz`` answers 200 with the queue depths when storage answers, 503 otherwise.
* ``/metrics`` is the Prometheus exposition (:mod:`playhouse.web.metrics`), behind a bearer
  token when ``web.metrics_token`` is set.
* ``/status`` (and its data, ``/status/data``, polled by ``web/static/status.js``) is for
  the site admins (``web.admins`` and those granted by ``playhouse admin grant``): queue
  depth, throughput and latency over the last hour, every worker that wrote a heartbeat,
  and each persona's state and the share of its samples the grammar rejected (a persona
  whose model keeps failing it stands out).
* ``/status/personas/<name>`` (and ``…/data``) is one persona for a site admin: its recent
  decisions — replied or skipped, and why (the scheduler's verdicts with their chance and
  draw, the calls people made and the ones it declined) — and its rejections by reason.

The :class:`Sampler` is a chore of each web instance: while someone looks at the status
page or scrapes ``/metrics`` (in the last ``web.sample_watch_s``), it records the queue
depths every ``web.sample_interval_s`` for the charts, and prunes old samples and
long-gone workers; nobody watching, it costs no storage request.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from typing import Any

import structlog
from litestar import MediaType, Request, Response, get
from litestar.exceptions import HTTPException
from litestar.response import Redirect, Template

from playhouse.constants import ALL_QUEUES
from playhouse.errors import Forbidden, NotFound
from playhouse.explain import decode_call
from playhouse.storage.models import Job, Verdict
from playhouse.storage.ops import PersonaState, Sample, WorkerBeat
from playhouse.web.context import WebContext, context_of, current_user
from playhouse.web.metrics import CONTENT_TYPE, Figures
from playhouse.web.templating import page

log = structlog.get_logger()

READY_TIMEOUT_S = 3.0
WINDOW_S = 3600.0
BUCKET_S = 60.0
KEEP_S = 24 * 3600.0
"""Samples and silent workers' rows older than this are deleted."""


async def queue_depths(ctx: WebContext) -> dict[str, int]:
    queues = ctx.storage.queues
    depths = await asyncio.gather(*(queues.depth(q) for q in ALL_QUEUES))
    return dict(zip(ALL_QUEUES, depths, strict=True))


async def snapshot(ctx: WebContext) -> Figures:
    """Queue depths and heartbeats now; ``depths`` None when storage did not answer."""
    now = time.time()
    try:
        depths, workers = await asyncio.wait_for(
            asyncio.gather(queue_depths(ctx), ctx.storage.workers.all()), READY_TIMEOUT_S
        )
    except Exception as exc:  # any storage failure: report it as figures, not as a crash
        log.warning("snapshot.failed", reason=str(exc)[:200])
        return Figures(at=now, depths=None)
    return Figures(at=now, depths=depths, workers=workers)


@get("/healthz", name="healthz", cache=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", name="readyz", cache=False)
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    ctx = context_of(request)
    try:
        await ctx.storage.ping(READY_TIMEOUT_S)
        depths = await asyncio.wait_for(queue_depths(ctx), READY_TIMEOUT_S)
    except Exception as exc:
        reason = str(exc)[:300] or type(exc).__name__
        log.warning("readiness.failed", reason=reason)
        return Response({"status": "unavailable", "reason": reason}, status_code=503)
    return Response({"status": "ready", "instance": ctx.instance, "queues": depths})


@get("/metrics", name="metrics", cache=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    ctx = context_of(request)
    token = ctx.settings.web.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(status_code=401, detail="metrics need the bearer token")
    await ctx.watch_status()
    body = ctx.metrics.render(await snapshot(ctx))
    return Response(body, media_type=CONTENT_TYPE)


async def is_admin(ctx: WebContext, user: str | None) -> bool:
    """A site admin: named in ``web.admins``, or granted (``playhouse admin grant``)."""
    if user is None:
        return False
    powers = await ctx.moderation.powers(user, None)
    return powers.site_admin and powers.site_banned is None


@get("/status", name="status", cache=False)
async def status_page(request: Request[Any, Any, Any]) -> Template | Redirect:
    ctx = context_of(request)
    user = current_user(request)
    if user is None:
        return Redirect(path="/login?next=/status")
    if not await is_admin(ctx, user):
        raise Forbidden("the status page is for the playhouse's admins")
    await ctx.watch_status()
    return page(request, "status.html", data=await status_data(ctx))


@get("/status/data", name="status_data", cache=False, media_type=MediaType.JSON)
async def status_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    ctx = context_of(request)
    user = current_user(request)
    if user is None:
        raise HTTPException(status_code=401, detail="log in first")
    if not await is_admin(ctx, user):
        raise Forbidden("the status page is for the playhouse's admins")
    await ctx.watch_status()
    return await status_data(ctx)


async def status_data(ctx: WebContext) -> dict[str, Any]:
    """Everything the status page shows, as JSON-ready values."""
    snap = await snapshot(ctx)
    samples: list[Sample] = []
    if snap.depths is not None:
        try:
            samples = await ctx.storage.metrics.since(snap.at - WINDOW_S)
        except Exception as exc:
            log.warning("samples.unreadable", reason=str(exc)[:200])
    return {
        "now": snap.at,
        "storage": "up" if snap.depths is not None else "down",
        "queues": snap.depths or {},
        "series": series(samples, end=snap.at),
        "workers": [_worker_out(w, snap.at) for w in
                    sorted(snap.workers, key=lambda w: (-w.seen_at, w.worker_id))],
        "personas": personas_out(ctx, snap),
    }


def series(samples: list[Sample], *, end: float, window_s: float = WINDOW_S,
           bucket_s: float = BUCKET_S) -> dict[str, Any]:
    """Per-minute series over the window ending at ``end``: the deepest each queue was,
    tokens per second and answers per minute summed over workers, mean generation latency.
    A minute with no data is None (a gap in the chart, not a zero)."""
    n = math.ceil(window_s / bucket_s)
    start = end - n * bucket_s
    depth: dict[str, list[int | None]] = {}
    tokens = [0.0] * n
    answers = [0] * n
    failures = [0] * n
    lat_sum = [0.0] * n
    lat_count = [0] * n
    for s in samples:
        i = int((s.at - start) // bucket_s)
        if not 0 <= i < n:
            continue
        for queue, d in s.depths:
            row = depth.setdefault(queue, [None] * n)
            row[i] = max(row[i] or 0, d)
        tokens[i] += s.tokens
        answers[i] += s.answered
        failures[i] += s.failed
        lat_sum[i] += s.latency_sum
        lat_count[i] += s.latency_count
    return {
        "start": start,
        "bucket_s": bucket_s,
        "depth": {q: depth[q] for q in ALL_QUEUES if q in depth},
        "tokens_per_s": [round(t / bucket_s, 3) for t in tokens],
        "answers_per_min": [round(a * 60 / bucket_s, 3) for a in answers],
        "failures_per_min": [round(f * 60 / bucket_s, 3) for f in failures],
        "latency_s": [round(ls / c, 3) if c else None for ls, c in zip(lat_sum, lat_count,
                                                                       strict=True)],
    }


def _worker_out(w: WorkerBeat, now: float) -> dict[str, Any]:
    return {
        "id": w.worker_id, "host": w.host, "kind": w.kind, "pid": w.pid,
        "state": w.state if w.alive(now) or w.state == "stopped" else "silent",
        "alive": w.alive(now), "seen_at": w.seen_at, "started_at": w.started_at,
        "models": list(w.models), "batches": w.batches, "answered": w.answered,
        "failed": w.failed, "poisoned": w.poisoned, "tokens": w.tokens,
        "tokens_per_s": round(w.tokens_per_s, 2),
        "mean_batch": round(w.batch_sum / w.batches, 2) if w.batches else 0,
        "last_error": w.last_error, "last_error_at": w.last_error_at,
    }


def personas_out(ctx: WebContext, snap: Figures) -> list[dict[str, Any]]:
    """Each persona of the cast, merged over the workers' heartbeats: ``loaded`` when a
    live worker holds its model, ``unavailable`` when the live workers that tried failed
    to load it, ``idle`` when none holds it, ``no worker`` when no live worker serves it."""
    out: list[dict[str, Any]] = []
    live = [w for w in snap.workers if w.alive(snap.at)]
    for persona in sorted(ctx.cast.personas.values(), key=lambda p: p.name):
        states = [p for w in live for p in w.personas if p.name == persona.name]
        every = [p for w in snap.workers for p in w.personas if p.name == persona.name]
        if any(p.model == "loaded" for p in states):
            state, reason = "loaded", ""
        elif any(p.model == "unavailable" for p in states):
            state = "unavailable"
            reason = next(p.reason for p in states if p.model == "unavailable")
        elif states:
            state, reason = "idle", ""
        else:
            state, reason = "no worker", ""
        samples, rejections = rejection_counts(every)
        rejected = sum(rejections.values())
        out.append({
            "name": persona.name, "kind": persona.kind, "state": state, "reason": reason,
            "answered": sum(p.answered for p in every),
            "failed": sum(p.failed for p in every),
            "last_answer_at": max((p.last_answer_at for p in every), default=0.0),
            "last_error": next((p.last_error for p in every if p.last_error), ""),
            "samples": samples, "rejected": rejected,
            "rejection_rate": round(rejected / samples, 3) if samples else 0.0,
            "rejections": dict(sorted(rejections.items(), key=lambda kv: -kv[1])),
            "failing": samples >= FAILING_MIN_SAMPLES and rejected / samples >= FAILING_RATE,
        })
    return out


FAILING_RATE = 0.5
"""A persona whose model has at least this share of its samples rejected stands out."""
FAILING_MIN_SAMPLES = 4


def rejection_counts(states: list[PersonaState]) -> tuple[int, dict[str, int]]:
    """Samples and rejections by reason, summed over workers' heartbeats."""
    samples = sum(p.samples for p in states)
    rejections: dict[str, int] = {}
    for p in states:
        for reason, n in p.rejections:
            rejections[reason] = rejections.get(reason, 0) + n
    return samples, rejections


DECISIONS_SHOWN = 50
CALLS_LOOKBACK_S = 6 * 3600.0


async def persona_data(ctx: WebContext, name: str) -> dict[str, Any]:
    """One persona for an operator: its state, rejection rates and recent decisions."""
    persona = next((p for n, p in ctx.cast.personas.items()
                    if n.casefold() == name.strip().casefold()), None)
    if persona is None:
        raise NotFound(f"no persona {name!r}")
    snap = await snapshot(ctx)
    mine = next(p for p in personas_out(ctx, snap) if p["name"] == persona.name)
    now = snap.at
    verdicts, jobs = await asyncio.gather(
        ctx.storage.decisions.recent(persona.name, limit=DECISIONS_SHOWN),
        ctx.storage.jobs.of_persona(persona.name, since=now - CALLS_LOOKBACK_S,
                                    limit=DECISIONS_SHOWN),
    )
    decisions: list[dict[str, Any]] = [_verdict_out(v) for v in verdicts]
    decisions += [d for d in (_call_out(j) for j in jobs) if d is not None]
    decisions.sort(key=lambda d: -float(d["at"]))
    rates = {reason: round(n / mine["samples"], 3) if mine["samples"] else 0.0
             for reason, n in mine["rejections"].items()}
    return {"now": now, "persona": mine, "rates": rates,
            "decisions": decisions[:DECISIONS_SHOWN]}


def _verdict_out(v: Verdict) -> dict[str, Any]:
    why = {"reply": f"chance {v.probability:.0%}, drew {v.draw:.3f}",
           "pass": f"chance {v.probability:.0%}, drew {v.draw:.3f}: over it",
           "blocked": f"held back: {v.reason.replace('_', ' ')}"}[v.outcome]
    return {"at": v.at, "source": "scheduler",
            "outcome": "replied" if v.outcome == "reply" else "skipped",
            "why": why, "room": v.room, "thread_id": v.thread_id, "target": v.target,
            "target_author": v.target_author}


def _call_out(job: Job) -> dict[str, Any] | None:
    """A job a person's call made (the scheduler's are its verdicts)."""
    call = decode_call(job.call)
    if call is None or call.reason == "scheduler":
        return None
    by = f"u/{call.by}" if call.by else "someone"
    why = {"mention": f"{by} mentioned it", "reply": f"{by} replied to it",
           "default_bot": f"the room's default bot, for {by}'s thread",
           "again": f"{by} asked it for another answer"}[call.reason]
    outcome = "replied"
    if call.declined is not None:
        outcome, why = "skipped", f"declined ({call.declined.reason.replace('_', ' ')}): {why}"
    elif job.state == "failed":
        outcome, why = "failed", f"{why}; {job.error[:200]}"
    elif job.state in ("called", "pending"):
        outcome = "pending"
    return {"at": job.created_at, "source": "person", "outcome": outcome, "why": why,
            "room": job.room, "thread_id": job.thread_id or "",
            "target": call.answered, "target_author": call.answered_author}


@get("/status/personas/{name:str}", name="status_persona", cache=False)
async def status_persona_page(request: Request[Any, Any, Any],
                              name: str) -> Template | Redirect:
    ctx = context_of(request)
    user = current_user(request)
    if user is None:
        return Redirect(path=f"/login?next=/status/personas/{name}")
    if not await is_admin(ctx, user):
        raise Forbidden("the status page is for the playhouse's admins")
    return page(request, "status_persona.html", data=await persona_data(ctx, name))


@get("/status/personas/{name:str}/data", name="status_persona_data", cache=False,
     media_type=MediaType.JSON)
async def status_persona_json(request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
    ctx = context_of(request)
    user = current_user(request)
    if user is None:
        raise HTTPException(status_code=401, detail="log in first")
    if not await is_admin(ctx, user):
        raise Forbidden("the status page is for the playhouse's admins")
    return await persona_data(ctx, name)


class Sampler:
    """Records queue depths for the charts while someone watches, and prunes what is older
    than a day."""

    def __init__(self, ctx: WebContext, interval_s: float, watch_s: float) -> None:
        self.ctx = ctx
        self.interval_s = interval_s
        self.watch_s = watch_s
        self._watched_at = -math.inf
        self._sampled_at = -math.inf
        self._pruned_at = 0.0

    async def watched(self) -> None:
        """Someone looks at the figures: sample from now on, and now when no sample is
        recent (the first view charts the depths of this moment)."""
        now = time.monotonic()
        self._watched_at = now
        if now - self._sampled_at >= self.interval_s:
            await self.sample()

    async def run(self) -> None:
        """One chore run: a sample, unless nobody watched lately."""
        if time.monotonic() - self._watched_at > self.watch_s:
            return
        await self.sample()

    async def sample(self) -> None:
        self._sampled_at = time.monotonic()
        now = time.time()
        try:
            depths = await queue_depths(self.ctx)
            await self.ctx.storage.metrics.add(Sample(
                source=f"web:{self.ctx.instance}", at=now, interval_s=self.interval_s,
                depths=tuple(sorted(depths.items())),
            ))
            if now - self._pruned_at > 3600:
                self._pruned_at = now
                await self.ctx.storage.metrics.prune(now - KEEP_S)
                await self.ctx.storage.workers.forget_before(now - KEEP_S)
        except Exception as exc:  # storage down: the next run tries again
            log.warning("sample.failed", reason=str(exc)[:200])


ROUTES = [healthz, readyz, metrics, status_page, status_json, status_persona_page,
          status_persona_json]
