"""Voting through the real app: sockets and forms, races, refusals, live scores."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import pytest

from playhouse import ids
from playhouse.storage import Storage
from playhouse.storage.models import Comment, Room, Thread
from tests.integration.web_support import (
    Live,
    build,
    csrf_from,
    serve,
    socket,
    user_client,
)

pytestmark = pytest.mark.integration

HTML = {"accept": "text/html"}


async def _thread(storage: Storage, room: str = "Sports", author: str = "CoopBot") -> Thread:
    now = time.time()
    thread = Thread(thread_id=ids.new_id(now), room=room, title="Vote on me", body="",
                    url=None, author=author, is_bot=True, persona=author, created_at=now,
                    last_activity=now)
    return await storage.threads.create(thread)


async def _comment(storage: Storage, thread: Thread, *, author: str = "CoopBot",
                   status: str = "ok") -> Comment:
    comment = Comment(comment_id=ids.new_id(), thread_id=thread.thread_id, room=thread.room,
                      parent_id=None, author=author, is_bot=True, persona=author,
                      text="A **bold** claim", created_at=time.time(),
                      status=status)  # type: ignore[arg-type]
    return await storage.comments.add(comment)


def _tag(event: Any) -> str:
    return str(type(event).__struct_config__.tag)


async def test_fifty_people_vote_on_one_comment_at_once(storage: Storage) -> None:
    app = await build(storage, logins_per_minute=1000)
    thread = await _thread(storage)
    comment = await _comment(storage, thread)
    async with serve(app) as base, contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(user_client(base, f"voter{i:02d}"))
                   for i in range(50)]  # one by one: hashing 50 passwords at once times out
        sockets: list[Live] = [await stack.enter_async_context(socket(base, c))
                               for c in clients]
        await asyncio.gather(*(s.subscribe("Sports", thread_id=thread.thread_id)
                               for s in sockets))
        wanted = {f"voter{i:02d}": 1 if i % 4 else -1 for i in range(50)}

        async def vote(i: int, live: Live) -> Any:
            await live.send({"type": "vote", "room": "Sports", "thread_id": thread.thread_id,
                             "comment_id": comment.comment_id, "value": wanted[f"voter{i:02d}"],
                             "client_id": f"v{i}"})
            return await live.expect(("voted", "error"), within=30)

        answers = await asyncio.gather(*(vote(i, s) for i, s in enumerate(sockets)))
        assert all(_tag(a) == "voted" for a in answers), answers
        rows = await storage.votes.votes_on(thread.thread_id, comment.comment_id)
        tally = await storage.votes.tally(thread.thread_id, comment.comment_id)
        assert rows == wanted  # one row per person
        assert (tally.ups, tally.downs) == (sum(v == 1 for v in rows.values()),
                                            sum(v == -1 for v in rows.values()))
        assert max(a.version for a in answers) == tally.version == 50
        # Every watcher sees the final score arrive, coalesced.
        final = await sockets[0].expect("score", lambda e: e.version == tally.version,
                                        within=10)
        assert final.score == tally.score and final.item_id == comment.comment_id


async def test_a_vote_flipped_twenty_times_quickly_ends_at_the_last_choice(
    storage: Storage,
) -> None:
    app = await build(storage)
    thread = await _thread(storage)
    async with serve(app) as base, user_client(base, "flipper") as client, \
            socket(base, client) as live:
        await live.subscribe("Sports", thread_id=thread.thread_id)
        choices = [1, -1] * 9 + [0, -1]
        for n, value in enumerate(choices):  # sent without waiting for the answers
            await live.send({"type": "vote", "room": "Sports", "thread_id": thread.thread_id,
                             "value": value, "client_id": f"f{n}"})
        answers = [await live.expect("voted", lambda e, n=n: e.client_id == f"f{n}")
                   for n in range(len(choices))]
        assert [a.value for a in answers] == choices
        assert await storage.votes.votes_on(thread.thread_id, thread.thread_id) == {
            "flipper": -1}
        tally = await storage.votes.tally(thread.thread_id, thread.thread_id)
        assert (tally.ups, tally.downs) == (0, 1)
        assert await storage.votes.mine("flipper", thread.thread_id) == {thread.thread_id: -1}


async def test_votes_that_are_refused_say_why(storage: Storage) -> None:
    app = await build(storage, votes_per_minute=10)
    thread = await _thread(storage)
    thinking = await _comment(storage, thread, status="placeholder")
    elsewhere = await _thread(storage, room="Music")
    now = time.time()
    await storage.rooms.create(Room(name="Hideout", description="", public=False,
                                    default_bot=None, bots=(), created_by="owner",
                                    created_at=now, last_activity=now))
    hidden = await _thread(storage, room="Hideout")
    async with serve(app) as base, user_client(base, "voter") as client, \
            socket(base, client) as live, socket(base) as anonymous:
        def frame(**fields: Any) -> dict[str, Any]:
            return {"type": "vote", "room": "Sports", "thread_id": thread.thread_id,
                    "value": 1, **fields}

        # Logged out: a clear error, nothing stored.
        await anonymous.subscribe("Sports", thread_id=thread.thread_id)
        await anonymous.send(frame(client_id="a"))
        refused = await anonymous.expect("error", lambda e: e.client_id == "a")
        assert refused.code == "login_required" and "log in" in refused.reason
        # Not subscribed, then subscribed to the thread of another room.
        await live.send(frame(client_id="s"))
        assert (await live.reply_to("s")).code == "not_subscribed"
        await live.subscribe("Sports", thread_id=thread.thread_id)
        await live.send(frame(thread_id=elsewhere.thread_id, client_id="x"))
        other = await live.reply_to("x")
        assert other.code == "not_found" and "r/Sports" in other.reason
        await live.send(frame(room="Music", thread_id=elsewhere.thread_id, client_id="m"))
        assert (await live.reply_to("m")).code == "not_subscribed"
        # Missing thread, missing comment, a bot still thinking.
        await live.send(frame(thread_id=ids.new_id(), client_id="t"))
        assert (await live.reply_to("t")).code == "not_found"
        await live.send(frame(comment_id=ids.new_id(), client_id="c"))
        assert (await live.reply_to("c")).code == "not_found"
        await live.send(frame(comment_id=thinking.comment_id, client_id="p"))
        assert (await live.reply_to("p")).code == "bad_message"
        # Bad values never reach storage.
        await live.send(frame(value=2, client_id="b"))
        assert (await live.reply_to("b")).code == "bad_message"
        # The form: CSRF token required; a private room's item is, to others, one that
        # does not exist (404, as a missing one: its room is not even named).
        page = await client.get(f"/r/Sports/t/{thread.thread_id}", headers=HTML)
        token = csrf_from(page.text)
        no_token = await client.post("/vote", data={"thread_id": thread.thread_id, "value": "1"})
        assert no_token.status_code == 403
        private = await client.post("/vote", headers={"accept": "application/json"}, data={
            "thread_id": hidden.thread_id, "value": "1", "_csrf_token": token})
        assert private.status_code == 404 and "Hideout" not in private.json()["detail"]
        missing = await client.post("/vote", headers={"accept": "application/json"}, data={
            "thread_id": ids.new_id(), "value": "1", "_csrf_token": token})
        assert missing.status_code == 404
        # The limit: 10 a minute (refused votes count too), shared by socket and form.
        ok = await client.post("/vote", headers={"accept": "application/json"}, data={
            "thread_id": thread.thread_id, "value": "1", "_csrf_token": token})
        assert ok.status_code == 201 and ok.json()["score"] == 1
        answers = []
        for n in range(8):
            await live.send(frame(value=(-1, 1)[n % 2], client_id=f"r{n}"))
            answers.append(await live.expect(("voted", "error"),
                                             lambda e, n=n: e.client_id == f"r{n}"))
            if _tag(answers[-1]) == "error":
                break
        limited = answers[-1]
        assert _tag(limited) == "error" and limited.code == "rate_limited", answers
        assert len(answers) <= 5  # 7 taken before; a slow run may have refilled one or two
        over = await client.post("/vote", data={"thread_id": thread.thread_id, "value": "1",
                                                "_csrf_token": token})
        assert over.status_code == 429
        accepted = [a.value for a in answers if _tag(a) == "voted"]
    last = accepted[-1] if accepted else 1
    assert await storage.votes.votes_on(thread.thread_id, thread.thread_id) == {"voter": last}
    assert await storage.votes.votes_on(hidden.thread_id, hidden.thread_id) == {}
    assert await storage.votes.votes_on(thread.thread_id, thinking.comment_id) == {}


async def test_a_burst_of_votes_is_one_live_update_per_second(storage: Storage) -> None:
    app = await build(storage, logins_per_minute=1000)
    thread = await _thread(storage)
    async with serve(app) as base, contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(user_client(base, f"burst{i:02d}"))
                   for i in range(20)]
        watcher = await stack.enter_async_context(socket(base))
        await watcher.subscribe("Sports", thread_id=thread.thread_id)
        start = time.monotonic()

        async def vote(client: httpx.AsyncClient) -> None:
            token = csrf_from((await client.get(f"/r/Sports/t/{thread.thread_id}",
                                                headers=HTML)).text)
            answer = await client.post("/vote", headers={"accept": "application/json"},
                                       data={"thread_id": thread.thread_id, "value": "1",
                                             "_csrf_token": token})
            assert answer.status_code == 201, answer.text

        await asyncio.gather(*(vote(c) for c in clients))
        burst_s = time.monotonic() - start
        final = await watcher.expect("score", lambda e: e.score == 20, within=10)
        seen_s = time.monotonic() - start
        events = [e for e in watcher.events if _tag(e) == "score"]
    # The first vote is shown at once, the rest of the burst at most once a second.
    assert 1 + len(events) <= seen_s / 1.0 + 2, (len(events), burst_s, seen_s)
    assert final.version == 20
    # The room's listings and the author's karma follow the votes.
    listed = await storage.listings.page("Sports", "top")
    assert listed.items[0].thread_id == thread.thread_id and listed.items[0].score == 20
    assert (await storage.authored.karma("CoopBot")).thread_karma == 20
