"""The generation worker against Azurite with real small models (no mocks of Azure)."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from playhouse import asking, ids
from playhouse.config import WorkerSettings
from playhouse.constants import (
    CONTAINER_IMAGES,
    QUEUE_BACKGROUND,
    QUEUE_IMAGE,
    QUEUE_INTERACTIVE,
    QUEUE_RESULTS,
    RESULT_QUEUES,
    poison_queue,
)
from playhouse.errors import Interrupted
from playhouse.generation.completion import Outcome
from playhouse.generation.engines import make_engine
from playhouse.generation.worker import EXIT_DEVICE_FAILED, Worker
from playhouse.messages import (
    ChainComment,
    GenerationRequest,
    GenerationResult,
    PostContext,
    decode_request,
    decode_result,
    encode,
)
from playhouse.personas import Cast, Persona, load_cast_strict
from playhouse.storage import Storage
from playhouse.storage.models import Room, Thread
from playhouse.storage.queues import Received, decode_poison

from .conftest import ROOT, SHIPPED_PERSONAS, add_persona
from .web_support import build, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST = WorkerSettings(gather_ms=20, visibility_timeout_s=30, poll_min_s=0.01, poll_max_s=0.05)


def _reply(persona: str, i: int, queue: str = QUEUE_INTERACTIVE, **kw: object) -> GenerationRequest:
    fields: dict[str, object] = {
        "request_id": ids.new_id(), "kind": "reply", "persona": persona, "room": "Technology",
        "queue": queue, "thread_id": ids.new_id(),
        "post": PostContext(author="alice", title=f"What about coffee number {i}?", body="hm"),
        "chain": tuple(ChainComment("bob", f"I like tea {j}") for j in range(i % 4)),
    }
    fields.update(kw)
    return msgspec.convert(fields, GenerationRequest, from_attributes=True)


async def _send(storage: Storage, requests: Sequence[GenerationRequest]) -> None:
    for request in requests:
        await storage.queues.send(request.queue, encode(request))


async def _drain(storage: Storage, *queues: str) -> list[bytes]:
    """Every message of ``queues`` (default: both result queues), deleted as read."""
    out: list[bytes] = []
    for queue in queues or RESULT_QUEUES:
        while batch := await storage.queues.receive(queue, visibility_timeout=60):
            for message in batch:
                out.append(message.content)
                await storage.queues.delete(message)
    return out


def _worker(storage: Storage, cast: Cast, models_dir: Path, kind: str = "text",
            settings: WorkerSettings = FAST) -> Worker:
    engine = make_engine(kind, models_dir, device="cpu", max_models=4, max_bytes=1 << 30)
    return Worker(queues=storage.queues, blobs=storage.blobs, cast=cast, engine=engine,
                  settings=settings, burst=True, seed=11)


async def test_every_request_gets_exactly_one_result(storage: Storage, models_dir: Path) -> None:
    cast = load_cast_strict(SHIPPED_PERSONAS)
    requests = [_reply(("CoopBot", "Spez", "ByteBot")[i % 3], i) for i in range(12)]
    requests += [_reply("CoopBot", i, QUEUE_BACKGROUND) for i in range(3)]
    requests += [
        GenerationRequest(request_id=ids.new_id(), kind="post", persona="SegfaultBot",
                          room="Programming", queue=QUEUE_BACKGROUND)
        for _ in range(2)
    ]
    await _send(storage, requests)
    worker = _worker(storage, cast, models_dir)
    await worker.main()

    results = [decode_result(r) for r in await _drain(storage)]
    assert Counter(r.request_id for r in results) == Counter(r.request_id for r in requests)
    for result in results:
        if result.ok:
            assert result.text.strip() and "<|" not in result.text and "|>" not in result.text
            assert result.model
        else:
            assert result.error
    assert sum(r.ok for r in results) >= len(results) // 2
    posts = [r for r in results if r.kind == "post" and r.ok]
    assert all(p.title.strip() for p in posts)
    # Grouped by persona and generated in batches, not one by one.
    assert max(worker.stats.batch_sizes) >= 4
    assert worker.stats.batches <= 6
    for queue in (QUEUE_INTERACTIVE, QUEUE_BACKGROUND):
        assert await storage.queues.depth(queue) == 0
    failed = sum(not r.ok for r in results)
    assert await storage.queues.depth(poison_queue(QUEUE_INTERACTIVE)) + await (
        storage.queues.depth(poison_queue(QUEUE_BACKGROUND))) == failed


async def test_interactive_is_drained_before_background(storage: Storage, models_dir: Path) -> None:
    cast = load_cast_strict(SHIPPED_PERSONAS)
    await _send(storage, [_reply("CoopBot", i, QUEUE_BACKGROUND) for i in range(30)])
    interactive = [_reply("Spez", i) for i in range(5)]
    await _send(storage, interactive)
    worker = _worker(storage, cast, models_dir,
                     settings=msgspec.structs.replace(FAST, gather_ms=0))
    got = await worker.loop.receive(32)
    assert len(got) == 32
    assert [m.queue for m in got[:5]] == [QUEUE_INTERACTIVE] * 5
    assert {m.queue for m in got[5:]} == {QUEUE_BACKGROUND}


async def test_bad_inputs_end_in_a_result_or_poison(
    storage: Storage, models_dir: Path, persona_dir: Path
) -> None:
    add_persona(persona_dir, "GhostBot", model="/nonexistent/model/folder")
    add_persona(persona_dir, "MuteBot", model=str(models_dir / "demo" / "CoopBot"),
                extra="\n[generation]\nmax_new_tokens = 1\nmax_attempts = 2\n")
    cast = load_cast_strict(persona_dir)
    good = _reply("CoopBot", 1)
    ghost = _reply("GhostBot", 2)
    mute = _reply("MuteBot", 3)
    unknown = _reply("NoSuchBot", 4)
    image_on_text = _reply("ImageBot", 5)
    huge = _reply("Spez", 6, post=PostContext(author="al", title="t " * 6000, body="b " * 6000))
    await _send(storage, [good, ghost, mute, unknown, image_on_text, huge])
    await storage.queues.send(QUEUE_INTERACTIVE, b"{not json at all")
    salvage = b'{"request_id": "%s", "persona": "Spez", "kind": 42}' % ids.new_id().encode()
    await storage.queues.send(QUEUE_INTERACTIVE, salvage)
    await storage.queues.send(QUEUE_INTERACTIVE, b"\xff\xfe binary")

    await _worker(storage, cast, models_dir).main()

    results = {r.request_id: r for r in map(decode_result, await _drain(storage))}
    for request in (good, ghost, mute, unknown, image_on_text, huge):
        assert request.request_id in results, request.persona
    assert "model unavailable" in results[ghost.request_id].error
    assert "invalid output after 2 attempts" in results[mute.request_id].error
    assert "unknown text persona 'NoSuchBot'" in results[unknown.request_id].error
    assert "ImageBot" in results[image_on_text.request_id].error
    huge_result = results[huge.request_id]
    # Its post header alone is past any token budget (the header is never cut): refused.
    assert not huge_result.ok and huge_result.error == "prompt over budget", huge_result.error
    assert len(results) == 7  # the salvageable malformed one is answered too
    poison = [decode_poison(m) for m in await _drain(storage, poison_queue(QUEUE_INTERACTIVE))]
    reasons = " | ".join(p.reason for p in poison)
    assert "malformed generation request" in reasons
    assert any(base64.b64decode(p.content_b64) == b"\xff\xfe binary" for p in poison)
    assert await storage.queues.depth(QUEUE_INTERACTIVE) == 0
    # The worker kept serving: the good request was generated like any other (answered,
    # or refused for what the small model wrote; never for the bad requests around it).
    good_result = results[good.request_id]
    assert good_result.ok or good_result.error.startswith("invalid output"), good_result.error


async def test_too_many_deliveries_go_to_poison(storage: Storage, models_dir: Path) -> None:
    cast = load_cast_strict(SHIPPED_PERSONAS)
    request = _reply("CoopBot", 0)
    await _send(storage, [request])
    for _ in range(FAST.max_deliveries):  # earlier workers took it and died
        message = await _receive_when_visible(storage, QUEUE_INTERACTIVE, visibility_s=1)
    await _wait_visible(storage, QUEUE_INTERACTIVE)
    await _worker(storage, cast, models_dir).main()
    (result,) = map(decode_result, await _drain(storage))
    assert not result.ok and "gave up after 3 deliveries" in result.error
    (entry,) = map(decode_poison, await _drain(storage, poison_queue(QUEUE_INTERACTIVE)))
    assert entry.dequeue_count == FAST.max_deliveries + 1
    assert message.id == entry.message_id


async def _receive_when_visible(storage: Storage, queue: str, *, visibility_s: int,
                                within: float = 15.0) -> Received:
    """The queue's one message, received as soon as it is visible (hidden again for
    ``visibility_s``)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        got = await storage.queues.receive(queue, visibility_timeout=visibility_s)
        if got:
            (message,) = got
            return message
        await asyncio.sleep(0.1)
    raise AssertionError(f"nothing became visible on {queue} within {within} s")


