"""Bot calls recorded with their post survive the web process that took the post."""

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

from playhouse import asking, ids
from playhouse.config import SchedulerSettings
from playhouse.constants import QUEUE_INTERACTIVE
from playhouse.errors import NotFound, PlayhouseError
from playhouse.storage import Storage
from playhouse.storage.models import Job
from playhouse.web.calls import CallRecovery
from playhouse.web.context import WebContext
from playhouse.web.posting import store_post
from playhouse.web.protocol import PostMessage
from tests.integration.conftest import FAST_REPLIES, eager_cast
from tests.integration.test_web_live import take_request
from tests.integration.web_support import build, ctx_of, serve, socket, user_client

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def site(storage: Storage, **web: Any) -> AsyncIterator[tuple[Litestar, str]]:
    app = await build(storage, bot_call_grace_s=1, **web)
    async with serve(app) as base:
        yield app, base


def recovery(ctx: WebContext, **kw: Any) -> CallRecovery:
    return CallRecovery(ctx.storage, ctx.broadcast, grace_s=1, **kw)


async def test_a_made_call_is_queued_once_and_leaves_no_call_behind(storage: Storage) -> None:
    async with site(storage) as (app, base), user_client(base, "alice") as alice, \
            socket(base, alice) as a:
        await a.subscribe("Technology")
        ack = await a.post("Technology", title="phones", text="u/CoopBot which one?")
        request = await take_request(storage, QUEUE_INTERACTIVE)
        assert request.persona == "CoopBot"
        assert request.request_id == asking.request_id_for(ack.thread_id, "CoopBot")
        job = await storage.jobs.get(request.request_id)
        assert job.state == "pending"  # queued: nothing is left for the recovery
        later = time.time() + 60
        assert await recovery(ctx_of(app)).run_once(now=later) == 0
        assert await storage.queues.receive(QUEUE_INTERACTIVE) == []


async def test_a_call_its_process_never_made_is_made_once_by_the_recovery(
    storage: Storage,
) -> None:
    async with site(storage) as (app, _):
        ctx = ctx_of(app)
        thread = await store_post(ctx, "alice", PostMessage(room="Technology", client_id="t",
                                                            title="phones", text="which one?"))
        assert thread.calls == ()  # calls nobody: no job
        # The post is stored with its call and acknowledged; the process dies before
        # announce() makes the call.
        stored = await store_post(ctx, "alice", PostMessage(
            room="Technology", client_id="c", thread_id=thread.thread.thread_id,
            text="what do you think, u/coopbot?"))
        assert stored.comment is not None
        (job,) = stored.calls
        assert job.state == "called" and job.persona == "CoopBot"
        assert await storage.queues.receive(QUEUE_INTERACTIVE) == []
        rec = recovery(ctx)
        assert await rec.run_once(now=time.time()) == 0  # within the grace: its own to make
        assert await rec.run_once(now=time.time() + 5) == 1
        request = await take_request(storage, QUEUE_INTERACTIVE)
        assert request.persona == "CoopBot" and request.parent_id == stored.comment.comment_id
        assert request.request_id == asking.request_id_for(stored.comment.comment_id, "CoopBot")
        assert request.chain[-1].text == "what do you think, u/coopbot?"
        comments = (await storage.comments.list(thread.thread.thread_id)).items
        assert [(c.author, c.status, c.depth) for c in comments] == [
            ("alice", "ok", 0), ("CoopBot", "placeholder", 1)]
        assert (await storage.jobs.get(job.request_id)).state == "pending"
        # Another pass (another instance) finds nothing more to make.
        assert await rec.run_once(now=time.time() + 10) == 0
        assert await storage.queues.receive(QUEUE_INTERACTIVE) == []


async def test_two_instances_recovering_together_make_the_call_once(storage: Storage) -> None:
    async with site(storage) as (app, _):
        ctx = ctx_of(app)
        stored = await store_post(ctx, "alice", PostMessage(room="Technology", client_id="t",
                                                            title="phones", text="u/CoopBot?"))
        assert len(stored.calls) == 1
        later = time.time() + 5
        one, two = recovery(ctx), recovery(ctx)
        made = await asyncio.gather(one.run_once(now=later), two.run_once(now=later))
        assert sorted(made) == [0, 1]
        await take_request(storage, QUEUE_INTERACTIVE)
        assert await storage.queues.receive(QUEUE_INTERACTIVE) == []


