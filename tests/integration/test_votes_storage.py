"""Votes, listings and authors' histories on Azurite: races, retries and query shapes."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from azure.data.tables.aio import TableServiceClient

from playhouse import ids, ranking
from playhouse.constants import TABLE_LISTINGS, TABLE_VOTES
from playhouse.storage import Storage
from playhouse.storage.authored import of_comment
from playhouse.storage.listings import ListingIndex, keys
from playhouse.storage.models import Comment, ListingRow, Tally, Thread
from playhouse.storage.tables import Tables

pytestmark = pytest.mark.integration


def thread(room: str = "Sports", *, at: float | None = None, author: str = "alice") -> Thread:
    now = time.time() if at is None else at
    return Thread(thread_id=ids.new_id(now), room=room, title="t", body="b", url=None,
                  author=author, is_bot=False, persona=None, created_at=now, last_activity=now)


def comment(t: Thread, author: str = "CoopBot") -> Comment:
    return Comment(comment_id=ids.new_id(), thread_id=t.thread_id, room=t.room, parent_id=None,
                   author=author, is_bot=True, persona=author, text="a fine reply",
                   created_at=time.time())


@pytest_asyncio.fixture
async def others(storage: Storage, connection_string: str) -> AsyncIterator[list[Storage]]:
    """Two more connections to the same namespace: other web instances, with their own
    in-process locks, racing on the same rows."""
    extra = [await Storage.connect(connection_string, namespace=storage.namespace)
             for _ in range(2)]
    try:
        yield extra
    finally:
        for s in extra:
            await s.close()


async def vote_rows(storage: Storage, thread_id: str) -> list[dict[str, Any]]:
    return await storage.tables.query(TABLE_VOTES, "PartitionKey eq @pk", "rows",
                                      parameters={"pk": thread_id})


async def test_fifty_people_voting_at_once_on_one_comment_lose_nothing(
    storage: Storage, others: list[Storage]
) -> None:
    t = thread()
    await storage.threads.create(t)
    c = await storage.comments.add(comment(t))
    instances = [storage, *others]
    rng = random.Random(5)
    wanted = {f"voter{i:02d}": rng.choice((1, 1, -1)) for i in range(50)}

    async def vote(n: int, name: str, value: int) -> None:
        # Each person's browser retries once, as after a lost answer: idempotent.
        await instances[n % 3].votes.cast(t.thread_id, c.comment_id, name, value)
        await instances[(n + 1) % 3].votes.cast(t.thread_id, c.comment_id, name, value)

    await asyncio.gather(*(vote(n, name, v) for n, (name, v) in enumerate(wanted.items())))
    tally = await storage.votes.tally(t.thread_id, c.comment_id)
    rows = await storage.votes.votes_on(t.thread_id, c.comment_id)
    assert rows == wanted  # one row per person, each with their vote
    stored = [r for r in await vote_rows(storage, t.thread_id) if r["RowKey"].startswith("v.")]
    assert len(stored) == 50
    assert tally.ups == sum(v == 1 for v in rows.values())
    assert tally.downs == sum(v == -1 for v in rows.values())
    assert tally.version == 50  # the retries changed nothing


async def test_a_vote_flipped_twenty_times_ends_at_the_last_choice(storage: Storage) -> None:
    t = thread()
    await storage.threads.create(t)
    choices = [1, -1, 0, 1, 1, -1, 0, 0, -1, 1, -1, 1, 0, -1, -1, 1, 0, 1, -1, 1]
    for value in choices:
        cast = await storage.votes.cast(t.thread_id, t.thread_id, "bob", value)
        assert cast.value == value
    tally = await storage.votes.tally(t.thread_id, t.thread_id)
    assert (tally.ups, tally.downs) == (1, 0)
    assert await storage.votes.votes_on(t.thread_id, t.thread_id) == {"bob": 1}
    withdrawn = await storage.votes.cast(t.thread_id, t.thread_id, "Bob", 0)
    assert withdrawn.previous == 1 and withdrawn.tally.score == 0
    assert await storage.votes.votes_on(t.thread_id, t.thread_id) == {}


async def test_own_votes_are_found_per_thread_and_per_page(storage: Storage) -> None:
    threads = [thread(at=time.time() - 100 + i) for i in range(5)]
    for t in threads:
        await storage.threads.create(t)
    c = await storage.comments.add(comment(threads[0]))
    for t, value in zip(threads, (1, -1, 0, 1, 1), strict=True):
        cast = await storage.votes.cast(t.thread_id, t.thread_id, "carol", value)
        await storage.votes.remember("carol", cast, is_thread=True)
    cast = await storage.votes.cast(threads[0].thread_id, c.comment_id, "carol", -1)
    await storage.votes.remember("carol", cast, is_thread=False)
    mine = await storage.votes.mine_threads("carol", [t.thread_id for t in threads[:4]])
    assert mine == {threads[0].thread_id: 1, threads[1].thread_id: -1,
                    threads[3].thread_id: 1}
    assert await storage.votes.mine("carol", threads[0].thread_id) == {
        threads[0].thread_id: 1, c.comment_id: -1}


def counting_tables(connection_string: str, namespace: str,
                    log: list[str]) -> tuple[Tables, TableServiceClient]:
    """Tables whose every HTTP request is written to ``log`` (method and URL)."""

    def hook(request: Any) -> None:
        log.append(f"{request.http_request.method} {request.http_request.url}")

    service = TableServiceClient.from_connection_string(connection_string,
                                                        raw_request_hook=hook)
    return Tables(service, namespace), service


async def test_hot_new_and_top_of_a_big_room_are_one_range_query_per_page(
    storage: Storage, connection_string: str
) -> None:
    rng = random.Random(11)
    now = time.time()
    rows = []
    # Ids are made in creation order, as in life (an id carries its creation time).
    for i, created in enumerate(sorted(now - rng.random() * 30 * 86400 for _ in range(2500))):
        tid = ids.new_id(created)
        ups, downs = rng.randint(0, 300), rng.randint(0, 100)
        rows.append(ListingRow(thread_id=tid, room="Big", title=f"thread {i}", author="a",
                               is_bot=False, persona=None, created_at=created,
                               last_activity=created + rng.random() * 3600,
                               ups=ups, downs=downs, version=1))
    await storage.listings.bulk(rows)
    log: list[str] = []
    tables, service = counting_tables(connection_string, storage.namespace, log)
    index = ListingIndex(tables)
    truth = {
        "hot": sorted(rows, key=lambda r: -ranking.hot(r.ups, r.downs, r.created_at)),
        "new": sorted(rows, key=lambda r: -r.created_at),
        "top": sorted(rows, key=lambda r: (-r.score, ids.invert(r.thread_id))),
        "active": sorted(rows, key=lambda r: -r.last_activity),
    }
    try:
        for sort, expected in truth.items():
            token = None
            for page_no in range(3):
                log.clear()
                page = await index.page("Big", sort, limit=25, token=token)  # type: ignore[arg-type]
                assert len(log) == 1, (sort, log)  # one request per page
                request = log[0]
                assert request.startswith("GET ") and "PartitionKey%20eq%20" in request
                assert "RowKey%20gt%20" in request and "RowKey%20lt%20" in request
                assert "$top=26" in request  # the page (and one more to know if it goes on)
                want = expected[page_no * 25:(page_no + 1) * 25]
                assert [r.thread_id for r in page.items] == [r.thread_id for r in want], sort
                token = page.next
                assert token is not None
        # The last day's top threads: two day buckets, one query each.
        log.clear()
        day = await index.page("Big", "top", window="day", limit=10, now=now)
        assert len(log) == 2
        recent = [r for r in truth["top"] if r.created_at >= now - 86400][:10]
        assert [r.thread_id for r in day.items] == [r.thread_id for r in recent]
    finally:
        await service.close()


async def test_votes_move_a_thread_in_the_listings_and_a_stale_tally_does_not(
    storage: Storage,
) -> None:
    old = thread("Music", at=time.time() - 86400)  # a day: 5000 votes outweigh it
    fresh = thread("Music")
    for t in (old, fresh):
        await storage.threads.create(t)
    hot = await storage.listings.page("Music", "hot")
    assert [r.thread_id for r in hot.items] == [fresh.thread_id, old.thread_id]
    tally = Tally(thread_id=old.thread_id, item_id=old.thread_id, ups=5000, version=7)
    await storage.listings.apply("Music", old.thread_id, tally=tally)
    await storage.listings.apply("Music", old.thread_id, tally=Tally(
        thread_id=old.thread_id, item_id=old.thread_id, ups=1, version=3))  # late, older
    for sort in ("hot", "top"):
        page = await storage.listings.page("Music", sort)  # type: ignore[arg-type]
        assert [r.thread_id for r in page.items] == [old.thread_id, fresh.thread_id], sort
        assert page.items[0].score == 5000
    week = await storage.listings.page("Music", "top", window="week")
    assert [r.thread_id for r in week.items] == [old.thread_id, fresh.thread_id]
    # Every thread has exactly one row per order (the moved rows were deleted).
    rows = await storage.tables.query(TABLE_LISTINGS, "PartitionKey eq @pk", "all",
                                      parameters={"pk": "music"})
    assert len(rows) == 2 * (1 + len(keys(hot.items[0])))
    # Activity moves "active"; the votes stay.
    touched = await storage.threads.touch(old.thread_id, comments=2)
    active = await storage.listings.page("Music", "active")
    assert active.items[0].thread_id == old.thread_id
    assert active.items[0].comment_count == touched.comment_count == 2
    assert active.items[0].score == 5000


async def test_karma_is_the_sum_of_an_authors_items(storage: Storage,
                                                    others: list[Storage]) -> None:
    t = thread(author="CoopBot")
    await storage.threads.create(t)
    comments = [await storage.comments.add(comment(t)) for _ in range(4)]
    history = await storage.authored.page("CoopBot")
    assert [i.item_id for i in history.items] == [c.comment_id for c in reversed(comments)] + [
        t.thread_id]

    async def vote(n: int) -> None:
        target = comments[n % 4]
        cast = await [storage, *others][n % 3].votes.cast(
            t.thread_id, target.comment_id, f"v{n}", 1 if n % 5 else -1)
        await [storage, *others][(n + 1) % 3].authored.apply("CoopBot", target.comment_id,
                                                             cast.tally)

    await asyncio.gather(*(vote(n) for n in range(40)))
    tallies = await storage.votes.tallies(t.thread_id)
    # A late update with an old tally changes nothing.
    await storage.authored.apply("coopbot", comments[0].comment_id,
                                 Tally(thread_id=t.thread_id, item_id=comments[0].comment_id,
                                       ups=999, version=1))
    karma = await storage.authored.karma("coopbot")
    items = {i.item_id: i for i in (await storage.authored.page("coopbot", limit=50)).items}
    for c in comments:
        assert (items[c.comment_id].ups, items[c.comment_id].downs) == (
            tallies[c.comment_id].ups, tallies[c.comment_id].downs)
    assert karma.comment_ups == sum(t.ups for t in tallies.values())
    assert karma.comment_downs == sum(t.downs for t in tallies.values())
    assert karma.thread_karma == 0
    best = await storage.authored.best("coopbot", limit=4)
    assert [b.score for b in best] == sorted((t.score for t in tallies.values()), reverse=True)
    assert not await storage.authored.add(of_comment(comments[0]))  # recorded once


async def test_a_listing_with_a_missing_rank_row_heals_on_its_next_change(
    storage: Storage,
) -> None:
    t = thread("Art")
    await storage.threads.create(t)
    row = await storage.listings.get("Art", t.thread_id)
    assert row is not None
    await storage.tables.delete(TABLE_LISTINGS, "art", keys(row)["hot"], "by hand")
    tally = Tally(thread_id=t.thread_id, item_id=t.thread_id, ups=3, version=3)
    healed = await storage.listings.apply("Art", t.thread_id, tally=tally)
    rows = await storage.tables.query(TABLE_LISTINGS, "PartitionKey eq @pk", "all",
                                      parameters={"pk": "art"})
    assert sorted(r["RowKey"] for r in rows) == sorted(
        ["i." + t.thread_id, *keys(healed).values()])
    assert all(r["ups"] == 3 for r in rows)
