"""The inbox: replies and mentions, the live badge (across instances too), read marks,
and who is never told (yourself, muted bots, blocked people, non-members)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar

from playhouse import asking
from playhouse.constants import QUEUE_BACKGROUND, QUEUE_INTERACTIVE
from playhouse.storage import Storage
from tests.integration.test_web_live import answer, take_request
from tests.integration.web_support import (
    build,
    ctx_of,
    form_post,
    json_post,
    serve,
    socket,
    user_client,
)

pytestmark = pytest.mark.integration
HTML = {"accept": "text/html"}


@contextlib.asynccontextmanager
async def site(storage: Storage, **web: Any) -> AsyncIterator[tuple[Litestar, str]]:
    app = await build(storage, **web)
    async with serve(app) as base:
        yield app, base


async def _drain(storage: Storage, app: Litestar) -> None:
    """Let the background notifications of what was posted finish."""
    await ctx_of(app).drain()


def badge(html: str) -> int:
    found = re.search(r'id="inbox-badge"[^>]*data-count="(\d+)"', html)
    assert found, "no inbox badge in the page"
    return int(found.group(1))


async def _unread(storage: Storage, user: str) -> list[tuple[str, str]]:
    return [(n.kind, n.by) for n in await storage.inbox.unread(user)]


async def test_replies_and_mentions_reach_the_inbox_and_move_the_badge_live(
    storage: Storage,
) -> None:
    async with site(storage, consume=True) as (app, base), \
            user_client(base, "alice") as alice, user_client(base, "bob") as bob, \
            user_client(base, "carol") as carol, socket(base, alice) as a, \
            socket(base, bob) as b, socket(base, alice) as alice_elsewhere:
        for live in (a, alice_elsewhere):  # every socket of hers hears of her inbox
            assert (await live.expect("inbox")).unread == 0
        await a.subscribe("Technology")
        thread = await a.post("Technology", title="Which editor?", text="vim or emacs")
        await b.subscribe("Technology", thread_id=thread.thread_id)
        reply = await b.post("Technology", client_id="r1", thread_id=thread.thread_id,
                             text="emacs; ask u/carol and u/nobody_here too")
        for live in (a, alice_elsewhere):
            told = await live.expect("inbox", lambda e: e.added == 1)
            assert told.latest.kind == "reply" and told.latest.by == "bob"
            assert told.latest.link == (f"/r/Technology/t/{thread.thread_id}"
                                        f"#c-{reply.comment_id}")
        await _drain(storage, app)
        assert await _unread(storage, "carol") == [("mention", "bob")]
        assert await storage.inbox.unread("nobody_here") == []
        # Replying to yourself tells nobody.
        await b.post("Technology", client_id="r2", thread_id=thread.thread_id,
                     parent_id=reply.comment_id, text="and I agree with myself")
        await _drain(storage, app)
        assert await _unread(storage, "bob") == []
        # A bot's answer to her comment tells her too.
        await a.subscribe("Technology", thread_id=thread.thread_id)
        mine = await a.post("Technology", client_id="r3", thread_id=thread.thread_id,
                            text="what do you think, u/CoopBot?")
        request = await take_request(storage, QUEUE_INTERACTIVE)
        await answer(storage, request, text="neither")
        told = await a.expect("inbox", lambda e: e.added == 1 and e.latest.by_bot, within=20)
        assert told.latest.by == "CoopBot" and told.latest.kind == "reply"
        await _drain(storage, app)
        assert sorted(await _unread(storage, "alice")) == [("reply", "CoopBot"), ("reply", "bob")]
        # The inbox page: newest first, the text as it is now, links to the comments.
        page = await alice.get("/inbox", headers=HTML)
        assert page.status_code == 200
        assert badge(page.text) == 2
        assert page.text.index("neither") < page.text.index("ask u/carol")
        assert f"#c-{reply.comment_id}" in page.text
        assert badge((await carol.get("/", headers=HTML)).text) == 1
        # Marking one read moves every open page's badge; then all.
        bot_reply = next(n for n in await storage.inbox.unread("alice") if n.by_bot)
        marked = await form_post(alice, "/inbox/read", {"comment_id": bot_reply.comment_id},
                                 page="/inbox")
        assert marked.status_code in (302, 303)
        assert (await alice_elsewhere.expect("inbox", lambda e: e.unread == 1)).unread == 1
        assert await _unread(storage, "alice") == [("reply", "bob")]
        await form_post(alice, "/inbox/read", {"all": "1"}, page="/inbox")
        assert (await alice_elsewhere.expect("inbox", lambda e: e.unread == 0)).unread == 0
        assert badge((await alice.get("/inbox", headers=HTML)).text) == 0
        unknown = await form_post(alice, "/inbox/read", {"comment_id": mine.comment_id},
                                  page="/inbox")
        assert unknown.status_code == 404


async def test_muted_bots_and_blocked_people_do_not_notify(storage: Storage) -> None:
    async with site(storage, consume=True) as (app, base), \
            user_client(base, "alice") as alice, user_client(base, "bob") as bob, \
            socket(base, alice) as a, socket(base, bob) as b:
        ctx = ctx_of(app)
        await a.subscribe("Technology")
        thread = await a.post("Technology", title="Editors", text="which one")
        await a.subscribe("Technology", thread_id=thread.thread_id)
        stored = await storage.threads.get(thread.thread_id)

        async def bot_answers(comment_id: str) -> None:
            """CoopBot answers her comment as the scheduler would ask it, unasked."""
            parent = await storage.comments.get(thread.thread_id, comment_id)
            await asking.submit(storage, asking.reply_request(
                persona=ctx.cast.personas["CoopBot"], thread=stored, chain=[parent],
                parent_id=comment_id, queue=QUEUE_BACKGROUND), depth=1)
            request = await take_request(storage, QUEUE_BACKGROUND)
            await answer(storage, request, text="an answer")
            await a.expect("comment_replaced", lambda e: e.comment.parent_id == comment_id,
                           within=20)
            await ctx.drain()

        first = await a.post("Technology", client_id="c1", thread_id=thread.thread_id,
                             text="I like vim")
        await bot_answers(first.comment_id)
        assert await _unread(storage, "alice") == [("reply", "CoopBot")]
        muted = await form_post(alice, "/bots/CoopBot/mute", {}, page="/settings")
        assert muted.status_code in (302, 303)
        second = await a.post("Technology", client_id="c2", thread_id=thread.thread_id,
                              text="I like emacs too")
        await bot_answers(second.comment_id)
        assert await _unread(storage, "alice") == [("reply", "CoopBot")]  # no second one
        # What it told her before is out of her view while it is muted.
        assert badge((await alice.get("/inbox", headers=HTML)).text) == 0
        # Blocked: bob's reply tells her nothing, and what he said before is hidden.
        await b.subscribe("Technology", thread_id=thread.thread_id)
        await b.post("Technology", client_id="b1", thread_id=thread.thread_id, text="nano!")
        await ctx.drain()
        assert sorted(await _unread(storage, "alice")) == [("reply", "CoopBot"), ("reply", "bob")]
        blocked = await form_post(alice, "/u/bob/block", {}, page="/settings")
        assert blocked.status_code in (302, 303)
        page = (await alice.get("/inbox", headers=HTML)).text
        assert "nano!" not in page and badge(page) == 0
        await b.post("Technology", client_id="b2", thread_id=thread.thread_id, text="ed!")
        await ctx.drain()
        assert len(await storage.inbox.unread("alice")) == 2  # ed! told her nothing
        await form_post(alice, "/u/bob/unblock", {}, page="/settings")
        await b.post("Technology", client_id="b3", thread_id=thread.thread_id, text="joe!")
        await ctx.drain()
        assert len(await storage.inbox.unread("alice")) == 3


async def test_a_private_rooms_notifications_never_reach_a_non_member(
    storage: Storage,
) -> None:
    async with site(storage) as (app, base), user_client(base, "olga") as olga, \
            user_client(base, "sam") as sam, user_client(base, "carl") as carl, \
            socket(base, olga) as o, socket(base, sam) as s:
        ctx = ctx_of(app)
        made = await form_post(olga, "/rooms/new", {"name": "Hideout", "description": "shh"},
                               page="/rooms/new")
        assert made.status_code in (302, 303)
        await form_post(olga, "/r/Hideout/members", {"username": "sam"}, page="/r/Hideout")
        await o.subscribe("Hideout")
        thread = await o.post("Hideout", title="plans", text="hello u/carl and u/sam")
        await s.subscribe("Hideout", thread_id=thread.thread_id)
        answered = await s.post("Hideout", client_id="s1", thread_id=thread.thread_id,
                                text="hi olga, and u/carl")
        await ctx.drain()
        assert await _unread(storage, "sam") == [("mention", "olga")]
        assert await _unread(storage, "olga") == [("reply", "sam")]
        assert await storage.inbox.unread("carl") == []  # named twice, never a member
        # Removed from the room: no new notification, and the old ones are gone from view.
        removed = await form_post(olga, "/r/Hideout/members/remove", {"username": "sam"},
                                  page="/r/Hideout")
        assert removed.status_code in (302, 303)
        await o.subscribe("Hideout", thread_id=thread.thread_id)
        await o.post("Hideout", client_id="o1", thread_id=thread.thread_id,
                     parent_id=answered.comment_id, text="bye u/sam")
        await ctx.drain()
        assert len(await storage.inbox.unread("sam")) == 1  # only the one from before
        page = (await sam.get("/inbox", headers=HTML)).text
        assert "plans" not in page and "hello u/carl" not in page and badge(page) == 0
        assert badge((await sam.get("/", headers=HTML)).text) == 0
        # A stranger's page counts nothing of it either.
        assert badge((await carl.get("/inbox", headers=HTML)).text) == 0


async def test_the_badge_moves_on_another_instance(storage: Storage, redis_url: str) -> None:
    """Bob posts through instance one; Alice's page on instance two hears of it."""
    one = await build(storage, redis_url=redis_url)
    two = await build(storage, redis_url=redis_url)
    async with serve(one) as base_one, serve(two) as base_two, \
            user_client(base_one, "alice") as alice, user_client(base_two, "bob") as bob, \
            socket(base_two, alice) as far, socket(base_one, alice) as a, \
            socket(base_one, bob) as b:
        assert (await far.expect("inbox")).unread == 0
        await a.subscribe("Sports")
        thread = await a.post("Sports", title="derby tonight")
        await b.subscribe("Sports", thread_id=thread.thread_id)
        await b.post("Sports", client_id="r", thread_id=thread.thread_id, text="2-1")
        told = await far.expect("inbox", lambda e: e.added == 1)
        assert told.latest.by == "bob" and told.latest.room == "Sports"
        assert (await alice.get("/inbox", headers=HTML)).text.count("2-1") == 1


async def test_a_deleted_thread_tells_its_author_nothing_and_its_comments_still_notify(
    storage: Storage,
) -> None:
    async with site(storage) as (app, base), user_client(base, "alice") as alice, \
            user_client(base, "bob") as bob, socket(base, alice) as a, socket(base, bob) as b:
        await a.subscribe("Technology")
        thread = await a.post("Technology", title="gone soon", text="x")
        await b.subscribe("Technology", thread_id=thread.thread_id)
        bobs = await b.post("Technology", client_id="b1", thread_id=thread.thread_id,
                            text="first")
        await ctx_of(app).drain()
        assert await _unread(storage, "alice") == [("reply", "bob")]
        gone = await json_post(alice, f"/t/{thread.thread_id}/delete")
        assert gone.status_code == 200
        await a.subscribe("Technology", thread_id=thread.thread_id)
        await a.post("Technology", client_id="a1", thread_id=thread.thread_id,
                     parent_id=bobs.comment_id, text="still talking to you")
        await b.post("Technology", client_id="b2", thread_id=thread.thread_id,
                     text="to the post")
        await ctx_of(app).drain()
        assert await _unread(storage, "bob") == [("reply", "alice")]
        assert await _unread(storage, "alice") == [("reply", "bob")]  # not the second