async def test_a_new_thread_calls_its_rooms_default_bot_through_the_recovery(
    storage: Storage,
) -> None:
    async with site(storage) as (app, _):
        ctx = ctx_of(app)
        room = next(r for r in (await storage.rooms.list()).items if r.default_bot)
        stored = await store_post(ctx, "pia", PostMessage(room=room.name, client_id="x",
                                                          title="a red fox in snow"))
        assert [j.persona for j in stored.calls] == [room.default_bot]
        assert await recovery(ctx).run_once(now=time.time() + 5) == 1
        queue = QUEUE_INTERACTIVE if ctx.cast.personas[room.default_bot].kind == "text" \
            else "gen-image"
        request = await take_request(storage, queue)
        assert request.persona == room.default_bot
        assert request.thread_id == stored.thread.thread_id and request.parent_id is None


async def test_a_call_whose_post_was_never_stored_is_dropped_once_old(storage: Storage) -> None:
    async with site(storage) as (app, _):
        ctx = ctx_of(app)
        comment_id, thread_id = ids.new_id(), ids.new_id()
        request = asking.reply_request(persona=ctx.cast.personas["CoopBot"], thread=(
            await _a_thread(ctx, thread_id)), chain=[], parent_id=comment_id,
            queue=QUEUE_INTERACTIVE)
        (ghost,) = await asking.record(storage, [asking.new_job(request, depth=1)])
        rec = recovery(ctx)
        assert await rec.run_once(now=time.time() + 5) == 0  # young: it may still be written
        assert (await storage.jobs.get(ghost.request_id)).state == "called"
        assert await rec.run_once(now=time.time() + 120) == 0
        dropped = await storage.jobs.get(ghost.request_id)
        assert dropped.state == "failed" and "not stored" in dropped.error
        assert await storage.queues.receive(QUEUE_INTERACTIVE) == []


async def _a_thread(ctx: WebContext, thread_id: str) -> Any:
    from playhouse.storage.models import Thread

    now = time.time()
    return await ctx.storage.threads.create(Thread(
        thread_id=thread_id, room="Technology", title="t", body="", url=None, author="al",
        is_bot=False, persona=None, created_at=now, last_activity=now))


async def test_a_refused_post_writes_no_call(storage: Storage) -> None:
    async with site(storage) as (app, _):
        ctx = ctx_of(app)
        with pytest.raises(NotFound):
            await store_post(ctx, "alice", PostMessage(room="Technology", client_id="c",
                                                       thread_id="0" * 26, text="u/CoopBot hi"))
        with pytest.raises(PlayhouseError):
            await store_post(ctx, "alice", PostMessage(room="Technology", client_id="c",
                                                       title="", text="u/CoopBot hi"))
        assert await storage.jobs.called_before(time.time() + 60, since=0) == []


async def test_the_app_recovers_calls_on_its_own(storage: Storage) -> None:
    """The recovery is one of the app's chores (with the results consumer), not only when
    called by hand."""
    app = await build(storage, consume=True, bot_call_grace_s=1)
    async with serve(app):
        ctx = ctx_of(app)
        thread = await store_post(ctx, "alice", PostMessage(room="Technology", client_id="t",
                                                            title="phones", text="u/CoopBot hi"))
        # No announce(): only the app's own recovery can make this call.
        request = await take_request(storage, QUEUE_INTERACTIVE)
        assert request.request_id == asking.request_id_for(thread.thread.thread_id, "CoopBot")


async def test_a_scheduled_reply_shows_its_thinking_placeholder_live(
    storage: Storage, tmp_path: Path
) -> None:
    """The scheduler hosted by the web app announces its placeholders like a person's call."""
    cast = eager_cast(tmp_path / "personas")
    app = await build(storage, cast=cast, schedule=True,
                      scheduler=SchedulerSettings(**FAST_REPLIES, seed=1))
    async with serve(app) as base, user_client(base, "alice") as alice, \
            socket(base, alice) as a:
        await a.subscribe("Technology")
        ack = await a.post("Technology", title="what now?", text="anyone?")
        await a.subscribe("Technology", thread_id=ack.thread_id)
        thinking = await a.expect("thinking", within=30.0)
        assert thinking.comment.author == "Eager" and thinking.comment.status == "placeholder"
        request = await take_request(storage, "gen-background")
        assert request.persona == "Eager" and request.thread_id == ack.thread_id
        job = await storage.jobs.get(request.request_id)
        assert job.state == "pending"
        assert request.request_id == asking.request_id_for(ack.thread_id, "Eager")


def test_a_job_row_carries_what_it_takes_to_queue_it_again() -> None:
    request = asking.post_request(persona=_persona(), room="Technology", queue="q")
    job = asking.new_job(request, depth=3, now=5.0)
    assert isinstance(job, Job) and job.state == "called" and job.depth == 3
    assert asking.decode_job_request(job) == request
    assert msgspec.json.decode(job.payload)["request_id"] == request.request_id


def _persona() -> Any:
    from tests.integration.web_support import the_cast

    return the_cast().personas["CoopBot"]
