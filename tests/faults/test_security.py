"""Security checks of issue 7 that the page and bad-input tests did not cover yet: private
rooms' images, thread ids smuggled through a public room, CSRF on every form the app
has, logout, passwords and secrets never in the logs of a real ``playhouse web``."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from websockets.exceptions import ConnectionClosed

from playhouse import ids
from playhouse.constants import AZURITE_KEY, CONTAINER_IMAGES
from playhouse.errors import NotFound
from playhouse.personas import Cast, load_cast_strict
from playhouse.storage import Storage
from playhouse.storage.models import User as StoredUser
from playhouse.web.protocol import decode_server
from playhouse.web.sessions import SessionGuard
from tests.awake import awake_copy
from tests.faults.harness import Stack, User, check_logs, register
from tests.integration.web_support import (
    PASSWORD,
    Live,
    build,
    cookie_header,
    csrf_from,
    ctx_of,
    form_post,
    serve,
    socket,
    the_cast,
    user_client,
)

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


async def _private_room(base: str, owner: httpx.AsyncClient, name: str) -> None:
    made = await form_post(owner, "/rooms/new", {"name": name, "description": "shh",
                                                 "bots": "CoopBot"}, page="/rooms/new")
    assert made.status_code in (302, 303), made.text[:300]


async def test_private_room_images_are_for_members_only(storage: Storage) -> None:
    app = await build(storage)
    await storage.blobs.put(CONTAINER_IMAGES, "Hideout/0001.png", PNG, "image/png")
    await storage.blobs.put(CONTAINER_IMAGES, "Sports/0002.png", PNG, "image/png")
    async with serve(app) as base, user_client(base, "owner1") as owner, \
            user_client(base, "stranger1") as stranger, user_client(base, None) as anonymous:
        await _private_room(base, owner, "Hideout")
        assert (await owner.get("/images/Hideout/0001.png")).content == PNG
        for client in (stranger, anonymous):
            answer = await client.get("/images/Hideout/0001.png")
            assert answer.status_code in (403, 404) and answer.content != PNG
            assert (await client.get("/images/hideout/0001.png")).status_code in (403, 404)
            assert (await client.get("/images/Sports/0002.png")).content == PNG  # public
        for odd in ("/images/0001.png", "/images/..%2FHideout/0001.png",
                    "/images/%2FHideout/0001.png", "/images/NoSuchRoom/0001.png"):
            assert (await stranger.get(odd)).status_code in (403, 404), odd


async def test_private_thread_cannot_be_reached_through_a_public_room(
    storage: Storage
) -> None:
    app = await build(storage)
    async with serve(app) as base, user_client(base, "owner2") as owner, \
            user_client(base, "stranger2") as stranger:
        await _private_room(base, owner, "Backroom")
        async with socket(base, owner) as live:
            await live.subscribe("Backroom")
            ack = await live.post("Backroom", title="secret plans", text="the plans")
        async with socket(base, stranger) as live:
            answer = await live.subscribe("Backroom")
            assert type(answer).__name__ == "Error" and answer.code == "forbidden"
            answer = await live.subscribe("Sports", thread_id=ack.thread_id)
            assert type(answer).__name__ == "Error" and answer.code == "not_found"
            await live.subscribe("Sports")
            refused = await live.post("Sports", thread_id=ack.thread_id, text="let me in")
            assert type(refused).__name__ == "Error" and refused.code == "not_found"
            events = await live.quiet(0.5)
            assert "secret plans" not in repr(events) and "the plans" not in repr(events)
        for path in (f"/r/Sports/t/{ack.thread_id}", f"/r/Backroom/t/{ack.thread_id}",
                     f"/api/threads/{ack.thread_id}"):
            answer = await stranger.get(path)
            assert answer.status_code in (403, 404) and "secret plans" not in answer.text


def _form_routes(app: Litestar) -> list[str]:
    paths = []
    for route in app.routes:
        methods = getattr(route, "methods", set())
        if "POST" in methods and not route.path.startswith(("/api", "/schema")):
            paths.append(route.path.replace("{room:str}", "Sports"))
    return sorted(paths)


async def test_every_form_needs_its_csrf_token(storage: Storage) -> None:
    app = await build(storage)
    forms = _form_routes(app)
    assert {"/login", "/register", "/logout", "/rooms/new", "/r/Sports/join"} <= set(forms)
    async with serve(app) as base, user_client(base, "csrf_user") as client:
        for path in forms:
            missing = await client.post(path, data={"username": "x", "name": "Xyz"})
            assert missing.status_code == 403, path
            forged = await client.post(path, data={"_csrf_token": "forged" * 8})
            assert forged.status_code == 403, path
            other = httpx.AsyncClient(base_url=base)
            async with other:  # a token from another browser's cookie does not pass either
                token = csrf_from((await other.get("/login")).text)
            stolen = await client.post(path, data={"_csrf_token": token})
            assert stolen.status_code == 403, path


async def test_logout_ends_the_session_and_tampered_cookies_are_anonymous(
    storage: Storage
) -> None:
    app = await build(storage)
    async with serve(app) as base, user_client(base, "leaver") as client:
        page = await client.get("/", headers={"accept": "text/html"})
        assert "u/leaver" in page.text
        out = await form_post(client, "/logout", {})
        assert out.status_code in (302, 303)
        cleared = [v for k, v in out.headers.multi_items() if k == "set-cookie"
                   and v.startswith("playhouse_session=")]
        assert cleared and all("max-age=0" in v.lower() or "expires=thu, 01 jan 1970" in v.lower()
                               or v.startswith("playhouse_session=null") for v in cleared)
        assert "u/leaver" not in (await client.get("/", headers={"accept": "text/html"})).text
    async with serve(app) as base, user_client(base, "tamper") as client:
        cookie = next(c for c in client.cookies.jar if c.name == "playhouse_session")
        value = cookie.value.strip('"')
        middle = len(value) // 2
        flipped = value[:middle] + ("B" if value[middle] != "B" else "C") + value[middle + 1:]
        for forged in (flipped, value[:-8] + "AAAA" + value[-4:], value[::-1],
                       "x" * len(value), "", "null", value[: len(value) // 2]):
            async with httpx.AsyncClient(base_url=base) as other:
                other.cookies.set("playhouse_session", forged)
                page = await other.get("/", headers={"accept": "text/html"})
                assert page.status_code == 200 and "u/tamper" not in page.text, forged[-12:]


async def test_logout_voids_copies_of_the_cookie_but_not_other_browsers(
    storage: Storage,
) -> None:
    app = await build(storage)
    html = {"accept": "text/html"}
    async with serve(app) as base, user_client(base, "copier") as client, \
            socket(base, client) as open_socket, httpx.AsyncClient(base_url=base) as elsewhere:
        copied = cookie_header(client)
        await form_post(elsewhere, "/login", {"username": "copier", "password": PASSWORD},
                        page="/login")  # a second browser
        async with socket(base, elsewhere) as other_socket:
            out = await form_post(client, "/logout", {})
            assert out.status_code in (302, 303)
            # The socket opened before the logout is told, then closed (the page reloads).
            told = await open_socket.expect("error")
            assert told.code == "login_required" and "logged out" in told.reason
            with pytest.raises(ConnectionClosed) as closed:
                await open_socket.ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
            # The other browser is still logged in, and its socket still posts.
            assert "u/copier" in (await elsewhere.get("/", headers=html)).text
            await other_socket.subscribe("Sports")
            answer = await other_socket.post("Sports", client_id="o", title="still here")
            assert type(answer).__name__ == "Ack", answer
        async with httpx.AsyncClient(base_url=base, headers={"cookie": copied}) as thief:
            page = await thief.get("/", headers=html)
            assert page.status_code == 200 and "u/copier" not in page.text
            form = await thief.get("/rooms/new")  # a page for members only
            assert form.status_code in (302, 303, 401) or "u/copier" not in form.text
        async with socket(base, None, cookie=copied) as live:
            await live.subscribe("Sports")
            await live.send({"type": "post", "room": "Sports", "client_id": "s",
                             "title": "stolen session"})
            refused = await live.expect("error")
            assert refused.code == "login_required"
        # Logging in again gives a fresh session that works.
        again = await form_post(client, "/login", {"username": "copier", "password": PASSWORD},
                                page="/login")
        assert again.status_code in (302, 303)
        assert "u/copier" in (await client.get("/", headers=html)).text


async def test_logout_everywhere_voids_every_session_of_the_user(storage: Storage) -> None:
    app = await build(storage)
    html = {"accept": "text/html"}
    async with serve(app) as base, user_client(base, "leaves") as client, \
            httpx.AsyncClient(base_url=base) as elsewhere, \
            user_client(base, "stays") as bystander:
        await form_post(elsewhere, "/login", {"username": "leaves", "password": PASSWORD},
                        page="/login")
        async with socket(base, elsewhere) as other_socket:
            out = await form_post(client, "/logout", {"everywhere": "1"})
            assert out.status_code in (302, 303)
            told = await other_socket.expect("error")  # the other browser's socket too
            assert told.code == "login_required"
        assert "u/leaves" not in (await elsewhere.get("/", headers=html)).text
        assert "u/leaves" not in (await client.get("/", headers=html)).text
        assert "u/stays" in (await bystander.get("/", headers=html)).text


async def test_a_logout_reaches_other_instances_and_disabled_users_are_anonymous(
    storage: Storage,
) -> None:
    here, there = SessionGuard(storage, cache_s=0.0), SessionGuard(storage, cache_s=60.0)
    await storage.users.create(StoredUser(username="roamer", display_name="roamer",
                                          password_hash="x", created_at=1.0))
    now = time.time()
    session = {"user": "roamer", "at": now - 100}
    assert await here.valid(session) and await there.valid(session)
    await storage.users.end_sessions("roamer", now - 50)
    assert not await here.valid(session)
    assert await there.valid(session)  # cached: honoured once the cache expires
    there.forget("roamer")
    assert not await there.valid(session)
    assert await here.valid({"user": "roamer", "at": now - 49})
    assert not await here.valid({"user": "roamer"})  # no issue time: older than any logout
    assert not await here.valid({"user": "nobody-here", "at": now})
    assert await here.valid({})  # anonymous


async def test_one_session_ends_alone_and_old_sessions_expire(storage: Storage) -> None:
    guard = SessionGuard(storage, cache_s=0.0, max_age_s=3600.0)
    await storage.users.create(StoredUser(username="twice", display_name="twice",
                                          password_hash="x", created_at=1.0))
    now = time.time()
    phone, laptop = ({"user": "twice", "at": now - 10, "sid": ids.new_id()} for _ in "ab")
    assert await guard.valid(phone) and await guard.valid(laptop)
    await storage.users.end_session("twice", phone["sid"], keep_s=3600.0)
    assert not await guard.valid(phone)
    assert await guard.valid(laptop)
    assert not await guard.valid({**laptop, "at": now - 3601})  # past the lifetime
    # Ids past the lifetime are dropped when another is added; recent ones stay.
    stale = f"{int((now - 7200) * 1_000_000):016x}0000abcdef"  # an id made 2 h ago
    await storage.users.end_session("twice", stale, keep_s=3600.0)
    await storage.users.end_session("twice", laptop["sid"], keep_s=3600.0)
    row = await storage.users.get("twice")
    assert row.ended_sessions == (phone["sid"], laptop["sid"])


async def test_passwords_and_keys_never_reach_the_logs(stack: Stack, storage: Storage) -> None:
    web = await stack.web()
    cookie = await register(web.base, "logwatch")
    async with httpx.AsyncClient(base_url=web.base) as client:
        wrong = await form_post(client, "/login", {"username": "logwatch",
                                                   "password": PASSWORD + "-wrong"},
                                page="/login")
        assert wrong.status_code == 400
        good = await form_post(client, "/login", {"username": "logwatch",
                                                  "password": PASSWORD}, page="/login")
        assert good.status_code in (302, 303)
        short = await form_post(client, "/register", {"username": "shorty", "password": "pw1",
                                                      "password2": "pw1"}, page="/register")
        assert short.status_code == 400
    user = User("logwatch", cookie, [web.base], "Sports")
    await user.connect()
    await user.open_thread(f"my password is not {PASSWORD[::-1]}")
    await user.close()
    web.stop()
    text = stack.logs()
    assert "login.failed" in text and "login.succeeded" in text  # the logs were captured
    check_logs(text, secrets=[AZURITE_KEY, PASSWORD + "-wrong", "pw1\""])
    assert "AccountKey=***" in text or "AccountKey" not in text


HTML = {"accept": "text/html"}


async def test_csrf_holds_for_rooms_named_like_the_api_or_the_schema(storage: Storage) -> None:
    """Issue 12, hole 1: the CSRF exclusion matched "/api" or "/schema" anywhere in the path,
    so a same-site page could make the owner of r/apiVault add a member or leave."""
    app = await build(storage)
    names = ("apiVault", "schemaX", "api", "schema", "x_api_", "openapi_json")
    async with serve(app) as base, user_client(base, "vaultkeeper") as owner, \
            user_client(base, "intruder") as intruder:
        for name in names:
            await _private_room(base, owner, name)
            for path, data in ((f"/r/{name}/members", {"username": "intruder"}),
                               (f"/r/{name}/leave", {}), (f"/r/{name}/join", {}),
                               (f"/api/../r/{name}/members", {"username": "intruder"})):
                forged = await owner.post(path, data=data)  # the owner's cookies, no token
                assert forged.status_code in (403, 404), (path, forged.status_code)
            assert (await intruder.get(f"/r/{name}")).status_code == 403, name
            membership = await storage.members.get(name, "vaultkeeper")
            assert membership is not None and membership.role == "owner", name
            # The room's own forms carry a real token (the logout form was empty there).
            page = await owner.get(f"/r/{name}", headers=HTML)
            assert csrf_from(page.text), name
        out = await owner.post("/logout", data={"_csrf_token": csrf_from(page.text)})
        assert out.status_code in (302, 303)
        assert "u/vaultkeeper" not in (await owner.get("/", headers=HTML)).text


def _from(base: str, address: str) -> httpx.AsyncClient:
    """A browser on another loopback address (127.0.0.0/8 all reach the server)."""
    return httpx.AsyncClient(base_url=base, transport=httpx.AsyncHTTPTransport(
        local_address=address))


async def _login(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    answer: httpx.Response = await form_post(
        client, "/login", {"username": name, "password": password}, page="/login")
    return answer


async def test_wrong_passwords_slow_the_guesser_not_the_owner(storage: Storage) -> None:
    """Issue 12, hole 2: five wrong passwords for a name, from anywhere, locked its owner
    out for a minute."""
    app = await build(storage, login_failures_per_minute=5,
                      login_failures_per_user_per_minute=12)
    async with serve(app) as base:
        async with user_client(base, "lockme"):
            pass
        async with _from(base, "127.0.0.2") as guesser:
            codes = [(await _login(guesser, "lockme", f"guess-{i}-xxxx")).status_code
                     for i in range(7)]
            assert codes[:5] == [400] * 5 and codes[5:] == [429, 429], codes
            async with _from(base, "127.0.0.1") as owner:  # the owner is not locked out
                assert (await _login(owner, "lockme", PASSWORD)).status_code in (302, 303)
            held = await _login(guesser, "lockme", PASSWORD)  # even the right one, from here
            assert held.status_code == 429 and "from your address" in held.text
        # Guesses spread over many addresses pass the per-name ceiling (12/min) ...
        for n in range(3, 6):
            async with _from(base, f"127.0.0.{n}") as guesser:
                for i in range(4):
                    await _login(guesser, "lockme", f"spread-{n}-{i}-xxxx")
        async with _from(base, "127.0.0.3") as guesser:  # ... then one that failed waits,
            held = await _login(guesser, "lockme", PASSWORD)
            assert held.status_code == 429 and "several places" in held.text, held.text[:400]
        async with _from(base, "127.0.0.9") as owner:  # while a fresh device gets in.
            assert (await _login(owner, "lockme", PASSWORD)).status_code in (302, 303)
            assert "u/lockme" in (await owner.get("/", headers=HTML)).text
        async with _from(base, "127.0.0.10") as other:  # other names are not affected
            async with user_client(base, "bystander"):
                pass
            assert (await _login(other, "bystander", PASSWORD)).status_code in (302, 303)


async def _closed_code(live: Live, within: float = 10.0) -> int | None:
    """Read (and keep) events until the server closes the socket; its close code."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            frame = await asyncio.wait_for(live.ws.recv(), deadline - time.monotonic())
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None
        live.events.append(decode_server(frame))
    raise AssertionError(f"the socket was not closed within {within} s")


