"""Sorting, profiles, persona pages, the leaderboard and Markdown, through the real app."""

from __future__ import annotations

import time

import httpx
import pytest

from playhouse import ids
from playhouse.personas import load_cast_strict
from playhouse.storage import Storage
from playhouse.storage.models import Comment, Room, Thread, User
from playhouse.web.scores import ScoreFeed, Target
from tests.awake import SHIPPED
from tests.integration.web_support import build, ctx_of, serve, socket, user_client

pytestmark = pytest.mark.integration

HTML = {"accept": "text/html"}


async def _thread(storage: Storage, room: str, title: str, *, author: str = "alice",
                  is_bot: bool = False, age_s: float = 0.0, body: str = "") -> Thread:
    now = time.time() - age_s
    thread = Thread(thread_id=ids.new_id(now), room=room, title=title, body=body, url=None,
                    author=author, is_bot=is_bot, persona=author if is_bot else None,
                    created_at=now, last_activity=now)
    return await storage.threads.create(thread)


async def _comment(storage: Storage, thread: Thread, text: str, *, author: str = "CoopBot",
                   is_bot: bool = True) -> Comment:
    comment = Comment(comment_id=ids.new_id(), thread_id=thread.thread_id, room=thread.room,
                      parent_id=None, author=author, is_bot=is_bot,
                      persona=author if is_bot else None, text=text, created_at=time.time())
    return await storage.comments.add(comment)


async def _votes(storage: Storage, feed: ScoreFeed, thread: Thread, item: Thread | Comment,
                 ups: int, downs: int = 0) -> None:
    item_id = item.thread_id if isinstance(item, Thread) else item.comment_id
    target = Target(room=thread.room, thread_id=thread.thread_id, item_id=item_id,
                    author=item.author)
    for n in range(ups + downs):
        cast = await storage.votes.cast(thread.thread_id, item_id, f"p{n}", 1 if n < ups else -1)
        feed.voted(target, cast.tally)
    await feed.drain()


def _order(html: str, titles: list[str]) -> list[str]:
    return sorted(titles, key=html.index)


async def test_room_orders_are_in_the_url_and_remembered(storage: Storage) -> None:
    app = await build(storage)
    feed = ScoreFeed(storage, None)
    old = await _thread(storage, "Cooking", "old but loved", age_s=2 * 86400)
    mid = await _thread(storage, "Cooking", "yesterdays ok one", age_s=3600)
    new = await _thread(storage, "Cooking", "brand new")
    await _votes(storage, feed, old, old, 40)
    await _votes(storage, feed, mid, mid, 3)
    titles = ["old but loved", "yesterdays ok one", "brand new"]
    async with serve(app) as base, user_client(base, "sorter") as client:
        anonymous = httpx.AsyncClient(base_url=base)
        hot = (await client.get("/r/Cooking", headers=HTML)).text
        assert _order(hot, titles) == ["yesterdays ok one", "brand new", "old but loved"]
        top_all = (await client.get("/r/Cooking?sort=top&t=all", headers=HTML)).text
        assert _order(top_all, titles) == titles
        assert 'aria-current="page">Top' in top_all and 'aria-current="page">all time' in top_all
        top_day = (await client.get("/r/Cooking?sort=top&t=day", headers=HTML)).text
        assert "old but loved" not in top_day
        assert _order(top_day, titles[1:]) == titles[1:]
        new_first = (await client.get("/r/Cooking?sort=new", headers=HTML)).text
        assert _order(new_first, titles) == ["brand new", "yesterdays ok one", "old but loved"]
        # Remembered: the next visit without an order shows new again; others see hot.
        again = (await client.get("/r/Cooking", headers=HTML)).text
        assert 'aria-current="page">New' in again
        assert 'aria-current="page">Hot' in (await anonymous.get("/r/Cooking",
                                                                 headers=HTML)).text
        bad = await client.get("/r/Cooking?sort=sideways", headers=HTML)
        assert bad.status_code == 400 and "hot, new, top, active" in bad.text
        await anonymous.aclose()
    assert (await storage.prefs.get("sorter")).room_sort == "new"
    del new


