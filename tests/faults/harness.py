"""Real processes for the fault scenarios: ``playhouse web`` and ``playhouse worker`` as
children in their own process groups, simulated users over the real websocket, and the
storage audit every scenario ends with.

Every child writes its output to a log file under the test's folder (never to an unread
pipe); the scenarios grep those logs (secrets, passwords, crashes) after the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from playhouse.asking import answer_id, decode_job_request, thread_id_for
from playhouse.constants import (
    QUEUES,
    TABLE_COMMENTS,
    TABLE_JOBS,
    TABLE_THREADS,
    poison_queue,
)
from playhouse.emulator import free_port
from playhouse.events import CommentEvent, CommentReplaced
from playhouse.storage import Storage
from playhouse.storage.models import Comment, Job, Thread
from playhouse.storage.tables import from_entity
from playhouse.storage.threads import THREAD_INDEX_PK
from playhouse.web.protocol import Ack, Error, History, ServerEvent, decode_server
from tests.integration.web_support import PASSWORD, ROOT, csrf_from

SECRET_KEY = "faults-secret-" + "k" * 40
"""One session secret for every web instance of a scenario: cookies survive a restart and
are valid on the other instance, as behind a load balancer."""


@dataclass
class Proc:
    """A ``playhouse`` child in its own process group, its output in ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    base: str = ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM the group, SIGKILL it after ``grace``; the exit code."""
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self.signal(signal.SIGKILL)  # anything the leader left behind in its group
        return self.popen.returncode

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def count(self, needle: str) -> int:
        return self.text().count(needle)

    async def wait_for(self, needle: str | tuple[str, ...], *, times: int = 1,
                       within: float = 120.0) -> None:
        """Until the log holds ``needle`` (any of them, counted together) ``times`` times."""
        needles = (needle,) if isinstance(needle, str) else needle
        deadline = time.monotonic() + within
        while sum(self.count(n) for n in needles) < times:
            if not self.alive():
                raise AssertionError(f"{self.name} exited ({self.popen.returncode}) before "
                                     f"logging {needle!r}:\n{self.text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never logged {needle!r} x{times}:\n"
                                     f"{self.text()[-3000:]}")
            await asyncio.sleep(0.1)


@dataclass
class Stack:
    """The processes of one scenario on one storage namespace."""

    connection_string: str
    namespace: str
    models_dir: Path
    personas_dir: Path
    folder: Path
    procs: list[Proc] = field(default_factory=list)
    _n: itertools.count[int] = field(default_factory=itertools.count)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "PLAYHOUSE_STORAGE": self.connection_string,
            "PLAYHOUSE_STORAGE_NAMESPACE": self.namespace,
            "PLAYHOUSE_STORAGE_TIMEOUT_S": "5",
            "PLAYHOUSE_MODELS_DIR": str(self.models_dir),
            "PLAYHOUSE_PERSONAS_DIR": str(self.personas_dir),
            "PLAYHOUSE_VAR_DIR": str(self.folder / "var"),
            "PLAYHOUSE_LOG_FORMAT": "json",
            "PLAYHOUSE_LOG_LEVEL": "info",
            "PLAYHOUSE_WEB_SECRET_KEY": SECRET_KEY,
            "PLAYHOUSE_WEB_POSTS_PER_MINUTE": "100000",
            "PLAYHOUSE_WEB_LOGINS_PER_MINUTE": "100000",
            "PLAYHOUSE_WEB_WS_SOCKETS_PER_ADDRESS": "100000",  # every client is on loopback
            "PLAYHOUSE_WEB_WS_MESSAGES_PER_S": "1000",  # the limits are tested elsewhere
            "PLAYHOUSE_WEB_PEOPLE_MEET_CAPS": "false",  # every call goes to a worker
            "PLAYHOUSE_WEB_BOT_CALLS_PER_MINUTE": "100000",
            "PLAYHOUSE_WEB_SAMPLE_INTERVAL_S": "0",
            "PLAYHOUSE_WEB_BOT_CALL_GRACE_S": "5",
            "PLAYHOUSE_WORKER_DEVICE": "cpu",
            "PLAYHOUSE_WORKER_VISIBILITY_TIMEOUT_S": "3",
            "PLAYHOUSE_WORKER_POLL_MAX_S": "0.5",
            "PLAYHOUSE_WORKER_HEARTBEAT_S": "5",
        }
        env.pop("PLAYHOUSE_REDIS_URL", None)
        env.update(extra)
        return env

    def spawn(self, name: str, args: Iterable[str], **extra: str) -> Proc:
        log = self.folder / f"{name}-{next(self._n)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "playhouse", "--config", "/dev/null", *args],
                cwd=ROOT, env=self.env(**extra), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    async def web(self, *, port: int | None = None, scheduler: bool = False,
                  **extra: str) -> Proc:
        """``playhouse web`` on ``port`` (a free one by default), once it answers."""
        port = port or free_port()
        args = ["web", "--port", str(port)]
        if not scheduler:
            args.append("--no-scheduler")
        proc = self.spawn("web", args, **extra)
        proc.base = f"http://127.0.0.1:{port}"
        await wait_up(proc)
        return proc

    def worker(self, *, burst: bool = False, **extra: str) -> Proc:
        args = ["worker", "--kind", "text"] + (["--burst"] if burst else [])
        return self.spawn("worker", args, **extra)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(grace=10)

    def logs(self) -> str:
        return "\n".join(p.text() for p in self.procs if p.log.exists())


async def wait_up(proc: Proc, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            if not proc.alive():
                raise AssertionError(f"{proc.name} exited:\n{proc.text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(proc.base + "/healthz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"{proc.name} did not answer:\n{proc.text()[-3000:]}")
            await asyncio.sleep(0.2)


async def eventually(check: Callable[[], Awaitable[bool]], what: str,
                     within: float = 180.0, every: float = 0.5) -> None:
    """Poll ``check`` until it holds (a bounded wait, never a timing assertion)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not so within {within:g} s")
        await asyncio.sleep(every)