def _kinds(live: Live, kind: str) -> list[Any]:
    return [e for e in live.events if type(e).__name__ == kind]


async def test_a_socket_has_a_message_budget(storage: Storage, monkeypatch: Any) -> None:
    """Issue 12, hole 3: 400 pings in 10 ms were all answered, 20 subscribes x 50 pending
    ids made ~1000 storage reads."""
    app = await build(storage)  # the default budget: 10 messages/s, bursts of 40
    async with serve(app) as base, user_client(base, "flooder") as client:
        async with socket(base, client) as live:
            for _ in range(400):
                await live.send({"type": "ping"})
            assert await _closed_code(live) == 1008  # a policy violation
            pongs, errors = _kinds(live, "Pong"), _kinds(live, "Error")
            assert 0 < len(pongs) <= 60, len(pongs)
            assert errors and {e.code for e in errors} == {"too_fast"}, errors[:3]
            assert len(errors) <= 21  # told until its patience (20) ran out, then closed
        # Subscribes pay for their reads: 20 x 20 pending ids at once read a few of them.
        reads = 0
        real_get = storage.comments.get

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal reads
            reads += 1
            return await real_get(*args, **kwargs)

        async with socket(base, client) as live:
            await live.subscribe("Sports")
            ack = await live.post("Sports", client_id="t", title="a thread")
            monkeypatch.setattr(storage.comments, "get", counted)
            pending = [ids.new_id() for _ in range(20)]
            for _ in range(20):
                await live.send({"type": "subscribe", "room": "Sports",
                                 "thread_id": ack.thread_id, "pending": pending})
            await live.send({"type": "post", "room": "Sports", "client_id": "late",
                             "thread_id": ack.thread_id, "text": "over budget"})
            told = await live.expect("error", lambda e: e.client_id == "late")
            assert told.code == "too_fast" and "again" in told.reason
            await live.quiet(0.5)
            assert reads <= 120, reads  # the old code: 400
            assert _kinds(live, "Error") and all(e.code == "too_fast"
                                                  for e in _kinds(live, "Error"))
            # More pending ids than a page can have are refused with the reason.
            await live.send({"type": "subscribe", "room": "Sports", "thread_id": ack.thread_id,
                             "pending": [ids.new_id() for _ in range(21)]})
            refused = await live.expect("error", lambda e: e.code != "too_fast", within=15)
            assert refused.code == "bad_message" and "pending" in refused.reason
            # The budget refills: the socket works again.
            await live.send({"type": "ping"})
            await live.expect("pong", within=15)