async def _wait_visible(storage: Storage, queue: str, within: float = 15.0) -> None:
    """Until a message of ``queue`` can be seen (peeked, not received)."""
    deadline = time.monotonic() + within
    while not await storage.queues.peek(queue, 1):
        assert time.monotonic() < deadline, f"nothing became visible on {queue}"
        await asyncio.sleep(0.1)


class _CrashingEngine:
    """An engine whose device fails for good (what a CUDA error looks like)."""

    kind: str = "text"
    queues: tuple[str, ...] = (QUEUE_INTERACTIVE,)

    def run(self, persona: Persona, entries: Sequence[tuple[str, GenerationRequest]],
            seed: int | None, abort: threading.Event) -> list[Outcome]:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def close(self) -> None:
        pass


async def test_a_fatal_device_error_stops_the_worker_with_a_failing_exit_code(
    storage: Storage,
) -> None:
    request = _reply("CoopBot", 0)
    await _send(storage, [request])
    worker = Worker(queues=storage.queues, blobs=None, cast=load_cast_strict(SHIPPED_PERSONAS),
                    engine=_CrashingEngine(), settings=FAST)  # not burst: it would serve on
    code = await asyncio.wait_for(worker.async_run(), 30)
    assert code == worker.exit_code == EXIT_DEVICE_FAILED != 0
    assert await _drain(storage) == []  # no answer was made up...
    (again,) = await storage.queues.receive(QUEUE_INTERACTIVE, visibility_timeout=1) or [None]
    assert again is None  # ...and the request is still hidden, for a healthy worker later
    assert await storage.queues.depth(QUEUE_INTERACTIVE) == 1