# ------------------------------------------------------------------- simulated users


async def register(base: str, name: str) -> str:
    """Register ``name`` through the real form; the session cookie header."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        token = csrf_from((await client.get("/register")).text)
        answer = await client.post("/register", data={
            "username": name, "password": PASSWORD, "password2": PASSWORD,
            "_csrf_token": token})
        assert answer.status_code in (302, 303), answer.text[:500]
        return "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)


@dataclass
class Sent:
    """One post a simulated user made, and what became of it."""

    client_id: str
    room: str
    text: str
    thread_id: str | None
    title: str = ""
    accepted: bool = False
    comment_id: str | None = None
    refused: str = ""
    latency_s: float = 0.0
    acked_at: float = 0.0
    """time.monotonic() of the ack (0 when settled from history after a reconnect)."""


class ConnectionLost(Exception):
    pass


class User:
    """A person on a page: one socket, reconnects to any of ``bases`` with back-off, resumes
    from the last id seen, and settles unacknowledged posts by what the history shows
    (stored → accepted, not stored → sent again), like ``live.js`` with a careful person."""

    def __init__(self, name: str, cookie: str, bases: list[str], room: str) -> None:
        self.name = name
        self.cookie = cookie
        self.bases = bases
        self.room = room
        self.thread_id: str | None = None
        self.ws: ClientConnection | None = None
        self.base = ""
        self.last_id: str | None = None
        self.seen: dict[str, Comment | Any] = {}
        self.sent: list[Sent] = []
        self.reconnects = 0
        self.instances: list[str] = []
        self.server_errors: list[Error] = []
        self._thread_of: dict[str, str] = {}
        self.opened: list[Sent] = []
        self._n = itertools.count()

    async def connect(self, within: float = 90.0) -> None:
        deadline = time.monotonic() + within
        delay = 0.2
        attempt = 0
        while True:
            base = self.bases[attempt % len(self.bases)]
            attempt += 1
            try:
                self.ws = await connect(base.replace("http://", "ws://") + "/ws",
                                        additional_headers={"Cookie": self.cookie},
                                        open_timeout=5, max_size=4 * 1024 * 1024)
                hello = await self._next(10)
                self.instances.append(getattr(hello, "instance", "?"))
                self.base = base
                await self._send({"type": "subscribe", "room": self.room,
                                  "thread_id": self.thread_id, "after": self.last_id,
                                  "pending": []})
                page = await self._until(lambda e: isinstance(e, History | Error), 20)
                while isinstance(page, History) and page.more and self.last_id:
                    # More was missed than one page holds: page on, as live.js does.
                    await self._send({"type": "history", "after": self.last_id})
                    page = await self._until(lambda e: isinstance(e, History | Error), 20)
                return
            except (OSError, WebSocketException, ConnectionLost, TimeoutError):
                await self.close()
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        self.ws = None

    async def _send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        try:
            await self.ws.send(msgspec.json.encode(message).decode())
        except WebSocketException as exc:
            raise ConnectionLost(str(exc)) from exc

    async def _next(self, within: float) -> ServerEvent:
        assert self.ws is not None
        try:
            frame = await asyncio.wait_for(self.ws.recv(), within)
        except WebSocketException as exc:
            raise ConnectionLost(str(exc)) from exc
        event = decode_server(frame)
        self._note(event)
        return event

    def _note(self, event: ServerEvent) -> None:
        comments: list[Any] = []
        if isinstance(event, History):
            comments = list(event.comments)
        elif isinstance(event, CommentEvent | CommentReplaced):
            comments = [event.comment]
        for comment in comments:
            self.seen[comment.id] = comment
            if self.last_id is None or comment.id > self.last_id:
                self.last_id = comment.id
        if isinstance(event, Error) and event.code == "internal":
            self.server_errors.append(event)

    async def _until(self, match: Callable[[ServerEvent], bool], within: float) -> ServerEvent:
        deadline = time.monotonic() + within
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer")
            event = await self._next(remaining)
            if match(event):
                return event

    async def open_thread(self, title: str) -> str:
        """Start a thread (its own post counted as sent) and move the socket into it."""
        sent = Sent(f"{self.name}-t", self.room, "", None, title=title)
        self.opened.append(sent)
        await self._post(sent)
        assert sent.accepted and sent.comment_id is None, sent
        return await self.enter(self._thread_of[sent.client_id])

    async def enter(self, thread_id: str) -> str:
        self.thread_id = thread_id
        self.last_id = None
        await self._send({"type": "subscribe", "room": self.room, "thread_id": thread_id,
                          "after": None, "pending": []})
        await self._until(lambda e: isinstance(e, History | Error), 20)
        return thread_id

    async def say(self, text: str, *, within: float = 120.0) -> Sent:
        """Post ``text`` in the thread, riding out lost connections until it is settled."""
        assert self.thread_id is not None
        sent = Sent(f"{self.name}-{next(self._n)}", self.room, text, self.thread_id)
        self.sent.append(sent)
        deadline = time.monotonic() + within
        while not sent.accepted and not sent.refused:
            try:
                if self.ws is None:
                    await self.connect(max(1.0, deadline - time.monotonic()))
                    self.reconnects += 1
                    if self._stored(sent):
                        break
                await self._post(sent)
            except (ConnectionLost, TimeoutError, OSError, WebSocketException):
                await self.close()
                if time.monotonic() > deadline:
                    raise
        return sent

    def _stored(self, sent: Sent) -> bool:
        for comment in self.seen.values():
            if comment.author == self.name and comment.text == sent.text:
                sent.accepted, sent.comment_id = True, comment.id
                return True
        return False

    async def _post(self, sent: Sent) -> None:
        started = time.monotonic()
        await self._send({"type": "post", "room": sent.room, "client_id": sent.client_id,
                          "thread_id": sent.thread_id, "text": sent.text,
                          "title": sent.title})
        event = await self._until(
            lambda e: isinstance(e, Ack | Error) and e.client_id == sent.client_id, 30)
        sent.latency_s = time.monotonic() - started
        sent.acked_at = time.monotonic()
        if isinstance(event, Ack):
            sent.accepted, sent.comment_id = True, event.comment_id
            self._thread_of[sent.client_id] = event.thread_id
        else:
            assert isinstance(event, Error)
            if event.code in ("internal", "overloaded"):
                raise ConnectionLost(f"server could not store: {event.reason}")
            sent.refused = f"{event.code}: {event.reason}"

    async def drain(self, seconds: float = 0.3) -> None:
        with contextlib.suppress(TimeoutError, ConnectionLost):
            while self.ws is not None:
                await self._next(seconds)


def thread_title(i: int) -> str:
    return f"fault thread {i}"


# ---------------------------------------------------------------------- the audit


@dataclass
class Audit:
    """What storage holds at the end of a scenario (the numbers of the report)."""

    user_comments: int = 0
    bot_comments: int = 0
    bot_ok: int = 0
    bot_failed: int = 0
    jobs: int = 0
    jobs_by_state: Counter[str] = field(default_factory=Counter)
    poison: int = 0
    threads: int = 0

    def row(self) -> dict[str, int]:
        return {"user_comments": self.user_comments, "bot_ok": self.bot_ok,
                "bot_failed": self.bot_failed, "jobs": self.jobs, "poison": self.poison,
                "jobs_done": self.jobs_by_state["done"],
                "jobs_failed": self.jobs_by_state["failed"]}


async def _all(storage: Storage, table: str, cls: type[Any]) -> list[Any]:
    flt = f"PartitionKey ne '{THREAD_INDEX_PK}'" if table == TABLE_THREADS else "RowKey ne ''"
    entities = await storage.tables.query(table, flt, f"all of {table}")
    return [from_entity(e, cls) for e in entities]


async def work_left(storage: Storage) -> dict[str, int]:
    """Messages still on the work and results queues, and jobs still pending."""
    left = {q: await storage.queues.depth(q)
            for q in QUEUES}
    jobs = await _all(storage, TABLE_JOBS, Job)
    left["pending jobs"] = sum(j.state == "pending" for j in jobs)
    return {k: v for k, v in left.items() if v}


async def settled(storage: Storage, within: float = 240.0) -> None:
    """Wait until every queue is empty and no job is pending (workers and the consumer do
    the work; this only watches)."""
    left: dict[str, int] = {}

    async def done() -> bool:
        nonlocal left
        left = await work_left(storage)
        return not left

    try:
        await eventually(done, "all work answered and applied", within=within, every=1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; left: {left}") from None


async def audit(storage: Storage, sent: Iterable[Sent], *, bot_calls: dict[str, str] | None = None,
                poison_expected: bool = False) -> Audit:
    """Check storage after a scenario and return its counts.

    * every accepted user post is stored exactly once (by its id, and by author + text);
    * nothing a user did not send is stored under their name;
    * every job is finished (no ``pending``), each reply job has exactly one bot comment
      (its placeholder's row, answered ``ok`` or ``failed``), each post job its thread;
    * every comment that called a bot (``bot_calls``: comment id → persona) has that
      bot's answer below it;
    * no RowKey appears twice; every queue (work, results, bot calls) is empty.
    """
    sent = list(sent)
    threads: list[Thread] = await _all(storage, TABLE_THREADS, Thread)
    comments: list[Comment] = await _all(storage, TABLE_COMMENTS, Comment)
    jobs: list[Job] = await _all(storage, TABLE_JOBS, Job)
    report = Audit(threads=len(threads), jobs=len(jobs))

    keys = Counter((c.thread_id, c.comment_id) for c in comments)
    assert not [k for k, n in keys.items() if n > 1], "duplicate comment RowKeys"
    assert len({t.thread_id for t in threads}) == len(threads), "duplicate thread ids"
    assert len({j.request_id for j in jobs}) == len(jobs), "duplicate job RowKeys"

    people = [c for c in comments if not c.is_bot]
    bots = [c for c in comments if c.is_bot]
    report.user_comments = len(people)
    report.bot_comments = len(bots)
    by_text = Counter((c.thread_id, c.author, c.text) for c in people)
    by_id = {c.comment_id: c for c in people}
    accepted = [s for s in sent if s.accepted and s.text]
    for s in accepted:
        assert s.comment_id in by_id, f"accepted comment lost: {s}"
        stored = by_id[s.comment_id]
        assert stored.text == s.text and stored.thread_id == s.thread_id, (s, stored)
        assert by_text[(s.thread_id, stored.author, s.text)] == 1, f"stored twice: {s}"
    mine = {(s.thread_id, s.text) for s in accepted}
    extra = [c for c in people if (c.thread_id, c.text) not in mine]
    assert not extra, f"stored but never accepted: {extra[:3]}"
    new_threads = [s for s in sent if s.accepted and not s.text and s.title]
    titles = Counter((t.room.casefold(), t.title) for t in threads if not t.is_bot)
    for s in new_threads:
        assert titles[(s.room.casefold(), s.title)] == 1, f"thread lost or doubled: {s}"

    placeholders = [c for c in bots if c.status == "placeholder"]
    assert not placeholders, f"bot placeholders never answered: {placeholders[:3]}"
    report.bot_ok = sum(c.status == "ok" for c in bots)
    report.bot_failed = sum(c.status == "failed" for c in bots)
    by_job = Counter(c.job_id for c in bots)
    assert not [j for j, n in by_job.items() if n > 1], "a bot request answered twice"
    thread_ids = {t.thread_id for t in threads}
    for job in jobs:
        report.jobs_by_state[job.state] += 1
        assert job.state in ("done", "failed"), f"job left {job.state}: {job.request_id}"
        if job.kind == "post":
            assert job.state == "failed" or thread_id_for(job.request_id) in thread_ids, job
        elif job.thread_id in thread_ids:
            assert by_job[job.request_id] == 1, f"job without its comment: {job}"
            answer = answer_id(job.request_id, decode_job_request(job).comment_id)
            assert (job.thread_id, answer) in keys, job
    for comment_id, persona in (bot_calls or {}).items():
        answers = [c for c in bots if c.parent_id == comment_id and c.persona == persona]
        assert len(answers) == 1, f"{persona} called by {comment_id}: answers {answers}"

    for queue in QUEUES:
        assert await storage.queues.depth(queue) == 0, f"{queue} is not empty"
    for queue in QUEUES:
        report.poison += await storage.queues.depth(poison_queue(queue))
    if not poison_expected:
        assert report.poison == 0, "messages in a poison queue"
    return report


def check_logs(text: str, *, secrets: Iterable[str] = ()) -> None:
    """No crash, no password and no secret in what the processes logged."""
    assert PASSWORD not in text, "a password was logged"
    for secret in secrets:
        assert secret not in text, "a secret was logged"
    assert "request.crashed" not in text, "a request crashed"
