"""Moderation on the real app: reports, the queue, removals, locks, bans, roles, the mod log.

A room r/Tea owned by olga, moderated by mia; alice writes, bob reports; mallory
moderates another room, r/Coffee; root is a site admin (``web.admins``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from playhouse import asking, ids
from playhouse.config import ModerationSettings
from playhouse.constants import SITE_ROOM
from playhouse.errors import NotFound
from playhouse.events import Broadcaster
from playhouse.moderation.actions import Moderation
from playhouse.storage import Storage
from tests.integration.web_support import (
    Live,
    build,
    ctx_of,
    form_post,
    serve,
    socket,
    user_client,
)

pytestmark = pytest.mark.integration


@dataclass
class Site:
    base: str
    storage: Storage
    app: Any
    people: dict[str, httpx.AsyncClient]

    def __getitem__(self, name: str) -> httpx.AsyncClient:
        return self.people[name]

    async def form(self, who: str, path: str, data: dict[str, str]) -> httpx.Response:
        return await form_post(self.people[who], path, data)

    async def post_thread(self, who: str, room: str, title: str,
                          text: str = "") -> tuple[str, Any]:
        async with socket(self.base, self.people[who]) as live:
            await live.subscribe(room)
            ack = await live.post(room, title=title, text=text)
        assert not hasattr(ack, "code"), ack  # an ack, not an error
        return ack.thread_id, ack

    async def comment(self, who: str, room: str, thread_id: str, text: str,
                      parent_id: str | None = None) -> Any:
        async with socket(self.base, self.people[who]) as live:
            await live.subscribe(room, thread_id=thread_id)
            return await live.post(room, client_id="c", thread_id=thread_id, text=text,
                                   parent_id=parent_id)


def detail(answer: httpx.Response) -> str:
    return str(answer.json()["detail"])


@contextlib.asynccontextmanager
async def site(storage: Storage, *names: str, moderation: ModerationSettings | None = None,
               **web: Any) -> AsyncIterator[Site]:
    web.setdefault("logins_per_minute", 60)  # a registration each, from one address
    app = await build(storage, admins=("root",), moderation=moderation, **web)
    async with serve(app) as base, contextlib.AsyncExitStack() as stack:
        people = {}
        for name in ("olga", "mia", "alice", "bob", "mallory", "root", *names):
            people[name] = await stack.enter_async_context(user_client(base, name))
        world = Site(base, storage, app, people)
        for owner, room in (("olga", "Tea"), ("mallory", "Coffee")):
            made = await world.form(owner, "/rooms/new", {"name": room, "public": "on",
                                                          "description": f"{room} talk"})
            assert made.status_code in (302, 303), made.text
        granted = await world.form("olga", "/mod/moderators", {"room": "Tea",
                                                                "username": "mia"})
        assert granted.status_code in (302, 303), granted.text
        yield world


async def test_a_report_reaches_the_rooms_moderators_with_the_item_in_context(
    storage: Storage,
) -> None:
    async with site(storage, "carol") as s:
        thread_id, _ = await s.post_thread("alice", "Tea", "Green or black?")
        first = await s.comment("bob", "Tea", thread_id, "green, always")
        reply = await s.comment("alice", "Tea", thread_id, "you are a fool and I know where "
                                "you live", parent_id=first.comment_id)
        sent = await s.form("bob", "/report", {"thread_id": thread_id,
                                               "comment_id": reply.comment_id,
                                               "reason": "harassment",
                                               "details": "a threat"})
        assert sent.status_code == 200 and "moderators of r/Tea" in sent.text
        for mod in ("mia", "olga", "root"):
            queue = await s[mod].get("/mod")
            assert queue.status_code == 200
            for shown in ("I know where you live", "green, always", "Green or black?",
                          "a threat", "Harassment", "u/bob"):
                assert shown in queue.text, (mod, shown)
        elsewhere = await s["mallory"].get("/mod")  # moderates r/Coffee only
        assert elsewhere.status_code == 200 and "know where" not in elsewhere.text
        nobody = await s["carol"].get("/mod")
        assert nobody.status_code == 403 and "you moderate no room" in detail(nobody)
        async with httpx.AsyncClient(base_url=s.base) as anonymous:
            assert (await anonymous.get("/mod")).status_code in (302, 303)


async def test_a_report_flood_is_rate_limited_with_a_clear_error(storage: Storage) -> None:
    async with site(storage, reports_per_hour=3) as s:
        thread_id, _ = await s.post_thread("alice", "Tea", "Five spam comments")
        comments = [await s.comment("alice", "Tea", thread_id, f"buy pills {i}")
                    for i in range(5)]
        for c in comments[:3]:
            ok = await s.form("bob", "/report", {"thread_id": thread_id, "reason": "spam",
                                                 "comment_id": c.comment_id})
            assert ok.status_code == 200
        again = await s.form("bob", "/report", {"thread_id": thread_id, "reason": "spam",
                                                "comment_id": comments[0].comment_id})
        assert again.status_code == 409 and "reported that comment already" in detail(again)
        flood = await s.form("bob", "/report", {"thread_id": thread_id, "reason": "spam",
                                                "comment_id": comments[3].comment_id})
        assert flood.status_code == 429
        assert "3 reports within the hour" in detail(flood) and "min" in detail(flood)
        assert len(await storage.reports.open_in("Tea")) == 3  # nothing of the refused one
        other = await s.form("mia", "/report", {"thread_id": thread_id, "reason": "spam",
                                                "comment_id": comments[3].comment_id})
        assert other.status_code == 200  # a limit per person


async def test_reports_that_cannot_be_are_refused_with_reasons(storage: Storage) -> None:
    async with site(storage) as s:
        thread_id, _ = await s.post_thread("alice", "Tea", "Mine")
        for data, status, why in (
            ({"reason": "spam"}, 400, "no thread_id"),
            ({"thread_id": "nope", "reason": "spam"}, 400, "not an id"),
            ({"thread_id": thread_id, "reason": "boring"}, 400, "choose a reason"),
            ({"thread_id": thread_id, "reason": "other"}, 400, "needs the details"),
            ({"thread_id": ids.new_id(), "reason": "spam"}, 404, "no thread"),
            ({"thread_id": thread_id, "comment_id": ids.new_id(), "reason": "spam"}, 404,
             "no comment"),
        ):
            answer = await s.form("bob", "/report", data)
            assert answer.status_code == status and why in detail(answer), (data, answer.text)
        own = await s.form("alice", "/report", {"thread_id": thread_id, "reason": "spam"})
        assert own.status_code == 400 and "that is yours" in detail(own)


async def test_a_removal_tombstones_the_comment_everywhere_and_the_mod_log_keeps_its_text(
    storage: Storage,
) -> None:
    async with site(storage) as s:
        thread_id, _ = await s.post_thread("alice", "Tea", "Oolong")
        said = "oolong is for people with no taste, idiots"
        target = await s.comment("alice", "Tea", thread_id, said)
        below = await s.comment("bob", "Tea", thread_id, "rude", parent_id=target.comment_id)
        async with socket(s.base, s["bob"]) as watcher:
            await watcher.subscribe("Tea", thread_id=thread_id)
            removed = await s.form("mia", "/mod/remove", {
                "thread_id": thread_id, "comment_id": target.comment_id,
                "reason": "insults", "next": f"/r/Tea/t/{thread_id}"})
            assert removed.status_code in (302, 303), removed.text
            seen = await watcher.expect("moderated",
                                        lambda e: e.comment.id == target.comment_id)
            assert seen.action == "removed"
            assert (seen.comment.text, seen.comment.author) == ("[removed]", "[removed]")
            assert said not in str(watcher.events)
        page = await s["bob"].get(f"/r/Tea/t/{thread_id}")
        assert said not in page.text and "[removed]" in page.text and "rude" in page.text
        api = (await s["bob"].get(f"/api/threads/{thread_id}")).json()
        (node,) = [n for n in api["comments"] if n["comment"]["id"] == target.comment_id]
        assert node["comment"]["text"] == "[removed]" and node["comment"]["gone"] == "removed"
        assert node["replies"][0]["comment"]["id"] == below.comment_id  # the tree stays
        async with socket(s.base, s["bob"]) as fresh:
            history = await fresh.subscribe("Tea", thread_id=thread_id)
            assert said not in str(history)
        # Nothing a person wrote is lost: the row and the mod log keep it.
        stored = await storage.comments.get(thread_id, target.comment_id)
        assert stored.text == said and stored.gone == "removed"
        (entry,) = [e for e in (await storage.modlog.of_room("Tea")).items
                    if e.action == "remove"]
        assert (entry.text, entry.actor, entry.reason, entry.target_user) == (
            said, "mia", "insults", "alice")
        log = await s["mia"].get("/mod/log")
        assert said in log.text and "insults" in log.text
        assert said in (await s["root"].get("/mod/log")).text
        assert said not in (await s["mallory"].get("/mod/log")).text  # not her room
        peek = await s["mallory"].get("/mod/log?room=Tea")
        assert peek.status_code == 403 and "you do not moderate r/Tea" in detail(peek)
        twice = await s.form("mia", "/mod/remove", {"thread_id": thread_id,
                                                    "comment_id": target.comment_id})
        assert twice.status_code == 409 and "removed already" in detail(twice)
        back = await s.form("mia", "/mod/restore", {"thread_id": thread_id,
                                                    "comment_id": target.comment_id})
        assert back.status_code in (302, 303)
        assert said in (await s["bob"].get(f"/r/Tea/t/{thread_id}")).text
        again = await s.form("mia", "/mod/restore", {"thread_id": thread_id,
                                                     "comment_id": target.comment_id})
        assert again.status_code == 409 and "is not removed" in detail(again)


async def test_a_removed_post_is_a_tombstone_in_the_room_and_its_thread(
    storage: Storage,
) -> None:
    async with site(storage) as s:
        thread_id, _ = await s.post_thread("alice", "Tea", "Buy cheap watches",
                                           "at example dot com")
        async with socket(s.base, s["bob"]) as room_watcher:
            await room_watcher.subscribe("Tea")
            gone = await s.form("olga", "/mod/remove", {"thread_id": thread_id,
                                                        "reason": "spam"})
            assert gone.status_code in (302, 303)
            shown = await room_watcher.expect("thread", lambda e: e.thread.id == thread_id)
            assert shown.thread.title == "[removed]" and shown.thread.body == ""
        room = await s["bob"].get("/r/Tea")
        assert "cheap watches" not in room.text and "[removed]" in room.text
        thread = await s["bob"].get(f"/r/Tea/t/{thread_id}")
        assert "cheap watches" not in thread.text and "example dot" not in thread.text
        reply = await s.comment("bob", "Tea", thread_id, "good riddance")
        assert reply.code == "forbidden" and "removed" in reply.reason
        (entry,) = (await storage.modlog.of_room("Tea")).items[:1]
        assert "Buy cheap watches" in entry.text and "at example dot com" in entry.text


async def test_a_moderator_of_one_room_acting_in_another_is_refused(storage: Storage) -> None:
    async with site(storage, "carol") as s:
        thread_id, _ = await s.post_thread("alice", "Tea", "Darjeeling")
        c = await s.comment("alice", "Tea", thread_id, "first flush")
        for path, data in (
            ("/mod/remove", {"thread_id": thread_id, "comment_id": c.comment_id}),
            ("/mod/lock", {"thread_id": thread_id}),
            ("/mod/ban", {"room": "Tea", "username": "alice"}),
            ("/mod/moderators", {"room": "Tea", "username": "carol"}),
        ):
            refused = await s.form("mallory", path, data)
            assert refused.status_code == 403, (path, refused.text)
            assert "r/Tea" in detail(refused) and "r/Coffee" in detail(refused), path
            nobody = await s.form("carol", path, data)
            assert nobody.status_code == 403 and "you do not" in detail(nobody), path
        # a moderator is not an owner: she cannot appoint, nor ban an owner
        appoint = await s.form("mia", "/mod/moderators", {"room": "Tea", "username": "carol"})
        assert appoint.status_code == 403 and "you do not own r/Tea" in detail(appoint)
        owner = await s.form("mia", "/mod/ban", {"room": "Tea", "username": "olga"})
        assert owner.status_code == 403 and "an owner of r/Tea" in detail(owner)
        assert (await storage.comments.get(thread_id, c.comment_id)).gone == ""
        assert not (await storage.threads.get(thread_id)).locked
        assert [e.action for e in (await storage.modlog.of_room("Tea")).items] == ["grant"]


async def test_actions_that_cannot_be_are_refused_with_reasons(storage: Storage) -> None:
    async with site(storage) as s:
        thread_id, _ = await s.post_thread("alice", "Tea", "Rooibos")
        for path, data, status, why in (
            ("/mod/ban", {"room": "Tea", "username": "nobody"}, 404, "no user named"),
            ("/mod/ban", {"room": "Nowhere", "username": "alice"}, 404, "no room"),
            ("/mod/unban", {"room": "Tea", "username": "alice"}, 409, "not banned"),
            ("/mod/moderators", {"room": "Tea", "username": "mia"}, 409, "already"),
            ("/mod/moderators/remove", {"room": "Tea", "username": "bob"}, 409,
             "not a moderator"),
            ("/mod/remove", {"thread_id": ids.new_id()}, 404, "no thread"),
            ("/mod/remove", {"thread_id": "x"}, 400, "not an id"),
            ("/mod/restore", {"thread_id": thread_id}, 409, "not removed"),
            ("/mod/approve", {"thread_id": thread_id}, 409, "not waiting"),
            ("/mod/unlock", {"thread_id": thread_id}, 409, "unlocked already"),
            ("/mod/ban", {"scope": "site", "username": "alice"}, 403, "site's admins"),
            ("/mod/remove", {"thread_id": thread_id, "reason": "x" * 501}, 400, "at most"),
        ):
            who = "olga"
            answer = await s.form(who, path, data)
            assert answer.status_code == status and why in detail(answer), (path, answer.text)
        banned = await s.form("mia", "/mod/ban", {"room": "Tea", "username": "alice"})
        assert banned.status_code in (302, 303)
        twice = await s.form("mia", "/mod/ban", {"room": "Tea", "username": "alice"})
        assert twice.status_code == 409 and "already" in detail(twice)
        reported = await s.form("bob", "/report", {"thread_id": thread_id, "reason": "spam"})
        assert reported.status_code == 200
        (report,) = await storage.reports.open_in("Tea")
        form = {"room": "Tea", "report_id": report.report_id, "reason": "not spam"}
        elsewhere = await s.form("mallory", "/mod/dismiss", form)
        assert elsewhere.status_code == 403
        assert (await s.form("mia", "/mod/dismiss", form)).status_code in (302, 303)
        settled = await s.form("mia", "/mod/dismiss", form)
        assert settled.status_code == 409 and "settled already (dismiss by u/mia)" in (
            detail(settled))
        missing = await s.form("mia", "/mod/dismiss", {**form, "report_id": "x" + "0" * 25})
        assert missing.status_code == 404


async def test_a_locked_thread_takes_no_comments_and_its_awaited_bot_answers_fail(
    storage: Storage,
) -> None:
    async with site(storage) as s:
        thread_id, _ = await s.post_thread("alice", "Tea", "Matcha")
        first = await s.comment("alice", "Tea", thread_id, "whisked")
        thread = await storage.threads.get(thread_id)
        request = asking.reply_request(persona=ctx_of(s.app).cast.personas["CoopBot"],
                                       thread=thread, chain=[], parent_id=None,
                                       queue="gen-interactive")
        placeholder = await asking.submit(storage, request)  # a bot answer awaited
        assert placeholder is not None
        async with socket(s.base, s["bob"]) as watcher:
            await watcher.subscribe("Tea", thread_id=thread_id)
            locked = await s.form("mia", "/mod/lock", {"thread_id": thread_id,
                                                      "reason": "heated"})
            assert locked.status_code in (302, 303)
            told = await watcher.expect("moderated", lambda e: e.action == "locked")
            assert told.thread.locked
            failed = await watcher.expect("comment_replaced",
                                          lambda e: e.comment.id == placeholder.comment_id)
            assert failed.comment.status == "failed" and "locked" in failed.comment.text
        refused = await s.comment("bob", "Tea", thread_id, "but matcha is great",
                                  parent_id=first.comment_id)
        assert refused.code == "forbidden" and "locked" in refused.reason
        note = await s.comment("mia", "Tea", thread_id, "Locked: keep it civil.")
        assert not hasattr(note, "code") and note.comment_id and note.called == ()
        listed = (await storage.comments.list(thread_id)).items
        assert "but matcha is great" not in [c.text for c in listed]
        page = await s["bob"].get(f"/r/Tea/t/{thread_id}")
        assert "This thread is locked" in page.text and 'id="reply-top"' not in page.text
        opened = await s.form("mia", "/mod/unlock", {"thread_id": thread_id})
        assert opened.status_code in (302, 303)
        ok = await s.comment("bob", "Tea", thread_id, "thanks")
        assert ok.comment_id


async def _socket_closed(live: Live, within: float = 10.0) -> int | None:
    deadline = time.monotonic() + within
    with contextlib.suppress(ConnectionClosed):
        while time.monotonic() < deadline:
            await asyncio.wait_for(live.ws.recv(), max(0.1, deadline - time.monotonic()))
    return live.ws.close_code


async def test_a_room_ban_refuses_the_banned_users_open_socket_and_stores_nothing_of_it(
    storage: Storage,
) -> None:
    async with site(storage) as s:
        thread_id, _ = await s.post_thread("bob", "Tea", "Assam")
        before = len((await storage.comments.list(thread_id)).items)
        async with socket(s.base, s["alice"]) as alice:
            await alice.subscribe("Tea", thread_id=thread_id)
            ok = await alice.post("Tea", client_id="a1", thread_id=thread_id, text="malty")
            assert ok.comment_id
            banned = await s.form("mia", "/mod/ban", {"room": "Tea", "username": "alice",
                                                      "reason": "trolling"})
            assert banned.status_code in (302, 303)
            notice = await alice.expect("banned")
            assert notice.room == "Tea" and notice.reason == "trolling"
            for n in range(3):
                refused = await alice.post("Tea", client_id=f"b{n}", thread_id=thread_id,
                                           text=f"after the ban {n}")
                assert refused.code == "banned" and "trolling" in refused.reason
            new = await alice.post("Tea", client_id="t", title="a new thread after the ban")
            assert new.code == "banned"
            # she still reads the public room; elsewhere she posts as before
            await alice.subscribe("Coffee")
            elsewhere = await alice.post("Coffee", client_id="e", title="espresso")
            assert elsewhere.thread_id
        texts = [c.text for c in (await storage.comments.list(thread_id)).items]
        assert len(texts) == before + 1 and not [t for t in texts if "after the ban" in t]
        assert "a new thread after the ban" not in [
            t.title for t in (await storage.threads.list("Tea")).items]
        page = await s["alice"].get("/r/Tea")
        assert "You are banned from r/Tea" in page.text
        joined = await s.form("alice", "/r/Tea/join", {})
        assert joined.status_code == 403 and "banned" in detail(joined)
        lifted = await s.form("olga", "/mod/unban", {"room": "Tea", "username": "alice"})
        assert lifted.status_code in (302, 303)
        back = await s.comment("alice", "Tea", thread_id, "sorry")
        assert back.comment_id
        actions = [e.action for e in (await storage.modlog.of_room("Tea")).items]
        assert actions[:2] == ["unban", "ban"]


async def test_a_site_ban_closes_the_users_socket_and_ends_their_sessions(
    storage: Storage,
) -> None:
    async with site(storage) as s:
        thread_id, _ = await s.post_thread("bob", "Tea", "Earl Grey")
        async with socket(s.base, s["alice"]) as alice:
            await alice.subscribe("Tea", thread_id=thread_id)
            banned = await s.form("root", "/mod/ban", {"scope": "site", "username": "alice",
                                                       "reason": "spam bot"})
            assert banned.status_code in (302, 303), banned.text
            notice = await alice.expect("banned")
            assert notice.room is None
            told = await alice.expect("error")
            assert told.code == "banned" and "spam bot" in told.reason
            assert await _socket_closed(alice) == 4403
        home = await s["alice"].get("/")
        assert "u/alice" not in home.text  # her session is over
        assert not [c for c in (await storage.comments.list(thread_id)).items
                    if c.author == "alice"]
        async with httpx.AsyncClient(base_url=s.base) as again:
            login = await form_post(again, "/login", {"username": "alice",
                                                      "password": "correct horse battery"},
                                    page="/login")
            assert login.status_code == 403 and "banned from the site" in login.text
        assert (await storage.members.get(SITE_ROOM, "alice")) is not None
        refused = await s.form("mia", "/mod/ban", {"scope": "site", "username": "bob"})
        assert refused.status_code == 403  # a room's moderator bans from her room only


async def test_a_ban_that_lands_before_its_notice_still_refuses_and_closes_the_socket(
    storage: Storage,
) -> None:
    """The ban is written by another instance whose notice has not arrived: the post
    after it is refused all the same (every post reads the poster's standing)."""
    async with site(storage) as s:
        thread_id, _ = await s.post_thread("bob", "Tea", "Chai")
        silent = Moderation(storage, Broadcaster(lambda data, channels: None,
                                                 storage.namespace), ("root",))
        async with socket(s.base, s["alice"]) as alice:
            await alice.subscribe("Tea", thread_id=thread_id)
            await silent.ban("mia", "alice", await storage.rooms.get("Tea"), "elsewhere")
            refused = await alice.post("Tea", client_id="x", thread_id=thread_id,
                                       text="room-banned but not told yet")
            assert refused.code == "banned"
            await silent.ban("root", "alice", None, "also elsewhere")
            refused = await alice.post("Tea", client_id="y", thread_id=thread_id,
                                       text="site-banned but not told yet")
            assert refused.code == "banned" and "the site" in refused.reason
            assert await _socket_closed(alice) == 4403
        assert not [c for c in (await storage.comments.list(thread_id)).items
                    if c.author == "alice"]


async def test_a_removed_member_of_a_private_room_loses_its_open_page(
    storage: Storage,
) -> None:
    async with site(storage) as s:
        made = await s.form("olga", "/rooms/new", {"name": "Backroom"})
        assert made.status_code in (302, 303)
        added = await s.form("olga", "/r/Backroom/members", {"username": "bob"})
        assert added.status_code in (302, 303)
        thread_id, _ = await s.post_thread("olga", "Backroom", "Secret blend")
        async with socket(s.base, s["bob"]) as bob:
            await bob.subscribe("Backroom", thread_id=thread_id)
            removed = await s.form("olga", "/r/Backroom/members/remove", {"username": "bob"})
            assert removed.status_code in (302, 303)
            ended = await bob.expect("access_ended")
            assert ended.room == "Backroom"
            refused = await bob.expect("error")
            assert refused.code == "forbidden" and "private" in refused.reason
            after = await bob.post("Backroom", client_id="z", thread_id=thread_id,
                                   text="still here?")
            assert after.code == "not_subscribed"
            await s.post_thread("olga", "Backroom", "After bob left")
            await bob.quiet(0.3)
            assert "After bob left" not in str(bob.events)
        actions = [e.action for e in (await storage.modlog.of_room("Backroom")).items]
        assert actions[:2] == ["remove_member", "add_member"]


async def test_moderators_are_appointed_and_dismissed_by_owners_and_logged(
    storage: Storage,
) -> None:
    async with site(storage, "carol") as s:
        page = await s["bob"].get("/r/Tea")
        assert "Moderators: u/mia, u/olga" in page.text
        thread_id, _ = await s.post_thread("alice", "Tea", "Sencha")
        c = await s.comment("alice", "Tea", thread_id, "grassy")
        made = await s.form("olga", "/mod/moderators", {"room": "Tea", "username": "carol"})
        assert made.status_code in (302, 303)
        ok = await s.form("carol", "/mod/remove", {"thread_id": thread_id,
                                                   "comment_id": c.comment_id})
        assert ok.status_code in (302, 303)
        dismissed = await s.form("olga", "/mod/moderators/remove", {"room": "Tea",
                                                                    "username": "carol"})
        assert dismissed.status_code in (302, 303)
        refused = await s.form("carol", "/mod/restore", {"thread_id": thread_id,
                                                         "comment_id": c.comment_id})
        assert refused.status_code == 403
        entries = (await storage.modlog.of_room("Tea")).items
        assert [(e.action, e.target_user, e.detail) for e in entries
                if e.action in ("grant", "revoke")][:2] == [
            ("revoke", "carol", "moderator"), ("grant", "carol", "moderator")]


async def test_an_owner_edits_the_room_and_the_edit_is_logged(storage: Storage) -> None:
    async with site(storage) as s:
        edited = await s.form("olga", "/r/Tea/edit", {
            "description": "Only leaves, no bags", "bots": "CoopBot", "default_bot": "CoopBot"})
        assert edited.status_code in (302, 303), edited.text
        room = await storage.rooms.get("Tea")
        assert (room.description, room.bots, room.default_bot, room.bots_post) == (
            "Only leaves, no bags", ("CoopBot",), "CoopBot", False)
        assert "Only leaves, no bags" in (await s["bob"].get("/r/Tea")).text
        (entry,) = [e for e in (await storage.modlog.of_room("Tea")).items
                    if e.action == "edit_room"]
        assert "description" in entry.detail and "default bot CoopBot" in entry.detail
        assert entry.text == "Tea talk"  # the description as it was
        for who, data, status, why in (
            ("mia", {"description": "mine now"}, 403, "you do not own r/Tea"),
            ("bob", {"description": "mine now"}, 403, "you do not own r/Tea"),
            ("olga", {"bots": "CoopBot", "default_bot": "ImageBot"}, 400,
             "default bot must be one of"),
            ("olga", {"bots": "NoSuchBot"}, 400, "no bot called NoSuchBot"),
            ("olga", {"description": "x" * 501}, 400, "at most 500"),
            ("olga", {"description": "bell \x07"}, 400, "control character"),
        ):
            answer = await s.form(who, "/r/Tea/edit", data)
            assert answer.status_code == status and why in answer.text, (who, data)
        assert (await storage.rooms.get("Tea")).description == "Only leaves, no bags"


async def test_the_word_filter_refuses_with_the_word_and_what_to_do(storage: Storage) -> None:
    async with site(storage, moderation=ModerationSettings(blocked_words=("darn",))) as s:
        async with socket(s.base, s["alice"]) as alice:
            await alice.subscribe("Tea")
            refused = await alice.post("Tea", title="well D4RN it")
            assert refused.code == "blocked_word"
            assert '"D4RN"' in refused.reason and "take it out" in refused.reason
            ack = await alice.post("Tea", client_id="ok", title="clean")
            await alice.subscribe("Tea", thread_id=ack.thread_id)
            refused = await alice.post("Tea", client_id="c", thread_id=ack.thread_id,
                                       text="d.a.r.n this")
            assert refused.code == "blocked_word" and '"d.a.r.n"' in refused.reason
        assert not (await storage.comments.list(ack.thread_id)).items
        described = await s.form("alice", "/rooms/new", {"name": "Darned",
                                                         "description": "a dárn room"})
        assert described.status_code == 400 and "a word this site does not allow" in (
            described.text)


async def test_held_posts_wait_unseen_for_a_moderator_then_show_live(
    storage: Storage,
) -> None:
    hold = ModerationSettings(blocked_words=("darn",), filter_mode="hold")
    async with site(storage, moderation=hold) as s:
        thread_id, _ = await s.post_thread("bob", "Tea", "Pu-erh")
        async with socket(s.base, s["bob"]) as bob, socket(s.base, s["alice"]) as alice:
            await bob.subscribe("Tea", thread_id=thread_id)
            await alice.subscribe("Tea", thread_id=thread_id)
            held = await alice.post("Tea", client_id="h", thread_id=thread_id,
                                    text="darn good tea")
            assert held.comment_id and "waits for a moderator" in held.notice
            await bob.quiet(0.3)
            assert "darn good" not in str(bob.events)
            for who, sees in (("bob", False), ("alice", True), ("mia", True)):
                page = await s[who].get(f"/r/Tea/t/{thread_id}")
                assert ("darn good tea" in page.text) is sees, who
            assert "darn good" not in str((await s["bob"].get(
                f"/api/threads/{thread_id}")).json())
            queue = await s["mia"].get("/mod")
            assert "darn good tea" in queue.text and "held by the word filter" in queue.text
            approve = await s.form("mia", "/mod/approve", {"thread_id": thread_id,
                                                           "comment_id": held.comment_id})
            assert approve.status_code in (302, 303)
            shown = await bob.expect("comment", lambda e: e.comment.id == held.comment_id)
            assert shown.comment.text == "darn good tea" and not shown.comment.held
        assert "darn good tea" in (await s["bob"].get(f"/r/Tea/t/{thread_id}")).text
        assert "darn good tea" not in (await s["mia"].get("/mod")).text


async def test_a_removed_comments_words_never_reach_a_bots_prompt(storage: Storage) -> None:
    async with site(storage) as s:
        thread_id, _ = await s.post_thread("alice", "Tea", "Milk first?")
        secret = "the milk goes in first, heretics"
        top = await s.comment("alice", "Tea", thread_id, secret)
        below = await s.comment("olga", "Tea", thread_id, "heresy, surely",
                                parent_id=top.comment_id)
        removed = await s.form("mia", "/mod/remove", {"thread_id": thread_id,
                                                      "comment_id": top.comment_id})
        assert removed.status_code in (302, 303)
        # A removed comment takes no replies (as on Reddit); the tree below it stays.
        refused = await s.comment("bob", "Tea", thread_id, "u/CoopBot?",
                                  parent_id=top.comment_id)
        assert type(refused).__name__ == "Error" and "removed" in refused.reason
        ask = await s.comment("bob", "Tea", thread_id, "what say you, u/CoopBot?",
                              parent_id=below.comment_id)
        assert ask.called == ("CoopBot",)
        request_id = asking.request_id_for(ask.comment_id, "CoopBot")
        job = await storage.jobs.get(request_id)
        assert secret not in job.payload
        chain = asking.decode_job_request(job).chain
        assert [c.text for c in chain] == ["heresy, surely", "what say you, u/CoopBot?"]


async def test_a_held_thread_is_listed_for_nobody_else_until_approved_and_then_calls_its_bot(
    storage: Storage,
) -> None:
    hold = ModerationSettings(blocked_words=("darn",), filter_mode="hold")
    async with site(storage, moderation=hold) as s:
        async with socket(s.base, s["alice"]) as alice, socket(s.base, s["bob"]) as bob:
            await alice.subscribe("Tea")
            await bob.subscribe("Tea")
            held = await alice.post("Tea", title="Darn fine oolong",
                                    text="what do you think, u/CoopBot?")
            assert "title" in held.notice and "waits for a moderator" in held.notice
            assert held.called == ()  # nobody is asked about what nobody sees yet
            await bob.quiet(0.3)
            assert "oolong" not in str(bob.events)
            for who, sees in (("bob", False), ("alice", True), ("mia", True),
                              ("mallory", False)):
                room = await s[who].get("/r/Tea")
                assert ("Darn fine oolong" in room.text) is sees, who
            hidden = await s["bob"].get(f"/r/Tea/t/{held.thread_id}")
            assert hidden.status_code == 404
            api = (await s["bob"].get("/api/rooms/Tea/threads")).json()
            assert held.thread_id not in [t["id"] for t in api["threads"]]
            async with socket(s.base, s["bob"]) as late:
                history = await late.subscribe("Tea")
                assert held.thread_id not in [t.id for t in history.threads]
            async with socket(s.base, s["bob"]) as peek:
                refused = await peek.subscribe("Tea", thread_id=held.thread_id)
                assert refused.code == "not_found"  # for him there is no such thread yet
            reply = await bob.post("Tea", client_id="r", thread_id=held.thread_id,
                                   text="let me in")
            assert reply.code == "not_found"
            approve = await s.form("olga", "/mod/approve", {"thread_id": held.thread_id})
            assert approve.status_code in (302, 303)
            shown = await bob.expect("thread", lambda e: e.thread.id == held.thread_id)
            assert shown.thread.title == "Darn fine oolong" and not shown.thread.held
        job = await storage.jobs.get(asking.request_id_for(held.thread_id, "CoopBot"))
        assert job.persona == "CoopBot" and job.thread_id == held.thread_id
        assert "Darn fine oolong" in (await s["bob"].get("/r/Tea")).text


async def test_a_held_post_approved_after_its_author_was_banned_calls_no_bot(
    storage: Storage,
) -> None:
    hold = ModerationSettings(blocked_words=("darn",), filter_mode="hold")
    async with site(storage, moderation=hold) as s:
        async with socket(s.base, s["alice"]) as alice:
            await alice.subscribe("Tea")
            held = await alice.post("Tea", title="Darn fine oolong",
                                    text="what do you think, u/CoopBot?")
        assert held.called == ()
        banned = await s.form("mia", "/mod/ban", {"room": "Tea", "username": "alice",
                                                  "reason": "spam"})
        assert banned.status_code in (302, 303), banned.text
        approve = await s.form("olga", "/mod/approve", {"thread_id": held.thread_id})
        assert approve.status_code in (302, 303), approve.text
        assert "Darn fine oolong" in (await s["bob"].get("/r/Tea")).text  # shown
        await ctx_of(s.app).drain()
        with pytest.raises(NotFound):  # but a banned person calls no bot
            await storage.jobs.get(asking.request_id_for(held.thread_id, "CoopBot"))
