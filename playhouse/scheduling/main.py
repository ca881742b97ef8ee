"""``playhouse scheduler``: the scheduler as its own process.

It competes for the scheduler lease like a web instance would, so running it beside
web processes is safe: one of them schedules.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from playhouse.config import Settings

if TYPE_CHECKING:
    from playhouse.personas import Cast

log = structlog.get_logger()


def run_scheduler(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then stop cleanly and release the lease; returns 0."""
    from playhouse.personas import load_cast_strict
    from playhouse.runner import resolve_connection_string
    from playhouse.scheduling.leader import check_lease_s

    check_lease_s(settings.scheduler.lease_s)
    cast = load_cast_strict(Path(settings.personas_dir))
    conn = resolve_connection_string(settings)
    asyncio.run(serve(settings, cast, conn))
    return 0


async def serve(
    settings: Settings, cast: Cast, conn: str, *, stop: asyncio.Event | None = None
) -> None:
    """Connect, run the scheduler until ``stop`` is set or a signal arrives, then close."""
    from playhouse.scheduling.scheduler import Scheduler
    from playhouse.storage import Storage

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    storage = await Storage.connect(conn, timeout_s=settings.storage.timeout_s,
                                    namespace=settings.storage.namespace)
    try:
        await storage.ensure()
        scheduler = Scheduler.create(storage, cast, settings.scheduler)
        await scheduler.start()
        try:
            await stop.wait()
            log.info("scheduler.stopping")
        finally:
            await scheduler.stop()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await storage.close()
