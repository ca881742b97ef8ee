"""``playhouse web``: the web app — pages, API, websocket, results consumer — and, on the
instance holding its lease, the bots' scheduler.

:func:`assemble` is where a web instance is composed (the entrypoint and the tests use
it): the fan-out (memory, or Redis), the broadcaster, the counters, the rate limits, the
context, and the parts that run beside the requests — the score feed (votes' live scores
and the listings and histories that follow them), the results consumer, the chores
(presence refresh, call recovery, status sampling, the placeholders' watch) and, when
asked, the scheduler — all handed to :func:`playhouse.web.app.create_app`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from playhouse.config import Settings
from playhouse.constants import DEFAULT_BOT, DEFAULT_ROOM, SEED_CREATOR
from playhouse.errors import ConfigError

if TYPE_CHECKING:
    from litestar import Litestar

    from playhouse.personas import Cast
    from playhouse.storage import Storage
    from playhouse.storage.models import Room

log = structlog.get_logger()

HELP = "the web app (pages, API, websocket, results consumer)"

SECRET_FILE = "web.secret"
SECRET_MIN_CHARS = 32


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--no-scheduler", action="store_true",
                        help="never run the scheduler here")


def main(args: argparse.Namespace, settings: Settings) -> int:
    return run_web(settings, host=args.host, port=args.port, scheduler=not args.no_scheduler)


def load_secret(settings: Settings) -> bytes:
    """The session/CSRF secret: the setting, else one kept under ``var/`` (made once)."""
    if settings.web.secret_key is not None:
        if len(settings.web.secret_key) < SECRET_MIN_CHARS:
            raise ConfigError(f"web.secret_key must be at least {SECRET_MIN_CHARS} characters")
        return settings.web.secret_key.encode()
    path = Path(settings.var_dir) / SECRET_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secrets.token_urlsafe(48))
        log.info("secret.created", path=str(path))
    return path.read_text(encoding="utf-8").strip().encode()


def seed_rooms(cast: Cast) -> list[Room]:
    """The cast's rooms as rows; the default room always exists with its default bot."""
    from playhouse.storage.models import Room

    now = time.time()
    rooms = {
        name.casefold(): Room(
            name=room.name, description=room.description, public=room.public,
            default_bot=room.default_bot, bots=tuple(p.name for p in cast.in_room(room.name)),
            created_by=SEED_CREATOR, created_at=now, last_activity=0.0,
        )
        for name, room in cast.rooms.items()
    }
    if DEFAULT_ROOM.casefold() not in rooms:
        rooms[DEFAULT_ROOM.casefold()] = Room(
            name=DEFAULT_ROOM, description="The front room.", public=True,
            default_bot=DEFAULT_BOT if DEFAULT_BOT in cast.personas else None,
            bots=tuple(p.name for p in cast.in_room(DEFAULT_ROOM)), created_by=SEED_CREATOR,
            created_at=now, last_activity=0.0,
        )
    return list(rooms.values())


