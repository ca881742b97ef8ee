"""Bad inputs around the scheduler: a broken persona model, clock jumps, a room deleted
while a reply is pending, storage gone for 30 s. Real Azurite, real worker where it counts.

The worker-level half of "a model fails to load" (a visible failure result, the worker
goes on) is in ``test_worker.py::test_bad_inputs_end_in_a_result_or_poison``; here the
same broken persona lives among good ones under the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from playhouse import applying, asking, ids
from playhouse.constants import (
    PK_ROOMS,
    QUEUE_BACKGROUND,
    QUEUE_RESULTS,
    TABLE_COMMENTS,
    TABLE_ROOMS,
    TABLE_THREADS,
)
from playhouse.emulator import Azurite
from playhouse.generation.engines import make_engine
from playhouse.messages import GenerationResult, encode
from playhouse.personas import load_cast_strict
from playhouse.scheduling.policy import HOUR_S
from playhouse.scheduling.scheduler import Scheduler
from playhouse.storage import Storage
from playhouse.storage.accounts import room_key
from playhouse.storage.models import Comment, Thread
from playhouse.storage.threads import THREAD_INDEX_PK

from .scripted import Answering, ScriptedEngine
from .test_scheduler import fast, small_cast, wait_for
from .test_scheduler_sim import FakeClock, fake_time, read_world, seed_rooms

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def write_persona(folder: Path, name: str, model: str, *, extra: str = "") -> None:
    (folder / f"{name.lower()}.toml").write_text(
        f'name = "{name}"\ndisplay_name = "{name}"\nkind = "text"\nmodel = "{model}"\n'
        f'rooms = ["Technology"]\n\n[activity]\nposts_per_day = 200\nper_hour_cap = 6\n'
        f"per_room_hour_cap = 6\nper_thread_cap = 2\nmax_age_hours = 6\n{extra}\n"
        "\n[activity.weights]\nbase = 10.0\n\n[generation]\nmax_new_tokens = 24\n"
        '\n[keywords]\npositive = ["code", "chips"]\n',
        encoding="utf-8",
    )


def duplicates(comments: Iterable[Comment]) -> list[tuple[str, str]]:
    """(answered item, persona) pairs a bot answered more than once."""
    seen = Counter((c.parent_id or c.thread_id, c.persona) for c in comments
                   if c.is_bot and c.persona)
    return [pair for pair, n in seen.items() if n > 1]


def self_replies(comments: dict[str, Comment], threads: dict[str, Thread]) -> list[str]:
    out = []
    for c in comments.values():
        if not c.is_bot:
            continue
        parent: Any = comments.get(c.parent_id) if c.parent_id else threads[c.thread_id]
        if parent is not None and parent.is_bot and parent.persona == c.persona:
            out.append(c.comment_id)
    return out


# --- a persona whose model fails to load --------------------------------------------


@pytest.mark.slow
async def test_a_broken_persona_fails_visibly_and_the_others_go_on(
    storage: Storage, models_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "personas"
    folder.mkdir()
    (folder / "rooms.toml").write_text('[[room]]\nname = "Technology"\n', encoding="utf-8")
    write_persona(folder, "Alpha", str(models_dir / "demo" / "CoopBot"))
    write_persona(folder, "Beta", str(models_dir / "demo" / "Spez"))
    write_persona(folder, "Ghost", str(tmp_path / "no-such-model"))
    cast = load_cast_strict(folder)
    await seed_rooms(storage, cast.rooms, time.time())
    now = time.time()
    await storage.threads.create(Thread(
        thread_id=ids.new_id(), room="Technology", title="what do the bots think?", body="",
        url=None, author="alice", is_bot=False, persona=None, created_at=now,
        last_activity=now))
    scheduler = Scheduler(storage, cast, fast(time_scale=50.0, max_replies_per_sweep=8))
    engine = make_engine("text", models_dir, device="cpu", max_models=3, max_bytes=1 << 30)
    results: list[GenerationResult] = []
    async with Answering(storage, cast, engine).running() as worker:
        for _ in range(6):
            report = await scheduler.run_round()
            assert report.skipped == ""
            results += await worker.drain()  # everything queued, answered and applied

    by_persona = {name: [r for r in results if r.persona == name]
                  for name in ("Alpha", "Beta", "Ghost")}
    assert by_persona["Ghost"], "the broken persona was never asked"
    assert all(not r.ok and "model unavailable" in r.error for r in by_persona["Ghost"])
    assert any(r.ok for r in by_persona["Alpha"] + by_persona["Beta"])  # the others go on
    world = await read_world(storage, ["Technology"])
    threads = {t.thread_id: t for t in world.threads}
    assert {t.persona for t in world.threads if t.is_bot} <= {"Alpha", "Beta"}  # none of Ghost
    ghost = [c for c in world.comments if c.persona == "Ghost"]
    assert ghost and all(c.status == "failed" and "Ghost could not answer" in c.text
                         for c in ghost)  # visible, not a forever-thinking placeholder
    assert any(c.status == "ok" and c.is_bot for c in world.comments)
    assert not duplicates(world.comments)
    assert not self_replies({c.comment_id: c for c in world.comments}, threads)
    for r in by_persona["Ghost"]:
        assert (await storage.jobs.get(r.request_id)).state == "failed"
    # Its failures count against its caps: a broken persona is not asked without end.
    assert len([r for r in by_persona["Ghost"] if r.kind == "reply"]) <= (
        cast.personas["Ghost"].activity.per_hour_cap)


# --- clock jumps --------------------------------------------------------------------


async def test_clock_jumps_keep_the_caps_and_the_guards(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "personas"
    folder.mkdir()
    (folder / "rooms.toml").write_text('[[room]]\nname = "Technology"\n', encoding="utf-8")
    for name in ("Alpha", "Beta", "Gamma"):
        write_persona(folder, name, "m", extra="max_chain = 2\nmax_bot_comments = 12")
    cast = load_cast_strict(folder)
    start = time.time()
    clock = FakeClock(start)
    fake_time(monkeypatch, clock)  # rows carry fake time
    await seed_rooms(storage, cast.rooms, start - 7 * 86400)
    scheduler = Scheduler(storage, cast, fast(sweep_interval_s=60.0, time_scale=1.0,
                                              background_max_depth=1000,
                                              max_replies_per_sweep=40), clock=clock)
    engine = ScriptedEngine(cast, seed=3)
    answering = Answering(storage, cast, engine)
    made: list[tuple[float, str, str]] = []  # (fake time, persona, kind)

    async def run_for(minutes: int) -> None:
        for _ in range(minutes):
            report = await scheduler.run_round()
            assert report.skipped == "", report.skipped
            made.extend((clock.now, r.persona, r.kind) for r in report.posts + report.replies)
            await answering.drain()
            clock.now += 60.0

    async with answering.running():
        await run_for(60)
        before_jump = len(made)
        assert before_jump, "nothing happened before the jumps"
        clock.now -= 3 * HOUR_S  # backwards: everything stored is now "in the future"
        with capture_logs() as logs:
            await run_for(60)
        assert not [e for e in logs if e["log_level"] in ("error", "critical")]
        after_back = len(made)
        clock.now += 3 * 86400.0  # a leap forward: everything stored is days old
        await run_for(90)
    assert len(made) > after_back, "the bots went quiet after the clock leapt forward"

    # Per-hour caps hold in every window of fake time the scheduler lived through, back
    # and forth: each persona's replies ordered by the clock at which they were asked.
    busiest = 0
    for name, persona in cast.personas.items():
        times = sorted(t for t, p, kind in made if p == name and kind == "reply")
        for i, t in enumerate(times):
            in_hour = [u for u in times[i:] if u < t + HOUR_S]
            assert len(in_hour) <= persona.activity.per_hour_cap, (name, t)
            busiest = max(busiest, len(in_hour))
        posts = [t for t, p, kind in made if p == name and kind == "post"]
        assert len(posts) == len(set(posts))  # one post per round at most
    assert busiest == 6  # the caps were reached, so they were what held the bots back
    assert max(engine.generated.values()) == 1
    world = await read_world(storage, ["Technology"])
    assert not duplicates(world.comments)
    assert not self_replies({c.comment_id: c for c in world.comments},
                            {t.thread_id: t for t in world.threads})
    per_thread = Counter((c.thread_id, c.persona) for c in world.comments if c.is_bot)
    assert max(per_thread.values()) <= 2  # per_thread_cap


# --- a room deleted while a reply is pending ----------------------------------------


async def _delete_thread(storage: Storage, thread: Thread) -> None:
    for c in (await storage.comments.list(thread.thread_id, limit=500)).items:
        await storage.tables.delete(TABLE_COMMENTS, thread.thread_id, c.comment_id, "comment")
    await storage.tables.delete(TABLE_THREADS, room_key(thread.room),
                                ids.invert(thread.thread_id), "thread")
    await storage.tables.delete(TABLE_THREADS, THREAD_INDEX_PK, thread.thread_id, "thread index")


async def _delete_room(storage: Storage, room: str) -> None:
    await storage.tables.delete(TABLE_ROOMS, PK_ROOMS, room_key(room), "room")


async def test_a_room_deleted_while_a_reply_is_pending(storage: Storage, tmp_path: Path) -> None:
    cast = small_cast(tmp_path / "personas")
    await seed_rooms(storage, cast.rooms, time.time())
    now = time.time()
    thread = Thread(thread_id=ids.new_id(), room="Technology", title="anyone?", body="",
                    url=None, author="alice", is_bot=False, persona=None, created_at=now,
                    last_activity=now)
    await storage.threads.create(thread)
    reply = asking.reply_request(persona=cast.personas["Alpha"], thread=thread, chain=[],
                                 parent_id=None, queue=QUEUE_BACKGROUND)
    post = asking.post_request(persona=cast.personas["Beta"], room="Technology",
                               queue=QUEUE_BACKGROUND)
    for request in (reply, post):
        await asking.submit(storage, request)
    await _delete_thread(storage, thread)
    await _delete_room(storage, "Technology")

    def answer(request: Any, ok: bool = True) -> GenerationResult:
        return GenerationResult(
            request_id=request.request_id, kind=request.kind, persona=request.persona,
            room=request.room, ok=ok, thread_id=request.thread_id,
            parent_id=request.parent_id, title="A title" if request.kind == "post" else "",
            text="too late", error="" if ok else "boom", model="fake")

    with capture_logs() as logs:
        for request in (reply, post):
            for _ in range(2):  # a redelivered result changes nothing either
                applied = await applying.apply_result(storage, answer(request))
                assert applied.kind == "duplicate" and applied.dropped
    dropped = [e for e in logs if e["event"] == "result.dropped"]
    assert {e["reason"] for e in dropped} == {"thread gone", "room gone"}
    for request in (reply, post):
        job = await storage.jobs.get(request.request_id)
        assert job.state == "failed" and "is gone" in job.error
    assert (await storage.threads.list("Technology")).items == []  # no orphan thread
    with pytest.raises(Exception, match="no thread"):
        await storage.threads.get(asking.thread_id_for(post.request_id))

    # Only the room row gone (the thread kept): the reply lands, the counters skip the room.
    await seed_rooms(storage, ["Other"], now)
    kept = Thread(thread_id=ids.new_id(), room="Other", title="still here", body="",
                  url=None, author="alice", is_bot=False, persona=None, created_at=now,
                  last_activity=now)
    await storage.threads.create(kept)
    late = asking.reply_request(persona=cast.personas["Alpha"], thread=kept, chain=[],
                                parent_id=None, queue=QUEUE_BACKGROUND)
    await asking.submit(storage, late)
    await _delete_room(storage, "Other")
    applied = await applying.apply_result(storage, answer(late))
    assert applied.kind == "comment" and applied.comment is not None
    assert (await storage.jobs.get(late.request_id)).state == "done"
    assert (await applying.apply_result(storage, answer(late))).kind == "duplicate"


async def test_the_results_consumer_drops_a_result_for_a_deleted_room(
    storage: Storage, tmp_path: Path
) -> None:
    from playhouse.web.consumer import ResultsConsumer

    from .web_support import build, ctx_of

    cast = small_cast(tmp_path / "personas")
    app = await build(storage)
    now = time.time()
    thread = Thread(thread_id=ids.new_id(), room="Technology", title="anyone?", body="",
                    url=None, author="alice", is_bot=False, persona=None, created_at=now,
                    last_activity=now)
    await storage.threads.create(thread)
    request = asking.reply_request(persona=cast.personas["Alpha"], thread=thread, chain=[],
                                   parent_id=None, queue=QUEUE_BACKGROUND)
    await asking.submit(storage, request)
    await _delete_thread(storage, thread)
    await _delete_room(storage, "Technology")
    result = GenerationResult(request_id=request.request_id, kind="reply", persona="Alpha",
                              room="Technology", ok=True, thread_id=thread.thread_id,
                              text="too late", model="fake")
    await storage.queues.send(QUEUE_RESULTS, encode(result))
    consumer = ResultsConsumer(ctx_of(app))
    assert await consumer.run_once() == 1
    assert await storage.queues.depth(QUEUE_RESULTS) == 0  # handled once, not looping
    assert (await storage.jobs.get(request.request_id)).state == "failed"


# --- storage unreachable for 30 s ---------------------------------------------------

OUTAGE_S = 30.0


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_storage_gone_for_30_s_pauses_and_resumes(tmp_path: Path) -> None:
    emulator = Azurite(tmp_path / "azurite", root=ROOT)  # this test's own: it is stopped
    emulator.start()
    storage = await Storage.connect(emulator.connection_string, timeout_s=3)
    scheduler: Scheduler | None = None
    stack = contextlib.AsyncExitStack()
    try:
        await storage.ensure()
        folder = tmp_path / "personas"
        folder.mkdir()
        (folder / "rooms.toml").write_text('[[room]]\nname = "Technology"\n', encoding="utf-8")
        for name in ("Alpha", "Beta"):
            write_persona(folder, name, "m")  # keywords: the fake worker's words
        cast = load_cast_strict(folder)
        await seed_rooms(storage, cast.rooms, time.time())
        scheduler = Scheduler.create(storage, cast, fast(max_replies_per_sweep=4))
        engine = ScriptedEngine(cast, seed=11)
        answering = Answering(storage, cast, engine)
        rounds: list[str] = []

        async def person_asks(title: str) -> None:
            now = time.time()
            await storage.threads.create(Thread(
                thread_id=ids.new_id(), room="Technology", title=title, body="", url=None,
                author="alice", is_bot=False, persona=None, created_at=now,
                last_activity=now))

        async def drain_while(seconds: float) -> None:
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds
            while loop.time() < end:
                try:
                    await answering.drain()
                except Exception as exc:  # storage is down: the worker waits too
                    rounds.append(f"worker:{type(exc).__name__}")
                await asyncio.sleep(0.3)

        await stack.enter_async_context(answering.running())
        with capture_logs() as logs:
            await person_asks("before the outage?")
            await scheduler.start()
            await drain_while(6)
            assert scheduler.is_leader
            before = await read_world(storage, ["Technology"])
            assert [c for c in before.comments if c.is_bot], "no bot answered before"

            emulator.stop()
            outage_started = len(logs)
            await drain_while(OUTAGE_S)
            during = logs[outage_started:]
            assert any(e["event"] == "round.failed" or e["event"].startswith("leader.")
                       for e in during)
            emulator.start()  # the same ports and data: storage is back
            restarted = len(logs)
            assert await wait_for(lambda: any(e["event"] == "round.done"
                                              for e in logs[restarted:]), 60)
            await person_asks("after the outage?")
            for _ in range(60):  # bounded: until a bot has answered the new question
                await drain_while(1)
                world = await read_world(storage, ["Technology"])
                late = next(t for t in world.threads if t.title == "after the outage?")
                if any(c.thread_id == late.thread_id and c.is_bot and c.status == "ok"
                       for c in world.comments):
                    break
            await scheduler.stop()
            scheduler = None
            await drain_while(1)
        assert not [e for e in logs if e["event"] == "job.crashed"]
        after = await read_world(storage, ["Technology"])
        late = next(t for t in after.threads if t.title == "after the outage?")
        assert [c for c in after.comments if c.thread_id == late.thread_id and c.is_bot
                and c.status == "ok"], ("the bots did not come back after the outage",
                                        rounds[-5:])
        assert not duplicates(after.comments)
        assert not self_replies({c.comment_id: c for c in after.comments},
                                {t.thread_id: t for t in after.threads})
        assert max(engine.generated.values()) == 1  # no request generated twice
        placeholders = [c for c in after.comments if c.is_bot]
        assert len({c.job_id for c in placeholders}) == len(placeholders)
        for c in placeholders:
            if c.status != "placeholder":
                assert (await storage.jobs.get(c.job_id or "")).state in ("done", "failed")
    finally:
        if scheduler is not None:
            await scheduler.stop()
        await stack.aclose()
        await storage.close()
        emulator.stop()