async def test_comment_orders(storage: Storage) -> None:
    app = await build(storage)
    feed = ScoreFeed(storage, None)
    thread = await _thread(storage, "Music", "what are you playing")
    lucky = await _comment(storage, thread, "one lucky vote")
    solid = await _comment(storage, thread, "ninety of a hundred")
    split = await _comment(storage, thread, "split evenly")
    fresh = await _comment(storage, thread, "brand new comment")
    await _votes(storage, feed, thread, lucky, 1)
    await _votes(storage, feed, thread, solid, 9, 1)
    await _votes(storage, feed, thread, split, 5, 5)
    texts = ["one lucky vote", "ninety of a hundred", "split evenly", "brand new comment"]
    expected = {
        "best": ["ninety of a hundred", "one lucky vote", "split evenly", "brand new comment"],
        "top": ["ninety of a hundred", "one lucky vote", "split evenly", "brand new comment"],
        "new": list(reversed(texts)),
        "old": texts,
        "controversial": ["split evenly", "ninety of a hundred", "one lucky vote",
                          "brand new comment"],
    }
    async with serve(app) as base, user_client(base, "reader") as client:
        for order, want in expected.items():
            page = (await client.get(f"/r/Music/t/{thread.thread_id}?sort={order}",
                                     headers=HTML)).text
            assert _order(page, texts) == want, order
        default = (await client.get(f"/r/Music/t/{thread.thread_id}", headers=HTML)).text
        assert 'aria-current="page">Controversial' in default  # remembered
        assert f'data-score-for="{solid.comment_id}" data-version="0">8<' in default
    del fresh


async def test_profiles_show_history_karma_and_rooms_but_not_private_items(
    storage: Storage,
) -> None:
    app = await build(storage)
    feed = ScoreFeed(storage, None)
    now = time.time()
    await storage.rooms.create(Room(name="Hideout", description="", public=False,
                                    default_bot=None, bots=(), created_by="dana",
                                    created_at=now, last_activity=now))
    async with serve(app) as base, user_client(base, "dana") as dana, \
            user_client(base, "eve") as eve:
        await storage.members.join("Hideout", "dana", role="owner")
        await storage.members.join("Sports", "dana")
        public = await _thread(storage, "Sports", "danas **public** take", author="dana")
        secret = await _thread(storage, "Hideout", "the secret plan", author="dana")
        said = await _comment(storage, public, "and a comment, u/CoopBot", author="dana",
                              is_bot=False)
        await _votes(storage, feed, public, public, 5)
        await _votes(storage, feed, public, said, 2, 1)
        await _votes(storage, feed, secret, secret, 1)
        mine = (await dana.get("/u/dana", headers=HTML)).text
        assert "the secret plan" in mine and "r/Hideout" in mine
        shown = (await eve.get("/u/Dana", headers=HTML)).text
        assert "the secret plan" not in shown and "Hideout" not in shown
        assert "danas <strong>public</strong> take" in shown
        assert '<a href="/u/CoopBot" class="mention">u/CoopBot</a>' in shown
        assert shown.index("and a comment") < shown.index("public</strong> take")  # newest first
        assert '<strong id="karma">7</strong>' in shown  # 5 + 1 + 1: karma counts every vote
        assert '<span id="thread-karma">6</span>' in shown
        assert "r/Sports" in shown
        assert (await eve.get("/u/nobody_here", headers=HTML)).status_code == 404


async def test_a_persona_page_says_who_the_bot_is(storage: Storage) -> None:
    app = await build(storage, cast=load_cast_strict(SHIPPED))  # their own hours: no call
    cast = ctx_of(app).cast
    feed = ScoreFeed(storage, None)
    coop = cast.personas["CoopBot"]
    thread = await _thread(storage, "AskCoopAnything", "coops thread", author="CoopBot",
                           is_bot=True)
    reply = await _comment(storage, thread, "I have never said *I do not know*")
    await _votes(storage, feed, thread, reply, 3)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        page = (await client.get("/u/coopbot", headers=HTML)).text
        for part in (coop.display_name, coop.look.avatar, coop.model, coop.description,
                     "tag grammar playhouse", "coops thread", "<em>I do not know</em>",
                     'href="/r/AskCoopAnything"', 'data-hours="0,24"',
                     'href="/leaderboard?t=all" id="rank">#1 of'):
            assert part in page, part
        night = (await client.get("/u/WickBot", headers=HTML)).text
        wick = cast.personas["WickBot"]
        start, end = wick.activity.active_hours
        assert f'data-hours="{start},{end}"' in night
        # Every byline links to the profile.
        room = (await client.get("/r/AskCoopAnything", headers=HTML)).text
        assert 'class="author bot" href="/u/CoopBot"' in room