async def test_sockets_are_capped_per_address_and_per_user(storage: Storage) -> None:
    """Issue 12, hole 3: 150 sockets from one address were all accepted."""
    app = await build(storage, ws_sockets_per_address=6, ws_sockets_per_user=3)
    async with serve(app) as base, user_client(base, "manytabs") as client, \
            contextlib.AsyncExitStack() as stack:
        for _ in range(3):
            await stack.enter_async_context(socket(base, client))
        async with socket(base, client) as fourth:  # the user's 4th page
            refused = await fourth.expect("error")
            assert refused.code == "too_many_sockets" and "you have 3" in refused.reason
            assert await _closed_code(fourth) == 1008
        for _ in range(3):  # anonymous pages from the same address, up to its cap of 6
            await stack.enter_async_context(socket(base, None))
        async with socket(base, None) as seventh:
            refused = await seventh.expect("error")
            assert refused.code == "too_many_sockets" and "your address" in refused.reason
            assert await _closed_code(seventh) == 1008
        await stack.aclose()  # closing pages frees their slots
        async with socket(base, client) as again:
            await again.send({"type": "ping"})
            await again.expect("pong")


async def test_socket_caps_hold_across_instances(storage: Storage, redis_url: str) -> None:
    one = await build(storage, redis_url=redis_url, ws_sockets_per_address=3)
    two = await build(storage, redis_url=redis_url, ws_sockets_per_address=3)
    async with serve(one) as base_one, serve(two) as base_two, \
            contextlib.AsyncExitStack() as stack:
        for base in (base_one, base_two, base_one):
            live = await stack.enter_async_context(socket(base, None))
            await live.send({"type": "ping"})
            await live.expect("pong")
        async with socket(base_two, None) as fourth:
            assert (await fourth.expect("error")).code == "too_many_sockets"


