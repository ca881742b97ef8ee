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
    from litestar.channels.backends.redis import RedisChannelsPubSubBackend
    from redis.asyncio import Redis

    from playhouse.personas import Cast
    from playhouse.storage.models import Comment

log = structlog.get_logger()


class Announcer:
    """Shows the scheduler's "thinking" placeholders live from its own process, through the
    Redis channels the web instances listen on (without Redis, a separate scheduler's
    placeholders appear when a page loads or the answer arrives)."""

    def __init__(self, backend: RedisChannelsPubSubBackend, redis: Redis) -> None:
        self.backend = backend
        self.redis = redis
        self._sending: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, redis_url: str | None) -> Announcer | None:
        if redis_url is None:
            return None
        from litestar.channels.backends.redis import RedisChannelsPubSubBackend
        from redis.asyncio import Redis

        redis = Redis.from_url(redis_url)
        return cls(RedisChannelsPubSubBackend(redis=redis), redis)

    def thinking(self, placeholder: Comment) -> None:
        from playhouse.web import views
        from playhouse.web.context import thread_channel
        from playhouse.web.protocol import Thinking, encode

        data = encode(Thinking(comment=views.comment_out(placeholder))).encode()
        task = asyncio.create_task(self._send(data, thread_channel(placeholder.thread_id)))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, data: bytes, channel: str) -> None:
        from redis.exceptions import RedisError

        try:
            await self.backend.publish(data, [channel])
        except (RedisError, OSError) as exc:  # only the live preview is lost
            log.warning("scheduler.announce_failed", reason=str(exc)[:200])

    async def close(self) -> None:
        await asyncio.gather(*self._sending, return_exceptions=True)
        await self.redis.aclose()


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
    announcer = await Announcer.open(settings.web.redis_url)
    try:
        await storage.ensure()
        scheduler = Scheduler.create(storage, cast, settings.scheduler,
                                     on_placeholder=announcer.thinking if announcer else None)
        await scheduler.start()
        try:
            await stop.wait()
            log.info("scheduler.stopping")
        finally:
            await scheduler.stop()
            if announcer is not None:
                await announcer.close()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await storage.close()
