"""Two web instances sharing live events through a real Redis (Debian's redis-server)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from playhouse.storage import Storage
from tests.integration.web_support import build, form_post, serve, socket, user_client

pytestmark = pytest.mark.integration


async def test_an_event_posted_on_one_instance_arrives_on_the_other(
    storage: Storage, redis_url: str
) -> None:
    one = await build(storage, redis_url=redis_url)
    two = await build(storage, redis_url=redis_url)
    async with serve(one) as base_one, serve(two) as base_two, \
            user_client(base_one, "alice") as alice, user_client(base_two, "bob") as bob, \
            socket(base_one, alice) as a, socket(base_two, bob) as b:
        assert a.hello.instance != b.hello.instance
        await a.subscribe("Sports")
        await b.subscribe("Sports")
        ack = await a.post("Sports", title="derby tonight")
        seen = await b.expect("thread", lambda e: e.thread.id == ack.thread_id)
        assert seen.thread.author == "alice"
        await a.subscribe("Sports", thread_id=ack.thread_id)
        await b.subscribe("Sports", thread_id=ack.thread_id)
        reply = await b.post("Sports", client_id="r", thread_id=ack.thread_id, text="2-1")
        comment = await a.expect("comment", lambda e: e.comment.id == reply.comment_id)
        assert comment.comment.author == "bob"
        # Presence comes from each instance separately; the page merges them.
        other = await a.expect("presence", lambda e: e.instance == b.hello.instance)
        assert "bob" in other.users


async def test_a_logout_on_one_instance_closes_the_users_sockets_on_the_other(
    storage: Storage, redis_url: str
) -> None:
    one = await build(storage, redis_url=redis_url)
    two = await build(storage, redis_url=redis_url)
    async with serve(one) as base_one, serve(two) as base_two, \
            user_client(base_one, "carol") as carol, socket(base_two, carol) as elsewhere, \
            user_client(base_two, "dave") as dave, socket(base_two, dave) as bystander:
        assert elsewhere.hello.user == "carol"
        out = await form_post(carol, "/logout", {})
        assert out.status_code in (302, 303)
        told = await elsewhere.expect("error")
        assert told.code == "login_required"
        with pytest.raises(ConnectionClosed):
            await elsewhere.ws.recv()
        await bystander.subscribe("Sports")  # another user's socket is untouched
        assert not [e for e in bystander.events if getattr(e, "code", "") == "login_required"]


async def test_rate_limits_are_shared_by_the_instances_on_one_redis(redis_url: str) -> None:
    from redis.asyncio import Redis

    from playhouse.config import WebSettings
    from playhouse.emulator import free_port
    from playhouse.web.limits import Limits, SharedRateLimiter

    clients = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
    try:
        one, two = (Limits.from_settings(WebSettings(posts_per_minute=3), redis=r)
                    for r in clients)
        assert isinstance(one.posts_per_user, SharedRateLimiter)
        user = f"erin-{free_port()}"  # a fresh bucket on the shared server
        assert await one.posts_per_user.take(user) == 0.0
        assert await two.posts_per_user.take(user) == 0.0
        assert await one.posts_per_user.take(user) == 0.0
        wait = await two.posts_per_user.take(user)  # the 4th in a minute, on either instance
        assert 0 < wait <= 20.5
        assert await two.posts_per_user.take(f"{user}-other") == 0.0
    finally:
        for client in clients:
            await client.aclose()


async def test_shared_buckets_give_back_and_tell_untouched_keys(redis_url: str) -> None:
    from redis.asyncio import Redis

    from playhouse.emulator import free_port
    from playhouse.web.limits import SharedRateLimiter

    clients = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
    try:
        one, two = (SharedRateLimiter(r, "fails", per_minute=2) for r in clients)
        key = f"ivy-{free_port()}"
        assert await two.untouched(key)
        assert await one.take(key) == 0.0
        assert not await two.untouched(key)  # the other instance sees the take
        await two.give_back(key)
        assert await one.untouched(key)
        assert [await one.take(key) for _ in range(3)][-1] > 0  # never past the burst
    finally:
        for client in clients:
            await client.aclose()


async def test_socket_slots_are_shared_and_a_dead_instances_run_out(redis_url: str) -> None:
    import asyncio
    import time

    from redis.asyncio import Redis

    from playhouse.emulator import free_port
    from playhouse.web.budget import SocketSlots

    clients = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
    try:
        alive, dying = (SocketSlots(per_address=2, per_user=5, redis=r, lease_s=1.0)
                        for r in clients)
        ip = f"10.1.{free_port() % 250}.1"
        assert await alive.claim("a1", ip, None) is None
        assert await dying.claim("d1", ip, None) is None
        assert await alive.claim("a2", ip, None) == "address"  # counted across instances
        # ``dying`` stops renewing (it was killed); ``alive`` keeps renewing its own.
        deadline = time.monotonic() + 10
        while await alive.claim("a2", ip, None) is not None:
            assert time.monotonic() < deadline, "the dead instance's socket never ran out"
            assert await alive.renew() == 1
            await asyncio.sleep(0.2)
        assert await dying.claim("d2", ip, None) == "address"  # a1 and a2 still count
        await alive.release("a1", ip, None)
        assert await dying.claim("d2", ip, None) is None
    finally:
        for client in clients:
            await client.aclose()


async def test_a_redis_outage_falls_back_to_counting_in_memory() -> None:
    from redis.asyncio import Redis

    from playhouse.config import WebSettings
    from playhouse.emulator import free_port
    from playhouse.web.limits import Limits

    gone = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    try:
        limits = Limits.from_settings(WebSettings(posts_per_minute=2), redis=gone)
        assert [await limits.posts_per_user.take("frank") for _ in range(2)] == [0.0, 0.0]
        assert await limits.posts_per_user.take("frank") > 0  # still limited, locally
    finally:
        await gone.aclose()


async def test_a_newcomer_sees_who_watches_through_the_other_instance_at_once(
    storage: Storage, redis_url: str
) -> None:
    one = await build(storage, redis_url=redis_url)
    two = await build(storage, redis_url=redis_url)
    async with serve(one) as base_one, serve(two) as base_two, \
            user_client(base_one, "gina") as gina, user_client(base_two, "hank") as hank, \
            socket(base_one, gina) as g, socket(base_two, hank) as h:
        await g.subscribe("Music")
        await g.expect("presence", lambda e: e.instance == g.hello.instance)
        await h.subscribe("Music")
        # Its answer to hank's arrival (not gina's own announcement: gina's page was told
        # directly, and the published one may still be on its way to hank):
        there = await h.expect("presence",
                               lambda e: e.instance == g.hello.instance and not e.ask)
        assert list(there.users) == ["gina"]
        # gina's page learns of hank through hank's own announcement, as before.
        here = await g.expect("presence", lambda e: e.instance == h.hello.instance)
        assert "hank" in here.users


async def test_a_scheduler_process_shows_its_placeholders_live_through_redis(
    storage: Storage, redis_url: str, connection_string: str, tmp_path: Path
) -> None:
    from playhouse.commands.scheduler import serve_scheduler
    from playhouse.commands.web import assemble, seed_rooms
    from playhouse.config import SchedulerSettings, Settings, StorageSettings, WebSettings
    from tests.integration.conftest import FAST_REPLIES, eager_cast
    from tests.integration.web_support import SECRET

    cast = eager_cast(tmp_path / "personas")
    await storage.rooms.ensure(seed_rooms(cast))
    settings = Settings(
        storage=StorageSettings(namespace=storage.namespace,
                                connection_string=connection_string),
        web=WebSettings(redis_url=redis_url),
        scheduler=SchedulerSettings(**FAST_REPLIES, seed=2),
    )
    app = assemble(settings, storage, cast, secret=SECRET, schedule=False)
    stop = asyncio.Event()
    async with serve(app) as base, user_client(base, "ivy") as ivy, socket(base, ivy) as live:
        await live.subscribe("Technology")
        ack = await live.post("Technology", title="anyone around?", text="hello")
        await live.subscribe("Technology", thread_id=ack.thread_id)
        scheduler = asyncio.create_task(
            serve_scheduler(settings, cast, stop=stop))
        try:
            thinking = await live.expect("thinking", within=30.0)
            assert thinking.comment.author == "Eager"
            assert thinking.comment.status == "placeholder"
        finally:
            stop.set()
            await asyncio.wait_for(scheduler, 30)
