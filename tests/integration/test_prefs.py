"""Muting a bot and blocking a person: never called by your posts, hidden in your views
(pages and live), listed in your settings, undone as easily."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar

from playhouse.constants import DEFAULT_ROOM, QUEUE_INTERACTIVE
from playhouse.storage import Storage
from tests.integration.test_web_live import answer, consume, take_request
from tests.integration.web_support import build, form_post, serve, socket, user_client

pytestmark = pytest.mark.integration
HTML = {"accept": "text/html"}


@contextlib.asynccontextmanager
async def site(storage: Storage, **web: Any) -> AsyncIterator[tuple[Litestar, str]]:
    app = await build(storage, **web)
    async with serve(app) as base:
        yield app, base


async def test_a_muted_bot_is_not_called_by_your_posts_and_hidden_from_you(
    storage: Storage,
) -> None:
    async with site(storage) as (app, base), user_client(base, "alice") as alice, \
            user_client(base, "bob") as bob, socket(base, alice) as a, socket(base, bob) as b:
        muted = await form_post(alice, "/bots/coopbot/mute", {}, page="/settings")
        assert muted.status_code in (302, 303)
        assert (await a.expect("prefs")).muted == ("CoopBot",)  # her open page knows
        settings = (await alice.get("/settings", headers=HTML)).text
        assert 'class="muted-bot" data-bot="CoopBot"' in settings
        await a.subscribe("Technology")
        thread = await a.post("Technology", title="Editors", text="which one, u/CoopBot?")
        assert thread.called == () and thread.not_called == ("CoopBot",)
        assert "you muted it" in (thread.notice or "")
        await a.subscribe("Technology", thread_id=thread.thread_id)
        await b.subscribe("Technology", thread_id=thread.thread_id)
        # Bob asks it: it answers him; Alice's page shows a stub in its place.
        asked = await b.post("Technology", client_id="q", thread_id=thread.thread_id,
                             text="and you, u/CoopBot?")
        assert asked.called == ("CoopBot",)
        request = await take_request(storage, QUEUE_INTERACTIVE)
        assert request.parent_id == asked.comment_id  # only Bob's call was made
        await answer(storage, request, text="tabs, always")
        assert await consume(app) == 1
        hers = await a.expect("comment_replaced", lambda e: e.comment.parent_id == asked.comment_id)
        his = await b.expect("comment_replaced", lambda e: e.comment.parent_id == asked.comment_id)
        assert (hers.comment.hidden, hers.comment.text) == ("muted", "")
        assert (his.comment.hidden, his.comment.text) == ("", "tabs, always")
        page = (await alice.get(f"/r/Technology/t/{thread.thread_id}", headers=HTML)).text
        assert "whom you muted" in page and "tabs, always" not in page
        assert "tabs, always" in (await bob.get(f"/r/Technology/t/{thread.thread_id}",
                                                headers=HTML)).text
        # A room's default bot is not called by her new threads either.
        await a.subscribe(DEFAULT_ROOM)
        room = await storage.rooms.get(DEFAULT_ROOM)
        assert room.default_bot
        await form_post(alice, f"/bots/{room.default_bot}/mute", {}, page="/settings")
        await a.expect("prefs", lambda e: room.default_bot in e.muted)
        quiet = await a.post(DEFAULT_ROOM, client_id="d", title="a red fox in snow")
        assert quiet.called == ()
        # Unmuted, it is called again.
        await form_post(alice, "/bots/CoopBot/unmute", {}, page="/settings")
        await a.expect("prefs", lambda e: "CoopBot" not in e.muted)
        assert 'data-bot="CoopBot"' not in (await alice.get("/settings")).text.split(
            "Other bots")[0]
        await a.subscribe("Technology", thread_id=thread.thread_id)
        again = await a.post("Technology", client_id="q2", thread_id=thread.thread_id,
                             text="now, u/CoopBot?")
        assert again.called == ("CoopBot",)


async def test_a_blocked_persons_threads_and_comments_are_hidden_from_the_blocker(
    storage: Storage,
) -> None:
    async with site(storage) as (_, base), user_client(base, "alice") as alice, \
            user_client(base, "bob") as bob, user_client(base, "carol") as carol, \
            socket(base, alice) as a, socket(base, bob) as b:
        await b.subscribe("Technology")
        his = await b.post("Technology", title="Bobs hot take", text="spaces")
        await form_post(alice, "/u/bob/block", {}, page="/settings")
        assert (await a.expect("prefs")).blocked == ("bob",)
        assert "Bobs hot take" not in (await alice.get("/r/Technology", headers=HTML)).text
        assert "Bobs hot take" in (await carol.get("/r/Technology", headers=HTML)).text
        # In a thread: his comment is a stub for her, live and on the page.
        await a.subscribe("Technology")
        mine = await a.post("Technology", client_id="t", title="Alice asks")
        await a.subscribe("Technology", thread_id=mine.thread_id)
        await b.subscribe("Technology", thread_id=mine.thread_id)
        said = await b.post("Technology", client_id="c", thread_id=mine.thread_id,
                            text="I have opinions")
        seen = await a.expect("comment", lambda e: e.comment.id == said.comment_id)
        assert (seen.comment.hidden, seen.comment.text) == ("blocked", "")
        page = (await alice.get(f"/r/Technology/t/{mine.thread_id}", headers=HTML)).text
        assert "whom you blocked" in page and "I have opinions" not in page
        settings = (await alice.get("/settings", headers=HTML)).text
        assert 'data-user="bob"' in settings
        await form_post(alice, "/u/bob/unblock", {}, page="/settings")
        assert "I have opinions" in (await alice.get(f"/r/Technology/t/{mine.thread_id}",
                                                     headers=HTML)).text
        del his


async def test_muting_and_blocking_refuse_what_cannot_be(storage: Storage) -> None:
    async with site(storage) as (_, base), user_client(base, "alice") as alice:
        nobot = await form_post(alice, "/bots/NoSuchBot/mute", {}, page="/settings")
        assert nobot.status_code == 404 and "no bot named u/NoSuchBot" in nobot.text
        me = await form_post(alice, "/u/alice/block", {}, page="/settings")
        assert me.status_code == 400 and "cannot block yourself" in me.text
        bot = await form_post(alice, "/u/CoopBot/block", {}, page="/settings")
        assert bot.status_code == 400 and "mute it instead" in bot.text
        nobody = await form_post(alice, "/u/nobody_here/block", {}, page="/settings")
        assert nobody.status_code == 404
        user = await storage.users.get("alice")
        assert (user.muted, user.blocked) == ((), ())
