"""``playhouse scheduler``: the bots' scheduler as its own process.

It competes for the scheduler lease like a web instance would, so running it beside web
processes is safe: one of them schedules. Its "thinking" placeholders are shown live
through the Redis channels the web instances listen on (without Redis, a separate
scheduler's placeholders appear when a page loads or the answer arrives).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from playhouse.config import Settings

if TYPE_CHECKING:
    from playhouse.personas import Cast

log = structlog.get_logger()

HELP = "the bots' scheduler alone (one leader across instances)"


def arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no arguments


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then stop cleanly and release the lease; returns 0."""
    from playhouse.personas import load_cast_strict
    from playhouse.scheduling.leader import check_lease_s

    check_lease_s(settings.scheduler.lease_s)
    cast = load_cast_strict(Path(settings.personas_dir))
    asyncio.run(serve_scheduler(settings, cast))
    return 0


async def serve_scheduler(settings: Settings, cast: Cast, *,
                          stop: asyncio.Event | None = None) -> None:
    """Connect, run the scheduler until ``stop`` is set or a signal arrives, then close."""
    from playhouse.events import BackendPublisher, Broadcaster
    from playhouse.scheduling.scheduler import Scheduler
    from playhouse.storage import Storage

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    publisher: BackendPublisher | None = None
    redis = None
    try:
        async with Storage.open(settings.storage) as storage:
            on_placeholder = None
            if settings.web.redis_url is not None:
                from litestar.channels.backends.redis import RedisChannelsPubSubBackend
                from redis.asyncio import Redis

                redis = Redis.from_url(settings.web.redis_url)
                publisher = BackendPublisher(RedisChannelsPubSubBackend(redis=redis))
                on_placeholder = Broadcaster(publisher, storage.namespace).thinking
            scheduler = Scheduler.create(storage, cast, settings.scheduler,
                                         on_placeholder=on_placeholder)
            await scheduler.start()
            try:
                await stop.wait()
                log.info("scheduler.stopping")
            finally:
                await scheduler.stop()
                if publisher is not None:
                    await publisher.drain()
    finally:
        if redis is not None:
            await redis.aclose()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