def assemble(settings: Settings, storage: Storage, cast: Cast, *, secret: bytes,
             consume: bool = True, schedule: bool = False,
             instance: str | None = None) -> Litestar:
    """A web instance over open ``storage``: ``consume`` runs the results consumer and
    the call recovery in it, ``schedule`` the bots' scheduler (which schedules only while
    it holds the lease)."""
    from playhouse.events import Broadcaster
    from playhouse.moderation.filter import WordFilter
    from playhouse.periodic import Chore, Periodic
    from playhouse.scheduling.scheduler import Scheduler
    from playhouse.web.app import Service, channels_backend, channels_plugin, create_app
    from playhouse.web.budget import LEASE_S, SocketSlots
    from playhouse.web.calls import CallRecovery
    from playhouse.web.consumer import ResultsConsumer
    from playhouse.web.context import WebContext
    from playhouse.web.counters import Counters
    from playhouse.web.limits import Limits
    from playhouse.web.presence import REFRESH_S, PresenceRefresh
    from playhouse.web.scores import ScoreFeed
    from playhouse.web.sessions import SessionGuard
    from playhouse.web.status import Sampler
    from playhouse.web.waiting import Waiting

    web = settings.web
    backend, redis = channels_backend(web.redis_url)
    channels = channels_plugin(backend)
    broadcast = Broadcaster(lambda data, names: channels.publish(data, list(names)),
                            storage.namespace)
    ctx = WebContext(
        settings=settings, storage=storage, cast=cast,
        limits=Limits.from_settings(web, redis=redis, namespace=storage.namespace),
        channels=channels, instance=instance or os.urandom(4).hex(),
        sessions=SessionGuard(storage), broadcast=broadcast,
        counters=Counters(storage, broadcast, window_s=web.activity_window_s),
        slots=SocketSlots.from_settings(web, redis=redis, namespace=storage.namespace),
        word_filter=WordFilter(settings.moderation.blocked_words),
        scores=ScoreFeed(storage, broadcast),
    )
    periodic = Periodic()
    presence = PresenceRefresh(ctx.presence, ctx.instance, broadcast.send)
    periodic.add(Chore("presence", REFRESH_S, presence.refresh))
    periodic.add(Chore("socket_slots", LEASE_S / 3, ctx.slots.renew))
    if redis is None:  # nothing carries the operator's bans here: look for them
        from playhouse.web.bans import WATCH_S, BanWatch

        watch = BanWatch(storage, broadcast, ctx.sessions.forget)
        periodic.add(Chore("ban_watch", WATCH_S, watch.check))
    waiting = Waiting(storage, cast, broadcast, grace_s=web.waiting_grace_s,
                      interval_s=web.waiting_interval_s)
    ctx.waiting = waiting
    broadcast.watch(waiting.observe)
    periodic.add(Chore("waiting", max(0.1, web.waiting_interval_s), waiting.look))
    if web.sample_interval_s > 0:
        sampler = Sampler(ctx, web.sample_interval_s, web.sample_watch_s)
        ctx.watch_status = sampler.watched
        periodic.add(Chore("sample", web.sample_interval_s, sampler.run))
    services: list[Service] = [ctx.scores]  # stopped last: the final scores still go out
    consumer = ResultsConsumer(ctx)  # in the app's state (tests drive it by hand)
    ctx.expecting = consumer.expect
    if consume:
        services.append(consumer)
        recovery = CallRecovery(storage, broadcast, grace_s=web.bot_call_grace_s)
        periodic.add(Chore("call_recovery", max(1.0, web.bot_call_grace_s / 3),
                           recovery.run_once))
    if schedule:
        services.append(Scheduler.create(
            storage, cast, settings.scheduler, on_placeholder=broadcast.thinking,
            on_asked=partial(consumer.expect, interactive=False), periodic=periodic,
        ))
    services.append(periodic)
    closers = [redis.aclose] if redis is not None else []
    app = create_app(ctx, secret=secret, services=services, on_close=closers)
    app.state["consumer"] = consumer
    return app


def run_web(settings: Settings, *, host: str | None, port: int | None, scheduler: bool) -> int:
    """Serve the web app until interrupted; with ``scheduler`` (and the scheduler enabled in
    the settings) this instance also competes for the scheduler's lease."""
    import uvicorn

    from playhouse.personas import load_cast_strict
    from playhouse.storage import Storage

    schedule = scheduler and settings.scheduler.enabled
    cast = load_cast_strict(Path(settings.personas_dir))
    secret = load_secret(settings)

    async def serve() -> None:
        async with Storage.open(settings.storage) as storage:
            created = await storage.rooms.ensure(seed_rooms(cast))
            log.info("rooms.seeded", created=created)
            app = assemble(settings, storage, cast, secret=secret, schedule=schedule)
            config = uvicorn.Config(
                app, host=host or settings.web.host, port=port or settings.web.port,
                log_config=None, ws_max_size=1024 * 1024, proxy_headers=False,
                # Compressing every frame for every socket cost a quarter of the server's
                # CPU in bench/fanout.py and pushed p99 past 100 ms; frames are small.
                ws_per_message_deflate=False,
            )
            await uvicorn.Server(config).serve()

    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the
    # handler that was there before it; with the default one the process would die of
    # it (code -15) after a clean stop. A supervisor (`playhouse run`, systemd, a
    # container runtime) stops the web app with SIGTERM: a clean stop exits 0, and a
    # SIGTERM before uvicorn serves exits 0 at once.
    previous = signal.signal(signal.SIGTERM, _stopped_by_sigterm)
    try:
        asyncio.run(serve())
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _stopped_by_sigterm(signum: int, _frame: object) -> None:
    log.info("web.stopped", signal=signal.Signals(signum).name)
    raise SystemExit(0)
