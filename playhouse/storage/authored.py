"""What each account wrote, newest first, its karma, and its best comments.

Keys (table ``authored``, PK the author's name, lowercase; people and bots alike):

* ``i.<inverted item id>``: one :class:`~playhouse.storage.models.Authored` row per
  thread or comment the account made, so a profile's history is one range query per page
  (newest first), and "since a time" is a range too (the leaderboard's day and week);
* ``s.<score>.<inverted id>``: the account's comments again, best first (its best
  comment is the first such row);
* ``~karma``: the :class:`~playhouse.storage.models.Karma`, the sums of its items' votes.

An item's votes come from its tally (:mod:`playhouse.storage.votes`): :meth:`apply` takes
a tally newer than the row's and, in ONE transaction, rewrites the item row (under its
ETag), moves its ``s.`` row and adds the difference to ``~karma`` (under its ETag), so
karma is always exactly the sum of the rows; a stale tally (an older version) changes
nothing, so the rows converge on the latest votes whatever order the updates land in.
"""

from __future__ import annotations

import asyncio
import random
from typing import Final

import msgspec
import structlog
from azure.data.tables import UpdateMode

from playhouse import ids, ranking
from playhouse.constants import TABLE_AUTHORED
from playhouse.errors import Conflict, NotFound
from playhouse.storage.accounts import user_key
from playhouse.storage.models import Authored, Comment, Karma, Page, Tally, Thread
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

KARMA_KEY: Final = "~karma"
TEXT_CHARS: Final = 1000
"""Characters of a comment (or a thread's body) kept in its author's history."""
KARMA_RETRIES: Final = 50


def item_key(item_id: str) -> str:
    return "i." + ids.invert(item_id)


def best_key(item: Authored) -> str:
    return f"s.{ranking.top_key(item.score)}.{ids.invert(item.item_id)}"


def of_thread(thread: Thread) -> Authored:
    gone = bool(thread.gone)
    return Authored(
        item_id=thread.thread_id, kind="thread", thread_id=thread.thread_id, room=thread.room,
        author=thread.author, is_bot=thread.is_bot, persona=thread.persona,
        created_at=thread.created_at, title="" if gone else thread.title,
        text="" if gone else thread.body[:TEXT_CHARS],
        image_blob=None if gone else thread.image_blob, gone=thread.gone,
    )


def of_comment(comment: Comment) -> Authored:
    gone = bool(comment.gone)
    return Authored(
        item_id=comment.comment_id, kind="comment", thread_id=comment.thread_id,
        room=comment.room, author=comment.author, is_bot=comment.is_bot,
        persona=comment.persona, created_at=comment.created_at,
        text="" if gone else comment.text[:TEXT_CHARS],
        image_blob=None if gone else comment.image_blob, gone=comment.gone,
    )


