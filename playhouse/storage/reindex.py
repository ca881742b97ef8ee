"""Index what was stored before the listings and histories existed (once per room).

A room whose ``listings`` partition has no ``~indexed`` marker row gets its threads
listed and its threads and comments added to their authors' histories, from the
``threads`` and ``comments`` tables; then the marker is written. Every step inserts only
what is missing (a thread listed meanwhile, by a post or a vote, is left as it is), so
two instances doing it at once, or one interrupted and started again, do no harm.
The web app runs it in the background at start-up; a room made since is marked at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import structlog

from playhouse.constants import TABLE_LISTINGS
from playhouse.errors import PlayhouseError
from playhouse.storage.accounts import room_key
from playhouse.storage.authored import of_comment, of_thread

if TYPE_CHECKING:
    from playhouse.storage import Storage

log = structlog.get_logger()

MARKER: Final = "~indexed"


async def indexed(storage: Storage, room: str) -> bool:
    row = await storage.tables.get(TABLE_LISTINGS, room_key(room), MARKER, f"index of {room}")
    return row is not None


async def index_room(storage: Storage, room: str) -> int:
    """List ``room``'s threads and record its items' authors; returns threads listed."""
    listed = 0
    token: str | None = None
    while True:
        page = await storage.threads.list(room, limit=200, token=token)
        for thread in page.items:
            listed += await storage.listings.add(thread)
            await storage.authored.add(of_thread(thread))
            comments: str | None = None
            while True:
                found = await storage.comments.list(thread.thread_id, limit=500,
                                                    token=comments)
                for comment in found.items:
                    if comment.status == "ok":
                        await storage.authored.add(of_comment(comment))
                comments = found.next
                if comments is None:
                    break
        token = page.next
        if token is None:
            break
    await storage.tables.upsert(TABLE_LISTINGS, {"PartitionKey": room_key(room),
                                                 "RowKey": MARKER}, f"index of {room}")
    return listed


async def index_all(storage: Storage) -> None:
    """Index every room not indexed yet (logged; a failure leaves the room for next time)."""
    for room in await storage.rooms.all():
        try:
            if await indexed(storage, room.name):
                continue
            listed = await index_room(storage, room.name)
        except PlayhouseError as exc:
            log.warning("index.failed", room=room.name, reason=str(exc))
            continue
        log.info("index.built", room=room.name, threads=listed)