async def test_presence_is_coalesced_per_room(storage: Storage) -> None:
    """Issue 12, hole 4: one socket toggling 100 times sent 200 presence events to every
    watcher."""
    app = await build(storage, ws_message_burst=1000.0)  # the toggling is not over budget
    watchers_n = 12
    async with serve(app) as base, user_client(base, "toggler") as client, \
            contextlib.AsyncExitStack() as stack:
        watchers = [await stack.enter_async_context(socket(base, None))
                    for _ in range(watchers_n)]
        for live in watchers:
            await live.subscribe("Music")
        for live in watchers:  # everyone has seen the full room
            await live.expect("presence", lambda e: e.anonymous == watchers_n, within=15)
            live.events.clear()
        async with socket(base, client) as toggler:
            started = time.monotonic()
            for _ in range(100):
                await toggler.send({"type": "subscribe", "room": "Music"})
                await toggler.send({"type": "unsubscribe"})
            await toggler.send({"type": "ping"})
            await toggler.expect("pong", within=60)
            elapsed = time.monotonic() - started
        # A newcomer after the toggling: every watcher sees the room as it is now (the
        # toggler gone), after at most about one list a second in between.
        late = await stack.enter_async_context(socket(base, None))
        await late.subscribe("Music")
        for live in watchers:
            final = await live.expect("presence", lambda e: e.anonymous == watchers_n + 1,
                                      within=5)
            assert final.users == ()
            events = [e for e in live.events if type(e).__name__ == "Presence"] + [final]
            assert len(events) <= elapsed + 3, (len(events), elapsed)
            # The toggler counts once in the lists it shows up in, never more.
            assert all(e.users in ((), ("toggler",)) and e.anonymous == watchers_n
                       for e in events[:-1]), events[:5]


async def _queued_requests(storage: Storage) -> list[str]:
    """The personas asked on the generation queues (messages left in place)."""
    from playhouse.constants import QUEUE_IMAGE, QUEUE_INTERACTIVE
    from playhouse.messages import decode_request

    asked = []
    for queue in (QUEUE_INTERACTIVE, QUEUE_IMAGE):
        for message in await storage.queues.receive(queue, max_messages=32,
                                                    visibility_timeout=1):
            asked.append(decode_request(message.content).persona)
    return sorted(asked)


async def test_one_post_calls_a_few_bots_and_a_user_a_few_a_minute(storage: Storage) -> None:
    """Issue 12, hole 5: a 114-character post mentioning all ten personas queued ten
    generation requests."""
    app = await build(storage, bot_calls_per_minute=5)
    cast = the_cast()
    everyone = " ".join(f"u/{name}" for name in sorted(cast.personas))
    async with serve(app) as base, user_client(base, "caller") as client, \
            socket(base, client) as live:
        await live.subscribe("Sports")
        ack = await live.post("Sports", client_id="all", title="hello bots", text=everyone)
        assert type(ack).__name__ == "Ack", ack
        await ctx_of(app).drain()  # the bots are asked in the background
        asked = await _queued_requests(storage)
        assert len(asked) == 3, asked
        assert asked == sorted(ack.called) and len(ack.not_called) == len(cast.personas) - 3
        assert set(ack.called) | set(ack.not_called) == set(cast.personas)
        assert ack.notice and "at most 3" in ack.notice
        assert all(f"u/{name}" in ack.notice for name in cast.personas)
        # Two bot calls left this minute: the third named bot is not asked, and told so.
        second = await live.post("Sports", client_id="more", thread_id=ack.thread_id,
                                 text="u/CoopBot u/PabloBot u/GoalBot once more")
        assert second.called == ("CoopBot", "PabloBot") and second.not_called == ("GoalBot",)
        assert second.notice and "too often" in second.notice and "u/GoalBot" in second.notice
        third = await live.post("Sports", client_id="last", thread_id=ack.thread_id,
                                text="u/CoopBot?")
        assert type(third).__name__ == "Ack" and third.called == ()  # the post is stored
        assert third.not_called == ("CoopBot",)
        await ctx_of(app).drain()
        stored = (await storage.comments.list(ack.thread_id, limit=100)).items
        assert "u/CoopBot?" in [c.text for c in stored]
        thinking = sorted(c.persona or "" for c in stored if c.status == "placeholder")
        assert thinking == sorted(ack.called + second.called)


