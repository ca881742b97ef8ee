"""Asking a bot again: through the one bot-call path, its answers kept and chosen,
bounded per comment and per person."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar

from playhouse import asking
from playhouse.constants import QUEUE_INTERACTIVE
from playhouse.storage import Storage
from tests.integration.test_web_live import answer, consume, take_request
from tests.integration.web_support import build, ctx_of, json_post, serve, socket, user_client

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def site(storage: Storage, **web: Any) -> AsyncIterator[tuple[Litestar, str]]:
    app = await build(storage, **web)
    async with serve(app) as base:
        yield app, base


async def _asked(storage: Storage, app: Litestar, a: Any, b: Any,
                 text: str = "first") -> tuple[str, str, str]:
    """Alice's thread, Bob asking CoopBot in it, CoopBot answering ``text``: the ids of
    the thread, Bob's comment and the answer."""
    await a.subscribe("Technology")
    thread = await a.post("Technology", title="Editors", text="which one")
    await a.subscribe("Technology", thread_id=thread.thread_id)
    await b.subscribe("Technology", thread_id=thread.thread_id)
    asked = await b.post("Technology", client_id="q", thread_id=thread.thread_id,
                         text="what do you say, u/CoopBot?")
    request = await take_request(storage, QUEUE_INTERACTIVE)
    await answer(storage, request, text=text)
    assert await consume(app) == 1
    bot = await b.expect("comment_replaced", lambda e: e.comment.parent_id == asked.comment_id)
    return str(thread.thread_id), str(asked.comment_id), str(bot.comment.id)


async def test_the_caller_asks_again_and_chooses_among_the_answers(storage: Storage) -> None:
    async with site(storage) as (app, base), user_client(base, "alice") as alice, \
            user_client(base, "bob") as bob, socket(base, alice) as a, socket(base, bob) as b:
        ctx = ctx_of(app)
        thread_id, asked, bot = await _asked(storage, app, a, b)
        again = await json_post(bob, f"/t/{thread_id}/c/{bot}/again")
        assert again.status_code == 200, again.text
        assert again.json()["comment"]["status"] == "placeholder"
        thinking = await a.expect("thinking", lambda e: e.comment.id == bot
                                  and e.comment.rerolls == 1)
        assert thinking.comment.status == "placeholder"
        # The one bot-call path: a job under a derived id, the same comment row.
        request = await take_request(storage, QUEUE_INTERACTIVE)
        assert request.request_id == asking.request_id_for(asked, "CoopBot", 1)
        assert request.request_id != asking.request_id_for(asked, "CoopBot")
        assert request.comment_id == bot and request.parent_id == asked
        assert request.chain[-1].text == "what do you say, u/CoopBot?"
        assert (await storage.jobs.get(request.request_id)).state == "pending"
        await answer(storage, request, text="second")
        assert await consume(app) == 1
        replaced = await a.expect("comment_replaced", lambda e: e.comment.id == bot
                                  and e.comment.rerolls == 1)
        assert replaced.comment.text == "second" and replaced.comment.shown == 1
        assert [s.text for s in replaced.comment.alternatives] == ["first", "second"]
        assert (await storage.jobs.get(request.request_id)).state == "done"
        # Another answer is not another comment.
        await ctx.counters.flush()
        assert (await storage.threads.get(thread_id)).comment_count == 2
        assert len((await storage.comments.list(thread_id)).items) == 2
        # Bob steps back to the first: everyone sees it, and the next prompt reads it.
        chosen = await json_post(bob, f"/t/{thread_id}/c/{bot}/show", {"answer": 1})
        assert chosen.status_code == 200, chosen.text
        seen = await a.expect("comment_changed", lambda e: e.comment.id == bot)
        assert seen.comment.text == "first" and seen.comment.shown == 0
        await b.post("Technology", client_id="q2", thread_id=thread_id, parent_id=bot,
                     text="really, u/CoopBot?")
        later = await take_request(storage, QUEUE_INTERACTIVE)
        assert [c.text for c in later.chain][-2:] == ["first", "really, u/CoopBot?"]
        # The thread's author may ask again too.
        by_owner = await json_post(alice, f"/t/{thread_id}/c/{bot}/again")
        assert by_owner.status_code == 200, by_owner.text
        third = await take_request(storage, QUEUE_INTERACTIVE)
        assert third.request_id == asking.request_id_for(asked, "CoopBot", 2)


