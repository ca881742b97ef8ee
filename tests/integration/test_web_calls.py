"""Bot calls written before the ack survive the web process that took the post."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar

from playhouse.config import SchedulerSettings, Settings, WebSettings
from playhouse.constants import QUEUE_BOT_CALLS, QUEUE_INTERACTIVE, poison_queue
from playhouse.storage import Storage
from playhouse.web import calls
from playhouse.web.app import create_app
from playhouse.web.calls import BotCall, CallRecovery
from playhouse.web.context import WebContext
from playhouse.web.main import seed_rooms
from playhouse.web.posting import PostRefused, call_request_id, recover_call, store_post
from playhouse.web.protocol import Post
from tests.integration.conftest import FAST_REPLIES, eager_cast
from tests.integration.test_web_live import take_request
from tests.integration.web_support import (
    SECRET,
    build,
    ctx_of,
    serve,
    socket,
    user_client,
)

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def site(storage: Storage, **web: Any) -> AsyncIterator[tuple[Litestar, str]]:
    app = await build(storage, bot_call_grace_s=1, **web)
    async with serve(app) as base:
        yield app, base


def recovery(ctx: WebContext, **kw: Any) -> CallRecovery:
    return CallRecovery(ctx.storage, lambda *found: recover_call(ctx, *found),
                        visibility_timeout=1, **kw)


async def surfaced(rec: CallRecovery, within_s: float = 8.0) -> int:
    """Poll like the recovery loop until a page holds something; how many were handled."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        handled = await rec.run_once()
        if handled:
            return handled
        await asyncio.sleep(0.2)
    return 0


async def test_a_made_call_leaves_nothing_on_the_call_queue(storage: Storage) -> None:
    async with site(storage) as (_, base), user_client(base, "alice") as alice, \
            socket(base, alice) as a:
        await a.subscribe("Technology")
        ack = await a.post("Technology", title="phones", text="u/CoopBot which one?")
        request = await take_request(storage, QUEUE_INTERACTIVE)
        assert request.persona == "CoopBot"
        assert request.request_id == call_request_id(ack.thread_id, "CoopBot")
        await asyncio.sleep(1.5)  # past the grace: a call left behind would be visible now
        assert await storage.queues.receive(QUEUE_BOT_CALLS) == []


async def test_a_call_its_process_never_made_is_made_once_by_the_recovery(
    storage: Storage,
) -> None:
    async with site(storage) as (app, _):
        ctx = ctx_of(app)
        thread = await store_post(ctx, "alice", Post(room="Technology", client_id="t",
                                                     title="phones", text="which one?"))
        assert thread.call is None  # calls nobody: no outbox message
        # The post is stored and acknowledged; the process dies before announce().
        stored = await store_post(ctx, "alice", Post(
            room="Technology", client_id="c", thread_id=thread.thread.thread_id,
            text="what do you think, u/coopbot?"))
        assert stored.comment is not None and stored.call is not None
        assert await storage.queues.receive(QUEUE_INTERACTIVE) == []
        rec = recovery(ctx)
        assert await surfaced(rec) == 1
        request = await take_request(storage, QUEUE_INTERACTIVE)
        assert request.persona == "CoopBot" and request.parent_id == stored.comment.comment_id
        assert request.request_id == call_request_id(stored.comment.comment_id, "CoopBot")
        assert request.chain[-1].text == "what do you think, u/coopbot?"
        comments = (await storage.comments.list(thread.thread.thread_id)).items
        assert [(c.author, c.status) for c in comments] == [
            ("alice", "ok"), ("CoopBot", "placeholder")]
        # Made again (the first process was only slow): one placeholder still, and the job
        # still pending is queued again under the same request id (its result applies once).
        await recover_call(ctx, stored.room, stored.thread, stored.comment, stored.parent)
        again = await take_request(storage, QUEUE_INTERACTIVE)
        assert again.request_id == request.request_id
        assert len((await storage.comments.list(thread.thread.thread_id)).items) == 2
        # Once the job is no longer pending, making the call again asks nobody.
        await storage.jobs.transition(request.request_id, "pending", "done")
        await recover_call(ctx, stored.room, stored.thread, stored.comment, stored.parent)
        assert await storage.queues.receive(QUEUE_INTERACTIVE) == []
        await asyncio.sleep(1.2)
        assert await storage.queues.receive(QUEUE_BOT_CALLS) == []


