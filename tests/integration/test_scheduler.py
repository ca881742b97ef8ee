"""The scheduler on Azurite: leadership, backpressure, housekeeping, and the real worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from playhouse import applying, asking, ids
from playhouse.config import SchedulerSettings, WorkerSettings
from playhouse.constants import (
    CONTAINER_IMAGES,
    QUEUE_BACKGROUND,
    QUEUE_IMAGE,
    QUEUE_INTERACTIVE,
    QUEUE_RESULTS,
    poison_queue,
)
from playhouse.generation.engines import make_engine
from playhouse.generation.worker import Worker
from playhouse.logconfig import read_json_log
from playhouse.messages import decode_request, decode_result
from playhouse.personas import Cast, load_cast_strict
from playhouse.scheduling.housekeeping import Housekeeper
from playhouse.scheduling.leader import Leadership
from playhouse.scheduling.scheduler import RoundReport, Scheduler, running
from playhouse.storage import Storage
from playhouse.storage.models import Thread
from playhouse.storage.ops import WorkerBeat

from .test_scheduler_sim import seed_rooms
from .web_support import build, serve

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
LEASE_S = 15


def small_cast(folder: Path, *, models: dict[str, str] | None = None,
               weights: str = "base = 10.0") -> Cast:
    """Two chatty personas in one room (``models`` maps name → model folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rooms.toml").write_text('[[room]]\nname = "Technology"\n', encoding="utf-8")
    for name in ("Alpha", "Beta"):
        model = (models or {}).get(name, "m")
        (folder / f"{name.lower()}.toml").write_text(
            f'name = "{name}"\ndisplay_name = "{name}"\nkind = "text"\nmodel = "{model}"\n'
            f'rooms = ["Technology"]\n\n[activity]\nposts_per_day = 200\nper_hour_cap = 50\n'
            f"per_room_hour_cap = 50\nper_thread_cap = 2\n\n[activity.weights]\n{weights}\n"
            "\n[generation]\nmax_new_tokens = 24\n",
            encoding="utf-8",
        )
    return load_cast_strict(folder)


def fast(**changes: Any) -> SchedulerSettings:
    base = SchedulerSettings(sweep_interval_s=0.5, housekeeping_interval_s=3600.0,
                             lease_s=LEASE_S, time_scale=100.0, reply_delay_s=0.0, seed=3)
    return msgspec.structs.replace(base, **changes)


async def wait_for(check: Callable[[], bool], within: float, step: float = 0.2) -> bool:
    """Poll ``check`` until it holds or ``within`` seconds pass (a bound, not a measurement)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if check():
            return True
        await asyncio.sleep(step)
    return check()


# --- leadership ---------------------------------------------------------------------


def _spawn(conn: str, namespace: str, personas: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYHOUSE_")}
    env.update({
        "PLAYHOUSE_STORAGE": conn, "PLAYHOUSE_STORAGE_NAMESPACE": namespace,
        "PLAYHOUSE_PERSONAS_DIR": str(personas), "PLAYHOUSE_LOG_FORMAT": "json",
        "PLAYHOUSE_SCHEDULER_LEASE_S": str(LEASE_S),
        "PLAYHOUSE_SCHEDULER_SWEEP_INTERVAL_S": "0.5",
        "PLAYHOUSE_SCHEDULER_TIME_SCALE": "100",
    })
    with log.open("wb") as out:
        return subprocess.Popen(
            [PYTHON, "-m", "playhouse", "--config", "/dev/null", "scheduler"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )


def _has(log: Path, event: str) -> bool:
    return any(e.get("event") == event for e in read_json_log(log))


async def test_two_processes_one_leader_and_takeover(
    storage: Storage, connection_string: str, tmp_path: Path
) -> None:
    cast = small_cast(tmp_path / "personas")
    await seed_rooms(storage, cast.rooms, time.time())
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    first = _spawn(connection_string, storage.namespace, tmp_path / "personas", logs[0])
    second: subprocess.Popen[bytes] | None = None
    try:
        assert await wait_for(lambda: _has(logs[0], "scheduler.leading"), 60)
        second = _spawn(connection_string, storage.namespace, tmp_path / "personas", logs[1])
        assert await wait_for(lambda: _has(logs[1], "scheduler.started"), 60)
        await asyncio.sleep(2)
        assert not _has(logs[1], "scheduler.leading")
        assert not _has(logs[1], "round.done")
        first.send_signal(signal.SIGKILL)  # a crash: the lease is not released
        first.wait(10)
        # The survivor takes over once the lease lapses: one lease period and a step.
        assert await wait_for(lambda: _has(logs[1], "scheduler.leading"),
                              LEASE_S + LEASE_S / 3 + 10)
        assert await wait_for(lambda: _has(logs[1], "round.done"), 10)
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
    a, b = (read_json_log(log) for log in logs)
    a_rounds = [e["timestamp"] for e in a if e.get("event") == "round.done"]
    b_rounds = [e["timestamp"] for e in b if e.get("event") == "round.done"]
    assert a_rounds and b_rounds
    assert max(a_rounds) < min(b_rounds)  # never both at once
    assert any(e.get("event") == "leader.released" for e in b)  # clean exit hands it back
    assert not any(e.get("event") == "leader.released" for e in a)  # killed: it never did
    assert not [e for e in a + b if e.get("level") in ("error", "critical")]


async def test_a_clean_stop_hands_over_at_the_next_step(
    storage: Storage, connection_string: str, tmp_path: Path
) -> None:
    cast = small_cast(tmp_path / "personas")
    other = await Storage.connect(connection_string, namespace=storage.namespace)
    rounds: list[tuple[str, float]] = []

    class Recording(Scheduler):
        name = ""

        async def run_round(self) -> RoundReport:
            report = await super().run_round()
            if report.skipped != "follower":
                rounds.append((self.name, asyncio.get_running_loop().time()))
            return report

    def make(store: Storage, name: str) -> Recording:
        s = Recording(store, cast, fast(),
                      leadership=Leadership(store.blobs, lease_s=LEASE_S, owner=None))
        s.name = name
        return s

    a, b = make(storage, "a"), make(other, "b")
    try:
        await a.start()
        await b.start()
        assert a.is_leader and not b.is_leader
        assert await wait_for(lambda: len(rounds) >= 2, 10)
        await a.stop()  # releases the lease
        stopped_at = asyncio.get_running_loop().time()
        assert b.leadership is not None
        assert await wait_for(lambda: b.is_leader, b.leadership.step_s + 5)
        assert await wait_for(lambda: any(n == "b" for n, _ in rounds), 10)
    finally:
        await a.stop()
        await b.stop()
        await other.close()
    assert {n for n, t in rounds if t < stopped_at} == {"a"}
    assert {n for n, t in rounds if t > stopped_at} == {"b"}


# --- backpressure -------------------------------------------------------------------


async def test_backpressure_skips_rounds(storage: Storage, tmp_path: Path) -> None:
    cast = small_cast(tmp_path / "personas")
    await seed_rooms(storage, cast.rooms, time.time())
    scheduler = Scheduler(storage, cast, fast(background_max_depth=3, sweep_interval_s=60))
    for i in range(4):
        await storage.queues.send(QUEUE_BACKGROUND, b'{"filler": %d}' % i)
    for _ in range(5):
        await storage.queues.send(QUEUE_INTERACTIVE, b"{}")  # people's queue does not count
    with capture_logs() as logs:
        report = await scheduler.run_round()
    assert report.skipped == "backpressure" and not report.posts and not report.replies
    (skipped,) = [e for e in logs if e["event"] == "round.skipped"]
    assert skipped["depth"] == 4 and skipped["threshold"] == 3
    assert await storage.queues.depth(QUEUE_BACKGROUND) == 4

    await storage.queues.clear(QUEUE_BACKGROUND)
    report = await scheduler.run_round()
    assert report.skipped == "" and len(report.posts) == 2  # both personas post at once
    assert all(r.queue == QUEUE_BACKGROUND for r in report.posts)
    assert await storage.queues.depth(QUEUE_BACKGROUND) == 2
    assert await storage.queues.depth(QUEUE_INTERACTIVE) == 5


async def test_a_round_never_overfills_the_queue(storage: Storage, tmp_path: Path) -> None:
    cast = small_cast(tmp_path / "personas")
    await seed_rooms(storage, cast.rooms, time.time())
    now = time.time()
    for i in range(6):  # six people's threads, each worth a reply from both bots
        await storage.threads.create(Thread(
            thread_id=ids.new_id(), room="Technology", title=f"question {i}?", body="",
            url=None, author="alice", is_bot=False, persona=None, created_at=now,
            last_activity=now))
    scheduler = Scheduler(storage, cast, fast(background_max_depth=5, max_replies_per_sweep=50,
                                              time_scale=1.0))
    report = await scheduler.run_round()
    assert len(report.posts) + len(report.replies) <= 5
    assert await storage.queues.depth(QUEUE_BACKGROUND) <= 5
    again = Scheduler(storage, cast, fast(background_max_depth=50, time_scale=1.0))
    second = await again.run_round()  # a restarted scheduler: claims stop a second ask
    first_targets = {(r.persona, r.thread_id) for r in report.replies}
    assert not first_targets & {(r.persona, r.thread_id) for r in second.replies}
    assert len(report.replies) + len(second.replies) == 12


async def test_image_replies_are_scheduled_only_while_an_image_worker_is_alive(
    storage: Storage, tmp_path: Path
) -> None:
    folder = tmp_path / "personas"
    small_cast(folder)
    (folder / "picto.toml").write_text(
        'name = "Picto"\ndisplay_name = "Picto"\nkind = "image"\nmodel = "m"\n'
        'rooms = ["Technology"]\n\n[activity]\nposts_per_day = 0\nper_hour_cap = 50\n'
        "per_room_hour_cap = 50\nper_thread_cap = 2\n\n[activity.weights]\nbase = 10.0\n"
        "\n[image]\nsteps = 2\n", encoding="utf-8")
    cast = load_cast_strict(folder)
    await seed_rooms(storage, cast.rooms, time.time())
    now = time.time()
    for i in range(3):
        await storage.threads.create(Thread(
            thread_id=ids.new_id(), room="Technology", title=f"draw me a fox {i}", body="",
            url=None, author="alice", is_bot=False, persona=None, created_at=now,
            last_activity=now))
    settings = fast(background_max_depth=50, max_replies_per_sweep=50, time_scale=1.0)
    first = await Scheduler(storage, cast, settings).run_round()
    assert first.replies and all(r.persona != "Picto" for r in first.replies)
    assert await storage.queues.depth(QUEUE_IMAGE) == 0
    beat = WorkerBeat(worker_id="img-1", host="h", kind="image", pid=1, started_at=now,
                      seen_at=time.time(), interval_s=5.0)
    await storage.workers.beat(beat)
    second = await Scheduler(storage, cast, settings).run_round()
    pictures = [r for r in second.replies if r.persona == "Picto"]
    assert len(pictures) == 3 and all(r.queue == QUEUE_IMAGE for r in pictures)
    await storage.workers.beat(msgspec.structs.replace(beat, seen_at=now - 3600))
    third = await Scheduler(storage, cast, settings).run_round()  # the worker went silent
    assert all(r.persona != "Picto" for r in third.replies)


async def test_an_image_persona_starts_threads_of_its_own_with_a_picture(
    storage: Storage, tmp_path: Path, persona_dir: Path, models_dir: Path
) -> None:
    toml = (persona_dir / "imagebot.toml").read_text(encoding="utf-8")
    for old, new in (("posts_per_day = 2", "posts_per_day = 200"), ("steps = 25", "steps = 2"),
                     ("width = 512", "width = 64"), ("height = 512", "height = 64")):
        assert old in toml, old
        toml = toml.replace(old, new)
    (persona_dir / "imagebot.toml").write_text(toml, encoding="utf-8")
    cast = load_cast_strict(persona_dir)
    now = time.time()
    await seed_rooms(storage, cast.rooms, now)
    for room in ("Art", "CoopAndPabloPlayHouse"):  # ImageBot's rooms
        await storage.threads.create(Thread(
            thread_id=ids.new_id(), room=room, title="a lighthouse in a storm", body="",
            url=None, author="alice", is_bot=False, persona=None, created_at=now,
            last_activity=now))
    await storage.workers.beat(WorkerBeat(worker_id="img-1", host="h", kind="image", pid=1,
                                          started_at=now, seen_at=now, interval_s=60.0))
    scheduler = Scheduler(storage, cast, fast(background_max_depth=50, time_scale=1000.0))
    posts: list[Any] = []
    for _ in range(20):
        report = await scheduler.run_round()
        posts = [r for r in report.posts if r.persona == "ImageBot"]
        if posts:
            break
    assert len(posts) == 1, "ImageBot never posted"
    (post,) = posts
    assert post.kind == "post" and post.queue == QUEUE_IMAGE and post.thread_id is None
    assert post.image_prompt == "a lighthouse in a storm"
    engine = make_engine("image", models_dir, device="cpu", max_models=1, max_bytes=1 << 30)
    worker = Worker(queues=storage.queues, blobs=storage.blobs, cast=cast, engine=engine,
                    settings=WorkerSettings(), burst=True, seed=5)
    await worker.main()
    # The rounds before the post may also have asked ImageBot for a reply (a draw): the
    # post's result is the one with its request id.
    results = [decode_result(m.content)
               for m in await storage.queues.receive(QUEUE_RESULTS, max_messages=32)]
    (result,) = [r for r in results if r.request_id == post.request_id]
    assert result.ok, result.error
    applied = await applying.apply_result(storage, result)
    assert applied.kind == "thread" and applied.thread is not None
    thread = await storage.threads.get(asking.thread_id_for(post.request_id))
    assert thread.author == "ImageBot" and thread.is_bot and thread.room == post.room
    # alice's title, quoted as hers: never ImageBot's own words (issue 12).
    assert thread.title == "after u/alice: “a lighthouse in a storm”" and thread.body == ""
    assert thread.image_blob == f"{post.room}/{post.request_id}.png"
    data, content_type = await storage.blobs.get(CONTAINER_IMAGES, thread.image_blob)
    assert content_type == "image/png" and data.startswith(b"\x89PNG")


# --- housekeeping -------------------------------------------------------------------


async def test_stuck_jobs_are_requeued_then_failed_visibly(storage: Storage,
                                                           tmp_path: Path) -> None:
    cast = small_cast(tmp_path / "personas")
    await seed_rooms(storage, cast.rooms, time.time())
    now = time.time()
    thread = Thread(thread_id=ids.new_id(), room="Technology", title="hello", body="",
                    url=None, author="alice", is_bot=False, persona=None, created_at=now,
                    last_activity=now)
    await storage.threads.create(thread)
    stuck = asking.reply_request(persona=cast.personas["Alpha"], thread=thread, chain=[],
                                 parent_id=None, queue=QUEUE_BACKGROUND)
    finished = asking.reply_request(persona=cast.personas["Beta"], thread=thread, chain=[],
                                    parent_id=None, queue=QUEUE_BACKGROUND)
    for request in (stuck, finished):
        await asking.submit(storage, request)
    await storage.jobs.transition(finished.request_id, "pending", "done")
    await storage.queues.clear(QUEUE_BACKGROUND)  # the message is lost

    keeper = Housekeeper(storage, pending_deadline_s=600, max_queued=3)
    for attempt in (1, 2):
        report = await keeper.run(time.time() + 1000 * attempt)
        assert report.requeued == [stuck.request_id] and report.failed == []
        (message,) = await storage.queues.receive(QUEUE_BACKGROUND)
        assert decode_request(message.content).request_id == stuck.request_id
        await storage.queues.delete(message)
        assert (await storage.jobs.get(stuck.request_id)).attempts == attempt
    assert (await keeper.run(time.time() + 10)).requeued == []  # not stuck yet

    with capture_logs() as logs:
        report = await keeper.run(time.time() + 5000)
    assert report.failed == [stuck.request_id] and report.requeued == []
    assert any(e["event"] == "job.abandoned" for e in logs)
    (message,) = await storage.queues.receive(QUEUE_RESULTS)
    result = decode_result(message.content)
    assert not result.ok and "no answer after 3 attempts" in result.error
    applied = await applying.apply_result(storage, result)  # what the results consumer does
    assert applied.comment is not None and applied.comment.status == "failed"
    assert "Alpha could not answer" in applied.comment.text
    assert (await storage.jobs.get(stuck.request_id)).state == "failed"
    assert (await storage.jobs.get(finished.request_id)).state == "done"
    assert (await keeper.run(time.time() + 9000)).failed == []


async def test_old_poison_is_summarised(storage: Storage) -> None:
    await storage.queues.send(QUEUE_INTERACTIVE, b"not a request")
    (message,) = await storage.queues.receive(QUEUE_INTERACTIVE)
    await storage.queues.to_poison(message, "malformed generation request: nope")
    keeper = Housekeeper(storage, pending_deadline_s=600, poison_age_s=3600)
    with capture_logs() as logs:
        report = await keeper.run(time.time() + 7200)
    assert report.poison == {poison_queue(QUEUE_INTERACTIVE): 1}
    (line,) = [e for e in logs if e["event"] == "poison.summary"]
    assert line["queue"] == poison_queue(QUEUE_INTERACTIVE) and line["old_in_sample"] == 1
    assert line["reasons"] == {"malformed generation request": 1}


# --- with the real worker -----------------------------------------------------------


@pytest.mark.slow
async def test_the_real_worker_answers_the_scheduler(
    storage: Storage, models_dir: Path, tmp_path: Path
) -> None:
    demo = models_dir / "demo"
    cast = small_cast(tmp_path / "personas",
                      models={"Alpha": str(demo / "CoopBot"), "Beta": str(demo / "Spez")},
                      weights="base = 10.0\nbot = 2.0")
    await seed_rooms(storage, cast.rooms, time.time())
    settings = fast(sweep_interval_s=0.5, max_replies_per_sweep=4)
    scheduler = Scheduler.create(storage, cast, settings)
    engine = make_engine("text", models_dir, device="cpu", max_models=2, max_bytes=1 << 30)
    worker_settings = WorkerSettings(gather_ms=20, visibility_timeout_s=60, poll_min_s=0.01,
                                     poll_max_s=0.05)
    bot_replies: list[Any] = []
    threads: list[Thread] = []
    app = await build(storage, cast=cast)  # its results consumer applies the answers
    consumer = app.state["consumer"]
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(serve(app))
        await stack.enter_async_context(running(scheduler))
        for _ in range(40):  # bounded: a loaded CI machine runs fewer rounds a second
            await asyncio.sleep(1.0)  # let a few rounds run
            worker = Worker(queues=storage.queues, blobs=storage.blobs, cast=cast,
                            engine=engine, settings=worker_settings, burst=True, seed=5)
            await worker.main()
            while await consumer.run_once():
                pass
            threads = (await storage.threads.list("Technology", limit=200)).items
            comments = [c for t in threads
                        for c in (await storage.comments.list(t.thread_id)).items]
            bot_replies = [c for c in comments if c.is_bot and c.status == "ok"]
            if threads and bot_replies:
                break
    assert {t.persona for t in threads} <= {"Alpha", "Beta"} and threads
    assert bot_replies, "no bot answered another bot's thread"
    by_id = {t.thread_id: t for t in threads}
    for c in bot_replies:
        if c.parent_id is None:
            assert by_id[c.thread_id].persona != c.persona  # never itself
