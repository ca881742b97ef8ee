"""The fault and load scenarios of issue 7, each on real processes over loopback and each
ending with the storage audit (:func:`tests.faults.harness.audit`).

1. SIGKILL a text worker mid-batch, again and again, while requests keep coming.
2. SIGKILL the web process while clients post; restart it; the clients resume.
3. Stop Azurite mid-run: posting gets a clear error and the text is kept; then resume.
4. Two web instances sharing Redis channels; kill one; its clients move to the other.
5. A poison request ends as a visible failure in the poison queue; the worker serves on.
6. Load: many users in many rooms with the scheduler running.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from playhouse.constants import AZURITE_KEY, QUEUE_INTERACTIVE, poison_queue
from playhouse.emulator import Azurite, free_port
from playhouse.storage import Storage
from playhouse.storage.models import Room
from tests.awake import awake_personas
from tests.faults.conftest import ROOT, SCALES, Scale, report
from tests.faults.harness import (
    ConnectionLost,
    Proc,
    Sent,
    Stack,
    User,
    audit,
    check_logs,
    eventually,
    register,
    settled,
    work_left,
)
from tests.integration.conftest import add_persona

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BOTS = ("CoopBot", "Spez", "ByteBot")
HOUSEKEEPING = {"scheduler": True, "PLAYHOUSE_SCHEDULER_PENDING_DEADLINE_S": "20",
                "PLAYHOUSE_SCHEDULER_HOUSEKEEPING_INTERVAL_S": "5"}
"""The scheduler's housekeeping re-queues a job whose row was written but whose queue
message was not (the web process died, or storage failed, in between): the designed
recovery, made quick for the tests."""


async def users_in_threads(base: str, n: int, room: str, per_thread: int, *,
                           bases: list[str] | None = None, prefix: str = "u") -> list[User]:
    """``n`` registered users on sockets, ``per_thread`` of them in each new thread."""
    people: list[User] = []
    for i in range(n):
        name = f"{prefix}{i}x{random.randrange(10**6)}"
        cookie = await register(base, name)
        user = User(name, cookie, bases or [base], room)
        await user.connect()
        people.append(user)
    for start in range(0, n, per_thread):
        opener = people[start]
        thread_id = await opener.open_thread(f"thread of {opener.name}")
        for user in people[start + 1 : start + per_thread]:
            await user.enter(thread_id)
    return people


def everything_sent(people: list[User]) -> list[Sent]:
    return [s for u in people for s in (*u.opened, *u.sent)]


def bot_calls(people: list[User]) -> dict[str, str]:
    calls: dict[str, str] = {}
    for user in people:
        for sent in user.sent:
            for bot in (*BOTS, "PoisonBot"):
                if sent.accepted and f"u/{bot}" in sent.text and sent.comment_id:
                    calls[sent.comment_id] = bot
    return calls


async def no_gaps(people: list[User]) -> None:
    """Each user has seen every accepted comment of its thread, live or by resuming: a page
    whose socket died after its last post reconnects, as live.js does, from its last id."""
    for user in people:
        await user.drain(1.0)
        await user.close()
        await user.connect()
        await user.drain(0.5)
    by_thread: dict[str, set[str]] = {}
    for user in people:
        for sent in user.sent:
            if sent.accepted and sent.comment_id and sent.thread_id:
                by_thread.setdefault(sent.thread_id, set()).add(sent.comment_id)
    for user in people:
        missing = by_thread.get(user.thread_id or "", set()) - set(user.seen)
        assert not missing, f"{user.name} never saw {sorted(missing)[:5]}"


def row(scale: Scale, scenario: str, load: str, faults: str, people: list[User],
        counts: dict[str, int], **more: object) -> dict[str, object]:
    sent = [s for u in people for s in u.sent]
    return {"scenario": scenario, "scale": scale.name, "load": load, "faults": faults,
            "sent": len(sent), "accepted": sum(s.accepted for s in sent),
            "stored": counts["user_comments"],
            "bot_requests": counts["jobs"],
            "answered": counts["jobs_done"] + counts["jobs_failed"],
            "answered_ok": counts["jobs_done"], "visible_failures": counts["jobs_failed"],
            "poison": counts["poison"], "lost": 0, "duplicates": 0, **more}


async def close_all(people: list[User]) -> None:
    for user in people:
        await user.close()


async def stop_posting(posting: asyncio.Future[Any], people: list[User]) -> None:
    """End a scenario's posting (cancelled if a fault left it running) and its sockets."""
    if not posting.done():
        posting.cancel()
        with contextlib.suppress(BaseException):
            await posting
    await close_all(people)


