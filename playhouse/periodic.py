"""Periodic chores on APScheduler: the one timer mechanism of every process.

The bots' scheduler (lease, rounds, housekeeping), a web instance's presence refresh and
status sampling, and a worker's heartbeat are all :class:`Chore`\\ s on one
:class:`Periodic` per process: an ``AsyncIOScheduler`` whose jobs are coalesced and never
overlap (a slow run does not pile up), whose failures are logged (never raised), and
which on :meth:`Periodic.stop` waits for the runs in flight before it shuts down.
Long-running consumers of queues are :class:`~playhouse.queueloop.QueueLoop`\\ s instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

log = structlog.get_logger()

STOP_WAIT_S = 30.0
"""How long :meth:`Periodic.stop` waits for the runs in flight."""


@dataclass(frozen=True, slots=True)
class Chore:
    """One periodic job: what APScheduler runs every ``interval_s`` (and what a simulation
    drives by hand); the first run comes ``first_in_s`` after start (default: one
    interval)."""

    name: str
    interval_s: float
    run: Callable[[], Awaitable[object]]
    first_in_s: float | None = None


class Periodic:
    """The chores of one process on one ``AsyncIOScheduler``; start inside the loop."""

    def __init__(self, chores: list[Chore] | None = None) -> None:
        self._chores: list[Chore] = list(chores or [])
        self._aps: Any = None
        self._inflight: set[asyncio.Task[Any]] = set()

    @property
    def running(self) -> bool:
        return self._aps is not None

    @property
    def chores(self) -> list[Chore]:
        return list(self._chores)

    def add(self, chore: Chore) -> None:
        """Add a chore (before or after :meth:`start`)."""
        if any(c.name == chore.name for c in self._chores):
            raise ValueError(f"a chore named {chore.name!r} exists")
        self._chores.append(chore)
        if self._aps is not None:
            self._schedule(self._aps, chore)

    async def start(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        if self._aps is not None:
            return
        shortest = min((c.interval_s for c in self._chores), default=1.0)
        aps = AsyncIOScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": max(1, int(shortest)),
        })
        for chore in self._chores:
            self._schedule(aps, chore)
        aps.start()
        self._aps = aps
        log.info("periodic.started", chores=[c.name for c in self._chores])

    def _schedule(self, aps: Any, chore: Chore) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        first = chore.interval_s if chore.first_in_s is None else chore.first_in_s
        aps.add_job(self._tracked, IntervalTrigger(seconds=chore.interval_s), args=(chore,),
                    id=chore.name, name=chore.name,
                    next_run_time=datetime.now(UTC) + timedelta(seconds=first))

    async def stop(self) -> None:
        """Pause, wait for the runs in flight (up to :data:`STOP_WAIT_S`), shut down."""
        aps, self._aps = self._aps, None
        if aps is None:
            return
        aps.pause()
        pending = [t for t in self._inflight if not t.done()]
        if pending:
            log.info("periodic.waiting", chores=sorted(t.get_name() for t in pending))
            await asyncio.wait(pending, timeout=STOP_WAIT_S)
        aps.shutdown(wait=False)
        await asyncio.sleep(0)  # let APScheduler's shutdown take effect
        log.info("periodic.stopped")

    async def _tracked(self, chore: Chore) -> None:
        task = asyncio.current_task()
        if task is not None:
            task.set_name(f"chore:{chore.name}")
            self._inflight.add(task)
        try:
            await chore.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("chore.crashed", chore=chore.name)
        finally:
            if task is not None:
                self._inflight.discard(task)