class _SlowEngine:
    """An engine that takes longer than the visibility timeout (no model, no I/O)."""

    kind: str = "text"
    queues: tuple[str, ...] = (QUEUE_INTERACTIVE,)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    def run(self, persona: Persona, entries: Sequence[tuple[str, GenerationRequest]],
            seed: int | None, abort: threading.Event) -> list[Outcome]:
        self.calls += 1
        time.sleep(self.seconds)
        return [Outcome(key, req, True, text="slow but sure", attempts=1) for key, req in entries]

    def close(self) -> None:
        pass


async def test_visibility_is_renewed_during_a_long_batch(storage: Storage) -> None:
    cast = load_cast_strict(SHIPPED_PERSONAS)
    await _send(storage, [_reply("CoopBot", i) for i in range(3)])
    engine = _SlowEngine(4.5)
    settings = msgspec.structs.replace(FAST, visibility_timeout_s=2)
    worker = Worker(queues=storage.queues, blobs=None, cast=cast, engine=engine,
                    settings=settings, burst=True)
    task = asyncio.create_task(worker.main())
    stolen = []
    for _ in range(8):  # another worker polls while the batch runs
        await asyncio.sleep(0.5)
        stolen += await storage.queues.receive(QUEUE_INTERACTIVE, visibility_timeout=30)
    await task
    assert stolen == []
    assert worker.stats.renewals >= 3
    assert engine.calls == 1
    results = list(map(decode_result, await _drain(storage)))
    assert len(results) == 3 and all(r.ok for r in results)
    assert await storage.queues.depth(QUEUE_INTERACTIVE) == 0