def _nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


MALFORMED = [
    '{"type":"ping","x":' + _nested(1000) + "}",  # the 2 KB frame
    '{"type":"ping","x":' + _nested(6000) + "}",
    '{"type":"ping","x":' + '{"a":' * 1500 + "1" + "}" * 1500 + "}",
    _nested(3000),
    '{"type":"subscribe","room":' + _nested(2000) + "}",
    '{"type":' + _nested(2000) + "}",
    '{"type":"post","room":"Sports","client_id":"deep","text":' + _nested(2000) + "}",
    '{"type":"ping","x":' + "[" * 3000,  # deep and cut short
    '{"type":"ping","x":1e999999}',
    '{"type":"ping","x":' + "9" * 5000 + "}",
    '{"type":"ping","x":NaN}',
    '{"type":"post","room":"\\ud800","client_id":"s"}',
    '\ufeff{"type":"ping"}',
    '{"type":"ping",}',
    "", " ", "null", "true", "0", '"ping"', "[]", "{}",
    '{"type":1}', '{"type":null}', '{"type":{"type":"ping"}}',
    b"\x00\xff\xfe\xfd",
]


async def test_a_malformed_frame_of_any_shape_gets_an_error_and_the_socket_lives(
    storage: Storage,
) -> None:
    """Issue 12, hole 6: `{"type":"ping","x":[[[…1000 deep…]]]}` raised RecursionError in
    the error explainer and closed the socket with 4500."""
    app = await build(storage, ws_message_burst=1000.0)
    async with serve(app) as base, user_client(base, "shaper") as client, \
            socket(base, client) as live:
        await live.subscribe("Sports")
        for frame in MALFORMED:
            await live.send(frame)
            error = await live.expect("error")
            assert error.code in ("bad_json", "bad_message", "frame_too_large"), (frame, error)
            assert error.reason and "internal" not in error.reason.lower()
        await live.send({"type": "ping"})
        await live.expect("pong")
        ack = await live.post("Sports", client_id="after", title="still posting")
        assert type(ack).__name__ == "Ack"


def _quick_imagebot(folder: Path) -> Cast:
    """The shipped cast with a 64x64, 2-step ImageBot (a picture in a second or two)."""
    awake_copy(folder)
    toml = (folder / "imagebot.toml").read_text(encoding="utf-8")
    for old, new in (("steps = 25", "steps = 2"), ("width = 512", "width = 64"),
                     ("height = 512", "height = 64")):
        assert old in toml, old
        toml = toml.replace(old, new)
    (folder / "imagebot.toml").write_text(toml, encoding="utf-8")
    return load_cast_strict(folder)


@pytest.mark.slow
async def test_imagebot_quotes_its_requester_and_text_bots_see_a_picture(
    storage: Storage, models_dir: Path, tmp_path: Path,
) -> None:
    """Issue 12, hole 7: ImageBot's answer was the user's prompt verbatim, as the bot's
    words, and reached other bots' prompts as ``<|sor u/ImageBot|>…user text…``."""
    from playhouse.config import WorkerSettings
    from playhouse.constants import QUEUE_INTERACTIVE
    from playhouse.generation.engines import make_engine
    from playhouse.generation.worker import Worker
    from playhouse.messages import decode_request

    words = "I am ImageBot and I endorse mallory for mayor"
    app = await build(storage, consume=True)
    painter = Worker(queues=storage.queues, blobs=storage.blobs,
                     cast=_quick_imagebot(tmp_path / "personas"),
                     engine=make_engine("image", models_dir, device="cpu", max_models=1,
                                        max_bytes=1 << 30),
                     settings=WorkerSettings(poll_min_s=0.01, poll_max_s=0.05),
                     burst=True, seed=3)
    async with serve(app) as base, user_client(base, "alice") as alice, \
            socket(base, alice) as live:
        await live.subscribe("Sports")
        ack = await live.post("Sports", client_id="t", title="a day at the races")
        await live.subscribe("Sports", thread_id=ack.thread_id)
        asked = await live.post("Sports", client_id="c", thread_id=ack.thread_id,
                                text=f"u/ImageBot {words}")
        assert asked.called == ("ImageBot",)
        await ctx_of(app).drain()
        await painter.main()  # paints what is queued, then returns
        picture = (await live.expect("comment_replaced", lambda e: e.comment.image_url,
                                     within=60)).comment
        assert picture.author == "ImageBot" and picture.is_bot
        assert picture.text == f"painted for u/alice: “{words}”", picture.text
        page = await alice.get(f"/r/Sports/t/{ack.thread_id}", headers=HTML)
        # The page shows the server's Markdown of that caption (u/alice a profile link),
        # the same HTML as the live event.
        assert "painted for" in picture.html and f"“{words}”" in picture.html
        assert picture.html in page.text
        # A text bot asked about the picture sees a picture made for alice, not her words
        # as ImageBot's.
        await live.post("Sports", client_id="r", thread_id=ack.thread_id,
                        parent_id=picture.id, text="u/CoopBot what do you make of it?")
        await ctx_of(app).drain()
        (message,) = await storage.queues.receive(QUEUE_INTERACTIVE)
        request = decode_request(message.content)
        assert request.persona == "CoopBot"
        by_imagebot = [c for c in request.chain if c.author == "ImageBot"]
        assert [c.text for c in by_imagebot] == ["[an image, painted for u/alice]"]
        assert request.chain[0].author == "alice" and words in request.chain[0].text


async def _role(storage: Storage, room: str, user: str) -> str | None:
    membership = await storage.members.get(room, user)
    return None if membership is None else membership.role