# ------------------------------------------------------------------ 1. worker SIGKILL


async def _busy_or_all_answered(worker: Proc, posting: asyncio.Future[Any], storage: Storage,
                                needles: tuple[str, ...]) -> bool:
    """Wait until ``worker`` logs one of ``needles`` (True), or until the posting is over and
    no work is left for it (False): a fast worker may answer the last request before the
    next kill, and then a fresh one has nothing to load a model for."""
    busy = asyncio.ensure_future(worker.wait_for(needles))
    try:
        while not busy.done():
            if posting.done() and not await work_left(storage):
                return False
            await asyncio.wait({busy}, timeout=0.5)
        busy.result()
        return True
    finally:
        busy.cancel()


@pytest.mark.parametrize("scale", SCALES)
async def test_sigkill_text_worker_mid_batch(scale: Scale, stack: Stack, storage: Storage) -> None:
    web = await stack.web()
    people = await users_in_threads(web.base, 4, "Technology", 1)
    per_user = scale.worker_requests // len(people)

    async def post(user: User) -> None:
        for i in range(per_user):
            await user.say(f"u/{BOTS[i % len(BOTS)]} what do you think of editor {i}?")
            await asyncio.sleep(0.1)

    posting = asyncio.gather(*(post(u) for u in people))
    kills = 0
    try:
        for k in range(scale.worker_kills):
            worker = stack.worker()
            # Alternate: kill while the first batch is generating, or once a batch is written
            # and the next is in hand. Late in the run the batch in hand may hold only
            # requests delivered too often already: the worker poisons those without loading
            # a model, and that is a batch in hand too.
            busy = await _busy_or_all_answered(worker, posting, storage, (
                "model.loaded" if k % 2 == 0 else "request.answered", "request.poisoned"))
            if not busy:
                break  # everything was answered before this kill: nothing left mid-batch
            await asyncio.sleep(random.uniform(0.0, 0.5))
            worker.kill()
            kills += 1
        assert kills, "the worker was never killed mid-batch"
        await posting
        stack.worker()  # the survivor serves until everything is answered
        await settled(storage)
    finally:
        await stop_posting(posting, people)
    counts = await audit(storage, everything_sent(people), bot_calls=bot_calls(people),
                         poison_expected=True)
    assert counts.jobs == scale.worker_requests
    assert counts.bot_ok + counts.bot_failed == scale.worker_requests
    check_logs(stack.logs(), secrets=[AZURITE_KEY])
    report(scale, row(scale, "1. SIGKILL text worker mid-batch",
                      f"{scale.worker_requests} bot requests from 4 users",
                      f"{kills} x SIGKILL worker", people, counts.row()))


# --------------------------------------------------------------------- 2. web SIGKILL