async def test_image_worker_stores_a_png(
    storage: Storage, models_dir: Path, persona_dir: Path
) -> None:
    toml = (persona_dir / "imagebot.toml").read_text(encoding="utf-8")
    toml = toml.replace("steps = 25", "steps = 2").replace("width = 512", "width = 64")
    (persona_dir / "imagebot.toml").write_text(toml.replace("height = 512", "height = 64"))
    cast = load_cast_strict(persona_dir)
    request = GenerationRequest(
        request_id=ids.new_id(), kind="image", persona="ImageBot", room="Art", queue=QUEUE_IMAGE,
        thread_id=ids.new_id(), post=PostContext(author="alice", title="a red cat"),
        image_prompt="a red cat on a blue sofa",
    )
    await _send(storage, [request])
    worker = _worker(storage, cast, models_dir, kind="image")
    await worker.main()
    (result,) = map(decode_result, await _drain(storage))
    assert result.ok, result.error
    assert result.image_blob == f"Art/{request.request_id}.png"
    data, content_type = await storage.blobs.get(CONTAINER_IMAGES, result.image_blob)
    assert content_type == "image/png"
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.size == (64, 64)
    assert await storage.queues.depth(QUEUE_IMAGE) == 0


# --- real processes --------------------------------------------------------------------


def _spawn_worker(connection_string: str, namespace: str, models_dir: Path,
                  *extra: str, visibility_s: int = 3) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PLAYHOUSE_STORAGE": connection_string,
        "PLAYHOUSE_STORAGE_NAMESPACE": namespace,
        "PLAYHOUSE_MODELS_DIR": str(models_dir),
        "PLAYHOUSE_PERSONAS_DIR": str(SHIPPED_PERSONAS),
        "PLAYHOUSE_WORKER_VISIBILITY_TIMEOUT_S": str(visibility_s),
        "PLAYHOUSE_WORKER_DEVICE": "cpu",
        "PLAYHOUSE_LOG_FORMAT": "json",
        "PLAYHOUSE_LOG_LEVEL": "info",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "playhouse", "--config", "/dev/null", "worker", "--kind", "text",
         *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for_line(proc: subprocess.Popen[bytes], needle: str, timeout: float = 120) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode(errors="replace")
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} never logged; output:\n{''.join(seen[-40:])}")


async def _submit_replies(storage: Storage, n: int, personas: Sequence[str]) -> Thread:
    cast = load_cast_strict(SHIPPED_PERSONAS)
    now = time.time()
    await storage.rooms.ensure([Room(name="Technology", description="", public=True,
                                     default_bot=None, bots=(), created_by="seed",
                                     created_at=now, last_activity=now)])
    thread = await storage.threads.create(Thread(
        thread_id=ids.new_id(), room="Technology", title="Which editor do you use?", body="",
        url=None, author="alice", is_bot=False, persona=None, created_at=now, last_activity=now))
    for i in range(n):
        request = asking.reply_request(persona=cast.personas[personas[i % len(personas)]],
                                       thread=thread, chain=[], parent_id=None,
                                       queue=QUEUE_INTERACTIVE, request_id=ids.new_id())
        await asking.submit(storage, request)
    return thread


async def _apply_all(storage: Storage) -> list[GenerationResult]:
    """What the web app's results consumer does with every result there is (redelivered
    ones included), through the consumer itself; then its counters are written."""
    app = await build(storage)
    consumer = app.state["consumer"]
    raw = await _drain(storage)  # read them all (to return), then hand them over again
    for data in raw:
        await storage.queues.send(QUEUE_RESULTS, data)
    async with serve(app):
        while await consumer.run_once():
            pass
        await app.state["playhouse"].counters.flush()
    return [decode_result(data) for data in raw]


async def test_sigkill_mid_batch_loses_nothing_and_duplicates_nothing(
    storage: Storage, connection_string: str, models_dir: Path
) -> None:
    n = 24
    thread = await _submit_replies(storage, n, ["CoopBot", "Spez", "ByteBot"])
    proc = _spawn_worker(connection_string, storage.namespace, models_dir)
    try:
        _wait_for_line(proc, "request.answered")  # the first group is done, the next runs
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    await asyncio.sleep(3.5)  # the dead worker's messages become visible again
    survivor = _spawn_worker(connection_string, storage.namespace, models_dir, "--burst")
    assert survivor.wait(180) == 0
    results = await _apply_all(storage)
    assert len({r.request_id for r in results}) == n  # redelivered results are allowed...
    comments = (await storage.comments.list(thread.thread_id, limit=200)).items
    assert len(comments) == n  # ...but each request shows up exactly once
    assert all(c.status in ("ok", "failed") for c in comments)
    assert len({c.job_id for c in comments}) == n
    assert (await storage.threads.get(thread.thread_id)).comment_count == sum(
        c.status == "ok" for c in comments)
    for comment in comments:
        assert comment.job_id is not None
        assert (await storage.jobs.get(comment.job_id)).state in ("done", "failed")
    assert await storage.queues.depth(QUEUE_INTERACTIVE) == 0


