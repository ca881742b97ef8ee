"""The Litestar application factory."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

import structlog
from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi.config import OpenAPIConfig
from litestar.static_files import create_static_files_router

from playhouse.errors import PlayhouseError
from playhouse.scheduling.scheduler import Scheduler
from playhouse.storage.models import Comment
from playhouse.storage.reindex import index_all
from playhouse.web import (
    api,
    auth,
    errors,
    leaderboard,
    live,
    pages,
    profiles,
    status,
    views,
    votes,
)
from playhouse.web.assets import static_dir
from playhouse.web.calls import CallRecovery
from playhouse.web.consumer import ResultsConsumer
from playhouse.web.context import SESSION_MAX_AGE_S, WebContext, room_channel, thread_channel
from playhouse.web.limits import Limits
from playhouse.web.posting import recover_call
from playhouse.web.presence import PresenceRefresh
from playhouse.web.protocol import Thinking, encode
from playhouse.web.scores import ScoreFeed
from playhouse.web.sessions import SessionGuard
from playhouse.web.templating import template_config

if TYPE_CHECKING:
    from litestar.channels.backends.base import ChannelsBackend
    from litestar.types import Scope
    from redis.asyncio import Redis

    from playhouse.config import Settings
    from playhouse.personas import Cast
    from playhouse.storage import Storage

SESSION_COOKIE = "playhouse_session"
log = structlog.get_logger()


async def _log_crash(exc: BaseException, scope: Scope) -> None:
    """Log what no handler expected (expected errors are answered by errors.HANDLERS)."""
    if not isinstance(exc, HTTPException | PlayhouseError):
        log.error("request.crashed", path=scope.get("path", "?"), exc_info=exc)
        state = scope["app"].state
        if "playhouse" in state:
            state["playhouse"].metrics.errors.labels("crash").inc()


def _derive(secret: bytes, purpose: str) -> bytes:
    return hashlib.sha256(purpose.encode() + b":" + secret).digest()


def channels_backend(redis_url: str | None) -> tuple[ChannelsBackend, Redis | None]:
    """Memory fan-out for one instance; Redis pub/sub when several share the load."""
    if redis_url is None:
        return MemoryChannelsBackend(), None
    from litestar.channels.backends.redis import RedisChannelsPubSubBackend
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    return RedisChannelsPubSubBackend(redis=redis), redis


def create_app(
    settings: Settings,
    storage: Storage,
    cast: Cast,
    *,
    secret: bytes,
    consume: bool = True,
    schedule: bool = False,
    instance: str | None = None,
) -> Litestar:
    """The web app over open ``storage``; ``consume`` runs the results consumer in it and
    ``schedule`` the bots' scheduler (which schedules only while it holds the lease)."""
    secure = settings.web.secure_cookies
    backend, redis = channels_backend(settings.web.redis_url)
    channels = ChannelsPlugin(
        backend=backend, arbitrary_channels_allowed=True,
        subscriber_max_backlog=2000, subscriber_backlog_strategy="dropleft",
    )
    limits = Limits.from_rates(posts_per_minute=settings.web.posts_per_minute,
                               logins_per_minute=settings.web.logins_per_minute, redis=redis)
    guard = SessionGuard(storage)
    ctx = WebContext(settings=settings, storage=storage, cast=cast, limits=limits,
                     channels=channels, instance=instance or os.urandom(4).hex(),
                     sessions=guard)
    consumer = ResultsConsumer(ctx)
    feed = ScoreFeed(storage, ctx.publish)
    voting = votes.VoteService(ctx, votes.vote_limiter(settings.web.votes_per_minute, redis),
                               feed)
    recovery = CallRecovery(storage, partial(recover_call, ctx))
    presence = PresenceRefresh(ctx.presence, ctx.instance,
                               lambda text, room: ctx.publish(text, room_channel(room)))

    def show_thinking(placeholder: Comment) -> None:
        ctx.publish(encode(Thinking(comment=views.comment_out(placeholder))),
                    thread_channel(placeholder.thread_id))

    scheduler = Scheduler.create(storage, cast, settings.scheduler,
                                 on_placeholder=show_thinking) if schedule else None
    interval = settings.web.sample_interval_s
    sampler = status.Sampler(ctx, interval) if interval > 0 else None

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        storage.threads.defer_listing = feed.touched
        ctx.spawn(index_all(storage), "index_all")  # what was stored before the indexes
        presence.start()
        if consume:
            consumer.start()
            recovery.start()
        if scheduler is not None:
            await scheduler.start()
        if sampler is not None:
            sampler.start()
        try:
            yield
        finally:
            if sampler is not None:
                await sampler.stop()
            if scheduler is not None:
                await scheduler.stop()
            await recovery.stop()
            await consumer.stop()
            await presence.stop()
            await ctx.drain()
            await feed.close()
            if storage.threads.defer_listing == feed.touched:
                storage.threads.defer_listing = None
            if redis is not None:
                await redis.aclose()

    session = auth.SessionConfig(
        secret=_derive(secret, "session"), key=SESSION_COOKIE, httponly=True, samesite="lax",
        secure=secure, max_age=SESSION_MAX_AGE_S,
    )
    return Litestar(
        route_handlers=[
            *pages.ROUTES, *auth.ROUTES, api.Api, live.live_socket, *status.ROUTES,
            *votes.ROUTES, *profiles.ROUTES, *leaderboard.ROUTES,
            create_static_files_router(path="/static", directories=[static_dir()]),
        ],
        plugins=[channels],
        middleware=[ctx.metrics.middleware, session.middleware, guard.middleware],
        csrf_config=CSRFConfig(secret=_derive(secret, "csrf").hex(), cookie_secure=secure,
                               cookie_samesite="lax", exclude=["/api", "/schema"]),
        template_config=template_config(),
        openapi_config=OpenAPIConfig(title="playhouse", version="1", path="/schema"),
        exception_handlers=errors.HANDLERS,
        after_exception=[_log_crash],
        lifespan=[lifespan],
        logging_config=None,  # logging is structlog's, configured once by the CLI
        state=State({"playhouse": ctx, "consumer": consumer, votes.STATE_KEY: voting,
                     leaderboard.STATE_KEY: leaderboard.Boards()}),
    )