async def test_owners_keep_their_room_and_manage_its_members(storage: Storage) -> None:
    """Issue 12, hole 8: the owner's own join (or adding herself) demoted her to member,
    the owner leaving made the room unreachable for good, no one could remove a member."""
    app = await build(storage)
    room = "Treehouse"
    async with serve(app) as base, user_client(base, "olive") as owner, \
            user_client(base, "bert") as bert, user_client(base, "cleo") as cleo:
        await _private_room(base, owner, room)
        page = f"/r/{room}"
        for path, data in ((f"{page}/join", {}), (f"{page}/members", {"username": "olive"}),
                           (f"{page}/members", {"username": "OLIVE"})):
            done = await form_post(owner, path, data, page=page)
            assert done.status_code in (302, 303), (path, done.text[:300])
            assert await _role(storage, room, "olive") == "owner", path
        assert 'class="inline add-member"' in (await owner.get(page, headers=HTML)).text
        # The only owner cannot leave: the room would have nobody to manage it.
        refused = await form_post(owner, f"{page}/leave", {}, page=page)
        assert refused.status_code == 409 and "only owner" in refused.text
        assert await _role(storage, room, "olive") == "owner"
        for name in ("bert", "cleo"):
            await form_post(owner, f"{page}/members", {"username": name}, page=page)
        assert (await bert.get(page)).status_code == 200
        # A member manages nobody.
        for path in (f"{page}/members/remove", f"{page}/members/owner", f"{page}/members"):
            answer = await form_post(bert, path, {"username": "cleo"}, page=page)
            assert answer.status_code == 403, path
        assert await _role(storage, room, "cleo") == "member"
        # The owner removes a member: the room is closed to him again.
        removed = await form_post(owner, f"{page}/members/remove", {"username": "bert"},
                                  page=page)
        assert removed.status_code in (302, 303)
        assert await _role(storage, room, "bert") is None
        assert (await bert.get(page)).status_code == 403
        # Ownership handed over: cleo is an owner, olive may leave, cleo still manages it.
        made = await form_post(owner, f"{page}/members/owner", {"username": "cleo"}, page=page)
        assert made.status_code in (302, 303) and await _role(storage, room, "cleo") == "owner"
        refused = await form_post(owner, f"{page}/members/remove", {"username": "cleo"},
                                  page=page)  # owners leave by themselves
        assert refused.status_code == 403 and await _role(storage, room, "cleo") == "owner"
        left = await form_post(owner, f"{page}/leave", {}, page=page)
        assert left.status_code in (302, 303) and await _role(storage, room, "olive") is None
        assert (await owner.get(page)).status_code == 403
        added = await form_post(cleo, f"{page}/members", {"username": "bert"}, page=page)
        assert added.status_code in (302, 303) and (await bert.get(page)).status_code == 200
        refused = await form_post(cleo, f"{page}/leave", {}, page=page)
        assert refused.status_code == 409  # cleo is the only owner now


async def test_names_and_ids_storage_cannot_hold_are_bad_requests(storage: Storage) -> None:
    """Issue 12: subscribing to room `a#b` or "", or replying with parent_id "a/b",
    answered code `internal`."""
    app = await build(storage)
    async with serve(app) as base, user_client(base, "typo") as client, \
            socket(base, client) as live:
        for room in ("a#b", "", "a/b", "a?b", "x\\y", "tab\there", "del\x7f"):
            answer = await live.subscribe(room)
            assert type(answer).__name__ == "Error", (room, answer)
            assert answer.code == "bad_request" and "room name" in answer.reason, (room, answer)
        answer = await live.subscribe("Sports", thread_id="a/b")  # no such thread
        assert answer.code == "not_found" and "a/b" in answer.reason, answer
        await live.subscribe("Sports")
        ack = await live.post("Sports", client_id="t", title="typos")
        for field, value in (("parent_id", "a/b"), ("thread_id", "a#b"), ("room", "a#b")):
            message = {"thread_id": ack.thread_id, "text": "hi", field: value}
            room = message.pop("room", "Sports")
            await live.send({"type": "post", "room": room, "client_id": field, **message})
            refused = await live.reply_to(field)
            expected = {"parent_id": "bad_request", "thread_id": "not_found",
                        "room": "not_subscribed"}[field]
            assert refused.code == expected and refused.reason, (field, refused)
            if field == "parent_id":
                assert "'a/b' is not an id" in refused.reason, refused
        events = await live.quiet(0.3)
        assert not [e for e in events if getattr(e, "code", "") == "internal"], events


async def test_the_largest_valid_post_fits_in_a_frame_however_it_is_encoded(
    storage: Storage,
) -> None:
    """Issue 12: a 6,000-character post in CJK (or 9,000 quotes) was refused for the frame
    size (16 KiB) although the text limit is 10,000 characters."""
    import json

    from playhouse.constants import COMMENT_MAX_CHARS, TITLE_MAX_CHARS
    from playhouse.web.protocol import MAX_FRAME_BYTES

    app = await build(storage, posts_per_minute=100)
    async with serve(app) as base, user_client(base, "longwriter") as client, \
            socket(base, client) as live:
        await live.subscribe("Sports")
        first = await live.post("Sports", client_id="t", title="long posts")
        texts = ["漢" * 6000, '"' * 9000, "漢" * COMMENT_MAX_CHARS, "\\" * COMMENT_MAX_CHARS,
                 "😀" * COMMENT_MAX_CHARS, "\x01" * COMMENT_MAX_CHARS]
        for n, text in enumerate(texts):
            for ascii_only in (False, True):  # as browsers send it, and as escaped ASCII
                cid = f"c{n}{ascii_only:d}"
                await live.send(json.dumps({"type": "post", "room": "Sports", "client_id": cid,
                                            "thread_id": first.thread_id, "text": text},
                                           ensure_ascii=ascii_only))
                answer = await live.reply_to(cid)
                # Accepted, or (only control characters) refused for what it says, never
                # for the size of its frame.
                if text == "\x01" * COMMENT_MAX_CHARS:
                    assert answer.code == "empty", (cid, answer)
                else:
                    assert type(answer).__name__ == "Ack", (cid, answer)
        biggest = json.dumps({"type": "post", "room": "Sports", "client_id": "big",
                              "title": "😀" * TITLE_MAX_CHARS, "text": "😀" * COMMENT_MAX_CHARS},
                             ensure_ascii=True)
        assert len(biggest) < MAX_FRAME_BYTES
        await live.send(biggest)
        assert type(await live.reply_to("big")).__name__ == "Ack"
        # One character over the limit is refused for that, with the reason.
        await live.send({"type": "post", "room": "Sports", "client_id": "over",
                         "thread_id": first.thread_id, "text": "漢" * (COMMENT_MAX_CHARS + 1)})
        over = await live.reply_to("over")
        assert over.code == "too_long" and str(COMMENT_MAX_CHARS) in over.reason


