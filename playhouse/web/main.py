"""``playhouse web``: connect storage, seed the rooms, serve the app with uvicorn."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from pathlib import Path

import structlog

from playhouse.config import Settings
from playhouse.constants import DEFAULT_BOT, DEFAULT_ROOM, SEED_CREATOR
from playhouse.errors import ConfigError
from playhouse.personas import Cast
from playhouse.storage.models import Room

log = structlog.get_logger()

SECRET_FILE = "web.secret"
SECRET_MIN_CHARS = 32


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


def run_web(settings: Settings, *, host: str | None, port: int | None, scheduler: bool) -> int:
    """Serve the web app until interrupted; with ``scheduler`` (and the scheduler enabled in
    the settings) this instance also competes for the scheduler's lease."""
    import uvicorn

    from playhouse.personas import load_cast_strict
    from playhouse.runner import resolve_connection_string
    from playhouse.storage import Storage
    from playhouse.web.app import create_app

    schedule = scheduler and settings.scheduler.enabled
    cast = load_cast_strict(Path(settings.personas_dir))
    conn = resolve_connection_string(settings)
    secret = load_secret(settings)

    async def serve() -> None:
        storage = await Storage.connect(
            conn, timeout_s=settings.storage.timeout_s, namespace=settings.storage.namespace
        )
        try:
            await storage.ensure()
            created = await storage.rooms.ensure(seed_rooms(cast))
            log.info("rooms.seeded", created=created)
            app = create_app(settings, storage, cast, secret=secret, schedule=schedule)
            config = uvicorn.Config(
                app, host=host or settings.web.host, port=port or settings.web.port,
                log_config=None, ws_max_size=1024 * 1024, proxy_headers=False,
                # Compressing every frame for every socket cost a quarter of the server's
                # CPU in bench/fanout.py and pushed p99 past 100 ms; frames are small.
                ws_per_message_deflate=False,
            )
            await uvicorn.Server(config).serve()
        finally:
            await storage.close()

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