async def test_asking_again_is_refused_with_the_reason(storage: Storage) -> None:
    async with site(storage, rerolls_per_comment=1) as (app, base), \
            user_client(base, "alice") as alice, user_client(base, "bob") as bob, \
            user_client(base, "carol") as carol, socket(base, alice) as a, \
            socket(base, bob) as b:
        thread_id, asked, bot = await _asked(storage, app, a, b)
        person = await json_post(bob, f"/t/{thread_id}/c/{asked}/again")
        assert person.status_code == 400
        assert "only a bot's answer" in person.json()["detail"]
        stranger = await json_post(carol, f"/t/{thread_id}/c/{bot}/again")
        assert stranger.status_code == 403
        assert "u/bob" in stranger.json()["detail"] and "u/alice" in stranger.json()["detail"]
        first = await json_post(bob, f"/t/{thread_id}/c/{bot}/again")
        assert first.status_code == 200
        busy = await json_post(bob, f"/t/{thread_id}/c/{bot}/again")
        assert busy.status_code == 409 and "answering this already" in busy.json()["detail"]
        request = await take_request(storage, QUEUE_INTERACTIVE)
        await answer(storage, request, text="second")
        assert await consume(app) == 1
        await b.expect("comment_replaced", lambda e: e.comment.id == bot
                       and e.comment.rerolls == 1)
        over = await json_post(bob, f"/t/{thread_id}/c/{bot}/again")
        assert over.status_code == 409
        assert "the most one comment allows (1)" in over.json()["detail"]
        no_such = await json_post(bob, f"/t/{thread_id}/c/{bot}/show", {"answer": 3})
        assert no_such.status_code == 400 and "no answer 3" in no_such.json()["detail"]
        not_chooser = await json_post(carol, f"/t/{thread_id}/c/{bot}/show", {"answer": 1})
        assert not_chooser.status_code == 403
        assert await storage.queues.receive(QUEUE_INTERACTIVE) == []  # nothing more asked
        stored = await storage.comments.get(thread_id, bot)
        assert (stored.rerolls, stored.shown, stored.text) == (1, 1, "second")


async def test_asking_again_spends_the_same_bot_call_budget_as_posting(
    storage: Storage,
) -> None:
    async with site(storage, bot_calls_per_minute=2) as (app, base), \
            user_client(base, "alice") as alice, user_client(base, "bob") as bob, \
            socket(base, alice) as a, socket(base, bob) as b:
        thread_id, asked, bot = await _asked(storage, app, a, b)  # bob's first call
        assert (await json_post(bob, f"/t/{thread_id}/c/{bot}/again")).status_code == 200
        request = await take_request(storage, QUEUE_INTERACTIVE)
        await answer(storage, request, text="second")
        assert await consume(app) == 1
        await b.expect("comment_replaced", lambda e: e.comment.id == bot
                       and e.comment.rerolls == 1)
        limited = await json_post(bob, f"/t/{thread_id}/c/{bot}/again")
        assert limited.status_code == 429
        assert "called bots too often" in limited.json()["detail"]
        # ... and the same budget holds his posts' calls back.
        post = await b.post("Technology", client_id="q3", thread_id=thread_id,
                            text="u/CoopBot once more?")
        assert post.called == () and "too often" in (post.notice or "")
        assert await storage.queues.receive(QUEUE_INTERACTIVE) == []
        del alice, asked


async def test_a_failed_answer_asked_again_shows_the_answer_before(storage: Storage) -> None:
    async with site(storage) as (app, base), user_client(base, "alice") as alice, \
            user_client(base, "bob") as bob, socket(base, alice) as a, socket(base, bob) as b:
        thread_id, _, bot = await _asked(storage, app, a, b, text="a fine answer")
        assert (await json_post(bob, f"/t/{thread_id}/c/{bot}/again")).status_code == 200
        request = await take_request(storage, QUEUE_INTERACTIVE)
        await answer(storage, request, ok=False, error="the model gave up")
        assert await consume(app) == 1
        back = await a.expect("comment_replaced", lambda e: e.comment.id == bot
                              and e.comment.rerolls == 1)
        assert (back.comment.status, back.comment.text) == ("ok", "a fine answer")
        assert (await storage.jobs.get(request.request_id)).state == "failed"
        del alice


async def test_two_asking_again_at_once_make_one_request(storage: Storage) -> None:
    async with site(storage) as (app, base), user_client(base, "alice") as alice, \
            user_client(base, "bob") as bob, socket(base, alice) as a, socket(base, bob) as b:
        thread_id, asked, bot = await _asked(storage, app, a, b)
        answers = await asyncio.gather(json_post(bob, f"/t/{thread_id}/c/{bot}/again"),
                                       json_post(alice, f"/t/{thread_id}/c/{bot}/again"))
        assert sorted(r.status_code for r in answers) == [200, 409]
        request = await take_request(storage, QUEUE_INTERACTIVE)
        assert request.request_id == asking.request_id_for(asked, "CoopBot", 1)
        assert await storage.queues.receive(QUEUE_INTERACTIVE) == []
