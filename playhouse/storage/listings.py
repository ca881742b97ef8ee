"""A room's threads in every order, kept as rows whose key is the rank.

Keys (table ``listings``, PK the room, lowercase): one row per thread and order, whose
RowKey starts with the order and encodes the rank so that lexical order is best first
(:mod:`playhouse.ranking`), then the thread's inverted id (newest first on ties):

* ``h.<hot>.<id>``: hot; ``t.<score>.<id>``: top of all time; ``n.<id>``: new;
  ``a.<last activity>.<id>``: active;
* ``d.<day>.<score>.<id>`` and ``w.<week>.<score>.<id>``: top of the threads made that
  UTC day / week (the "top today" and "top this week" windows read two buckets each);
* ``i.<thread id>``: the thread's state (the same :class:`ListingRow`), from which the
  keys it is listed under follow.

So a page of Hot, New, Top or Active is ONE single-partition range query (``RowKey gt
<last key of the previous page>``) whatever the size of the room, and each row carries
what the listing shows (title, author, counts, score): nothing else is read.

A thread's rows change together: :meth:`ListingIndex.apply` reads the ``i.`` row, merges
in what changed (votes from a newer tally version, activity that is newer), and in ONE
transaction deletes the rank rows whose keys moved, writes the new ones and replaces the
``i.`` row under its ETag. Two writers racing retry on fresh reads, and because a newer
version always wins the merge, the rows converge on the latest votes whatever order the
writers finish in. Votes move these rows a moment after the vote itself (the web app
coalesces them, :mod:`playhouse.web.scores`); a new thread is indexed when it is made.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import msgspec
import structlog
from azure.data.tables import UpdateMode

from playhouse import ids, ranking
from playhouse.constants import TABLE_LISTINGS
from playhouse.errors import Conflict, InvalidInput, NotFound
from playhouse.storage.accounts import room_key
from playhouse.storage.models import ListingRow, Page, RoomSort, Tally, Thread, TopWindow
from playhouse.storage.tables import (
    Entity,
    Operation,
    RowLocks,
    Tables,
    etag_of,
    from_entity,
    if_match,
    to_entity,
)

log = structlog.get_logger()

STATE_PREFIX: Final = "i."
ORDER_PREFIX: Final = {"hot": "h.", "top": "t.", "new": "n.", "active": "a."}
BUCKET_DAY_S: Final = 86_400
BUCKET_WEEK_S: Final = 7 * BUCKET_DAY_S
LISTING_RETRIES: Final = 50
_TOKEN = re.compile(r"^[a-z0-9.]{1,120}$")

Loader = Callable[[], Awaitable[Thread]]


def day_of(ts: float) -> int:
    return int(ts // BUCKET_DAY_S)


def week_of(ts: float) -> int:
    return int(ts // BUCKET_WEEK_S)


def _bucket(window: TopWindow, number: int) -> str:
    return f"d.{number:06d}." if window == "day" else f"w.{number:05d}."


def keys(row: ListingRow) -> dict[str, str]:
    """The RowKey of each order ``row`` is listed under."""
    inv = ids.invert(row.thread_id)
    top = ranking.top_key(row.score)
    return {
        "hot": f"h.{ranking.hot_key(row.ups, row.downs, row.created_at)}.{inv}",
        "top": f"t.{top}.{inv}",
        "new": f"n.{inv}",
        "active": f"a.{ranking.recent_key(row.last_activity)}.{inv}",
        "day": f"{_bucket('day', day_of(row.created_at))}{top}.{inv}",
        "week": f"{_bucket('week', week_of(row.created_at))}{top}.{inv}",
    }


def row_of(thread: Thread) -> ListingRow:
    return ListingRow(
        thread_id=thread.thread_id, room=thread.room, title=thread.title, author=thread.author,
        is_bot=thread.is_bot, persona=thread.persona, created_at=thread.created_at,
        last_activity=thread.last_activity, comment_count=thread.comment_count,
        image_blob=thread.image_blob, url=thread.url, gone=thread.gone, held=thread.held,
        locked=thread.locked,
    )


def merge(stored: ListingRow | None, thread: Thread | None, tally: Tally | None) -> ListingRow:
    """What the rows should say: the thread's post and newer activity, newer votes."""
    if stored is None:
        if thread is None:
            raise NotFound("thread not indexed yet")
        row = row_of(thread)
    else:
        row = stored
        if thread is not None:
            newer = (thread.last_activity, thread.comment_count) > (row.last_activity,
                                                                     row.comment_count)
            fresh = row_of(thread)
            row = msgspec.structs.replace(
                fresh, ups=row.ups, downs=row.downs, version=row.version,
                last_activity=fresh.last_activity if newer else row.last_activity,
                comment_count=fresh.comment_count if newer else row.comment_count,
            )
    if tally is not None and tally.version > row.version:
        row = msgspec.structs.replace(row, ups=tally.ups, downs=tally.downs,
                                      version=tally.version)
    return row


