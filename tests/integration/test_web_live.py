"""The websocket: watch, post, bots thinking and answering, resume, presence."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar

from playhouse import asking, ids, messages
from playhouse.constants import (
    CONTAINER_IMAGES,
    DEFAULT_ROOM,
    QUEUE_BACKGROUND,
    QUEUE_IMAGE,
    QUEUE_INTERACTIVE,
    QUEUE_RESULTS,
    QUEUE_RESULTS_INTERACTIVE,
)
from playhouse.messages import GenerationRequest, GenerationResult
from playhouse.storage import Storage
from playhouse.storage.models import Thread
from tests.integration.web_support import build, ctx_of, serve, socket, the_cast, user_client

pytestmark = pytest.mark.integration

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8cfc0f01f0005000201a5d8b1e30000000049454e44ae426082"
)


@contextlib.asynccontextmanager
async def site(storage: Storage, **web: Any) -> AsyncIterator[tuple[Litestar, str]]:
    app = await build(storage, **web)
    async with serve(app) as base:
        yield app, base


async def take_request(storage: Storage, queue: str) -> GenerationRequest:
    """What a worker does first: receive the request (and delete it)."""
    for _ in range(50):
        got = await storage.queues.receive(queue, max_messages=1)
        if got:
            await storage.queues.delete(got[0])
            return messages.decode_request(got[0].content)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no request on {queue}")


async def answer(storage: Storage, request: GenerationRequest, *, ok: bool = True,
                 text: str = "", image_blob: str | None = None, error: str = "") -> None:
    """What a worker does last: put the result on gen-results."""
    result = (GenerationResult.success(request, text=text, image_blob=image_blob) if ok
              else GenerationResult.failure(request, error))
    await storage.queues.send(QUEUE_RESULTS, messages.encode(result))


async def consume(app: Litestar) -> int:
    consumer = app.state["consumer"]
    return int(await consumer.run_once())


async def test_anonymous_visitor_watches_but_cannot_post(storage: Storage) -> None:
    async with site(storage) as (_, base), socket(base) as live:
        assert live.hello.user is None
        history = await live.subscribe(DEFAULT_ROOM)
        assert type(history).__name__ == "History" and history.room == DEFAULT_ROOM
        error = await live.post(DEFAULT_ROOM, title="hello", text="hi")
        assert error.code == "login_required"
        assert (await storage.threads.list(DEFAULT_ROOM)).items == []


async def test_thread_and_reply_reach_other_viewers_live(storage: Storage) -> None:
    async with site(storage) as (_, base), user_client(base, "alice") as alice, \
            user_client(base, "bob") as bob, socket(base, alice) as a, socket(base, bob) as b:
        assert a.hello.user == "alice"
        await a.subscribe("Cooking")
        await b.subscribe("Cooking")
        ack = await a.post("Cooking", title="Soup <b>tonight</b>", text="what goes in?")
        assert ack.comment_id is None
        stored = await storage.threads.get(ack.thread_id)  # stored before the ack
        assert stored.author == "alice" and stored.title == "Soup <b>tonight</b>"
        seen = await b.expect("thread", lambda e: e.thread.id == ack.thread_id)
        assert seen.thread.author == "alice" and seen.thread.is_bot is False
        # Both open the thread; bob replies, alice sees it.
        await a.subscribe("Cooking", thread_id=ack.thread_id)
        await b.subscribe("Cooking", thread_id=ack.thread_id)
        reply = await b.post("Cooking", client_id="r1", thread_id=ack.thread_id,
                             text="carrots")
        assert reply.comment_id is not None
        event = await a.expect("comment", lambda e: e.comment.id == reply.comment_id)
        assert event.comment.author == "bob" and event.comment.text == "carrots"
        assert event.comment.created_at.endswith("Z")
        nested = await a.post("Cooking", client_id="r2", thread_id=ack.thread_id,
                              parent_id=reply.comment_id, text="and leeks")
        child = await b.expect("comment", lambda e: e.comment.id == nested.comment_id)
        assert child.comment.parent_id == reply.comment_id and child.comment.depth == 1
        # The reply count moves a moment later, in one write for both, and is shown live.
        counted = await a.expect("thread", lambda e: e.thread.id == ack.thread_id
                                 and e.thread.comment_count == 2)
        assert counted.thread.comment_count == (await storage.threads.get(
            ack.thread_id)).comment_count


async def test_mention_calls_a_text_bot_which_answers_through_the_consumer(
    storage: Storage,
) -> None:
    async with site(storage) as (app, base), user_client(base, "alice") as alice, \
            socket(base, alice) as a:
        await a.subscribe("Technology")
        ack = await a.post("Technology", title="phones", text="which one?")
        await a.subscribe("Technology", thread_id=ack.thread_id)
        asked = await a.post("Technology", client_id="m1", thread_id=ack.thread_id,
                             text="what do you think, u/coopbot?")
        thinking = await a.expect("thinking")
        assert thinking.comment.author == "CoopBot" and thinking.comment.status == "placeholder"
        assert thinking.comment.parent_id == asked.comment_id
        request = await take_request(storage, QUEUE_INTERACTIVE)
        assert request.persona == "CoopBot" and request.kind == "reply"
        assert request.chain[-1].text == "what do you think, u/coopbot?"
        await answer(storage, request, text="the one with the biggest battery")
        assert await consume(app) == 1
        replaced = await a.expect("comment_replaced")
        assert replaced.comment.id == thinking.comment.id
        assert replaced.comment.text == "the one with the biggest battery"
        assert replaced.comment.status == "ok" and replaced.comment.is_bot
        # Replying to the bot's comment asks the bot again.
        await a.post("Technology", client_id="m2", thread_id=ack.thread_id,
                     parent_id=replaced.comment.id, text="why?")
        again = await a.expect("thinking")
        assert again.comment.author == "CoopBot"
        second = await take_request(storage, QUEUE_INTERACTIVE)
        await answer(storage, second, ok=False, error="the model is unavailable")
        await consume(app)
        failed = await a.expect("comment_replaced")
        assert failed.comment.status == "failed"
        assert "CoopBot could not answer" in failed.comment.text


async def test_default_room_imagebot_answers_new_posts_with_an_image(storage: Storage) -> None:
    async with site(storage) as (app, base), user_client(base, "pia") as pia, \
            socket(base, pia) as live:
        await live.subscribe(DEFAULT_ROOM)
        ack = await live.post(DEFAULT_ROOM, title="a red fox in snow")
        await live.subscribe(DEFAULT_ROOM, thread_id=ack.thread_id)
        request = await take_request(storage, QUEUE_IMAGE)
        assert request.persona == "ImageBot" and request.kind == "image"
        assert "red fox" in request.image_prompt
        placeholder = await storage.comments.list(ack.thread_id)
        assert [c.status for c in placeholder.items] == ["placeholder"]
        blob = f"{DEFAULT_ROOM}/{request.request_id}.png"  # as the image worker names it
        await storage.blobs.put(CONTAINER_IMAGES, blob, PNG, "image/png")
        await answer(storage, request, text="a red fox in snow", image_blob=blob)
        await consume(app)
        replaced = await live.expect("comment_replaced")
        assert replaced.comment.image_url == f"/images/{blob}"
        async with httpx.AsyncClient(base_url=base) as client:
            image = await client.get(replaced.comment.image_url)
            assert image.status_code == 200 and image.content == PNG
            assert image.headers["content-type"] == "image/png"
            assert (await client.get("/images/..%2F..%2Fetc%2Fpasswd")).status_code == 404


async def test_redelivered_result_is_applied_once(storage: Storage) -> None:
    async with site(storage) as (app, base), user_client(base, "rita") as rita, \
            socket(base, rita) as live:
        await live.subscribe("Sports")
        ack = await live.post("Sports", title="scores", text="u/GoalBot who won?")
        request = await take_request(storage, QUEUE_INTERACTIVE)
        await answer(storage, request, text="we did")
        await answer(storage, request, text="we did")
        assert await consume(app) == 2
        comments = (await storage.comments.list(ack.thread_id)).items
        assert [(c.author, c.text, c.status) for c in comments] == [("GoalBot", "we did", "ok")]
        assert (await storage.jobs.get(request.request_id)).state == "done"
        assert await storage.queues.receive(QUEUE_RESULTS) == []
        await ctx_of(app).counters.flush()
        thread = await storage.threads.get(ack.thread_id)
        assert thread.comment_count == 1


async def test_malformed_result_goes_to_the_poison_queue(storage: Storage) -> None:
    async with site(storage) as (app, _):
        await storage.queues.send(QUEUE_RESULTS, b"{not json")
        assert await consume(app) == 1
        assert await storage.queues.receive(QUEUE_RESULTS) == []
        assert len(await storage.queues.peek(QUEUE_RESULTS + "-poison")) == 1


async def test_resume_after_reconnect_has_no_gap_and_no_duplicate(storage: Storage) -> None:
    async with site(storage) as (_, base), user_client(base, "alice") as alice, \
            user_client(base, "bob") as bob, socket(base, bob) as b:
        await b.subscribe("Music")
        ack = await b.post("Music", title="records")
        await b.subscribe("Music", thread_id=ack.thread_id)
        ids_seen = []
        async with socket(base, alice) as a:
            await a.subscribe("Music", thread_id=ack.thread_id)
            for i in range(2):
                posted = await b.post("Music", client_id=f"x{i}", thread_id=ack.thread_id,
                                      text=f"before {i}")
                ids_seen.append((await a.expect(
                    "comment", lambda e, cid=posted.comment_id: e.comment.id == cid)).comment.id)
        missed = []
        for i in range(3):  # alice is away
            posted = await b.post("Music", client_id=f"y{i}", thread_id=ack.thread_id,
                                  text=f"while away {i}")
            missed.append(posted.comment_id)
        async with socket(base, alice) as a:
            history = await a.subscribe("Music", thread_id=ack.thread_id, after=ids_seen[-1])
            # The resume starts a grace window before the last id seen (a comment stored
            # late under an earlier id is not skipped): what was seen may come again first.
            got = [c.id for c in history.comments]
            assert got[-len(missed):] == missed and set(got[:-len(missed)]) <= set(ids_seen)
            assert history.more is False
            later = await b.post("Music", client_id="z", thread_id=ack.thread_id, text="back")
            live = await a.expect("comment")
            assert live.comment.id == later.comment_id
            leftovers = [e for e in await a.quiet(0.3) if getattr(e, "comment", None)]
            assert leftovers == []


async def test_history_is_paged(storage: Storage) -> None:
    async with site(storage, history_page=3) as (_, base), user_client(base, "pam") as pam, \
            socket(base, pam) as live:
        await live.subscribe("Art")
        ack = await live.post("Art", title="sketches")
        posted = []
        for i in range(7):
            got = await live.post("Art", client_id=f"c{i}", thread_id=ack.thread_id,
                                  text=f"sketch {i}")
            posted.append(got.comment_id)
        first = await live.subscribe("Art", thread_id=ack.thread_id)
        assert [c.id for c in first.comments] == posted[:3] and first.more
        await live.send({"type": "history", "after": posted[2]})
        second = await live.expect("history")
        assert [c.id for c in second.comments] == posted[3:6] and second.more
        await live.send({"type": "history", "after": posted[5]})
        third = await live.expect("history")
        assert [c.id for c in third.comments] == posted[6:] and not third.more


async def test_presence_lists_who_is_watching(storage: Storage) -> None:
    async with site(storage) as (_, base), user_client(base, "alice") as alice, \
            socket(base, alice) as a, socket(base) as anon:
        await a.subscribe("Candles")
        await anon.subscribe("Candles")
        seen = await a.expect("presence", lambda e: e.anonymous == 1)
        assert seen.users == ("alice",) and seen.room == "Candles"
    # Leaving is announced too (checked on a fresh pair).
    async with site(storage) as (_, base), user_client(base, "boris") as bo, \
            socket(base, bo) as b:
        await b.subscribe("Candles")
        async with socket(base) as anon:
            await anon.subscribe("Candles")
            await b.expect("presence", lambda e: e.anonymous == 1)
        gone = await b.expect("presence", lambda e: e.anonymous == 0)
        assert gone.users == ("boris",)


async def test_cross_origin_socket_is_refused(storage: Storage) -> None:
    from websockets.exceptions import InvalidStatus

    async with site(storage) as (_, base):
        with pytest.raises(InvalidStatus):
            async with socket(base, Origin="http://evil.example"):
                pass
        async with socket(base, Origin=base) as ok:
            assert ok.hello.user is None


async def test_a_bot_post_from_the_scheduler_appears_in_the_room(storage: Storage) -> None:
    from playhouse.asking import thread_id_for

    async with site(storage) as (app, base), socket(base) as viewer:
        await viewer.subscribe("Candles")
        request = GenerationRequest(request_id=ids.new_id(), kind="post", persona="WickBot",
                                    room="Candles", queue="gen-background")
        await storage.queues.send(QUEUE_RESULTS, messages.encode(GenerationResult(
            request_id=request.request_id, kind="post", persona="WickBot", room="Candles",
            ok=True, title="Soy or paraffin?", text="Discuss.")))
        assert await consume(app) == 1
        event = await viewer.expect("thread")
        assert event.thread.id == thread_id_for(request.request_id)
        assert event.thread.is_bot and event.thread.author == "WickBot"
        assert event.thread.title == "Soy or paraffin?"


async def test_the_bots_results_wait_while_a_person_waits_for_an_answer(
    storage: Storage,
) -> None:
    """People first in the results consumer: a page of the bots' results waited for a
    person's awaited answer only before its first result; a person who began waiting in
    the middle of the page had the rest of it applied ahead of their answer."""
    cast = the_cast()
    app = await build(storage)
    ctx, consumer = ctx_of(app), app.state["consumer"]
    now = time.time()
    threads = [await storage.threads.create(Thread(
        thread_id=ids.new_id(now), room="Sports", title=f"match {n}", body="", url=None,
        author="rita", is_bot=False, persona=None, created_at=now, last_activity=now))
        for n in range(2)]

    async def asked(persona: str, thread: Thread, queue: str) -> GenerationRequest:
        request = asking.reply_request(persona=cast.personas[persona], thread=thread,
                                       chain=[], parent_id=None, queue=queue)
        await asking.submit(storage, request)
        return asking.decode_job_request(await storage.jobs.get(request.request_id))

    bots = [await asked(name, threads[0], QUEUE_BACKGROUND) for name in ("GoalBot", "Spez")]
    person = await asked("CoopBot", threads[1], QUEUE_INTERACTIVE)
    for request in bots:  # one page, one lane (one thread)
        await storage.queues.send(QUEUE_RESULTS, messages.encode(
            GenerationResult.success(request, text=f"{request.persona} says hi")))
    shown: list[str] = []

    def seen(event: Any) -> None:
        if type(event).__name__ == "CommentReplaced":
            shown.append(event.comment.author)
            if len(shown) == 1:  # the person starts waiting mid-page
                consumer.expect(person.request_id, interactive=True)

    ctx.broadcast.watch(seen)
    bots_page = asyncio.create_task(consumer.loops[QUEUE_RESULTS].run_once())
    deadline = time.monotonic() + 10
    while not shown:
        assert time.monotonic() < deadline, "the bots' first result was never applied"
        await asyncio.sleep(0.01)
    await storage.queues.send(QUEUE_RESULTS_INTERACTIVE, messages.encode(
        GenerationResult.success(person, text="CoopBot answers")))
    assert await consumer.loops[QUEUE_RESULTS_INTERACTIVE].run_once() == 1
    assert await bots_page == 2
    assert shown[1] == "CoopBot" and sorted(shown[::2]) == ["GoalBot", "Spez"], shown