class AuthorIndex:
    def __init__(self, tables: Tables) -> None:
        self.t = tables
        self._locks = RowLocks()

    async def add(self, item: Authored) -> bool:
        """Record a new thread or comment; False when it is recorded already."""
        pk = user_key(item.author)
        ops: list[Operation] = [("create", to_entity(item, pk, item_key(item.item_id)))]
        if item.kind == "comment":
            ops.append(("create", to_entity(item, pk, best_key(item))))
        try:
            await self.t.transact(TABLE_AUTHORED, ops, f"history of {pk}")
        except Conflict:
            return False
        return True

    async def revise(self, item: Authored) -> Authored | None:
        """Take what ``item`` says now (an edit, a tombstone: title, text, picture) into
        its recorded row, votes kept; None when it is not recorded (nothing written)."""
        pk = user_key(item.author)
        async with self._locks.hold(pk):
            return await self._revise(pk, item)

    async def _revise(self, pk: str, item: Authored) -> Authored | None:
        what = f"history of {pk}"
        for attempt in range(KARMA_RETRIES):
            row = await self.t.get(TABLE_AUTHORED, pk, item_key(item.item_id), what)
            if row is None:
                return None
            stored = from_entity(row, Authored)
            revised = msgspec.structs.replace(stored, title=item.title, text=item.text,
                                              image_blob=item.image_blob, gone=item.gone)
            if revised == stored:
                return stored
            ops: list[Operation] = [("update", to_entity(revised, pk, item_key(item.item_id)),
                                     {"mode": UpdateMode.REPLACE, **if_match(etag_of(row))})]
            if revised.kind == "comment":
                ops.append(("upsert", to_entity(revised, pk, best_key(revised)),
                            {"mode": UpdateMode.REPLACE}))
            try:
                await self.t.transact(TABLE_AUTHORED, ops, what)
            except Conflict:  # its votes moved meanwhile: read again
                await asyncio.sleep(random.uniform(0, min(0.05, 0.002 * 1.5**attempt)))
                continue
            return revised
        raise Conflict(f"{what}: still contended after {KARMA_RETRIES} attempts")

    async def get(self, author: str, item_id: str) -> Authored | None:
        entity = await self.t.get(TABLE_AUTHORED, user_key(author), item_key(item_id),
                                  f"history of {author}")
        return None if entity is None else from_entity(entity, Authored)

    async def apply(self, author: str, item_id: str, tally: Tally) -> Authored | None:
        """Take the votes of ``tally`` for the item (if newer); None when it is not here."""
        pk = user_key(author)
        async with self._locks.hold(pk):
            return await self._apply(pk, item_id, tally)

    async def _apply(self, pk: str, item_id: str, tally: Tally) -> Authored | None:
        what = f"history of {pk}"
        gone: set[str] = set()
        for attempt in range(KARMA_RETRIES):
            item_row, karma_row = await asyncio.gather(
                self.t.get(TABLE_AUTHORED, pk, item_key(item_id), what),
                self.t.get(TABLE_AUTHORED, pk, KARMA_KEY, what),
            )
            if item_row is None:
                return None
            item = from_entity(item_row, Authored)
            if tally.version <= item.version:
                return item
            updated = msgspec.structs.replace(item, ups=tally.ups, downs=tally.downs,
                                              version=tally.version)
            karma = (from_entity(karma_row, Karma) if karma_row is not None
                     else Karma(author=pk))
            up, down = updated.ups - item.ups, updated.downs - item.downs
            if item.kind == "thread":
                karma = msgspec.structs.replace(karma, thread_ups=karma.thread_ups + up,
                                                thread_downs=karma.thread_downs + down)
            else:
                karma = msgspec.structs.replace(karma, comment_ups=karma.comment_ups + up,
                                                comment_downs=karma.comment_downs + down)
            ops: list[Operation] = [("update", to_entity(updated, pk, item_key(item_id)),
                                     {"mode": UpdateMode.REPLACE, **if_match(etag_of(item_row))})]
            old_best = best_key(item)
            if item.kind == "comment" and old_best != best_key(updated) and old_best not in gone:
                ops.append(("delete", {"PartitionKey": pk, "RowKey": old_best}))
            if item.kind == "comment":
                ops.append(("upsert", to_entity(updated, pk, best_key(updated)),
                            {"mode": UpdateMode.REPLACE}))
            ops.append(_karma_step(karma, pk, karma_row))
            try:
                await self.t.transact(TABLE_AUTHORED, ops, what)
            except Conflict:
                await asyncio.sleep(random.uniform(0, min(0.05, 0.002 * 1.5**attempt)))
                continue
            except NotFound:  # its best-first row is missing: write without removing it
                gone.add(old_best)
                continue
            return updated
        raise Conflict(f"{what}: still contended after {KARMA_RETRIES} attempts")

    async def karma(self, author: str) -> Karma:
        pk = user_key(author)
        entity = await self.t.get(TABLE_AUTHORED, pk, KARMA_KEY, f"karma of {pk}")
        return Karma(author=pk) if entity is None else from_entity(entity, Karma)

    async def page(self, author: str, *, limit: int = 25,
                   token: str | None = None) -> Page[Authored]:
        """A page of the account's threads and comments, newest first."""
        pk = user_key(author)
        entities, nxt = await self.t.page(
            TABLE_AUTHORED, "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
            f"history of {pk}", limit=limit, token=token,
            parameters={"pk": pk, "lo": "i.", "hi": "i/"}, partition=pk,
        )
        return Page(items=[from_entity(e, Authored) for e in entities], next=nxt)

    async def since(self, author: str, since: float, *, limit: int = 5000) -> list[Authored]:
        """The account's items made at or after ``since`` (epoch s), newest first."""
        pk = user_key(author)
        floor = f"{max(0, int(since * 1_000_000)):016x}" + "0" * (ids.ID_LENGTH - 16)
        entities = await self.t.query(
            TABLE_AUTHORED, "PartitionKey eq @pk and RowKey gt @lo and RowKey le @hi",
            f"history of {pk}", parameters={"pk": pk, "lo": "i.", "hi": "i." + ids.invert(floor)},
            limit=limit,
        )
        return [from_entity(e, Authored) for e in entities]

    async def best(self, author: str, *, limit: int = 20) -> list[Authored]:
        """The account's comments, highest score first."""
        pk = user_key(author)
        entities = await self.t.query(
            TABLE_AUTHORED, "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
            f"best of {pk}", parameters={"pk": pk, "lo": "s.", "hi": "s/"}, limit=limit,
        )
        return [from_entity(e, Authored) for e in entities]


def _karma_step(karma: Karma, pk: str, stored: Entity | None) -> Operation:
    entity = to_entity(karma, pk, KARMA_KEY)
    if stored is None:
        return ("create", entity)
    return ("update", entity, {"mode": UpdateMode.REPLACE, **if_match(etag_of(stored))})


__all__ = ["AuthorIndex", "of_comment", "of_thread"]