@pytest.mark.parametrize("scale", SCALES)
async def test_sigkill_web_while_clients_post(scale: Scale, stack: Stack,
                                              storage: Storage) -> None:
    port = free_port()
    web = await stack.web(port=port, **HOUSEKEEPING)  # type: ignore[arg-type]
    stack.worker()
    people = await users_in_threads(web.base, scale.web_clients, "Programming", 4)
    acked = 0

    async def post(user: User) -> None:
        nonlocal acked
        for i in range(scale.web_posts):
            mention = f" u/{BOTS[i % 3]}" if i % 5 == 4 else ""
            sent = await user.say(f"{user.name} line {i}{mention}")
            acked += sent.accepted
            await asyncio.sleep(random.uniform(0.05, 0.3))

    posting = asyncio.gather(*(post(u) for u in people))
    total = scale.web_clients * scale.web_posts
    kills: list[float] = []
    try:
        for k in range(scale.web_kills):
            target = total * (k + 1) // (scale.web_kills + 1)

            async def reached(target: int = target) -> bool:
                return acked >= target or posting.done()

            await eventually(reached, "posts acknowledged before the kill", every=0.05)
            web.kill()
            kills.append(time.monotonic())
            await asyncio.sleep(1.0)
            web = await stack.web(port=port, **HOUSEKEEPING)  # type: ignore[arg-type]
        await asyncio.wait_for(posting, 300)
        await no_gaps(people)
        await settled(storage)
    finally:
        await stop_posting(posting, people)
    # Every call is answered, those of posts acknowledged just before a kill too: the call
    # is recorded (its job `called`) with the post, and the restarted web makes it.
    calls = bot_calls(people)
    by_id = {s.comment_id: s for u in people for s in u.sent}
    in_window = {cid for cid in calls
                 if by_id[cid].acked_at == 0 or any(0 <= k - by_id[cid].acked_at < 2.0
                                                    for k in kills)}
    counts = await audit(storage, everything_sent(people), bot_calls=calls,
                         poison_expected=True)
    assert sum(s.accepted for u in people for s in u.sent) == total
    assert all(u.reconnects >= 1 for u in people)  # every client rode out a kill
    check_logs(stack.logs(), secrets=[AZURITE_KEY])
    report(scale, row(scale, "2. SIGKILL web while clients post",
                      f"{scale.web_clients} clients x {scale.web_posts} posts",
                      f"{scale.web_kills} x SIGKILL web + restart", people, counts.row(),
                      reconnects=sum(u.reconnects for u in people),
                      bot_calls_in_kill_window=len(in_window)))


# ------------------------------------------------------------------ 3. storage outage


@pytest.fixture
def own_azurite(tmp_path: Path) -> Iterator[Azurite]:
    """An Azurite of this test's own (the session's one must stay up for the others)."""
    emulator = Azurite(tmp_path / "azurite", root=ROOT)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.mark.parametrize("scale", SCALES)
async def test_storage_outage_is_a_clear_error_then_resumes(
    scale: Scale, own_azurite: Azurite, models_dir: Path, tmp_path: Path
) -> None:
    conn = own_azurite.connection_string
    storage = await Storage.connect(conn, namespace="outage")
    await storage.ensure()
    stack = Stack(conn, "outage", models_dir, awake_personas(), tmp_path)
    people: list[User] = []
    refusals: list[str] = []
    try:
        web = await stack.web(**HOUSEKEEPING)  # type: ignore[arg-type]
        worker = stack.worker()
        await worker.wait_for("worker.started")
        people = await users_in_threads(web.base, scale.outage_clients, "Cooking", 2)
        for i, user in enumerate(people):
            await user.say(f"before the outage {i} u/CoopBot")
        own_azurite.stop()
        outage_ends = time.monotonic() + scale.outage_s
        during: list[Sent] = []
        while time.monotonic() < outage_ends:
            for i, user in enumerate(people):
                # One try, as a person pressing "send": the answer must be an error with
                # this client id (live.js shows it and keeps the text in the box).
                sent = Sent(f"{user.name}-out{len(during)}", user.room,
                            f"during the outage {len(during)} from {i}", user.thread_id)
                try:
                    await user._post(sent)
                except ConnectionLost as exc:  # the server said it could not store it
                    refusals.append(str(exc))
                during.append(sent)
                assert not sent.accepted, "a post was acknowledged while storage was down"
            await asyncio.sleep(0.5)
        assert len(refusals) == len(during), "a post during the outage got no clear answer"
        assert all("storage is unavailable" in r for r in refusals), refusals[:3]
        own_azurite.start()
        # A worker rides out an outage (it backs off and polls again); a supervisor would
        # restart one that exited, but none should have.
        assert worker.alive(), worker.text()[-2000:]
        # The person sends the kept text again once the page says it is back.
        for user in people:
            for sent in during:
                if sent.client_id.startswith(user.name + "-out"):
                    user.sent.append(sent)  # refused, counted as sent and not accepted
                    await user.say(sent.text + " (again)")
            await user.say(f"after the outage {user.name} u/Spez")
        await no_gaps(people)
        await settled(storage)
        counts = await audit(storage, everything_sent(people), bot_calls=bot_calls(people),
                             poison_expected=True)
        check_logs(stack.logs(), secrets=[AZURITE_KEY])
    finally:
        await close_all(people)
        stack.stop_all()
        await storage.close()
    report(scale, row(scale, "3. storage (Azurite) down mid-run",
                      f"{scale.outage_clients} clients posting through the outage",
                      f"Azurite stopped {scale.outage_s:g} s", people, counts.row(),
                      refused_during_outage=len(refusals)))


