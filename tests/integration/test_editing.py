"""Editing and deleting your own threads and comments; a thread's author deleting the
bots' replies under it; what bots read afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar

from playhouse.constants import QUEUE_INTERACTIVE
from playhouse.storage import Storage
from tests.integration.test_web_live import answer, consume, take_request
from tests.integration.web_support import build, json_post, serve, socket, user_client

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def site(storage: Storage, **web: Any) -> AsyncIterator[tuple[Litestar, str]]:
    app = await build(storage, **web)
    async with serve(app) as base:
        yield app, base


async def _thread(live: Any, room: str = "Technology", title: str = "Which editor?",
                  text: str = "vim or emacs") -> str:
    await live.subscribe(room)
    ack = await live.post(room, client_id="t", title=title, text=text)
    await live.subscribe(room, thread_id=ack.thread_id)
    return str(ack.thread_id)


async def _reply(live: Any, thread_id: str, text: str, parent_id: str | None = None,
                 room: str = "Technology", client_id: str = "r") -> str:
    ack = await live.post(room, client_id=client_id, thread_id=thread_id, parent_id=parent_id,
                          text=text)
    assert ack.comment_id, ack
    return str(ack.comment_id)


async def test_an_author_edits_then_deletes_a_comment_and_the_tree_below_stays(
    storage: Storage,
) -> None:
    async with site(storage) as (_, base), user_client(base, "alice") as alice, \
            user_client(base, "bob") as bob, socket(base, alice) as a, socket(base, bob) as b:
        thread_id = await _thread(a)
        await b.subscribe("Technology", thread_id=thread_id)
        mine = await _reply(b, thread_id, "vim, because of the modes")
        below = await _reply(a, thread_id, "modes are the worst part", parent_id=mine)

        edited = await json_post(bob, f"/t/{thread_id}/c/{mine}/edit",
                                 {"text": "emacs, because of lisp"})
        assert edited.status_code == 200, edited.text
        shown = edited.json()["comment"]
        assert shown["text"] == "emacs, because of lisp" and shown["edited_at"].endswith("Z")
        live = await a.expect("comment_changed", lambda e: e.comment.id == mine)
        assert live.comment.text == "emacs, because of lisp" and live.comment.edited_at
        stored = await storage.comments.get(thread_id, mine)
        assert stored.text == "emacs, because of lisp" and stored.edited_at is not None
        (kept,) = await storage.revisions.of(mine)
        assert (kept.text, kept.reason, kept.by) == ("vim, because of the modes", "edit", "bob")
        page = await bob.get(f"/r/Technology/t/{thread_id}", headers={"accept": "text/html"})
        assert "emacs, because of lisp" in page.text and "edited" in page.text

        deleted = await json_post(bob, f"/t/{thread_id}/c/{mine}/delete")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["comment"]["text"] == "[deleted]"
        assert deleted.json()["comment"]["author"] == "[deleted]"
        gone = await a.expect("comment_changed", lambda e: e.comment.id == mine
                              and e.comment.gone == "deleted")
        assert gone.comment.text == "[deleted]" and gone.comment.author == "[deleted]"
        stored = await storage.comments.get(thread_id, mine)
        assert stored.gone == "deleted" and stored.text == ""  # the row keeps no text
        assert [r.text for r in await storage.revisions.of(mine)] == [
            "vim, because of the modes", "emacs, because of lisp"]
        # The reply below keeps its place under the tombstone, in the API and the page.
        tree = (await alice.get(f"/api/threads/{thread_id}")).json()["comments"]
        assert [n["comment"]["text"] for n in tree] == ["[deleted]"]
        assert [n["comment"]["id"] for n in tree[0]["replies"]] == [below]
        page = await alice.get(f"/r/Technology/t/{thread_id}", headers={"accept": "text/html"})
        assert "[deleted]" in page.text and "modes are the worst part" in page.text
        assert "lisp" not in page.text and "because of the modes" not in page.text
        # Nothing is left to edit, and a reply to it is refused with the reason.
        again = await json_post(bob, f"/t/{thread_id}/c/{mine}/edit", {"text": "back"})
        assert again.status_code == 409 and "deleted" in again.json()["detail"]
        refused = await b.post("Technology", client_id="x", thread_id=thread_id,
                               parent_id=mine, text="hello?")
        assert refused.code == "bad_message" and "deleted" in refused.reason


async def test_editing_or_deleting_someone_elses_item_is_refused_and_changes_nothing(
    storage: Storage,
) -> None:
    async with site(storage) as (_, base), user_client(base, "alice") as alice, \
            user_client(base, "bob") as bob, socket(base, alice) as a, socket(base, bob) as b:
        thread_id = await _thread(a)
        await b.subscribe("Technology", thread_id=thread_id)
        bobs = await _reply(b, thread_id, "nano")
        for path, body in ((f"/t/{thread_id}/c/{bobs}/edit", {"text": "alice was here"}),
                           (f"/t/{thread_id}/c/{bobs}/delete", {})):
            refused = await json_post(alice, path, body)
            assert refused.status_code == 403, refused.text
            assert "u/bob's" in refused.json()["detail"]
            assert "only its author" in refused.json()["detail"]
        for path, body in ((f"/t/{thread_id}/edit", {"title": "mine now", "text": "x"}),
                           (f"/t/{thread_id}/delete", {})):
            refused = await json_post(bob, path, body)
            assert refused.status_code == 403, refused.text
            assert "u/alice's" in refused.json()["detail"]
        stored = await storage.comments.get(thread_id, bobs)
        assert stored.text == "nano" and stored.edited_at is None and not stored.gone
        thread = await storage.threads.get(thread_id)
        assert thread.title == "Which editor?" and not thread.gone
        assert await storage.revisions.of(bobs) == []
        assert await storage.revisions.of(thread_id) == []
        # Logged out: told to log in; a bad id: told so.
        async with user_client(base, None) as anonymous:
            nobody = await json_post(anonymous, f"/t/{thread_id}/c/{bobs}/delete",
                                     page="/login")
            assert nobody.status_code == 401 and "log in" in nobody.json()["detail"]
        answer_ = await json_post(bob, f"/t/{thread_id}/c/not-an-id/edit", {"text": "x"})
        assert answer_.status_code in (400, 404)
        empty = await json_post(bob, f"/t/{thread_id}/c/{bobs}/edit", {"text": "   "})
        assert empty.status_code == 400 and "empty" in empty.json()["detail"]
        assert (await storage.comments.get(thread_id, bobs)).text == "nano"


async def test_a_thread_author_deletes_a_bots_reply_under_it_and_nobody_else_may(
    storage: Storage,
) -> None:
    async with site(storage) as (app, base), user_client(base, "alice") as alice, \
            user_client(base, "bob") as bob, socket(base, alice) as a, socket(base, bob) as b:
        thread_id = await _thread(a)
        await b.subscribe("Technology", thread_id=thread_id)
        asked = await _reply(b, thread_id, "what do you say, u/CoopBot?")
        request = await take_request(storage, QUEUE_INTERACTIVE)
        await answer(storage, request, text="tabs, always")
        assert await consume(app) == 1
        bot = await a.expect("comment_replaced", lambda e: e.comment.parent_id == asked)
        # Bob asked it, but the thread is Alice's: only she removes a bot's reply.
        refused = await json_post(bob, f"/t/{thread_id}/c/{bot.comment.id}/delete")
        assert refused.status_code == 403
        assert "only the thread's author" in refused.json()["detail"]
        nobody_edits = await json_post(alice, f"/t/{thread_id}/c/{bot.comment.id}/edit",
                                       {"text": "tabs, never"})
        assert nobody_edits.status_code == 403 and "a bot's" in nobody_edits.json()["detail"]
        # Her own thread does not make Bob's comment hers.
        not_hers = await json_post(alice, f"/t/{thread_id}/c/{asked}/delete")
        assert not_hers.status_code == 403
        removed = await json_post(alice, f"/t/{thread_id}/c/{bot.comment.id}/delete")
        assert removed.status_code == 200, removed.text
        stored = await storage.comments.get(thread_id, bot.comment.id)
        assert stored.gone == "deleted" and stored.text == "" and stored.is_bot
        (kept,) = await storage.revisions.of(bot.comment.id)
        assert kept.text == "tabs, always" and kept.by == "alice"


async def test_bots_never_read_edited_away_or_deleted_text(storage: Storage) -> None:
    async with site(storage) as (_, base), user_client(base, "alice") as alice, \
            user_client(base, "bob") as bob, socket(base, alice) as a, socket(base, bob) as b:
        thread_id = await _thread(a, title="Plans", text="what now")
        await b.subscribe("Technology", thread_id=thread_id)
        first = await _reply(b, thread_id, "the secret plan is X")
        assert (await json_post(bob, f"/t/{thread_id}/c/{first}/edit",
                                {"text": "the public plan is Y"})).status_code == 200
        second = await _reply(a, thread_id, "tell me, u/CoopBot", parent_id=first,
                              client_id="r2")
        request = await take_request(storage, QUEUE_INTERACTIVE)
        assert [c.text for c in request.chain] == ["the public plan is Y", "tell me, u/CoopBot"]
        # Deleted: a later prompt skips it; the post, deleted too, is its tombstone.
        assert (await json_post(bob, f"/t/{thread_id}/c/{first}/delete")).status_code == 200
        assert (await json_post(alice, f"/t/{thread_id}/delete")).status_code == 200
        await _reply(b, thread_id, "and now, u/CoopBot?", parent_id=second, client_id="r3")
        request = await take_request(storage, QUEUE_INTERACTIVE)
        texts = [c.text for c in request.chain]
        assert texts == ["tell me, u/CoopBot", "and now, u/CoopBot?"]
        assert not any("plan" in t for t in texts)
        assert request.post is not None
        assert (request.post.title, request.post.body) == ("[deleted]", "")


async def test_an_edit_racing_a_bots_reply_keeps_what_the_bot_saw_and_the_tree(
    storage: Storage,
) -> None:
    async with site(storage) as (app, base), user_client(base, "alice") as alice, \
            socket(base, alice) as a:
        thread_id = await _thread(a)
        asked = await _reply(a, thread_id, "what is two and two, u/CoopBot?")
        # The call is queued with the text as it was; Alice edits before the bot answers.
        edit = await json_post(alice, f"/t/{thread_id}/c/{asked}/edit",
                               {"text": "what is three and three, u/CoopBot?"})
        assert edit.status_code == 200
        request = await take_request(storage, QUEUE_INTERACTIVE)
        assert request.chain[-1].text == "what is two and two, u/CoopBot?"
        await answer(storage, request, text="four")
        assert await consume(app) == 1
        reply = await a.expect("comment_replaced", lambda e: e.comment.parent_id == asked)
        assert reply.comment.text == "four" and reply.comment.status == "ok"
        # One tree: the edited comment, the bot's answer under it, nothing duplicated.
        comments = (await storage.comments.list(thread_id)).items
        assert [(c.comment_id, c.parent_id, c.text) for c in comments] == [
            (asked, None, "what is three and three, u/CoopBot?"),
            (reply.comment.id, asked, "four")]
        # The answer's job ended done; the next prompt reads the edited question.
        assert (await storage.jobs.get(request.request_id)).state == "done"
        await _reply(a, thread_id, "sure, u/CoopBot?", parent_id=reply.comment.id,
                     client_id="r2")
        later = await take_request(storage, QUEUE_INTERACTIVE)
        assert [c.text for c in later.chain] == [
            "what is three and three, u/CoopBot?", "four", "sure, u/CoopBot?"]


async def test_an_author_edits_and_deletes_a_thread_shown_live_in_the_room(
    storage: Storage,
) -> None:
    async with site(storage) as (_, base), user_client(base, "alice") as alice, \
            user_client(base, "bob") as bob, socket(base, alice) as a, socket(base, bob) as b:
        thread_id = await _thread(a, title="Tyop", text="body")
        await b.subscribe("Technology")
        reply = await _reply(a, thread_id, "a comment that stays")
        edited = await json_post(alice, f"/t/{thread_id}/edit",
                                 {"title": "Typo", "text": "the body, fixed"})
        assert edited.status_code == 200, edited.text
        seen = await b.expect("thread_changed", lambda e: e.thread.id == thread_id)
        assert (seen.thread.title, seen.thread.body) == ("Typo", "the body, fixed")
        assert seen.thread.edited_at
        (kept,) = await storage.revisions.of(thread_id)
        assert (kept.title, kept.text) == ("Tyop", "body")
        assert (await json_post(alice, f"/t/{thread_id}/delete")).status_code == 200
        gone = await b.expect("thread_changed", lambda e: e.thread.gone == "deleted")
        assert gone.thread.title == "[deleted]" and gone.thread.author == "[deleted]"
        listed = (await bob.get("/api/rooms/Technology/threads")).json()["threads"]
        assert [(t["id"], t["title"], t["body"]) for t in listed] == [
            (thread_id, "[deleted]", "")]
        detail = (await bob.get(f"/api/threads/{thread_id}")).json()
        assert [n["comment"]["id"] for n in detail["comments"]] == [reply]
        page = await bob.get(f"/r/Technology/t/{thread_id}", headers={"accept": "text/html"})
        assert "Typo" not in page.text and "fixed" not in page.text


async def test_edits_and_deletions_reach_the_listings_and_the_profile(storage: Storage) -> None:
    """The room's listings and the author's history keep copies of a thread's title and a
    comment's text (issue 16's indexes): an edit or a deletion changed only the rows of
    issue 17, and the room page kept the old title while the profile kept showing the
    deleted words."""
    html = {"accept": "text/html"}
    async with site(storage) as (_, base), user_client(base, "alice") as alice, \
            socket(base, alice) as a:
        thread_id = await _thread(a, title="Which editor?", text="vim or emacs")
        mine = await _reply(a, thread_id, "ed is the standard text editor")
        profile = await alice.get("/u/alice", headers=html)
        assert "Which editor?" in profile.text and "ed is the standard" in profile.text

        edited = await json_post(alice, f"/t/{thread_id}/edit",
                                 {"title": "Which pager?", "text": "less or more"})
        assert edited.status_code == 200, edited.text
        for order in ("new", "hot", "top", "active"):
            room = await alice.get(f"/r/Technology?sort={order}", headers=html)
            assert "Which pager?" in room.text and "Which editor?" not in room.text, order
        assert "Which pager?" in (await alice.get("/u/alice", headers=html)).text

        deleted = await json_post(alice, f"/t/{thread_id}/c/{mine}/delete")
        assert deleted.status_code == 200, deleted.text
        profile = await alice.get("/u/alice", headers=html)
        assert "ed is the standard" not in profile.text
        assert (await storage.authored.get("alice", mine)).text == ""  # type: ignore[union-attr]

        gone = await json_post(alice, f"/t/{thread_id}/delete")
        assert gone.status_code == 200, gone.text
        room = await alice.get("/r/Technology?sort=new", headers=html)
        assert "Which pager?" not in room.text and "[deleted]" in room.text
        assert "Which pager?" not in (await alice.get("/u/alice", headers=html)).text