async def test_sigterm_finishes_the_batch_then_exits_0(
    storage: Storage, connection_string: str, models_dir: Path
) -> None:
    requests = [_reply("CoopBot", i) for i in range(40)]
    await _send(storage, requests)
    proc = _spawn_worker(connection_string, storage.namespace, models_dir, visibility_s=60)
    try:
        _wait_for_line(proc, "model.loaded")  # the first batch of 32 is in hand
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.stdout is not None
    tail = proc.stdout.read().decode(errors="replace")
    assert "worker.stopped" in tail
    results = [decode_result(r) for r in await _drain(storage)]
    assert len(results) == 32
    assert len(await storage.queues.receive(QUEUE_INTERACTIVE)) == 8  # left for others


async def test_continuous_batching_path_answers_like_the_padded_one(
    storage: Storage, models_dir: Path
) -> None:
    cast = load_cast_strict(SHIPPED_PERSONAS)
    requests = [_reply("CoopBot", i) for i in range(6)]
    await _send(storage, requests)
    engine = make_engine("text", models_dir, device="cpu", max_models=2, max_bytes=1 << 30,
                         continuous_batching=True)
    worker = Worker(queues=storage.queues, blobs=None, cast=cast, engine=engine,
                    settings=FAST, burst=True, seed=5)
    await worker.main()
    model = engine.models.get(str(models_dir / "demo" / "CoopBot"))  # type: ignore[attr-defined]
    assert model.continuous is not None
    results = [decode_result(r) for r in await _drain(storage)]
    assert sorted(r.request_id for r in results) == sorted(r.request_id for r in requests)
    assert any(r.ok for r in results)
    for result in results:
        assert (result.ok and result.text.strip() and "<|" not in result.text) or (
            result.error.startswith("invalid output")), result.error
    engine.close()


class _RecordingEngine(_SlowEngine):
    """Records which persona each group was for, in order."""

    queues: tuple[str, ...] = (QUEUE_INTERACTIVE, QUEUE_BACKGROUND)

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.order: list[str] = []
        self.started = threading.Event()

    def run(self, persona: Persona, entries: Sequence[tuple[str, GenerationRequest]],
            seed: int | None, abort: threading.Event) -> list[Outcome]:
        self.order.append(persona.name)
        self.started.set()
        return super().run(persona, entries, seed, abort)


async def test_people_overtake_bot_groups_already_in_hand(storage: Storage) -> None:
    cast = load_cast_strict(SHIPPED_PERSONAS)
    bots = ["CoopBot", "Spez", "ByteBot", "GoalBot"]
    await _send(storage, [_reply(b, i, QUEUE_BACKGROUND) for i, b in enumerate(bots)])
    engine = _RecordingEngine(0.6)
    worker = Worker(queues=storage.queues, blobs=None, cast=cast, engine=engine,
                    settings=msgspec.structs.replace(FAST, gather_ms=0), burst=True)
    task = asyncio.create_task(worker.main())
    assert await asyncio.to_thread(engine.started.wait, 30)  # the first bot group runs
    await _send(storage, [_reply("WickBot", 9)])  # a person asks WickBot meanwhile
    await task
    assert engine.order == ["CoopBot", "WickBot", "Spez", "ByteBot", "GoalBot"]
    assert len(await _drain(storage)) == 5


class _SteppingEngine:
    """Generates in steps and gives up between two once its abort is set, as the real
    engines do (no model): each group takes ``steps`` x ``step_s``."""

    kind: str = "text"
    queues: tuple[str, ...] = (QUEUE_INTERACTIVE, QUEUE_BACKGROUND)

    def __init__(self, steps: int, step_s: float) -> None:
        self.steps, self.step_s = steps, step_s
        self.order: list[tuple[str, str]] = []
        """(persona, "done" or "stopped") per run, in order."""
        self.runs = 0
        self.running = threading.Condition()

    def run(self, persona: Persona, entries: Sequence[tuple[str, GenerationRequest]],
            seed: int | None, abort: threading.Event) -> list[Outcome]:
        with self.running:
            self.runs += 1
            self.running.notify_all()
        for _ in range(self.steps):
            if abort.wait(self.step_s):  # a step of work; the abort is seen between two
                self.order.append((persona.name, "stopped"))
                raise Interrupted("stopped between two steps")
        self.order.append((persona.name, "done"))
        return [Outcome(key, req, True, text="step by step", attempts=1) for key, req in entries]

    def wait_runs(self, n: int) -> bool:
        with self.running:
            return self.running.wait_for(lambda: self.runs >= n, timeout=30)

    def close(self) -> None:
        pass


