"""The Litestar application factory: routes, middleware, and the parts it runs.

:func:`create_app` is handed a built :class:`~playhouse.web.context.WebContext` and the
background parts (:class:`Service`\\ s: the results consumer, the chores, the bots'
scheduler when this instance hosts it) by the web entrypoint
(:func:`playhouse.web.main.assemble`); it starts them with the app and stops them, in
reverse order, when the app stops.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Protocol

import structlog
from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.config.app import AppConfig
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi.config import OpenAPIConfig
from litestar.plugins import InitPluginProtocol
from litestar.static_files import create_static_files_router

from playhouse.errors import PlayhouseError
from playhouse.web import (
    api,
    auth,
    editing,
    errors,
    inbox,
    leaderboard,
    live,
    moderation,
    pages,
    prefs,
    profiles,
    rerolls,
    status,
    votes,
    why,
)
from playhouse.web.assets import static_dir
from playhouse.web.context import SESSION_MAX_AGE_S, WebContext
from playhouse.web.headers import add_security_headers
from playhouse.web.templating import template_config

if TYPE_CHECKING:
    from litestar.channels.backends.base import ChannelsBackend
    from litestar.types import Scope
    from redis.asyncio import Redis

SESSION_COOKIE = "playhouse_session"
log = structlog.get_logger()


class Service(Protocol):
    """A part that runs beside the requests, from the app's start to its end."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class _Lifespan(InitPluginProtocol):
    """Adds a lifespan after the plugins listed before it (Litestar enters lifespans in
    order and leaves them in reverse)."""

    def __init__(self, lifespan: Callable[[Litestar], AbstractAsyncContextManager[None]]) -> None:
        self.lifespan = lifespan

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.lifespan.append(self.lifespan)
        return app_config


def _closing(closers: Sequence[Callable[[], Awaitable[object]]]
             ) -> Callable[[], Awaitable[None]]:
    async def close_all() -> None:
        for close in closers:
            await close()

    return close_all


async def _log_crash(exc: BaseException, scope: Scope) -> None:
    """Log what no handler expected (expected errors are answered by errors.HANDLERS)."""
    if not isinstance(exc, HTTPException | PlayhouseError):
        log.error("request.crashed", path=scope.get("path", "?"), exc_info=exc)
        state = scope["app"].state
        if "playhouse" in state:
            state["playhouse"].metrics.errors.labels("crash").inc()


def derive(secret: bytes, purpose: str) -> bytes:
    return hashlib.sha256(purpose.encode() + b":" + secret).digest()


def channels_backend(redis_url: str | None) -> tuple[ChannelsBackend, Redis | None]:
    """Memory fan-out for one instance; Redis pub/sub when several share the load."""
    if redis_url is None:
        return MemoryChannelsBackend(), None
    from litestar.channels.backends.redis import RedisChannelsPubSubBackend
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    return RedisChannelsPubSubBackend(redis=redis), redis


def channels_plugin(backend: ChannelsBackend) -> ChannelsPlugin:
    return ChannelsPlugin(
        backend=backend, arbitrary_channels_allowed=True,
        subscriber_max_backlog=2000, subscriber_backlog_strategy="dropleft",
    )


def create_app(
    ctx: WebContext,
    *,
    secret: bytes,
    services: Sequence[Service] = (),
    on_close: Sequence[Callable[[], Awaitable[object]]] = (),
) -> Litestar:
    """The web app over ``ctx``: ``services`` start with it (in order) and stop with it
    (in reverse); then the counters are written and background tasks drained; ``on_close``
    runs last, once the fan-out has stopped too (closing the Redis client, say)."""
    secure = ctx.settings.web.secure_cookies

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        # Entered after the Channels plugin's own lifespan (see _Lifespan), so the parts
        # stop, and the counters are written and broadcast, while the fan-out still runs.
        started: list[Service] = []
        try:
            for service in services:
                await service.start()
                started.append(service)
            yield
        finally:
            for service in reversed(started):
                await service.stop()
            ctx.announcer.close()
            await ctx.counters.close()
            await ctx.drain()

    session = auth.SessionConfig(
        secret=derive(secret, "session"), key=SESSION_COOKIE, httponly=True, samesite="lax",
        secure=secure, max_age=SESSION_MAX_AGE_S,
    )
    return Litestar(
        route_handlers=[
            *pages.ROUTES, *auth.ROUTES, *moderation.ROUTES, api.Api, live.live_socket,
            *status.ROUTES, *editing.ROUTES, *rerolls.ROUTES, *inbox.ROUTES, *prefs.ROUTES,
            *why.ROUTES, *votes.ROUTES, *profiles.ROUTES, *leaderboard.ROUTES,
            create_static_files_router(path="/static", directories=[static_dir()]),
        ],
        plugins=[ctx.channels, _Lifespan(lifespan)],
        middleware=[ctx.metrics.middleware, session.middleware, ctx.sessions.middleware],
        # No path is excluded from CSRF: Litestar compiles ``exclude`` into an unanchored
        # regex searched anywhere in the path (``/r/apiVault/leave`` matched "/api"). The
        # API and the schema are GET-only, and safe methods are never checked; a handler
        # that must take unsafe requests without the token says so itself with
        # ``opt={"exclude_from_csrf": True}``.
        csrf_config=CSRFConfig(secret=derive(secret, "csrf").hex(), cookie_secure=secure,
                               cookie_samesite="lax"),
        template_config=template_config(),
        openapi_config=OpenAPIConfig(title="playhouse", version="1", path="/schema"),
        exception_handlers=errors.HANDLERS,
        before_request=inbox.before_page,
        after_exception=[_log_crash],
        before_send=[add_security_headers],
        # Last, after every lifespan (the Channels plugin's included: its Redis backend
        # shuts down on the client these close).
        on_shutdown=[_closing(on_close)],
        logging_config=None,  # logging is structlog's, configured once by the CLI
        state=State({"playhouse": ctx, leaderboard.STATE_KEY: leaderboard.Boards()}),
    )


__all__ = ["MemoryChannelsBackend", "Service", "channels_backend", "create_app"]