async def test_the_leaderboard_ranks_by_wilson_with_each_bots_best_comment(
    storage: Storage,
) -> None:
    app = await build(storage)
    feed = ScoreFeed(storage, None)
    thread = await _thread(storage, "Technology", "gadgets")
    lucky = await _comment(storage, thread, "one up-vote", author="ByteBot")
    solid = await _comment(storage, thread, "the good one", author="SegfaultBot")
    weak = await _comment(storage, thread, "meh", author="SegfaultBot")
    await _votes(storage, feed, thread, lucky, 1)
    await _votes(storage, feed, thread, solid, 18, 1)
    await _votes(storage, feed, thread, weak, 1, 1)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        for period in ("day", "week", "all"):
            board = (await client.get(f"/api/leaderboard?t={period}")).json()
            standings = board["standings"]
            assert [s["persona"] for s in standings[:2]] == ["SegfaultBot", "ByteBot"], period
            first = standings[0]
            assert (first["ups"], first["downs"], first["rank"]) == (19, 2, 1)
            assert first["best"]["text"] == "the good one" and first["best"]["score"] == 17
            assert standings[1]["best"]["text"] == "one up-vote"
            assert all(s["ups"] == 0 for s in standings[2:])
        html = (await client.get("/leaderboard?t=week", headers=HTML)).text
        assert html.index("u/SegfaultBot") < html.index("u/ByteBot")
        assert "the good one" in html
        assert (await client.get("/api/leaderboard?t=year")).status_code == 400


async def test_live_events_carry_the_servers_html(storage: Storage) -> None:
    app = await build(storage)
    async with serve(app) as base, user_client(base, "writer") as client, \
            socket(base, client) as live:
        await live.subscribe("Sports")
        ack = await live.post("Sports", title="**big** game", text="&gt; quoted\n\nu/CoopBot?")
        thread_event = await live.expect("thread")
        assert thread_event.thread.title_html == "<strong>big</strong> game"
        assert "<blockquote>" in thread_event.thread.body_html
        await live.subscribe("Sports", thread_id=ack.thread_id)
        await live.post("Sports", client_id="c", thread_id=ack.thread_id,
                        text="[x](javascript:alert(1)) and [y](https://e.x)")
        event = await live.expect("comment")
        assert 'href="https://e.x" rel="nofollow ugc noopener"' in event.comment.html
        assert "javascript" not in event.comment.html.split("<a ")[1]
        page = (await client.get(f"/r/Sports/t/{ack.thread_id}", headers=HTML)).text
        assert event.comment.html in page  # the same HTML on the page as live
        # The comment moved the thread's listings too, off the post's path (with the
        # thread's counters, coalesced).
        await ctx_of(app).counters.close()
        listed = await storage.listings.get("Sports", ack.thread_id)
        assert listed is not None and listed.comment_count == 1


async def test_threads_stored_before_the_indexes_are_listed_at_start_up(
    storage: Storage,
) -> None:
    from playhouse.storage.reindex import indexed
    from playhouse.storage.threads import CommentRepo, ThreadRepo

    # Written as the code before this change wrote them: no listings, no histories.
    old_threads, old_comments = ThreadRepo(storage.tables), CommentRepo(storage.tables)
    now = time.time()
    thread = await old_threads.create(Thread(
        thread_id=ids.new_id(now), room="Candles", title="an old thread", body="", url=None,
        author="WickBot", is_bot=True, persona="WickBot", created_at=now, last_activity=now))
    await old_comments.add(Comment(
        comment_id=ids.new_id(), thread_id=thread.thread_id, room="Candles", parent_id=None,
        author="olga", is_bot=False, persona=None, text="an old comment", created_at=now))
    assert (await storage.listings.page("Candles", "new")).items == []
    await storage.users.create(User(username="olga", display_name="olga", password_hash="x",
                                    created_at=now))
    app = await build(storage)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        await ctx_of(app).scores.drain()  # the start-up indexing
        assert await indexed(storage, "Candles")
        room = (await client.get("/r/Candles?sort=new", headers=HTML)).text
        assert "an old thread" in room
        assert "an old comment" in (await client.get("/u/olga", headers=HTML)).text