# ------------------------------------------------------------- 4. two webs with Redis


@pytest.mark.parametrize("scale", SCALES)
async def test_two_webs_on_redis_lose_one(scale: Scale, stack: Stack, storage: Storage,
                                          redis_url: str) -> None:
    one = await stack.web(PLAYHOUSE_REDIS_URL=redis_url)
    two = await stack.web(PLAYHOUSE_REDIS_URL=redis_url)
    stack.worker()
    people: list[User] = []
    n = scale.redis_clients
    try:
        for i in range(n):  # alternate instances; everyone in one thread
            bases = [one.base, two.base] if i % 2 == 0 else [two.base, one.base]
            name = f"r{i}x{random.randrange(10**6)}"
            user = User(name, await register(bases[0], name), bases, "Music")
            await user.connect()
            people.append(user)
        thread_id = await people[0].open_thread("two instances")
        for user in people[1:]:
            await user.enter(thread_id)
        for i, user in enumerate(people):
            await user.say(f"first round {i}" + (" u/ByteBot" if i == 0 else ""))
        await no_gaps(people)
        one.kill()
        moved = [u for u in people if u.base == one.base]
        for i, user in enumerate(people):
            await user.say(f"second round {i}")
        await no_gaps(people)
        assert moved and all(u.base == two.base and u.reconnects == 1 for u in moved)
        assert len({u.instances[-1] for u in people}) == 1
        await settled(storage)
    finally:
        await close_all(people)
    counts = await audit(storage, everything_sent(people), bot_calls=bot_calls(people),
                         poison_expected=True)
    check_logs(stack.logs(), secrets=[AZURITE_KEY])
    report(scale, row(scale, "4. two webs on Redis, one killed",
                      f"{n} clients on 2 instances", "SIGKILL one instance", people,
                      counts.row(), moved=len(moved)))


# ------------------------------------------------------------------ 5. poison request