async def test_a_new_thread_calls_its_rooms_default_bot_through_the_recovery(
    storage: Storage,
) -> None:
    async with site(storage) as (app, _):
        ctx = ctx_of(app)
        room = next(r for r in (await storage.rooms.list()).items if r.default_bot)
        stored = await store_post(ctx, "pia", Post(room=room.name, client_id="x",
                                                   title="a red fox in snow"))
        assert stored.call is not None
        assert await surfaced(recovery(ctx)) == 1
        queue = QUEUE_INTERACTIVE if ctx.cast.personas[room.default_bot].kind == "text" \
            else "gen-image"
        request = await take_request(storage, queue)
        assert request.persona == room.default_bot
        assert request.thread_id == stored.thread.thread_id and request.parent_id is None


async def test_a_call_whose_post_was_never_stored_is_dropped_once_old(storage: Storage) -> None:
    async with site(storage) as (app, _):
        ctx = ctx_of(app)
        ghost = BotCall(room="Technology", thread_id="0" * 26, comment_id="1" * 26,
                        personas=("CoopBot",), at=time.time())
        await calls.reserve(storage, ghost, grace_s=0)
        assert await recovery(ctx).run_once() == 1  # young: kept, it may still be written
        assert await surfaced(recovery(ctx, orphan_after_s=0.0)) == 1
        await asyncio.sleep(1.2)
        assert await storage.queues.receive(QUEUE_BOT_CALLS) == []
        assert await storage.queues.receive(QUEUE_INTERACTIVE) == []


async def test_a_malformed_call_goes_to_the_poison_queue(storage: Storage) -> None:
    async with site(storage) as (app, _):
        await storage.queues.send(QUEUE_BOT_CALLS, b"{not a call")
        await storage.queues.send(QUEUE_BOT_CALLS, msgspec.json.encode({"room": 3}))
        assert await recovery(ctx_of(app)).run_once() == 2
        assert len(await storage.queues.peek(poison_queue(QUEUE_BOT_CALLS))) == 2
        await asyncio.sleep(1.2)
        assert await storage.queues.receive(QUEUE_BOT_CALLS) == []


async def test_a_refused_post_writes_no_call(storage: Storage) -> None:
    async with site(storage) as (app, _):
        ctx = ctx_of(app)
        with pytest.raises(PostRefused):
            await store_post(ctx, "alice", Post(room="Technology", client_id="c",
                                                thread_id="0" * 26, text="u/CoopBot hi"))
        with pytest.raises(PostRefused):
            await store_post(ctx, "alice", Post(room="Technology", client_id="c",
                                                title="", text="u/CoopBot hi"))
        await asyncio.sleep(1.2)
        assert await storage.queues.receive(QUEUE_BOT_CALLS) == []


async def test_the_app_recovers_calls_on_its_own(storage: Storage) -> None:
    """The recovery runs inside the app (with the results consumer), not only when called."""
    app = await build(storage, consume=True, bot_call_grace_s=0)
    async with serve(app):
        ctx = ctx_of(app)
        thread = await store_post(ctx, "alice", Post(room="Technology", client_id="t",
                                                     title="phones", text="u/CoopBot hi"))
        # No announce(): only the app's own recovery loop can make this call.
        request = await take_request(storage, QUEUE_INTERACTIVE)
        assert request.request_id == call_request_id(thread.thread.thread_id, "CoopBot")


async def test_a_scheduled_reply_shows_its_thinking_placeholder_live(
    storage: Storage, tmp_path: Path
) -> None:
    """The scheduler hosted by the web app announces its placeholders like a person's call."""
    cast = eager_cast(tmp_path / "personas")
    await storage.rooms.ensure(seed_rooms(cast))
    scheduler = SchedulerSettings(**FAST_REPLIES, seed=1)
    app = create_app(Settings(web=WebSettings(), scheduler=scheduler), storage, cast,
                     secret=SECRET, schedule=True)
    async with serve(app) as base, user_client(base, "alice") as alice, \
            socket(base, alice) as a:
        await a.subscribe("Technology")
        ack = await a.post("Technology", title="what now?", text="anyone?")
        await a.subscribe("Technology", thread_id=ack.thread_id)
        thinking = await a.expect("thinking", within=30.0)
        assert thinking.comment.author == "Eager" and thinking.comment.status == "placeholder"
        request = await take_request(storage, "gen-background")
        assert request.persona == "Eager" and request.thread_id == ack.thread_id
