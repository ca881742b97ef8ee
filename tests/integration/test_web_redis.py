"""Two web instances sharing live events through a real Redis (Debian's redis-server)."""

from __future__ import annotations

import shutil
import socket as sockets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from playhouse.emulator import free_port
from playhouse.storage import Storage
from tests.integration.web_support import build, serve, socket, user_client

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("redis-server")
    assert exe, "redis-server is not installed (make install-system)"
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with sockets.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


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