PREEMPTING = msgspec.structs.replace(FAST, gather_ms=0, preempt_poll_s=0.05)


async def test_a_persons_request_stops_the_bots_group_which_runs_again_after(
    storage: Storage,
) -> None:
    cast = load_cast_strict(SHIPPED_PERSONAS)
    bots = [_reply("CoopBot", i, QUEUE_BACKGROUND) for i in range(3)]
    spez = _reply("Spez", 7, QUEUE_BACKGROUND)
    await _send(storage, [*bots, spez])
    engine = _SteppingEngine(steps=100, step_s=0.05)  # 5 s a group unless stopped
    worker = Worker(queues=storage.queues, blobs=None, cast=cast, engine=engine,
                    settings=PREEMPTING, burst=True)
    task = asyncio.create_task(worker.main())
    assert await asyncio.to_thread(engine.wait_runs, 1)  # CoopBot's group is generating
    person = _reply("WickBot", 9)
    await _send(storage, [person])
    await task
    assert engine.order == [("CoopBot", "stopped"), ("WickBot", "done"), ("CoopBot", "done"),
                            ("Spez", "done")]
    results = [decode_result(r) for r in await _drain(storage)]
    # none lost, none twice: each request answered once, the stopped group's included
    assert sorted(r.request_id for r in results) == sorted(
        r.request_id for r in [*bots, spez, person])
    assert all(r.ok for r in results)
    assert worker.loop.stats.handed_back == 0  # kept in hand, not re-queued
    for queue in (QUEUE_INTERACTIVE, QUEUE_BACKGROUND):
        assert await storage.queues.depth(queue) == 0


async def test_a_group_stopped_once_is_not_stopped_again(storage: Storage) -> None:
    cast = load_cast_strict(SHIPPED_PERSONAS)
    await _send(storage, [_reply("CoopBot", i, QUEUE_BACKGROUND) for i in range(2)])
    engine = _SteppingEngine(steps=30, step_s=0.05)
    worker = Worker(queues=storage.queues, blobs=None, cast=cast, engine=engine,
                    settings=PREEMPTING, burst=True)
    task = asyncio.create_task(worker.main())
    assert await asyncio.to_thread(engine.wait_runs, 1)
    await _send(storage, [_reply("WickBot", 1)])
    assert await asyncio.to_thread(engine.wait_runs, 3)  # CoopBot again, after WickBot
    await _send(storage, [_reply("PabloBot", 2)])  # a second person, while it reruns
    await task
    assert engine.order == [("CoopBot", "stopped"), ("WickBot", "done"), ("CoopBot", "done"),
                            ("PabloBot", "done")]
    assert len(await _drain(storage)) == 4


async def test_a_second_ask_of_the_same_request_queues_nothing_more(
    storage: Storage,
) -> None:
    """The job row is the claim: asking again (a retry, another asker) queues nothing; a
    call left ``called`` is the call recovery's to queue (tests/integration/test_web_calls.py)."""
    thread = await _submit_replies(storage, 1, ["CoopBot"])
    (message,) = await storage.queues.receive(QUEUE_INTERACTIVE)
    request = decode_request(message.content)
    assert (await storage.jobs.get(request.request_id)).state == "pending"
    assert await asking.submit(storage, request) is None  # claimed: nothing more
    await storage.queues.delete(message)
    assert await storage.queues.receive(QUEUE_INTERACTIVE) == []
    app = await build(storage)
    await storage.queues.send(QUEUE_RESULTS, encode(GenerationResult.success(request,
                                                                           text="done")))
    async with serve(app):
        assert await app.state["consumer"].run_once() == 1
    assert await asking.submit(storage, request) is None  # finished: nothing more either
    assert await storage.queues.receive(QUEUE_INTERACTIVE) == []
    comments = (await storage.comments.list(thread.thread_id)).items
    assert [c.text for c in comments] == ["done"]
    assert (await storage.jobs.get(request.request_id)).state == "done"