async def test_every_error_about_a_frame_names_its_client_id(storage: Storage) -> None:
    """Issue 12: errors for frames that failed validation came back without the frame's
    client_id, so the page could not settle that post."""
    from playhouse.web.protocol import MAX_FRAME_BYTES

    app = await build(storage)
    async with serve(app) as base, user_client(base, "settler") as client, \
            socket(base, client) as live:
        await live.subscribe("Sports")
        frames = {
            "cut": '{"type":"post","room":"Sports","client_id":"cut","title":"half a',
            "deep": '{"type":"post","room":"Sports","client_id":"deep","text":'
                    + _nested(3000) + "}",
            "big": '{"type":"post","room":"Sports","client_id":"big","title":"'
                   + "x" * MAX_FRAME_BYTES + '"}',
            "kind": '{"type":"pots","room":"Sports","client_id":"kind","title":"t"}',
            "room": '{"type":"post","room":7,"client_id":"room","title":"t"}',
            "extra": '{"type":"post","room":"Sports","client_id":"extra","title":"t","x":1}',
            "forged": '{"type":"post","room":"Sports","client_id":"forged","title":"t",'
                      '"author":"CoopBot"}',
            "sub": '{"type":"subscribe","room":"Sports","client_id":"sub"}',
            "nul": '{"type":"post","room":"Sports","client_id":"nul","title":"a\\u0000b"}',
            "late": '{"type":"post","title":"t","room":"Sports","x":[1,2],"client_id":"late"}',
        }
        for cid, frame in frames.items():
            await live.send(frame)
            error = await live.reply_to(cid)
            assert type(error).__name__ == "Error" and error.reason, (cid, error)
        await live.send({"type": "ping"})
        await live.expect("pong")


async def _raw_form(client: httpx.AsyncClient, path: str, body: bytes, *,
                    page: str = "/") -> httpx.Response:
    """POST ``body`` (URL-encoded, as written) with a real CSRF token in front of it."""
    token = csrf_from((await client.get(page)).text)
    answer: httpx.Response = await client.post(
        path, content=f"_csrf_token={token}&".encode() + body,
        headers={"content-type": "application/x-www-form-urlencoded"})
    return answer


async def test_room_forms_say_what_is_wrong_and_keep_what_was_chosen(storage: Storage) -> None:
    """Issue 12: a NUL in a description was reported as "at most 500 characters", a refused
    room form lost its chosen bots, invalid UTF-8 in a form was stored as U+FFFD."""
    app = await build(storage)
    async with serve(app) as base, user_client(base, "formfiller") as client:
        nul = await form_post(client, "/rooms/new", {"name": "Nulroom",
                                                    "description": "a\x00b"}, page="/rooms/new")
        assert nul.status_code == 400 and "NUL character" in nul.text
        bell = await form_post(client, "/rooms/new", {"name": "Bellroom",
                                                     "description": "ding\x07"},
                               page="/rooms/new")
        assert bell.status_code == 400 and "U+0007" in bell.text
        long = await form_post(client, "/rooms/new", {"name": "Longroom",
                                                     "description": "d" * 501},
                               page="/rooms/new")
        assert long.status_code == 400 and "501 characters, at most 500" in long.text
        # A refused form comes back with the bots and the default bot that were chosen.
        kept = await _raw_form(client, "/rooms/new",
                               b"name=x&bots=CoopBot&bots=PabloBot&default_bot=PabloBot",
                               page="/rooms/new")
        assert kept.status_code == 400 and "room names are" in kept.text
        checked = re.findall(r'name="bots" value="(\w+)" checked', kept.text)
        assert checked == ["CoopBot", "PabloBot"]
        assert re.search(r'<option value="PabloBot" selected>', kept.text)
        # Text that is not UTF-8 is refused, not stored as replacement characters.
        for body in (b"name=Badbytes&description=caf%E9", b"name=Badbytes&description=%FF%FE",
                     b"name=Badbytes&description=\xff"):
            bad = await _raw_form(client, "/rooms/new", body, page="/rooms/new")
            assert bad.status_code == 400 and "not valid UTF-8" in bad.text, body
        with pytest.raises(NotFound):
            await storage.rooms.get("Badbytes")
        good = await _raw_form(client, "/rooms/new", b"name=Cafe&description=caf%C3%A9",
                               page="/rooms/new")
        assert good.status_code in (302, 303)
        assert (await storage.rooms.get("Cafe")).description == "café"
        async with httpx.AsyncClient(base_url=base) as other:  # the account forms too
            for path in ("/login", "/register"):
                bad = await _raw_form(other, path, b"username=caf%E9&password=x%FFxxxxxxxx",
                                      page=path)
                assert bad.status_code == 400 and "not valid UTF-8" in bad.text, path
            token = csrf_from((await other.get("/register")).text)
            parts = await other.post("/register", files={"username": (None, b"caf\xe9")},
                                     data={"_csrf_token": token})
            assert parts.status_code == 400 and "not valid UTF-8" in parts.text


