"""Moderation across processes: a site ban on every instance (Redis), the operator's
``playhouse admin``, a web instance alone noticing the operator's ban, and the scheduler
keeping out of what moderators closed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Awaitable
from pathlib import Path

import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from playhouse import ids
from playhouse.commands.admin import act
from playhouse.config import Settings, StorageSettings, WebSettings
from playhouse.constants import SITE_ROOM
from playhouse.errors import Conflict, NotFound
from playhouse.scheduling.scheduler import Scheduler
from playhouse.storage import Storage
from playhouse.storage.models import Comment, Room, Thread
from playhouse.web.bans import BanWatch
from tests.integration.test_scheduler import fast, small_cast
from tests.integration.web_support import (
    ROOT,
    Live,
    build,
    ctx_of,
    form_post,
    serve,
    socket,
    user_client,
)

pytestmark = pytest.mark.integration


async def closed_with(live: Live, within: float = 10.0) -> int | None:
    """The close code of ``live`` once the server closes it (None: still open)."""
    deadline = time.monotonic() + within
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        while time.monotonic() < deadline:
            await asyncio.wait_for(live.ws.recv(), deadline - time.monotonic())
    return live.ws.close_code


def operator(storage: Storage, connection_string: str,
             redis_url: str | None = None) -> Settings:
    return Settings(storage=StorageSettings(connection_string=connection_string,
                                            namespace=storage.namespace),
                    web=WebSettings(redis_url=redis_url))


async def test_a_site_ban_on_one_instance_closes_the_users_sockets_on_the_other(
    storage: Storage, redis_url: str
) -> None:
    one = await build(storage, redis_url=redis_url, admins=("root",))
    two = await build(storage, redis_url=redis_url)
    async with serve(one) as base_one, serve(two) as base_two, \
            user_client(base_one, "root") as root, user_client(base_two, "alice") as alice, \
            socket(base_two, alice) as there, user_client(base_two, "bob") as bob, \
            socket(base_two, bob) as bystander:
        await there.subscribe("Sports")
        await bystander.subscribe("Sports")
        assert (await alice.get("/")).text.count("u/alice") >= 1
        banned = await form_post(root, "/mod/ban", {"scope": "site", "username": "alice",
                                                    "reason": "spam"})
        assert banned.status_code in (302, 303), banned.text
        notice = await there.expect("banned")
        assert notice.room is None and notice.reason == "spam"
        assert (await there.expect("error")).code == "banned"
        assert await closed_with(there) == 4403
        # the other instance refuses her cookie at once (it heard the ban on her socket)
        assert "u/alice" not in (await alice.get("/")).text
        await bystander.quiet(0.3)
        assert not [e for e in bystander.events if getattr(e, "code", "") == "banned"]
        ack = await bystander.post("Sports", title="still here")
        assert ack.thread_id


async def test_the_operator_bans_through_redis_and_every_instance_closes_the_sockets(
    storage: Storage, redis_url: str, connection_string: str
) -> None:
    app = await build(storage, redis_url=redis_url)
    async with serve(app) as base, user_client(base, "alice") as alice, \
            socket(base, alice) as live:
        await live.subscribe("Sports")
        said = await act(operator(storage, connection_string, redis_url), "ban", "ALICE",
                         "abuse")
        assert "u/alice is banned from the site" in said and "through Redis" in said
        notice = await live.expect("banned")
        assert notice.reason == "abuse"
        assert await closed_with(live) == 4403
        entry = (await storage.modlog.of_room(SITE_ROOM)).items[0]
        assert (entry.action, entry.actor, entry.target_user) == ("ban", "(operator)", "alice")


async def test_a_web_instance_without_redis_notices_the_operators_ban_by_itself(
    storage: Storage, connection_string: str
) -> None:
    app = await build(storage)
    async with serve(app) as base, user_client(base, "alice") as alice, \
            socket(base, alice) as live:
        await live.subscribe("Sports")
        ctx = ctx_of(app)
        watch = BanWatch(storage, ctx.broadcast, ctx.sessions.forget)
        assert await watch.check() == 0
        await act(operator(storage, connection_string), "ban", "alice")
        assert await watch.check() == 1  # what the instance's chore does every few seconds
        assert (await live.expect("banned")).room is None
        assert await closed_with(live) == 4403
        assert await watch.check() == 0  # told once


async def test_the_operator_grants_revokes_bans_and_unbans_with_clear_refusals(
    storage: Storage, connection_string: str
) -> None:
    app = await build(storage)
    settings = operator(storage, connection_string)
    async with serve(app) as base, user_client(base, "alice") as alice, \
            user_client(base, "bob"):
        assert "is a site admin" in await act(settings, "grant", "alice")
        with pytest.raises(Conflict, match="a site admin already"):
            await act(settings, "grant", "alice")
        with pytest.raises(NotFound, match="no user named 'nobody'"):
            await act(settings, "ban", "nobody")
        with pytest.raises(Conflict, match="not banned"):
            await act(settings, "unban", "bob")
        with pytest.raises(Conflict, match="not a site admin"):
            await act(settings, "revoke", "bob")
        # a site admin bans from the site on the web, and cannot ban another admin
        ban = await form_post(alice, "/mod/ban", {"scope": "site", "username": "bob"})
        assert ban.status_code in (302, 303), ban.text
        assert "banned from the site already" in str(
            await _refusal(act(settings, "ban", "bob")))
        assert "may use the site again" in await act(settings, "unban", "bob")
        await act(settings, "grant", "bob")
        refused = await form_post(alice, "/mod/ban", {"scope": "site", "username": "bob"})
        assert refused.status_code == 403 and "a site admin" in refused.json()["detail"]
        assert "no longer a site admin" in await act(settings, "revoke", "alice")
        gone = await form_post(alice, "/mod/ban", {"scope": "site", "username": "bob"})
        assert gone.status_code == 403
    actions = [(e.action, e.target_user) for e in
               (await storage.modlog.of_room(SITE_ROOM)).items]
    assert actions == [("revoke", "alice"), ("grant", "bob"), ("unban", "bob"),
                       ("ban", "bob"), ("grant", "alice")]


async def _refusal(work: Awaitable[object]) -> BaseException:
    try:
        await work
    except Exception as exc:
        return exc
    raise AssertionError("not refused")


def test_the_admin_command_says_why_it_cannot_and_exits_1(
    storage: Storage, connection_string: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYHOUSE_")}
    env.update(PLAYHOUSE_STORAGE=connection_string,
               PLAYHOUSE_STORAGE_NAMESPACE=storage.namespace)
    result = subprocess.run(
        [sys.executable, "-m", "playhouse", "--config", "/dev/null", "admin", "ban", "nobody"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "playhouse: no user named 'nobody'" in result.stderr
    usage = subprocess.run(
        [sys.executable, "-m", "playhouse", "--config", "/dev/null", "admin", "promote", "x"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert usage.returncode == 2 and "invalid choice" in usage.stderr


async def test_the_scheduler_keeps_out_of_closed_threads_and_rooms_without_bot_threads(
    storage: Storage, tmp_path: Path
) -> None:
    cast = small_cast(tmp_path / "personas")
    now = time.time()
    await storage.rooms.ensure([Room(name="Technology", description="", public=True,
                                     default_bot=None, bots=(), created_by="test",
                                     created_at=now, last_activity=now, bots_post=False)])

    async def thread(title: str, **state: object) -> Thread:
        return await storage.threads.create(Thread(
            thread_id=ids.new_id(), room="Technology", title=title, body="", url=None,
            author="ann", is_bot=False, persona=None, created_at=now, last_activity=now,
            **state))

    open_one = await thread("open question?")
    for state in ({"locked": True}, {"gone": "removed"}, {"held": True}):
        await thread(f"closed {state}?", **state)
    removed = await storage.comments.add(Comment(
        comment_id=ids.new_id(), thread_id=open_one.thread_id, room="Technology",
        parent_id=None, author="bea", is_bot=False, persona=None, text="removed words?",
        created_at=now, gone="removed"))
    scheduler = Scheduler(storage, cast, fast(time_scale=1.0, max_replies_per_sweep=50))
    report = await scheduler.run_round()
    assert report.skipped == "" and report.posts == []  # the owner said no bot threads
    assert {r.thread_id for r in report.replies} == {open_one.thread_id}
    assert {r.parent_id for r in report.replies} == {None}  # the post, not the removed one
    assert removed.comment_id not in {r.parent_id for r in report.replies}
    assert len(report.replies) == 2

    def allow(room: Room) -> Room:
        return msgspec.structs.replace(room, bots_post=True)

    await storage.rooms.modify("Technology", allow)
    posting = Scheduler(storage, cast, fast(sweep_interval_s=60))
    assert len((await posting.run_round()).posts) == 2
