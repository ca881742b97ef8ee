"""`make run` end to end: the real ``playhouse run`` on a port, bots alive, Ctrl-C, restart.

The whole playhouse is spawned as a user would start it (``playhouse run``: Azurite, the
web app with the scheduler and the results consumer, a text worker and an image worker),
with its folders in a temporary directory and the session's demo models (so nothing is
trained here). The scheduler runs on its documented settings, only faster: a round every
2 s and persona time 300x (``scheduler.sweep_interval_s``, ``scheduler.time_scale``).
Every wait is bounded; no assertion is about how long something took.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket as sockets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from playhouse.emulator import free_port
from playhouse.logconfig import read_json_log

from .web_support import Live, socket

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
CHILDREN = ("web", "worker-text", "worker-image")

START_WITHIN_S = 120.0
LIVE_WITHIN_S = 120.0
BOTS_WITHIN_S = 300.0
STOP_WITHIN_S = 90.0


@dataclass
class Playhouse:
    """One ``playhouse run`` process and its JSON log."""

    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    seen_pids: set[int] = field(default_factory=set)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def events(self) -> list[dict[str, Any]]:
        return read_json_log(self.log)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def child_pids(self) -> set[int]:
        """Every process it started (children, restarts, Azurite), from its log."""
        for e in self.events():
            if e.get("event") in ("process.started", "azurite.starting") and "pid" in e:
                self.seen_pids.add(int(e["pid"]))
        return self.seen_pids


def start(tmp_path: Path, models_dir: Path, port: int, name: str) -> Playhouse:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYHOUSE_")}
    var = tmp_path / "var"
    env.update({
        "PLAYHOUSE_VAR_DIR": str(var),
        "PLAYHOUSE_STORAGE_EMULATOR_DIR": str(var / "azurite"),
        "PLAYHOUSE_MODELS_DIR": str(models_dir),
        "PLAYHOUSE_PERSONAS_DIR": str(ROOT / "personas"),
        "PLAYHOUSE_WEB_PORT": str(port),
        "PLAYHOUSE_LOG_FORMAT": "json",
        "PLAYHOUSE_SCHEDULER_SWEEP_INTERVAL_S": "2",
        "PLAYHOUSE_SCHEDULER_TIME_SCALE": "300",
    })
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PYTHON, "-m", "playhouse", "--config", "/dev/null", "run"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    return Playhouse(proc, log, port)


async def wait_until_up(ph: Playhouse, client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + START_WITHIN_S
    while True:
        assert ph.proc.poll() is None, f"playhouse run exited early:\n{ph.tail()}"
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/api/rooms")).status_code == 200:
                return
        assert time.monotonic() < deadline, f"the site did not answer:\n{ph.tail()}"
        await asyncio.sleep(0.5)


async def stop(ph: Playhouse) -> int:
    """Ctrl-C (SIGINT to ``playhouse run`` alone: its children run in their own sessions,
    as they do under a terminal), then wait for it to exit."""
    ph.child_pids()
    ph.proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_WITHIN_S
    while ph.proc.poll() is None:
        assert time.monotonic() < deadline, f"playhouse run did not stop:\n{ph.tail()}"
        await asyncio.sleep(0.2)
    return ph.proc.returncode


def kill_leftovers(ph: Playhouse) -> None:
    """After a failed test: nothing this test started may outlive it."""
    if ph.proc.poll() is None:
        ph.proc.kill()
        ph.proc.wait(10)
    for pid in ph.child_pids():
        if alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that does not reap it has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def port_free(port: int) -> bool:
    with sockets.socket(sockets.AF_INET, sockets.SOCK_STREAM) as s:
        s.setsockopt(sockets.SOL_SOCKET, sockets.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


async def first_live_event(sockets_: list[Live]) -> Any:
    """The first ``thread``/``comment`` event any of the room sockets receives."""
    kinds = ("thread", "comment", "comment_replaced")
    tasks = [asyncio.ensure_future(s.expect(kinds, within=LIVE_WITHIN_S)) for s in sockets_]
    try:
        for next_done in asyncio.as_completed(tasks):
            with contextlib.suppress(AssertionError):
                return await next_done
        raise AssertionError(f"no live {kinds} event within {LIVE_WITHIN_S} s")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class BotReply:
    thread_id: str
    comment_id: str
    persona: str
    answered: str


def bot_replies(thread: dict[str, Any]) -> Iterator[BotReply]:
    """Bot comments (answered, not failed) whose parent a different bot wrote."""
    post = thread["thread"]

    def walk(nodes: list[dict[str, Any]], parent: dict[str, Any]) -> Iterator[BotReply]:
        for node in nodes:
            c = node["comment"]
            if (c["is_bot"] and c["status"] == "ok" and parent["is_bot"]
                    and parent.get("persona") and parent["persona"] != c["persona"]):
                yield BotReply(post["id"], c["id"], c["persona"], parent["persona"])
            yield from walk(node["replies"], c)

    yield from walk(thread["comments"], post)


async def find_bot_threads_and_reply(client: httpx.AsyncClient,
                                     ph: Playhouse) -> tuple[list[str], BotReply]:
    """Poll the API until bots have posted threads and one bot answered another."""
    deadline = time.monotonic() + BOTS_WITHIN_S
    checked: dict[str, int] = {}
    bot_threads: list[str] = []
    while True:
        assert ph.proc.poll() is None, f"playhouse run exited:\n{ph.tail()}"
        rooms = (await client.get("/api/rooms")).json()
        for room in rooms:
            page = (await client.get(f"/api/rooms/{room['name']}/threads",
                                     params={"limit": 200})).json()
            for t in page["threads"]:
                if not t["is_bot"]:
                    continue
                if t["id"] not in bot_threads:
                    bot_threads.append(t["id"])
                if t["comment_count"] == 0 or checked.get(t["id"]) == t["comment_count"]:
                    continue
                checked[t["id"]] = t["comment_count"]
                detail = (await client.get(f"/api/threads/{t['id']}")).json()
                for reply in bot_replies(detail):
                    return bot_threads, reply
        assert time.monotonic() < deadline, (
            f"within {BOTS_WITHIN_S} s: {len(bot_threads)} bot threads, no bot answered "
            f"another bot\n{ph.tail()}"
        )
        await asyncio.sleep(2)


def check_clean_exit(ph: Playhouse, code: int) -> None:
    events = ph.events()
    assert code == 0, ph.tail()
    stopped = {e["name"]: e["code"] for e in events if e.get("event") == "process.stopped"}
    assert stopped == dict.fromkeys(CHILDREN, 0), stopped
    assert any(e.get("event") == "playhouse.stopped" and e.get("clean") for e in events)
    assert any(e.get("event") == "azurite.stopped" for e in events)
    assert not [e for e in events if e.get("level") in ("error", "critical")]
    leftovers = [pid for pid in ph.child_pids() if alive(pid)]
    assert not leftovers, f"orphan processes: {leftovers}"
    (emulator,) = [e for e in events if e.get("event") == "emulator.running"]
    busy = [p for p in [ph.port, *emulator["ports"]] if not port_free(p)]
    assert not busy, f"ports still taken after the stop: {busy}"


@pytest.mark.timeout(900)
async def test_make_run_end_to_end(models_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    first = start(tmp_path, models_dir, port, "first")
    try:
        async with httpx.AsyncClient(base_url=first.base, timeout=30) as client:
            await wait_until_up(first, client)
            rooms = [r["name"] for r in (await client.get("/api/rooms")).json()]
            assert "CoopAndPabloPlayHouse" in rooms
            async with contextlib.AsyncExitStack() as stack:
                lives = [await stack.enter_async_context(socket(first.base)) for _ in rooms]
                for live, room in zip(lives, rooms, strict=True):
                    answer = await live.subscribe(room)
                    assert type(answer).__name__ == "History", answer
                event = await first_live_event(lives)
                assert event.thread.is_bot if hasattr(event, "thread") else event.comment.is_bot
            threads, reply = await find_bot_threads_and_reply(client, first)
        check_clean_exit(first, await stop(first))
    finally:
        kill_leftovers(first)

    second = start(tmp_path, models_dir, port, "second")
    try:
        async with httpx.AsyncClient(base_url=second.base, timeout=30) as client:
            await wait_until_up(second, client)
            for thread_id in threads:
                assert (await client.get(f"/api/threads/{thread_id}")).status_code == 200
            detail = (await client.get(f"/api/threads/{reply.thread_id}")).json()
            assert reply in list(bot_replies(detail))
        check_clean_exit(second, await stop(second))
    finally:
        kill_leftovers(second)


ORPHANS_GONE_WITHIN_S = 60.0


@pytest.mark.timeout(600)
async def test_a_killed_supervisor_leaves_no_process_behind(models_dir: Path,
                                                            tmp_path: Path) -> None:
    """SIGKILL gives `playhouse run` no chance to stop its children (they run in their own
    sessions): they notice its death themselves and stop, freeing every port."""
    port = free_port()
    ph = start(tmp_path, models_dir, port, "killed")
    try:
        async with httpx.AsyncClient(base_url=ph.base, timeout=30) as client:
            await wait_until_up(ph, client)
        children = ph.child_pids()
        (emulator,) = [e for e in ph.events() if e.get("event") == "emulator.running"]
        assert len(children) >= 4, children  # Azurite, the web app and two workers
        assert all(alive(pid) for pid in children)
        ph.proc.kill()
        ph.proc.wait(10)
        deadline = time.monotonic() + ORPHANS_GONE_WITHIN_S
        while leftovers := [pid for pid in children if alive(pid)]:
            assert time.monotonic() < deadline, f"orphans still running: {leftovers}"
            await asyncio.sleep(0.2)
        while busy := [p for p in [port, *emulator["ports"]] if not port_free(p)]:
            assert time.monotonic() < deadline, f"ports still taken: {busy}"
            await asyncio.sleep(0.2)
    finally:
        kill_leftovers(ph)
