"""What one bot call costs the web process in storage round trips, counted on the wire.

The web app under test talks to Azurite through HTTP transports that record every
request (method, path, start, end, and whether a receive found a message). A person
replies 3 (and 10) comments deep, mentioning a bot; the real worker (a scripted engine)
answers; the test counts every request the web process made from the post frame to the
broadcast of the bot's answer and its room counters — the post, the call, the consumer
applying the result, the inbox told of both — leaving out only receives that found
nothing (polling, whose cost the request budget tests bound) — and the longest chain of
requests in series before the ack.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.core.pipeline.transport import AioHttpTransport

from playhouse import ids
from playhouse.config import WorkerSettings
from playhouse.constants import PATH_MAX
from playhouse.generation.worker import Worker
from playhouse.storage import Storage
from playhouse.storage.models import Comment, Thread

from .scripted import ScriptedEngine
from .web_support import build, ctx_of, serve, socket, the_cast, user_client

pytestmark = pytest.mark.integration

CALL_MAX = 19
"""The call itself: 17 requests (the poster's standing, issue 17's ban check, included),
18-19 when the counters are written twice."""
INDEX_MAX = 6
"""What keeps the votes' indexes (docs/architecture.md, Votes and listings): the comment
and the answer each in its author's history (a transaction each), and the thread moved in
its room's listings with its counters (a read and a transaction, twice when the counters
are written twice)."""
INBOX_MAX = 4
"""The inbox (issue 17): the row of the person the post answers (read: she is not told of
it, not being a registered user here), and for the bot's answer the comment it answers,
its author's row and her notification."""
TOTAL_MAX = CALL_MAX + INDEX_MAX + INBOX_MAX
IN_SERIES_BEFORE_ACK_MAX = 4


@dataclass
class Trip:
    method: str
    path: str
    start: float
    end: float
    empty_receive: bool


