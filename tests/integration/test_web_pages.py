"""Pages, accounts, rooms and the REST API, served by uvicorn and read with httpx.

Litestar's AsyncTestClient runs the app on a portal thread with its own event loop, where
the Azure ``.aio`` clients opened by the ``storage`` fixture cannot be used; a real server
in the test's loop can.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from playhouse import ids
from playhouse.constants import DEFAULT_BOT, DEFAULT_ROOM
from playhouse.storage import Storage
from playhouse.storage.models import Comment, Thread
from tests.integration.web_support import PASSWORD, build, csrf_from, form_post, register, serve

pytestmark = pytest.mark.integration

HTML = {"accept": "text/html"}


async def _thread(storage: Storage, room: str, title: str, author: str = "alice") -> Thread:
    now = time.time()
    thread = Thread(thread_id=ids.new_id(now), room=room, title=title, body="body text",
                    url=None, author=author, is_bot=False, persona=None, created_at=now,
                    last_activity=now)
    await storage.threads.create(thread)
    return thread


async def _comment(storage: Storage, thread: Thread, text: str, parent: Comment | None = None,
                   *, author: str = "alice", is_bot: bool = False) -> Comment:
    comment = Comment(comment_id=ids.new_id(), thread_id=thread.thread_id, room=thread.room,
                      parent_id=parent.comment_id if parent else None, author=author,
                      is_bot=is_bot, persona=author if is_bot else None, text=text,
                      created_at=time.time(), depth=parent.depth + 1 if parent else 0)
    return await storage.comments.add(comment)


async def test_home_lists_the_seed_rooms_with_their_bots(storage: Storage) -> None:
    app = await build(storage)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        page = await client.get("/", headers=HTML)
        assert page.status_code == 200
        assert f"r/{DEFAULT_ROOM}" in page.text
        assert "u/ImageBot" in page.text
        rooms = (await client.get("/api/rooms")).json()
        front = next(r for r in rooms if r["name"] == DEFAULT_ROOM)
        assert front["default_bot"] == DEFAULT_BOT and DEFAULT_BOT in front["bots"]
        assert front["public"] is True


async def test_session_cookie_is_secure_behind_tls(storage: Storage) -> None:
    app = await build(storage, secure_cookies=True)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        form = await client.get("/register")
        assert "secure" in form.headers["set-cookie"].lower()  # the CSRF cookie too
        csrf_cookie = form.headers["set-cookie"].split(";")[0]
        # httpx keeps Secure cookies off plain http, as a browser would: send it by hand.
        answer = await client.post(
            "/register", headers={"cookie": csrf_cookie},
            data={"username": "tls_user", "password": PASSWORD, "password2": PASSWORD,
                  "_csrf_token": csrf_from(form.text)},
        )
        assert answer.status_code in (302, 303), answer.text
        cookie = answer.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie


async def test_register_login_logout_and_cookie_flags(storage: Storage) -> None:
    app = await build(storage)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        answer = await register(client, "Alice")
        assert answer.status_code in (302, 303)
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
        user = await storage.users.get("alice")
        assert user.password_hash.startswith("$argon2")
        assert PASSWORD not in user.password_hash
        assert "u/Alice" in (await client.get("/", headers=HTML)).text
    # A fresh client: log in with the password, then out.
    app = await build(storage)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        bad = await form_post(client, "/login", {"username": "alice", "password": "nope-nope"},
                              page="/login")
        assert bad.status_code == 400 and "wrong user name or password" in bad.text
        good = await form_post(client, "/login", {"username": "alice", "password": PASSWORD},
                               page="/login")
        assert good.status_code in (302, 303)
        assert "u/Alice" in (await client.get("/", headers=HTML)).text
        out = await form_post(client, "/logout", {})
        assert out.status_code in (302, 303)
        assert "u/Alice" not in (await client.get("/", headers=HTML)).text


async def test_registration_refusals(storage: Storage) -> None:
    app = await build(storage, logins_per_minute=60)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        assert (await register(client, "ImageBot")).status_code == 400  # a bot's name
        assert (await register(client, "a")).status_code == 400
        assert (await register(client, "bob", password="short")).status_code == 400
        assert (await register(client, "bob<script>")).status_code == 400
        assert (await register(client, "bob")).status_code in (302, 303)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        taken = await register(client, "BOB")
        assert taken.status_code == 400 and "taken" in taken.text


async def test_forms_without_csrf_token_are_refused(storage: Storage) -> None:
    app = await build(storage)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        await client.get("/register")
        answer = await client.post("/register", data={"username": "carol", "password": PASSWORD,
                                                      "password2": PASSWORD})
        assert answer.status_code == 403
        assert await storage.users.find("carol") is None
        forged = await client.post("/login", data={"username": "carol", "password": PASSWORD,
                                                   "_csrf_token": "forged"})
        assert forged.status_code == 403


async def test_tampered_session_cookie_is_anonymous(storage: Storage) -> None:
    app = await build(storage)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        await register(client, "dave")
        assert "u/dave" in (await client.get("/", headers=HTML)).text
        name = next(c.name for c in client.cookies.jar if c.name.startswith("playhouse_session"))
        value = client.cookies[name]
        for at in (20, len(value) - 6):  # in the ciphertext, then in the expiry part
            flipped = value[:at] + ("A" if value[at] != "A" else "B") + value[at + 1:]
            page = await client.get("/", headers={**HTML, "cookie": f"{name}={flipped}"})
            assert page.status_code == 200
            assert "u/dave" not in page.text and "log in" in page.text


async def test_login_is_rate_limited(storage: Storage) -> None:
    app = await build(storage, logins_per_minute=6, login_failures_per_minute=3)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        token = csrf_from((await client.get("/login")).text)
        codes = []
        for _ in range(5):
            answer = await client.post("/login", data={"username": "eve", "password": "x" * 9,
                                                       "_csrf_token": token})
            codes.append(answer.status_code)
        assert codes[:3] == [400, 400, 400] and codes[-1] == 429


async def test_room_and_thread_pages_escape_user_text(storage: Storage) -> None:
    app = await build(storage)
    thread = await _thread(storage, DEFAULT_ROOM, "<script>alert(1)</script>")
    top = await _comment(storage, thread, "<b>bold?</b>")
    await _comment(storage, thread, "a bot answers", top, author="CoopBot", is_bot=True)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        room = await client.get(f"/r/{DEFAULT_ROOM}", headers=HTML)
        assert room.status_code == 200
        assert "<script>alert(1)</script>" not in room.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in room.text
        page = await client.get(f"/r/{DEFAULT_ROOM}/t/{thread.thread_id}", headers=HTML)
        assert page.status_code == 200
        assert "&lt;b&gt;bold?&lt;/b&gt;" in page.text and "<b>bold?" not in page.text
        assert f'id="c-{top.comment_id}"' in page.text
        assert "badge bot" in page.text and "a bot answers" in page.text
        wrong_room = await client.get(f"/r/Sports/t/{thread.thread_id}", headers=HTML)
        assert wrong_room.status_code == 404


async def test_room_page_pages_threads_newest_first(storage: Storage) -> None:
    app = await build(storage, history_page=3)
    for i in range(5):
        await _thread(storage, "Cooking", f"recipe number {i}")
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        first = (await client.get("/r/Cooking", headers=HTML)).text
        assert first.index("recipe number 4") < first.index("recipe number 2")
        assert "recipe number 1" not in first
        listed = (await client.get("/api/rooms/Cooking/threads?limit=3")).json()
        assert [t["title"] for t in listed["threads"]] == [
            "recipe number 4", "recipe number 3", "recipe number 2"]
        older = (await client.get("/api/rooms/Cooking/threads",
                                  params={"limit": 3, "page": listed["next"]})).json()
        assert [t["title"] for t in older["threads"]] == ["recipe number 1", "recipe number 0"]
        assert older["next"] is None
        for t in listed["threads"]:
            assert {"author", "is_bot", "created_at"} <= set(t)


async def test_a_picture_thread_shows_its_image_in_the_room_and_thread_pages(
    storage: Storage,
) -> None:
    app = await build(storage)
    now = time.time()
    picture = Thread(thread_id=ids.new_id(), room="Art", title="a lighthouse in a storm",
                     body="", url=None, author="ImageBot", is_bot=True, persona="ImageBot",
                     created_at=now, last_activity=now, image_blob="Art/0001.png")
    await storage.threads.create(picture)
    await _thread(storage, "Art", "no picture here")
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        room = (await client.get("/r/Art", headers=HTML)).text
        assert room.count('class="thumb"') == 1
        assert 'class="thumb" src="/images/Art/0001.png"' in room
        page = (await client.get(f"/r/Art/t/{picture.thread_id}", headers=HTML)).text
        assert 'src="/images/Art/0001.png"' in page
        api = (await client.get("/api/rooms/Art/threads")).json()["threads"]
        assert {t["title"]: t["image_url"] for t in api} == {
            "a lighthouse in a storm": "/images/Art/0001.png", "no picture here": None}


async def test_api_thread_is_a_tree(storage: Storage) -> None:
    app = await build(storage)
    thread = await _thread(storage, "Music", "what are you playing")
    top = await _comment(storage, thread, "jazz")
    await _comment(storage, thread, "which jazz?", top, author="CoopBot", is_bot=True)
    await _comment(storage, thread, "rock")
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        body = (await client.get(f"/api/threads/{thread.thread_id}")).json()
        assert body["thread"]["title"] == "what are you playing"
        assert [n["comment"]["text"] for n in body["comments"]] == ["jazz", "rock"]
        reply = body["comments"][0]["replies"][0]["comment"]
        assert reply["is_bot"] is True and reply["author"] == "CoopBot"
        assert reply["created_at"].endswith("Z")
        assert (await client.get("/api/threads/notanid")).status_code == 404
        personas = (await client.get("/api/personas")).json()
        assert any(p["name"] == "ImageBot" and p["kind"] == "image" for p in personas)
        schema = await client.get("/schema/openapi.json")
        assert schema.status_code == 200
        assert "/api/threads/{thread_id}" in schema.json()["paths"]


async def test_private_room_is_for_members_only(storage: Storage) -> None:
    app = await build(storage)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as owner:
        await register(owner, "olga")
        made = await form_post(owner, "/rooms/new",
                               {"name": "Secret_Club", "description": "shh",
                                "bots": "CoopBot"}, page="/rooms/new")
        assert made.status_code in (302, 303)
        room = await storage.rooms.get("Secret_Club")
        assert room.public is False and room.bots == ("CoopBot",)
        assert (await owner.get("/r/Secret_Club", headers=HTML)).status_code == 200
        thread = await _thread(storage, "Secret_Club", "members only", author="olga")
        async with httpx.AsyncClient(base_url=base) as stranger:
            await register(stranger, "sam")
            for path in ("/r/Secret_Club", "/api/rooms/Secret_Club/threads"):
                assert (await stranger.get(path)).status_code == 403, path
            # A private thread, asked for by its id, is a thread that is not there.
            for path in (f"/r/Secret_Club/t/{thread.thread_id}",
                         f"/api/threads/{thread.thread_id}"):
                assert (await stranger.get(path)).status_code == 404, path
            assert "Secret_Club" not in (await stranger.get("/", headers=HTML)).text
            assert all(r["name"] != "Secret_Club"
                       for r in (await stranger.get("/api/rooms")).json())
            join = await form_post(stranger, "/r/Secret_Club/join", {})
            assert join.status_code == 403
            # The owner adds sam; now sam reads it.
            added = await form_post(owner, "/r/Secret_Club/members", {"username": "sam"},
                                    page="/r/Secret_Club")
            assert added.status_code in (302, 303)
            assert (await stranger.get("/r/Secret_Club")).status_code == 200
        async with httpx.AsyncClient(base_url=base) as anonymous:
            assert (await anonymous.get("/api/rooms/Secret_Club/threads")).status_code == 403


async def test_join_and_leave_a_public_room(storage: Storage) -> None:
    app = await build(storage)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        await register(client, "june")
        assert (await form_post(client, "/r/Art/join", {}, page="/r/Art")).status_code in (
            302, 303)
        assert await storage.members.is_member("Art", "june")
        assert (await form_post(client, "/r/Art/leave", {}, page="/r/Art")).status_code in (
            302, 303)
        assert not await storage.members.is_member("Art", "june")


async def test_missing_room_is_a_404_page(storage: Storage) -> None:
    app = await build(storage)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        page = await client.get("/r/NoSuchRoom", headers=HTML)
        assert page.status_code == 404 and "no room named" in page.text
        assert (await client.get("/api/rooms/NoSuchRoom/threads")).status_code == 404


async def test_login_only_redirects_to_local_paths(storage: Storage) -> None:
    app = await build(storage)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        await register(client, "nina")
        await form_post(client, "/logout", {})
        for target, expected in [("/r/Art", "/r/Art"), ("//evil.example/x", "/"),
                                 ("https://evil.example", "/"), ("/\\evil.example", "/")]:
            answer = await form_post(client, "/login", {"username": "nina",
                                                        "password": PASSWORD, "next": target},
                                     page="/login")
            assert answer.headers["location"] == expected, target


def test_comment_tree_nests_caps_depth_and_keeps_orphans() -> None:
    from playhouse.web.pages import MAX_NEST, comment_tree

    thread_id = ids.new_id()

    def make(parent: str | None, depth: int) -> Comment:
        return Comment(comment_id=ids.new_id(), thread_id=thread_id, room="Art",
                       parent_id=parent, author="a", is_bot=False, persona=None, text="t",
                       created_at=0.0, depth=depth)

    chain = [make(None, 0)]
    for depth in range(1, MAX_NEST + 4):
        chain.append(make(chain[-1].comment_id, depth))
    orphan = make("f" * 26, 3)
    roots = comment_tree([*chain, orphan])
    assert [n.comment.comment_id for n in roots] == [chain[0].comment_id, orphan.comment_id]
    node, levels = roots[0], []
    while True:
        levels.append(node.level)
        if not node.replies:
            break
        node = node.replies[0]
    assert max(levels) == MAX_NEST
    # The deepest replies are shown side by side at the last level, in order.
    deepest = [n.comment.comment_id for n in node_list_at(roots[0], MAX_NEST)]
    assert deepest == [c.comment_id for c in chain[MAX_NEST:]]


def node_list_at(root: Any, level: int) -> list[Any]:
    node = root
    while node.level < level - 1:
        node = node.replies[0]
    return list(node.replies)
