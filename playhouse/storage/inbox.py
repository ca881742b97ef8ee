"""Each person's inbox: replies to them and mentions of them.

Keys: ``inbox``: PK the recipient's user name (lowercase), RK ``ids.invert(comment id)``,
so one person's notifications come newest first from one partition, and a comment
notifies one person at most once (a redelivered answer, or a reply that also mentions
them, finds the row there: :meth:`InboxRepo.add` says so and changes nothing).

The unread count is a query for the unread rows, capped at :data:`UNREAD_CAP`: which of
them the access rules and the recipient's choices still show is the caller's to decide.
Marking read is one merge per row, in transactions of the one partition.
"""

from __future__ import annotations

import builtins

import structlog

from playhouse import ids
from playhouse.constants import TABLE_INBOX
from playhouse.errors import Conflict, NotFound
from playhouse.storage.accounts import user_key
from playhouse.storage.models import Notification, Page
from playhouse.storage.tables import Tables, check_key, from_entity, to_entity

log = structlog.get_logger()

UNREAD_CAP = 100
"""Unread notifications counted at most (the badge says "99+" past it)."""


def row_key(comment_id: str) -> str:
    return ids.invert(check_key("comment id", comment_id))


class InboxRepo:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    async def add(self, note: Notification) -> bool:
        """Store ``note``; False when that comment notified that person already."""
        pk = user_key(note.username)
        try:
            await self.t.insert(TABLE_INBOX, to_entity(note, pk, row_key(note.comment_id)),
                                f"notification for {pk}")
        except Conflict:
            return False
        log.info("inbox.notified", username=pk, kind=note.kind, comment_id=note.comment_id,
                 by=note.by)
        return True

    async def list(self, username: str, *, limit: int = 50,
                   token: str | None = None) -> Page[Notification]:
        """A page of ``username``'s notifications, newest first."""
        pk = user_key(username)
        entities, nxt = await self.t.page(
            TABLE_INBOX, "PartitionKey eq @pk", f"inbox of {pk}", limit=limit, token=token,
            parameters={"pk": pk}, partition=pk,
        )
        return Page(items=[from_entity(e, Notification) for e in entities], next=nxt)

    async def unread(self, username: str, *,
                     limit: int = UNREAD_CAP) -> builtins.list[Notification]:
        """``username``'s unread notifications, newest first (at most ``limit``)."""
        pk = user_key(username)
        entities = await self.t.query(
            TABLE_INBOX, "PartitionKey eq @pk and read eq false", f"inbox of {pk}",
            parameters={"pk": pk}, limit=limit,
        )
        return [from_entity(e, Notification) for e in entities]

    async def mark_read(self, username: str, comment_ids: builtins.list[str]) -> int:
        """Mark these notifications read (one transaction per 100); how many were asked.
        NotFound when one of them is not in the inbox (nothing of that chunk changes)."""
        pk = user_key(username)
        wanted = list(dict.fromkeys(comment_ids))
        if not wanted:
            return 0
        ops = [("update", {"PartitionKey": pk, "RowKey": row_key(c), "read": True})
               for c in wanted]
        try:
            await self.t.submit(TABLE_INBOX, ops, f"inbox of {pk}")
        except NotFound:
            raise NotFound("no such notification in your inbox") from None
        return len(wanted)

    async def mark_all_read(self, username: str) -> int:
        """Mark every unread notification read; how many there were."""
        marked = 0
        while True:
            unread = await self.unread(username, limit=1000)
            if not unread:
                return marked
            marked += await self.mark_read(username, [n.comment_id for n in unread])