@pytest.mark.parametrize("scale", SCALES)
async def test_poison_request_ends_visible_and_worker_serves_on(
    scale: Scale, stack: Stack, storage: Storage, models_dir: Path, persona_dir: Path
) -> None:
    add_persona(persona_dir, "PoisonBot", model=str(models_dir / "demo" / "CoopBot"),
                extra="\n[generation]\nmax_new_tokens = 1\nmax_attempts = 2\n")
    stack.personas_dir = persona_dir
    web = await stack.web()
    worker = stack.worker()
    (user,) = await users_in_threads(web.base, 1, "Technology", 1)
    try:
        for i in range(scale.poison_requests):
            await user.say(f"u/PoisonBot poison {i}")
            for j in range(scale.good_requests // scale.poison_requests):
                await user.say(f"u/{BOTS[j % 3]} good {i}.{j}")
        await settled(storage)
        assert worker.alive(), "the worker died on the poison request"
    finally:
        await user.close()
    counts = await audit(storage, user.sent, bot_calls=bot_calls([user]), poison_expected=True)
    comments = (await storage.comments.list(user.thread_id or "", limit=500)).items
    poisoned = [c for c in comments if c.persona == "PoisonBot"]
    assert len(poisoned) == scale.poison_requests
    assert all(c.status == "failed" and "could not answer" in c.text for c in poisoned)
    assert await storage.queues.depth(poison_queue(QUEUE_INTERACTIVE)) >= scale.poison_requests
    good = [c for c in comments if c.persona in BOTS]
    assert len(good) == scale.good_requests // scale.poison_requests * scale.poison_requests
    assert any(c.status == "ok" for c in good), "the worker stopped serving the others"
    check_logs(stack.logs(), secrets=[AZURITE_KEY])
    report(scale, row(scale, "5. poison request (always invalid)",
                      f"{scale.poison_requests} poison + {len(good)} good requests",
                      "model output always invalid", [user], counts.row()))


# ------------------------------------------------------------------------- 6. load


@pytest.mark.parametrize("scale", SCALES)
async def test_load_many_users_many_rooms_with_the_scheduler(
    scale: Scale, stack: Stack, storage: Storage
) -> None:
    now = time.time()
    web = await stack.web(scheduler=True, PLAYHOUSE_SCHEDULER_TIME_SCALE="2000",
                          PLAYHOUSE_SCHEDULER_SWEEP_INTERVAL_S="2",
                          PLAYHOUSE_SCHEDULER_REPLY_DELAY_S="1",
                          PLAYHOUSE_SCHEDULER_SEED="7")
    seeded = [r.name for r in await storage.rooms.all()]
    assert seeded, "playhouse web seeds the rooms"
    extra = [f"LoadRoom{i}" for i in range(max(0, scale.load_rooms - len(seeded) + 1))]
    await storage.rooms.ensure([Room(name=n, description="load", public=True, default_bot=None,
                                     bots=("CoopBot", "Spez"), created_by="load",
                                     created_at=now, last_activity=now) for n in extra])
    stack.worker()
    rooms = ([r for r in sorted(seeded) if r != "CoopAndPabloPlayHouse"] + extra)
    rooms = rooms[: scale.load_rooms]
    people: list[User] = []
    for i in range(scale.load_users):
        name = f"l{i}x{random.randrange(10**6)}"
        people.append(User(name, await register(web.base, name), [web.base],
                           rooms[i % len(rooms)]))
    await asyncio.gather(*(u.connect() for u in people))
    openers: dict[str, str] = {}
    for user in people:
        if user.room not in openers:
            openers[user.room] = await user.open_thread(f"load in {user.room}")
        else:
            await user.enter(openers[user.room])
    statuses: list[int] = []
    stop_at = time.monotonic() + scale.load_s

    async def person(user: User) -> None:
        i = 0
        while time.monotonic() < stop_at:
            await asyncio.sleep(random.expovariate(1 / 4.0))
            mention = " u/CoopBot" if random.random() < 0.05 else ""
            await user.say(f"{user.name} says {i}{mention}")
            i += 1

    async def reader() -> None:
        async with httpx.AsyncClient(base_url=web.base, timeout=30) as client:
            while time.monotonic() < stop_at:
                for path in ("/", f"/r/{rooms[0]}", "/api/rooms",
                             f"/api/rooms/{rooms[-1]}/threads"):
                    statuses.append((await client.get(path)).status_code)
                await asyncio.sleep(0.5)

    started = time.monotonic()
    try:
        await asyncio.gather(reader(), *(person(u) for u in people))
        elapsed = time.monotonic() - started
        await no_gaps(people)
    finally:
        await close_all(people)
    assert statuses and not [s for s in statuses if s >= 500]
    assert not [e for u in people for e in u.server_errors]
    web.stop()  # the scheduler stops; a web app without it applies what is still coming
    await stack.web()
    await settled(storage, within=600)
    counts = await audit(storage, everything_sent(people), bot_calls=bot_calls(people),
                         poison_expected=True)
    check_logs(stack.logs(), secrets=[AZURITE_KEY])
    latencies = sorted(s.latency_s for u in people for s in u.sent if s.accepted)
    accepted = len(latencies)
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    bot_threads = sum(1 for t in await _bot_threads(storage))
    print(f"\nLOAD {scale.name}: {accepted} posts in {elapsed:.0f} s = "
          f"{accepted / elapsed:.1f} posts/s; ack p50 {p50 * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms; {len(statuses)} page/API reads, 0 5xx; "
          f"{counts.jobs} bot jobs ({bot_threads} bot threads)")
    report(scale, row(scale, "6. load with the scheduler",
                      f"{scale.load_users} users in {len(rooms)} rooms for {scale.load_s:g} s",
                      "none (load)", people, counts.row(),
                      posts_per_s=round(accepted / elapsed, 1),
                      ack_p50_ms=round(p50 * 1000), ack_p99_ms=round(p99 * 1000),
                      reads=len(statuses), http_5xx=0))


async def _bot_threads(storage: Storage) -> list[str]:
    out: list[str] = []
    for room in await storage.rooms.all():
        listed = await storage.threads.list(room.name, limit=200)
        out += [t.thread_id for t in listed.items if t.is_bot]
    return out