class CountingTransport(AioHttpTransport):
    """The SDK's own aiohttp transport, recording each request it sends."""

    def __init__(self, trips: list[Trip], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trips = trips

    async def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        start = time.perf_counter()
        response = await super().send(request, **kwargs)
        path = urlsplit(request.url).path
        empty = False
        if request.method == "GET" and path.endswith("/messages"):
            await response.load_body()
            empty = b"<QueueMessage>" not in response.body()
        self.trips.append(Trip(request.method, path, start, time.perf_counter(), empty))
        return response


def longest_series(trips: list[Trip]) -> int:
    """The most requests that ran one after another (each starting after the previous
    ended): the round trips a client waited through, whatever ran beside them."""
    ordered = sorted(trips, key=lambda t: t.end)
    best: list[int] = []
    for i, trip in enumerate(ordered):
        before = [best[j] for j in range(i) if ordered[j].end <= trip.start]
        best.append(1 + max(before, default=0))
    return max(best, default=0)


async def _chain(storage: Storage, depth: int) -> tuple[Thread, Comment]:
    """A thread and a chain of ``depth`` comments, stored as posting stores them (each
    keeping the ids of its nearest ancestors); returns the thread and the deepest one."""
    now = time.time()
    thread = await storage.threads.create(Thread(
        thread_id=ids.new_id(now), room="Technology", title="Which editor?", body="vim?",
        url=None, author="ann", is_bot=False, persona=None, created_at=now,
        last_activity=now, comment_count=depth))
    parent: Comment | None = None
    for level in range(depth):
        comment = Comment(
            comment_id=ids.new_id(), thread_id=thread.thread_id, room=thread.room,
            parent_id=parent.comment_id if parent else None, author=("ann", "bob")[level % 2],
            is_bot=False, persona=None, text=f"reply {level}", created_at=time.time(),
            depth=level, path=(*parent.path, parent.comment_id)[-PATH_MAX:] if parent else (),
        )
        parent = await storage.comments.add(comment)
    assert parent is not None
    return thread, parent


async def _one_call(storage: Storage, connection_string: str, depth: int) -> list[Trip]:
    """The requests the web process makes for one reply, ``depth`` deep, calling CoopBot,
    from its frame to the bot's answer shown and counted."""
    trips: list[Trip] = []
    counted = await Storage.connect(connection_string, namespace=storage.namespace,
                                    transport=lambda: CountingTransport(trips))
    cast = the_cast()
    worker = Worker(queues=storage.queues, blobs=None, cast=cast,
                    engine=ScriptedEngine(cast, seed=1),
                    settings=WorkerSettings(poll_min_s=0.01, poll_max_s=0.02, gather_ms=0))
    try:
        thread, parent = await _chain(storage, depth)
        # Chores that poll on their own (call recovery, the placeholders' watch, whose
        # cost per look is bounded below) stay out of the window.
        app = await build(counted, consume=True, bot_call_grace_s=3600,
                          activity_window_s=3.0, waiting_grace_s=3600)
        working = asyncio.create_task(worker.main())
        async with serve(app) as base, user_client(base, f"cleo{depth}") as cleo, \
                socket(base, cleo) as live:
            await live.subscribe("Technology", thread_id=thread.thread_id)
            room_comments = (await storage.rooms.get("Technology")).comment_count
            # The score feed indexes what was stored before the indexes, once, when the app
            # starts: under load that ran into the window (5 more transactions).
            await ctx_of(app).scores.drain()
            del trips[:]
            started = time.perf_counter()
            await live.send({"type": "post", "room": "Technology", "client_id": "q",
                             "thread_id": thread.thread_id, "parent_id": parent.comment_id,
                             "text": "what do you say, u/CoopBot?"})
            ack = await live.reply_to("q")
            acked = time.perf_counter()
            assert ack.comment_id, ack
            answer = await live.expect("comment_replaced", within=30)
            assert answer.comment.author == "CoopBot" and answer.comment.status == "ok"
            assert answer.comment.parent_id == ack.comment_id
            assert answer.comment.depth == depth + 1
            counts = await live.expect("thread", lambda e: e.thread.comment_count == depth + 2,
                                       within=10)
            assert counts.thread.id == thread.thread_id
            deadline = time.monotonic() + 10  # and the room's (written beside the thread's)
            while (await storage.rooms.get("Technology")).comment_count < room_comments + 2:
                assert time.monotonic() < deadline, "the room's counters were not written"
                await asyncio.sleep(0.05)
            window = [t for t in trips if t.start >= started]
            before_ack = [t for t in window if t.end <= acked]
        return _report(window, before_ack)
    finally:
        worker.stop()
        await asyncio.wait_for(working, 30)
        await counted.close()


def _report(window: list[Trip], before_ack: list[Trip]) -> list[Trip]:
    work = [t for t in window if not t.empty_receive]
    series = longest_series([t for t in before_ack if not t.empty_receive])
    lines = "\n".join(f"  {t.method:6} {t.path}" for t in work)
    print(f"{len(work)} round trips ({series} in series before the ack):\n{lines}")
    assert series <= IN_SERIES_BEFORE_ACK_MAX, lines
    return work


async def test_one_bot_call_costs_few_round_trips_the_same_at_any_depth(
    storage: Storage, connection_string: str,
) -> None:
    shallow = await _one_call(storage, connection_string, depth=3)
    deep = await _one_call(storage, connection_string, depth=10)
    assert len(shallow) <= TOTAL_MAX, [f"{t.method} {t.path}" for t in shallow]
    assert len(deep) <= TOTAL_MAX, [f"{t.method} {t.path}" for t in deep]
    # The ancestors are one query whatever their number: no request per level.
    assert kinds(shallow, storage.namespace) == kinds(deep, storage.namespace)


def kinds(trips: list[Trip], namespace: str) -> list[str]:
    """Each request as method and resource (table, or queue and messages), sorted."""
    out = []
    for trip in trips:
        parts = trip.path.split("/")
        resource = parts[2].split("(")[0].removeprefix(namespace).lstrip("-")
        out.append(f"{trip.method} {resource}{' messages' if 'messages' in parts else ''}")
    return sorted(out)


LOOK_MAX = 4
"""Requests one look of the placeholders' watch makes for placeholders whose jobs share a
partition (the jobs, their progress rows, the heartbeats, the queue's depth)."""


async def test_the_placeholders_watch_costs_a_few_requests_a_look_whatever_their_number(
    storage: Storage, connection_string: str,
) -> None:
    trips: list[Trip] = []
    counted = await Storage.connect(connection_string, namespace=storage.namespace,
                                    transport=lambda: CountingTransport(trips))
    try:
        thread, parent = await _chain(storage, 1)
        app = await build(counted, consume=False, bot_call_grace_s=3600,
                          waiting_grace_s=0.0, waiting_interval_s=3600)
        async with serve(app) as base, user_client(base, "watcher") as who, \
                socket(base, who) as live:
            await live.subscribe("Technology", thread_id=thread.thread_id)
            for n in range(6):
                await live.post("Technology", client_id=f"w{n}", thread_id=thread.thread_id,
                                parent_id=parent.comment_id, text=f"u/CoopBot number {n}")
            for _ in range(6):
                await live.expect("thinking")
            waiting = app.state["playhouse"].waiting
            watched = list(waiting.watched.values())
            assert len(watched) == 6
            partitions = {w.request_id[:9] for w in watched}
            del trips[:]
            assert await waiting.look() == 6  # each says where it stands
            assert len(trips) <= LOOK_MAX + 2 * (len(partitions) - 1), [
                f"{t.method} {t.path}" for t in trips]
            del trips[:]
            assert await waiting.look() == 0  # nothing changed: nothing sent
            assert len(trips) <= LOOK_MAX + 2 * (len(partitions) - 1)
    finally:
        await counted.close()
