"""The repositories, queues and blobs against a real Azurite (no mocks)."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from playhouse import ids
from playhouse.constants import CONTAINER_IMAGES, QUEUE_INTERACTIVE, poison_queue
from playhouse.emulator import free_port
from playhouse.errors import ConfigError, Conflict, InvalidInput, NotFound, StorageUnavailable
from playhouse.storage import Storage
from playhouse.storage.models import Comment, Job, Room, Thread, User
from playhouse.storage.queues import decode_poison

pytestmark = pytest.mark.integration


def _room(name: str = "Lounge", public: bool = True) -> Room:
    now = time.time()
    return Room(name=name, description="d", public=public, default_bot=None, bots=("Spez",),
                created_by="alice", created_at=now, last_activity=now)


def _thread(room: str = "Lounge", title: str = "t", at: float | None = None) -> Thread:
    now = time.time() if at is None else at
    thread_id = ids.new_id() if at is None else _past_id(at)
    return Thread(thread_id=thread_id, room=room, title=title, body="b", url=None,
                  author="alice", is_bot=False, persona=None, created_at=now, last_activity=now)


def _comment(thread_id: str, text: str = "hi", parent: str | None = None,
             depth: int = 0) -> Comment:
    return Comment(comment_id=ids.new_id(), thread_id=thread_id, room="Lounge", parent_id=parent,
                   author="alice", is_bot=False, persona=None, text=text,
                   created_at=time.time(), depth=depth)


def _past_id(at: float) -> str:
    """An id made at ``at`` (``ids.new_id`` never goes back in time within a process)."""
    return f"{int(at * 1_000_000):016x}0000{ids.new_id()[-6:]}"


def _job(request_id: str | None = None) -> Job:
    now = time.time()
    return Job(request_id=request_id or ids.new_id(), kind="reply", persona="Spez",
               room="Lounge", thread_id=None, parent_id=None, queue=QUEUE_INTERACTIVE,
               state="pending", attempts=0, created_at=now, updated_at=now)


async def test_ensure_is_idempotent(storage: Storage) -> None:
    await storage.ensure()
    await storage.ensure()
    assert await storage.queues.depth(QUEUE_INTERACTIVE) == 0


async def test_users_are_case_insensitive(storage: Storage) -> None:
    user = User(username="Alice", display_name="Alice", password_hash="h", created_at=1.0)
    stored = await storage.users.create(user)
    assert stored.username == "alice"
    with pytest.raises(Conflict):
        await storage.users.create(msgspec.structs.replace(user, username="ALICE"))
    assert (await storage.users.get("aLiCe")).display_name == "Alice"
    with pytest.raises(NotFound):
        await storage.users.get("bob")
    assert await storage.users.find("bob") is None


async def test_rooms_seed_and_concurrent_touch(storage: Storage) -> None:
    assert await storage.rooms.ensure([_room("Lounge"), _room("Kitchen")]) == 2
    assert await storage.rooms.ensure([_room("Lounge"), _room("Attic")]) == 1
    names = sorted(r.name for r in await storage.rooms.all())
    assert names == ["Attic", "Kitchen", "Lounge"]
    # 20 writers race on one row: ETag retries make every increment count.
    await asyncio.gather(*(storage.rooms.touch("lounge", comments=1, at=float(i))
                           for i in range(20)))
    room = await storage.rooms.get("LOUNGE")
    assert room.comment_count == 20
    assert room.bots == ("Spez",)


async def test_memberships_both_ways(storage: Storage) -> None:
    await storage.members.join("Lounge", "alice", "owner")
    await storage.members.join("Lounge", "bob")
    await storage.members.join("Attic", "bob")
    assert {m.username for m in await storage.members.of_room("lounge")} == {"alice", "bob"}
    assert {m.room for m in await storage.members.of_user("BOB")} == {"lounge", "attic"}
    assert await storage.members.is_member("Lounge", "Alice")
    assert await storage.members.leave("Lounge", "bob") is True
    assert await storage.members.leave("Lounge", "bob") is False
    assert not await storage.members.is_member("Lounge", "bob")
    assert {m.room for m in await storage.members.of_user("bob")} == {"attic"}
    # Joining again keeps the role (an owner stays one); set_role changes it.
    assert (await storage.members.join("Lounge", "ALICE")).role == "owner"
    assert (await storage.members.get("lounge", "alice")).role == "owner"
    await storage.members.join("Lounge", "bob")
    assert (await storage.members.set_role("Lounge", "Bob", "owner")).role == "owner"
    assert {m.role for m in await storage.members.of_user("bob")
            if m.room == "lounge"} == {"owner"}
    with pytest.raises(NotFound):
        await storage.members.set_role("Lounge", "nobody", "owner")


async def test_threads_newest_first_in_pages_without_gaps(
    storage: Storage, connection_string: str
) -> None:
    base = time.time() - 100
    made = [await storage.threads.create(_thread(title=f"n{i}", at=base + i)) for i in range(23)]
    await storage.threads.create(_thread(room="Attic"))
    seen: list[str] = []
    token = None
    while True:
        page = await storage.threads.list("lounge", limit=5, token=token)
        seen += [t.title for t in page.items]
        token = page.next
        if token is None:
            break
    assert seen == [f"n{i}" for i in reversed(range(23))]
    recent = await storage.threads.since("Lounge", base + 20)
    assert [t.title for t in recent] == ["n22", "n21", "n20"]
    fresh = await Storage.connect(connection_string, namespace=storage.namespace)
    try:
        got = await fresh.threads.get(made[3].thread_id)  # no cache: via the index row
        assert got.title == "n3"
    finally:
        await fresh.close()
    with pytest.raises(NotFound):
        await storage.threads.get(ids.new_id())
    with pytest.raises(NotFound):
        await storage.threads.get("../../etc")
    with pytest.raises(Conflict):
        await storage.threads.create(made[0])


async def test_thread_touch_counts(storage: Storage) -> None:
    thread = await storage.threads.create(_thread())
    await asyncio.gather(*(storage.threads.touch(thread.thread_id, comments=1) for _ in range(10)))
    assert (await storage.threads.get(thread.thread_id)).comment_count == 10


async def test_bad_page_tokens_are_rejected(storage: Storage) -> None:
    for token in ("not-base64!", "eyJ4IjoxfQ", "W10"):
        with pytest.raises(InvalidInput):
            await storage.threads.list("lounge", token=token)
    other = await storage.threads.list("lounge", limit=1)
    assert other.next is None
    with pytest.raises(InvalidInput):
        await storage.rooms.list(limit=0)


async def test_comment_tree_pages_and_chain(storage: Storage) -> None:
    thread = await storage.threads.create(_thread())
    tid = thread.thread_id
    root = await storage.comments.add(_comment(tid, "root"))
    child = await storage.comments.add(_comment(tid, "child", root.comment_id, 1))
    grandchild = await storage.comments.add(_comment(tid, "gc", child.comment_id, 2))
    orphan = await storage.comments.add(_comment(tid, "orphan", ids.new_id(), 3))
    chain = await storage.comments.chain(tid, grandchild.comment_id)
    assert [c.text for c in chain] == ["root", "child", "gc"]
    assert [c.text for c in await storage.comments.chain(tid, orphan.comment_id)] == ["orphan"]
    page1 = await storage.comments.list(tid, limit=3)
    page2 = await storage.comments.list(tid, limit=3, token=page1.next)
    assert [c.text for c in page1.items + page2.items] == ["root", "child", "gc", "orphan"]
    assert page2.next is None
    after = await storage.comments.after(tid, child.comment_id)
    assert [c.text for c in after] == ["gc", "orphan"]


async def test_comment_replace_needs_fresh_etag(storage: Storage) -> None:
    thread = await storage.threads.create(_thread())
    comment = await storage.comments.get(
        thread.thread_id, (await storage.comments.add(_comment(thread.thread_id))).comment_id)
    first = await storage.comments.replace(msgspec.structs.replace(comment, text="edit 1"))
    with pytest.raises(Conflict):
        await storage.comments.replace(msgspec.structs.replace(comment, text="stale edit"))
    await storage.comments.replace(msgspec.structs.replace(first, text="edit 2"))
    assert (await storage.comments.get(thread.thread_id, comment.comment_id)).text == "edit 2"


async def test_long_and_odd_text(storage: Storage) -> None:
    thread = await storage.threads.create(_thread())
    long_text = ("ünï😀code " * 12_000)[:100_000]
    stored = await storage.comments.add(_comment(thread.thread_id, long_text))
    back = await storage.comments.get(thread.thread_id, stored.comment_id)
    assert back.text == long_text
    tagged = await storage.comments.add(_comment(thread.thread_id, "a <|eor|> b\nc"))
    assert (await storage.comments.get(thread.thread_id, tagged.comment_id)).text == (
        "a <|eor|> b\nc")
    with pytest.raises(InvalidInput, match="NUL"):
        await storage.comments.add(_comment(thread.thread_id, "nul\x00here"))
    with pytest.raises(InvalidInput, match="surrogate"):
        await storage.comments.add(_comment(thread.thread_id, "bad \ud800"))


async def test_job_state_moves_once(storage: Storage) -> None:
    job = await storage.jobs.create(_job())
    with pytest.raises(Conflict):
        await storage.jobs.create(_job(job.request_id))

    async def finish(state: str) -> str:
        try:
            await storage.jobs.transition(job.request_id, "pending", state)  # type: ignore[arg-type]
        except Conflict:
            return "lost"
        return state

    outcomes = await asyncio.gather(*(finish("done" if i % 2 else "failed") for i in range(8)))
    assert sum(o != "lost" for o in outcomes) == 1
    final = await storage.jobs.get(job.request_id)
    assert final.state in ("done", "failed") and final.state in outcomes


async def test_pending_before_finds_stuck_jobs(storage: Storage) -> None:
    old = time.time() - 3600
    stuck = _job(_past_id(old))
    stuck = msgspec.structs.replace(stuck, created_at=old, updated_at=old)
    await storage.jobs.create(stuck)
    fresh = await storage.jobs.create(_job())
    done = await storage.jobs.create(_job(_past_id(old + 1)))
    await storage.jobs.transition(done.request_id, "pending", "done")
    found = await storage.jobs.pending_before(time.time() - 600)
    assert [j.request_id for j in found] == [stuck.request_id]
    assert fresh.request_id not in {j.request_id for j in found}
    touched = await storage.jobs.touch(stuck.request_id)
    assert touched.attempts == 1 and touched.updated_at > old


async def test_a_call_is_claimed_once_by_its_derived_request_id(storage: Storage) -> None:
    """Five askers of the same persona about the same comment (people's calls, retries,
    the scheduler): one job row, and only one asker goes on to dispatch it."""
    from playhouse import asking

    cid = ids.new_id()
    request_id = asking.request_id_for(cid, "Spez")
    assert request_id == asking.request_id_for(cid, "Spez") != asking.request_id_for(cid, "Wick")
    jobs = [msgspec.structs.replace(_job(request_id), state="called") for _ in range(5)]
    results = await asyncio.gather(*(asking.record(storage, [job]) for job in jobs))
    assert sorted(len(r) for r in results) == [0, 0, 0, 0, 1]
    assert (await storage.jobs.get(request_id)).state == "called"


async def test_queue_receive_renew_delete(storage: Storage) -> None:
    q = storage.queues
    for i in range(40):
        await q.send(QUEUE_INTERACTIVE, f"m{i}".encode())
    got = await q.receive(QUEUE_INTERACTIVE, max_messages=50, visibility_timeout=30)
    assert len(got) == 32
    assert all(m.dequeue_count == 1 for m in got)
    renewed = await q.renew(got[0], 30)
    assert renewed.pop_receipt != got[0].pop_receipt
    with pytest.raises((Conflict, InvalidInput, NotFound)):
        await q.delete(got[0])  # the stale pop receipt no longer deletes
    assert await q.delete(renewed)
    for m in got[1:]:
        await q.delete(m)
    rest = await q.receive(QUEUE_INTERACTIVE, visibility_timeout=1)
    assert len(rest) == 8
    await asyncio.sleep(1.5)
    again = await q.receive(QUEUE_INTERACTIVE, visibility_timeout=30)
    assert sorted(m.content for m in again) == sorted(m.content for m in rest)
    assert all(m.dequeue_count == 2 for m in again)
    with pytest.raises(InvalidInput, match="limit"):
        await q.send(QUEUE_INTERACTIVE, b"x" * (49 * 1024))


async def test_poison_keeps_the_payload(storage: Storage) -> None:
    q = storage.queues
    await q.send(QUEUE_INTERACTIVE, b"\xff\x00 binary")
    await q.send(QUEUE_INTERACTIVE, b"y" * (47 * 1024))
    for message in await q.receive(QUEUE_INTERACTIVE):
        await q.to_poison(message, "because")
    assert await q.depth(QUEUE_INTERACTIVE) == 0
    entries = [decode_poison(m.content)
               for m in await q.receive(poison_queue(QUEUE_INTERACTIVE))]
    assert len(entries) == 2 and all(e.reason == "because" for e in entries)
    small = next(e for e in entries if e.payload_blob is None)
    import base64
    assert base64.b64decode(small.content_b64) == b"\xff\x00 binary"
    big = next(e for e in entries if e.payload_blob is not None)
    data, _ = await storage.blobs.get("payloads", big.payload_blob or "")
    assert data == b"y" * (47 * 1024)


async def test_blobs(storage: Storage) -> None:
    await storage.blobs.put(CONTAINER_IMAGES, "room/a.png", b"\x89PNG", "image/png")
    assert await storage.blobs.get(CONTAINER_IMAGES, "room/a.png") == (b"\x89PNG", "image/png")
    assert await storage.blobs.exists(CONTAINER_IMAGES, "room/a.png")
    assert await storage.blobs.names(CONTAINER_IMAGES, "room/") == ["room/a.png"]
    with pytest.raises(NotFound):
        await storage.blobs.get(CONTAINER_IMAGES, "room/missing.png")
    for bad in ("../x.png", "/abs.png", "a/../../b", "", "sp ace.png"):
        with pytest.raises(InvalidInput):
            await storage.blobs.put(CONTAINER_IMAGES, bad, b"x", "image/png")
    assert storage.account_key
    url = storage.blobs.sas_url(CONTAINER_IMAGES, "room/a.png", account_key=storage.account_key)
    assert "sig=" in url and "sp=r" in url


async def test_unreachable_storage_fails_fast_with_one_line() -> None:
    port = free_port()
    conn = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
            f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
            f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        await Storage.connect(conn, timeout_s=5)
    assert time.monotonic() - started < 10
    assert "\n" not in str(info.value) and "127.0.0.1" in str(info.value)


@pytest.mark.parametrize("conn", ["garbage", "a=b;c", "AccountName=x;AccountKey=not base64!"])
async def test_malformed_connection_string(conn: str) -> None:
    with pytest.raises(ConfigError):
        await Storage.connect(conn, timeout_s=2)