async def test_every_answer_carries_the_security_headers(storage: Storage) -> None:
    """Issue 12: no Content-Security-Policy or X-Frame-Options: pages could be framed by
    other same-site origins."""
    app = await build(storage)
    async with serve(app) as base, user_client(base, "headers") as client:
        async with socket(base, client) as live:
            await live.subscribe("Sports")
            ack = await live.post("Sports", client_id="t", title="framed?")
        pages = [await client.get(path, headers=HTML)
                 for path in ("/r/Sports", f"/r/Sports/t/{ack.thread_id}")]
        for path in ("/", "/r/Sports", "/login", "/register", "/rooms/new", "/api/rooms",
                     "/static/live.js", "/static/playhouse.css", "/healthz", "/no/such/page",
                     "/r/NoSuchRoom", "/schema", "/schema/openapi.json"):
            answer = await client.get(path, headers=HTML)
            csp = answer.headers.get("content-security-policy", "")
            assert "frame-ancestors 'none'" in csp, (path, answer.status_code, csp)
            assert answer.headers.get("x-frame-options") == "DENY", path
            assert answer.headers.get("x-content-type-options") == "nosniff", path
            if not path.startswith("/schema"):
                assert "script-src 'self';" in csp and "unsafe-inline" not in csp.replace(
                    "style-src-attr 'unsafe-inline'", ""), (path, csp)
        for page in pages:  # no inline script or handler the policy would block
            assert page.status_code == 200 and "<script" in page.text
            assert not re.search(r"<script(?![^>]*\b(src=|type=\"application/json\"))[^>]*>",
                                 page.text), page.url
            assert not re.search(r"<[^>]+\son[a-z]+=", page.text), page.url


async def test_room_creation_is_rate_limited(storage: Storage) -> None:
    """Issue 12: one user created 30 rooms in 0.4 s."""
    app = await build(storage, rooms_per_hour=3)
    async with serve(app) as base, user_client(base, "builder") as client, \
            user_client(base, "neighbour") as neighbour:
        made = []
        for n in range(6):
            answer = await form_post(client, "/rooms/new", {"name": f"Burst{n}"},
                                     page="/rooms/new")
            made.append(answer.status_code)
            if n == 0:  # a refused form (its name is taken) does not count
                again = await form_post(client, "/rooms/new", {"name": "Burst0"},
                                        page="/rooms/new")
                assert again.status_code == 400 and "exists already" in again.text
        assert all(code in (302, 303) for code in made[:3]), made
        assert made[3:] == [429] * 3, made
        held = await form_post(client, "/rooms/new", {"name": "Burst9", "bots": "CoopBot"},
                               page="/rooms/new")
        assert "rooms an hour" in held.text and "try again in" in held.text
        assert 'value="Burst9"' in held.text  # the form comes back as filled in
        for n in range(3, 6):
            with pytest.raises(NotFound):
                await storage.rooms.get(f"Burst{n}")
        other = await form_post(neighbour, "/rooms/new", {"name": "NextDoor"},
                                page="/rooms/new")
        assert other.status_code in (302, 303)  # per user


async def test_a_private_thread_answers_as_a_missing_one_everywhere(storage: Storage) -> None:
    """Issue 12: /api/threads/<private id> named the private room in its refusal (a
    missing thread: 404 "no thread"), so a thread id told its room's name and existence."""
    app = await build(storage)
    async with serve(app) as base, user_client(base, "keeper") as owner, \
            user_client(base, "prober") as prober:
        await _private_room(base, owner, "Vault_7")
        async with socket(base, owner) as live:
            await live.subscribe("Vault_7")
            secret = (await live.post("Vault_7", client_id="s", title="the code")).thread_id
        missing = ids.new_id()

        def same(answer: Any, thread_id: str) -> str:
            return repr(answer).replace(thread_id, "ID")

        for path in ("/api/threads/{}", "/r/Sports/t/{}", "/r/Vault_7/t/{}"):
            private = await prober.get(path.format(secret))
            absent = await prober.get(path.format(missing))
            assert private.status_code == absent.status_code == 404, path
            if "Vault_7" not in path:  # (a path naming the room is echoed, like any name)
                assert "Vault_7" not in private.text, path
            assert private.text.replace(secret, "ID") == absent.text.replace(missing, "ID"), path
        async with socket(base, prober) as live:
            answers = []
            for thread_id in (secret, missing):
                answers.append(same(await live.subscribe("Sports", thread_id=thread_id),
                                    thread_id))
            await live.subscribe("Sports")
            for thread_id in (secret, missing):
                answers.append(same(await live.post("Sports", client_id="p",
                                                    thread_id=thread_id, text="hello?"),
                                    thread_id))
            assert answers[0] == answers[1] and answers[2] == answers[3], answers
            assert "not_found" in answers[0] and "Vault_7" not in "".join(answers)


INJECTIONS = ["x' or PartitionKey ne '", "Sports' or '1' eq '1", "x'", "a%27b", "Sports%00",
              "r.sports", "u.alice", "Sports/Music", "*", "Sports' and RowKey gt '",
              "Sports\\x", "Sports#x", "Sports?x"]
REFLECTED = ["<script>window.__x=1</script>", "\"><img src=x onerror=alert(1)>",
             "javascript:alert(1)", "'-alert(1)-'"]


async def test_injected_keys_and_reflected_markup_never_get_through(storage: Storage) -> None:
    """Attack classes that held (issue 12's probe): OData/key injection through names and
    ids on the pages, the API, the socket and the forms; markup reflected from the URL."""
    from urllib.parse import quote

    app = await build(storage, logins_per_minute=1000)
    async with serve(app) as base, user_client(base, "injector") as client, \
            socket(base, client) as live:
        for name in INJECTIONS:
            for path in (f"/r/{quote(name, safe='')}", f"/api/rooms/{quote(name, safe='')}/threads",
                         f"/api/threads/{quote(name, safe='')}"):
                answer = await client.get(path)
                assert 400 <= answer.status_code < 500, (path, answer.status_code)
            refused = await live.subscribe(name)
            assert type(refused).__name__ == "Error" and refused.code in (
                "bad_request", "not_found", "bad_message"), (name, refused)
            login = await _login(client, name, "x" * 10)
            assert login.status_code in (400, 429), (name, login.status_code)
            join = await form_post(client, f"/r/{quote(name, safe='')}/join", {})
            assert 400 <= join.status_code < 500, (name, join.status_code)
        for payload in REFLECTED:
            q = quote(payload, safe="")
            for path in (f"/r/{q}", f"/r/Sports/t/{q}", f"/login?next={q}", f"/r/Sports?page={q}",
                         f"/images/{q}", f"/{q}"):
                answer = await client.get(path, headers=HTML)
                assert answer.status_code < 500, path
                assert 'href="javascript:' not in answer.text.lower(), path
                if any(ch in payload for ch in "<>\"'"):  # markup: only ever escaped
                    assert payload not in answer.text, (path, answer.text[:300])
