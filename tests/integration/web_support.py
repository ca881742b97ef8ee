"""Helpers for the web tests: build the app on a test's storage, serve it for real, log in."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import uvicorn
from litestar import Litestar
from websockets.asyncio.client import ClientConnection, connect

from playhouse.commands.web import assemble, seed_rooms
from playhouse.config import ModerationSettings, SchedulerSettings, Settings, WebSettings
from playhouse.emulator import free_port
from playhouse.personas import Cast, load_cast_strict
from playhouse.storage import Storage
from playhouse.web.context import WebContext
from playhouse.web.protocol import ServerEvent, decode_server
from tests.awake import awake_personas

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"test-secret-" + b"x" * 40
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


def the_cast() -> Cast:
    """The shipped cast, awake all day (``tests/awake.py``)."""
    return load_cast_strict(awake_personas())


def settings(scheduler: SchedulerSettings | None = None,
             moderation: ModerationSettings | None = None, **web: Any) -> Settings:
    return Settings(web=WebSettings(**web), scheduler=scheduler or SchedulerSettings(),
                    moderation=moderation or ModerationSettings())


async def build(storage: Storage, *, consume: bool = False, schedule: bool = False,
                cast: Cast | None = None, scheduler: SchedulerSettings | None = None,
                moderation: ModerationSettings | None = None, **web: Any) -> Litestar:
    """The web app as ``playhouse web`` composes it, over the test's storage."""
    cast = cast or the_cast()
    await storage.rooms.ensure(seed_rooms(cast))
    return assemble(settings(scheduler, moderation, **web), storage, cast, secret=SECRET,
                    consume=consume, schedule=schedule)


def ctx_of(app: Litestar) -> WebContext:
    ctx = app.state["playhouse"]
    assert isinstance(ctx, WebContext)
    return ctx


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def register(client: Any, name: str, password: str = PASSWORD) -> Any:
    """Register (and so log in) ``name`` through the real form, CSRF token included."""
    page = await client.get("/register")
    token = csrf_from(page.text)
    return await client.post(
        "/register",
        data={"username": name, "password": password, "password2": password,
              "_csrf_token": token},
    )


async def form_post(client: Any, path: str, data: dict[str, str], *, page: str = "/") -> Any:
    token = csrf_from((await client.get(page)).text)
    return await client.post(path, data={**data, "_csrf_token": token})


async def json_post(client: Any, path: str, body: dict[str, Any] | None = None, *,
                    page: str = "/") -> Any:
    """POST ``body`` as JSON the way the pages' script does: the CSRF token in the header
    (read from ``page``)."""
    token = csrf_from((await client.get(page, headers={"accept": "text/html"})).text)
    return await client.post(path, json=body or {},
                             headers={"x-csrftoken": token, "accept": "application/json"})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the test runner owns the signals
        yield


@contextlib.asynccontextmanager
async def serve(app: Litestar) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port in this loop; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                            ws_max_size=1024 * 1024, lifespan="on")
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 15
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def user_client(base: str, name: str | None) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on a served app, registered as ``name`` (anonymous when None)."""
    async with httpx.AsyncClient(base_url=base, follow_redirects=False) as client:
        if name is not None:
            answer = await register(client, name)
            assert answer.status_code in (302, 303), answer.text
        yield client


def cookie_header(client: httpx.AsyncClient) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)


@contextlib.asynccontextmanager
async def socket(base: str, client: httpx.AsyncClient | None = None,
                 **headers: str) -> AsyncIterator[Live]:
    extra = dict(headers)
    if client is not None:
        extra["Cookie"] = cookie_header(client)
    url = base.replace("http://", "ws://") + "/ws"
    async with connect(url, additional_headers=extra, max_size=4 * 1024 * 1024) as ws:
        live = Live(ws)
        hello = await live.expect("hello")
        live.hello = hello
        yield live


class Live:
    """A websocket client that keeps every event and waits for the ones a test wants."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[ServerEvent] = []
        self.hello: Any = None

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        if isinstance(message, dict):
            message = msgspec.json.encode(message).decode()
        await self.ws.send(message)

    async def expect(self, kinds: str | tuple[str, ...],
                     match: Callable[[Any], bool] = lambda e: True, within: float = 10.0) -> Any:
        """The first event of one of ``kinds`` that ``match`` accepts (others are kept)."""
        wanted = (kinds,) if isinstance(kinds, str) else kinds
        deadline = time.monotonic() + within
        while True:
            for event in self.events:
                if _tag(event) in wanted and match(event):
                    self.events.remove(event)
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {wanted} event within {within} s; got {self.events}")
            with contextlib.suppress(TimeoutError):
                frame = await asyncio.wait_for(self.ws.recv(), remaining)
                self.events.append(decode_server(frame))

    async def subscribe(self, room: str, thread_id: str | None = None,
                        after: str | None = None, pending: list[str] | None = None) -> Any:
        """Subscribe; returns the first event after ``subscribed`` (history or error)."""
        await self.send({"type": "subscribe", "room": room, "thread_id": thread_id,
                         "after": after, "pending": pending or []})
        return await self.expect(("history", "error"))

    async def post(self, room: str, *, client_id: str = "p1", **fields: Any) -> Any:
        """Post; returns the ``ack`` or the ``error`` answering ``client_id``."""
        await self.send({"type": "post", "room": room, "client_id": client_id, **fields})
        return await self.reply_to(client_id)

    async def reply_to(self, client_id: str, within: float = 10.0) -> Any:
        return await self.expect(("ack", "error"),
                                 lambda e: getattr(e, "client_id", None) == client_id, within)

    async def quiet(self, seconds: float = 0.3) -> list[ServerEvent]:
        """Collect whatever arrives until nothing has for ``seconds``."""
        with contextlib.suppress(TimeoutError):
            while True:
                frame = await asyncio.wait_for(self.ws.recv(), seconds)
                self.events.append(decode_server(frame))
        return self.events


def _tag(event: ServerEvent) -> str:
    return str(type(event).__struct_config__.tag)
