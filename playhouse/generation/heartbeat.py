"""A worker's heartbeat: who it is, what it holds, what it did, written to storage.

Every ``interval_s`` (and when it starts and stops) the worker replaces its row in the
``workers`` table and adds a sample of what it did since the previous beat to the
``metrics`` table. The web app reads both for ``/metrics`` and the status page, so a
worker on a home GPU box shows up like one beside the web app: storage is all they share.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import structlog

from playhouse.storage.ops import PersonaState, Sample, WorkerBeat

if TYPE_CHECKING:
    from playhouse.generation.worker import Worker
    from playhouse.personas import Persona
    from playhouse.storage.ops import MetricsRepo, WorkerRepo

log = structlog.get_logger()


@runtime_checkable
class ReportsModels(Protocol):
    """An engine that can tell which models it holds (the text and image engines)."""

    def model_state(self, persona: Persona) -> tuple[str, str]: ...

    def loaded_models(self) -> list[str]: ...


def new_worker_id(host: str, pid: int) -> str:
    """``host-pid-random``: readable on the status page, unique across restarts."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in host)[:40]
    return f"{safe}-{pid}-{os.urandom(2).hex()}"


class Heartbeat:
    """Writes a worker's beats; one per worker process."""

    def __init__(
        self,
        workers: WorkerRepo,
        metrics: MetricsRepo,
        *,
        kind: str,
        interval_s: float,
        host: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.workers = workers
        self.metrics = metrics
        self.kind = kind
        self.interval_s = max(0.05, interval_s)
        self.host = host or socket.gethostname()
        self.pid = os.getpid()
        self.worker_id = new_worker_id(self.host, self.pid)
        self.clock = clock
        self.started_at = clock()
        self._last_at = self.started_at
        self._last: tuple[int, int, int, float, float, int] = (0, 0, 0, 0.0, 0.0, 0)

    async def report(self, worker: Worker, state: str) -> None:
        now = self.clock()
        beat = self.beat(worker, state, now)
        stats = worker.stats
        latency_count = sum(stats.latency_counts)
        current = (stats.answered, stats.failed, stats.tokens, stats.generated_s,
                   stats.latency_sum, latency_count)
        delta = [c - p for c, p in zip(current, self._last, strict=True)]
        await self.workers.beat(beat)
        if any(delta) or state != "running":
            await self.metrics.add(Sample(
                source=f"worker:{self.worker_id}", at=now, interval_s=now - self._last_at,
                answered=int(delta[0]), failed=int(delta[1]), tokens=int(delta[2]),
                generated_s=delta[3], latency_sum=delta[4], latency_count=int(delta[5]),
            ))
        self._last, self._last_at = current, now
        log.debug("heartbeat.written", worker_id=self.worker_id, state=state)

    def beat(self, worker: Worker, state: str, now: float) -> WorkerBeat:
        """The row for ``worker`` as it stands at ``now``."""
        stats = worker.stats
        engine = worker.engine
        models: list[str] = []
        if isinstance(engine, ReportsModels):
            models = [_short_model(m) for m in engine.loaded_models()]
        personas = []
        for persona in sorted(worker.cast.personas.values(), key=lambda p: p.name):
            if persona.kind != engine.kind:
                continue
            model, reason = ("idle", "")
            if isinstance(engine, ReportsModels):
                model, reason = engine.model_state(persona)
            counters = stats.personas.get(persona.name)
            personas.append(PersonaState(
                name=persona.name,
                model="loaded" if model == "loaded" else
                "unavailable" if model == "unavailable" else "idle",
                reason=reason[:300],
                answered=counters.answered if counters else 0,
                failed=counters.failed if counters else 0,
                last_answer_at=counters.last_answer_at if counters else 0.0,
                last_error=counters.last_error[:300] if counters else "",
                samples=counters.samples if counters else 0,
                rejections=tuple(sorted(counters.rejections.items())) if counters else (),
            ))
        elapsed_tokens = stats.tokens - self._last[2]
        elapsed_s = stats.generated_s - self._last[3]
        return WorkerBeat(
            worker_id=self.worker_id, host=self.host, kind=self.kind, pid=self.pid,
            started_at=self.started_at, seen_at=now, interval_s=self.interval_s,
            state="stopped" if state == "stopped" else
            "stopping" if state == "stopping" else "running",
            models=tuple(models), personas=tuple(personas),
            batches=stats.batches, answered=stats.answered, failed=stats.failed,
            poisoned=stats.poisoned, tokens=stats.tokens, generated_s=stats.generated_s,
            tokens_per_s=elapsed_tokens / elapsed_s if elapsed_s > 0 else 0.0,
            batch_buckets=_cumulative(stats.batch_counts),
            batch_sum=sum(stats.batch_sizes),
            latency_buckets=_cumulative(stats.latency_counts),
            latency_sum=stats.latency_sum,
            last_error=stats.last_error, last_error_at=stats.last_error_at,
        )


def _cumulative(counts: Sequence[int]) -> tuple[int, ...]:
    return tuple(accumulate(counts))


def _short_model(key: str) -> str:
    """A model's folder name (or hub id): paths on another machine say little."""
    return key.rstrip("/").rsplit("/", 1)[-1] if key.startswith(("/", ".")) else key