def entities(row: ListingRow) -> list[Entity]:
    """Every row of ``row``'s thread: its state and one per order (what bulk loads write)."""
    pk = room_key(row.room)
    return [to_entity(row, pk, STATE_PREFIX + row.thread_id),
            *(to_entity(row, pk, key) for key in keys(row).values())]


def rank_token(key: str) -> str:
    """The next page's token: the rank key of the last row shown."""
    return key


def rank_after(token: str | None, prefix: str) -> str | None:
    """The rank key a page starts after (a token made by :func:`rank_token`)."""
    if not token:
        return None
    if not _TOKEN.match(token) or not token.startswith(prefix):
        raise InvalidInput("invalid page token")
    return token


class ListingIndex:
    def __init__(self, tables: Tables) -> None:
        self.t = tables
        self._locks = RowLocks()

    async def add(self, thread: Thread) -> bool:
        """Index a new thread; False when it is indexed already."""
        ops: list[Operation] = [("create", e) for e in entities(row_of(thread))]
        try:
            await self.t.transact(TABLE_LISTINGS, ops, f"listing of {thread.thread_id}")
        except Conflict:
            return False
        return True

    async def get(self, room: str, thread_id: str) -> ListingRow | None:
        entity = await self.t.get(TABLE_LISTINGS, room_key(room), STATE_PREFIX + thread_id,
                                  f"listing of {thread_id}")
        return None if entity is None else from_entity(entity, ListingRow)

    async def apply(
        self, room: str, thread_id: str, *, thread: Thread | None = None,
        tally: Tally | None = None, load: Loader | None = None,
    ) -> ListingRow:
        """Merge ``thread`` (its post and activity) and/or ``tally`` (its votes) into the
        thread's rows; ``load`` reads the thread when it is not indexed yet."""
        pk = room_key(room)
        async with self._locks.hold(thread_id):
            return await self._apply(pk, thread_id, thread, tally, load)

    async def _apply(self, pk: str, thread_id: str, thread: Thread | None,
                     tally: Tally | None, load: Loader | None) -> ListingRow:
        what = f"listing of {thread_id}"
        rk = STATE_PREFIX + thread_id
        gone: set[str] = set()
        """Rank rows found missing and deleted one by one (left out of the transaction)."""
        for attempt in range(LISTING_RETRIES):
            entity = await self.t.get(TABLE_LISTINGS, pk, rk, what)
            stored = None if entity is None else from_entity(entity, ListingRow)
            if stored is None and thread is None:
                if load is None:
                    raise NotFound(f"{what}: not indexed")
                thread = await load()
            merged = merge(stored, thread, tally)
            if merged == stored:
                return merged
            old = keys(stored) if stored is not None else {}
            new = keys(merged)
            ops: list[Operation] = [
                ("delete", {"PartitionKey": pk, "RowKey": key})
                for order, key in old.items() if new[order] != key and key not in gone
            ]
            ops += [("upsert", to_entity(merged, pk, key), {"mode": UpdateMode.REPLACE})
                    for key in new.values()]
            state = to_entity(merged, pk, rk)
            ops.append(("create", state) if entity is None else
                       ("update", state, {"mode": UpdateMode.REPLACE, **if_match(etag_of(entity))}))
            try:
                await self.t.transact(TABLE_LISTINGS, ops, what)
            except Conflict:
                await asyncio.sleep(random.uniform(0, min(0.05, 0.002 * 1.5**attempt)))
                continue
            except NotFound:
                # A rank row the state names is missing (written by an older version, or
                # by hand): drop the others one by one, then write without those steps.
                for order, key in old.items():
                    if new[order] != key and key not in gone:
                        await self.t.delete(TABLE_LISTINGS, pk, key, what)
                        gone.add(key)
                continue
            return merged
        raise Conflict(f"{what}: still contended after {LISTING_RETRIES} attempts")

    async def page(
        self, room: str, sort: RoomSort, *, window: TopWindow = "all", limit: int = 25,
        token: str | None = None, now: float | None = None,
    ) -> Page[ListingRow]:
        """A page of ``room``'s threads in ``sort`` order (``window`` for top)."""
        if not 1 <= limit <= 500:
            raise InvalidInput("page limit must be between 1 and 500")
        if sort == "top" and window != "all":
            return await self._window(room, window, limit, token, now)
        prefix = ORDER_PREFIX[sort]
        after = rank_after(token, prefix)
        pk = room_key(room)
        rows = await self.t.query(
            TABLE_LISTINGS, "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
            f"{sort} threads of {room}",
            parameters={"pk": pk, "lo": after or prefix, "hi": prefix[:-1] + "/"},
            limit=limit + 1,
        )
        items = [from_entity(row, ListingRow) for row in rows[:limit]]
        nxt = rank_token(str(rows[limit - 1]["RowKey"])) if len(rows) > limit else None
        return Page(items=items, next=nxt)

    async def _window(self, room: str, window: TopWindow, limit: int, token: str | None,
                      now: float | None) -> Page[ListingRow]:
        """Top threads made in the last day or week: the two buckets that window touches,
        merged by score (each one range query filtered on the creation time)."""
        moment = time.time() if now is None else now
        span = BUCKET_DAY_S if window == "day" else BUCKET_WEEK_S
        since = moment - span
        number = day_of if window == "day" else week_of
        buckets = sorted({number(since), number(moment)})
        after = rank_after(token, "") if token else None
        pk = room_key(room)

        async def bucket(n: int) -> list[tuple[str, Entity]]:
            prefix = _bucket(window, n)
            rows = await self.t.query(
                TABLE_LISTINGS,
                "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi and created_at ge @since",
                f"top threads of {room}",
                parameters={"pk": pk, "lo": prefix + after if after else prefix,
                            "hi": prefix[:-1] + "/", "since": since},
                limit=limit + 1,
            )
            return [(str(row["RowKey"])[len(prefix):], row) for row in rows]

        found = sorted((pair for rows in await asyncio.gather(*map(bucket, buckets))
                        for pair in rows), key=lambda pair: pair[0])
        items = [from_entity(row, ListingRow) for _, row in found[:limit]]
        nxt = rank_token(found[limit - 1][0]) if len(found) > limit else None
        return Page(items=items, next=nxt)

    async def bulk(self, rows: Iterable[ListingRow]) -> int:
        """Write many threads' rows in batch transactions (a bulk load: the benchmark,
        an index rebuilt from the threads table); returns how many rows were written."""
        ops = [("upsert", e) for row in rows for e in entities(row)]
        return len(await self.t.submit(TABLE_LISTINGS, ops, "bulk listing"))
