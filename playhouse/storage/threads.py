"""Threads and their comment trees.

Keys:

* ``threads``: PK the room (lowercase), RK ``ids.invert(thread_id)``, so a room's threads
  come newest-first from a single-partition range query. A second row, PK ``~id`` / RK the
  thread id, says which room a thread lives in (``~`` cannot start a room name), so a
  thread is found by its id alone; the mapping never changes and is cached.
* ``comments``: PK the thread id, RK the comment id: a thread's comments oldest-first.
  ``parent_id`` makes the tree; ``depth`` is stored so a page can indent without walking.
* Every new thread is also written to its room's listings (``storage.listings``) and,
  like every comment once it has its text, to its author's history (``storage.authored``).

Counters (a thread's ``comment_count``, ``last_activity``) move by :meth:`ThreadRepo.touch`:
conditionally on the row a caller already holds (one round trip), or read-modify-write
with ETag retries when it holds none or lost the race; the thread's listings move with
them (the web app writes counters coalesced, :mod:`playhouse.web.counters`, so this too is
off the path from a post to its acknowledgement).
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from playhouse import ids
from playhouse.constants import PATH_MAX, TABLE_COMMENTS, TABLE_THREADS
from playhouse.errors import Conflict, NotFound, PlayhouseError
from playhouse.storage.accounts import room_key
from playhouse.storage.models import Comment, Page, Thread
from playhouse.storage.tables import Tables, check_key, etag_of, from_entity, to_entity

if TYPE_CHECKING:
    from playhouse.storage.authored import AuthorIndex
    from playhouse.storage.listings import ListingIndex

log = structlog.get_logger()

THREAD_INDEX_PK = "~id"
MAX_CHAIN_DEPTH = 500
"""Walking up a comment chain stops here (a loop in stored data must not hang a worker)."""


def _thread_id(value: str) -> str:
    if not ids.is_id(value):
        raise NotFound(f"no thread {value!r}")
    return value


def no_thread(thread_id: str, room: str | None = None) -> NotFound:
    """The one answer for a thread that is not there (in ``room``), or not for the asker:
    a private thread must not be told apart from a missing one."""
    where = f" in r/{room}" if room is not None else ""
    return NotFound(f"no thread {thread_id!r}{where}")


class ThreadRepo:
    def __init__(self, tables: Tables, *, listings: ListingIndex | None = None,
                 authored: AuthorIndex | None = None) -> None:
        self.t = tables
        self._rooms: dict[str, str] = {}
        self.listings = listings
        self.authored = authored

    async def create(self, thread: Thread) -> Thread:
        """Store a new thread; Conflict when one with that id exists."""
        tid = _thread_id(thread.thread_id)
        room = room_key(thread.room)
        # The index row is idempotent (it never changes), so the two writes go together.
        _, etag = await asyncio.gather(
            self.t.upsert(
                TABLE_THREADS,
                {"PartitionKey": THREAD_INDEX_PK, "RowKey": tid, "room": room},
                f"thread {tid}",
            ),
            self.t.insert(
                TABLE_THREADS, to_entity(thread, room, ids.invert(tid)), f"thread {tid}"
            ),
        )
        self._rooms[tid] = room
        log.info("thread.created", thread_id=tid, room=thread.room, author=thread.author)
        await self._index(thread)
        return msgspec.structs.replace(thread, etag=etag)

    async def _index(self, thread: Thread) -> None:
        """List a new thread and add it to its author's history; a failure is logged (the
        thread itself is stored, and its next change lists it)."""
        from playhouse.storage.authored import of_thread

        steps: list[Coroutine[Any, Any, object]] = []
        if self.listings is not None:
            steps.append(self.listings.add(thread))
        if self.authored is not None:
            steps.append(self.authored.add(of_thread(thread)))
        await _logged(thread, steps)

    async def _room_of(self, thread_id: str) -> str:
        tid = _thread_id(thread_id)
        room = self._rooms.get(tid)
        if room is None:
            entity = await self.t.get(TABLE_THREADS, THREAD_INDEX_PK, tid, f"thread {tid}")
            if entity is None:
                raise no_thread(thread_id)
            room = self._rooms[tid] = str(entity["room"])
        return room

    async def get(self, thread_id: str, *, room: str | None = None) -> Thread:
        """The thread; with ``room`` (a name the caller expects it in) it is read there in
        one round trip, and NotFound when it is not in that room."""
        room = room_key(room) if room is not None else await self._room_of(thread_id)
        entity = await self.t.get(TABLE_THREADS, room, ids.invert(_thread_id(thread_id)),
                                  f"thread {thread_id}")
        if entity is None:
            raise no_thread(thread_id)
        return from_entity(entity, Thread)

    async def list(self, room: str, *, limit: int = 50, token: str | None = None) -> Page[Thread]:
        """A page of ``room``'s threads, newest first."""
        pk = room_key(room)
        entities, nxt = await self.t.page(
            TABLE_THREADS, "PartitionKey eq @pk", f"threads of {room}", limit=limit,
            token=token, parameters={"pk": pk}, partition=pk,
        )
        return Page(items=[from_entity(e, Thread) for e in entities], next=nxt)

    async def since(
        self, room: str, since: float, *, limit: int = 200
    ) -> builtins.list[Thread]:
        """``room``'s threads created at or after ``since`` (epoch seconds), newest first."""
        pk = room_key(room)
        floor = ids.invert(f"{int(since * 1_000_000):016x}" + "0" * (ids.ID_LENGTH - 16))
        entities = await self.t.query(
            TABLE_THREADS, "PartitionKey eq @pk and RowKey le @floor", f"threads of {room}",
            parameters={"pk": pk, "floor": floor}, limit=limit,
        )
        return [from_entity(e, Thread) for e in entities]

    async def replace(self, thread: Thread) -> Thread:
        """Overwrite a thread only if unchanged since read (``thread.etag``); else Conflict."""
        tid = _thread_id(thread.thread_id)
        etag = await self.t.update(
            TABLE_THREADS, to_entity(thread, room_key(thread.room), ids.invert(tid)),
            f"thread {tid}", etag=thread.etag,
        )
        replaced = msgspec.structs.replace(thread, etag=etag)
        await self._revise(replaced)
        return replaced

    async def change(self, thread_id: str, change: Callable[[Thread], Thread]) -> Thread:
        """Read-modify-write the thread (ETag retries; ``change`` must be pure, and may
        raise to refuse); NotFound when it is not there."""
        room = await self._room_of(thread_id)
        thread, etag = await self.t.modify(
            TABLE_THREADS, room, ids.invert(thread_id), Thread, change, f"thread {thread_id}"
        )
        changed = msgspec.structs.replace(thread, etag=etag)
        await self._revise(changed)
        return changed

    async def touch(
        self, thread_id: str, *, comments: int = 0, at: float | None = None,
        known: Thread | None = None, answers: Sequence[str] = (),
    ) -> Thread:
        """Count new comments and move ``last_activity`` forward; ``answers`` names the
        bot of each answer counted (``bot_replies``); ``known`` is the row as the caller
        last saw it (with its ETag): tried first, without a read."""
        when = time.time() if at is None else at

        def change(thread: Thread) -> Thread:
            replies = dict(thread.bot_replies)
            for name in answers:
                replies[name] = replies.get(name, 0) + 1
            return msgspec.structs.replace(
                thread,
                comment_count=thread.comment_count + comments,
                last_activity=max(thread.last_activity, when),
                bot_replies=tuple(sorted(replies.items())) if answers else thread.bot_replies,
            )

        if known is not None and known.etag:
            room = room_key(known.room)
            updated = change(known)
            try:
                etag = await self.t.update(
                    TABLE_THREADS, to_entity(updated, room, ids.invert(thread_id)),
                    f"thread {thread_id}", etag=known.etag,
                )
                touched = msgspec.structs.replace(updated, etag=etag)
                await self._relist(touched)
                return touched
            except Conflict:
                pass  # changed since: read it again
        room = await self._room_of(thread_id)
        thread, etag = await self.t.modify(
            TABLE_THREADS, room, ids.invert(thread_id), Thread, change, f"thread {thread_id}"
        )
        touched = msgspec.structs.replace(thread, etag=etag)
        await self._relist(touched)
        return touched

    async def _revise(self, thread: Thread) -> None:
        """After an edit or a tombstone: the thread's listings and its author's history
        say what it says now (failures are logged, as for :meth:`_relist`)."""
        from playhouse.storage.authored import of_thread

        steps: list[Coroutine[Any, Any, object]] = [self._relist(thread)]
        if self.authored is not None:
            steps.append(self.authored.revise(of_thread(thread)))
        await _logged(thread, steps)

    async def _relist(self, thread: Thread) -> None:
        """Move a touched thread in its room's listings (a failure is logged: the next
        change moves it)."""
        if self.listings is not None:
            try:
                await self.listings.apply(thread.room, thread.thread_id, thread=thread)
            except PlayhouseError as exc:
                log.warning("thread.index_failed", thread_id=thread.thread_id, reason=str(exc))


async def _logged(thread: Thread, steps: list[Coroutine[Any, Any, object]]) -> None:
    """Run a thread's index writes together; a storage failure is logged (the thread is
    stored, and its next change indexes it), anything else raised."""
    for outcome in await asyncio.gather(*steps, return_exceptions=True):
        if isinstance(outcome, PlayhouseError):
            log.warning("thread.index_failed", thread_id=thread.thread_id, reason=str(outcome))
        elif isinstance(outcome, BaseException):
            raise outcome


class CommentRepo:
    def __init__(self, tables: Tables, *, authored: AuthorIndex | None = None) -> None:
        self.t = tables
        self.authored = authored

    async def _index(self, comment: Comment) -> None:
        """Add a comment that has its text to its author's history (logged on failure)."""
        if self.authored is None or comment.status != "ok":
            return
        from playhouse.storage.authored import of_comment

        try:
            item = of_comment(comment)
            if not await self.authored.add(item):  # recorded already: an edit, a tombstone
                await self.authored.revise(item)
        except PlayhouseError as exc:
            log.warning("comment.index_failed", comment_id=comment.comment_id, reason=str(exc))

    async def add(self, comment: Comment) -> Comment:
        """Store a new comment; Conflict when its id exists in the thread."""
        tid = _thread_id(comment.thread_id)
        cid = check_key("comment id", comment.comment_id)
        etag = await self.t.insert(TABLE_COMMENTS, to_entity(comment, tid, cid), f"comment {cid}")
        await self._index(comment)
        return msgspec.structs.replace(comment, etag=etag)

    async def upsert(self, comment: Comment) -> Comment:
        tid = _thread_id(comment.thread_id)
        cid = check_key("comment id", comment.comment_id)
        etag = await self.t.upsert(TABLE_COMMENTS, to_entity(comment, tid, cid), f"comment {cid}")
        await self._index(comment)
        return msgspec.structs.replace(comment, etag=etag)

    async def replace(self, comment: Comment) -> Comment:
        """Overwrite a comment only if unchanged since read (``comment.etag``); else Conflict."""
        tid = _thread_id(comment.thread_id)
        cid = check_key("comment id", comment.comment_id)
        etag = await self.t.update(
            TABLE_COMMENTS, to_entity(comment, tid, cid), f"comment {cid}", etag=comment.etag
        )
        await self._index(comment)  # a placeholder's answer: now it has its text
        return msgspec.structs.replace(comment, etag=etag)

    async def change(self, thread_id: str, comment_id: str,
                     change: Callable[[Comment], Comment]) -> Comment:
        """Read-modify-write a comment (ETag retries; ``change`` must be pure, and may
        raise to refuse); NotFound when it is not there."""
        tid = _thread_id(thread_id)
        cid = check_key("comment id", comment_id)
        try:
            comment, etag = await self.t.modify(TABLE_COMMENTS, tid, cid, Comment, change,
                                                f"comment {cid}")
        except NotFound:
            raise NotFound(f"no comment {comment_id!r} in thread {thread_id!r}") from None
        changed = msgspec.structs.replace(comment, etag=etag)
        await self._index(changed)  # its author's history says what it says now
        return changed

    async def get(self, thread_id: str, comment_id: str) -> Comment:
        tid = _thread_id(thread_id)
        entity = await self.t.get(
            TABLE_COMMENTS, tid, check_key("comment id", comment_id), f"comment {comment_id}"
        )
        if entity is None:
            raise NotFound(f"no comment {comment_id!r} in thread {thread_id!r}")
        comment = from_entity(entity, Comment)
        return msgspec.structs.replace(comment, etag=etag_of(entity))

    async def list(
        self, thread_id: str, *, limit: int = 200, token: str | None = None
    ) -> Page[Comment]:
        """A page of the thread's comments, oldest first."""
        tid = _thread_id(thread_id)
        entities, nxt = await self.t.page(
            TABLE_COMMENTS, "PartitionKey eq @pk", f"comments of {tid}", limit=limit,
            token=token, parameters={"pk": tid}, partition=tid,
        )
        return Page(items=[from_entity(e, Comment) for e in entities], next=nxt)

    async def after(
        self, thread_id: str, after_id: str, *, limit: int = 200
    ) -> builtins.list[Comment]:
        """Comments made after ``after_id`` (exclusive), oldest first: resuming a view."""
        tid = _thread_id(thread_id)
        entities = await self.t.query(
            TABLE_COMMENTS, "PartitionKey eq @pk and RowKey gt @after", f"comments of {tid}",
            parameters={"pk": tid, "after": after_id}, limit=limit,
        )
        return [from_entity(e, Comment) for e in entities]

    async def some(self, thread_id: str, comment_ids: builtins.list[str]) -> builtins.list[Comment]:
        """The comments of ``comment_ids`` that exist (at most :data:`PATH_MAX`), in id
        order: one single-partition query."""
        tid = _thread_id(thread_id)
        wanted = list(dict.fromkeys(check_key("comment id", c) for c in comment_ids))
        if not wanted:
            return []
        if len(wanted) > PATH_MAX:
            raise ValueError(f"at most {PATH_MAX} comments per query")
        names = [f"r{i}" for i in range(len(wanted))]
        # Spaces around the parentheses: the SDK finds @names between spaces.
        flt = "PartitionKey eq @pk and ( " + " or ".join(f"RowKey eq @{n}" for n in names) + " )"
        entities = await self.t.query(
            TABLE_COMMENTS, flt, f"comments of {tid}",
            parameters={"pk": tid, **dict(zip(names, wanted, strict=True))},
        )
        return [from_entity(e, Comment) for e in entities]

    async def ancestors(self, comment: Comment) -> builtins.list[Comment]:
        """The ancestors of ``comment``, oldest first (the nearest :data:`PATH_MAX`): one
        query on the ids it keeps, or a walk for a comment stored before paths were."""
        if comment.parent_id is None:
            return []
        if comment.path:
            found = {c.comment_id: c for c in await self.some(comment.thread_id,
                                                              [*comment.path])}
            return [found[c] for c in comment.path if c in found]
        return await self.chain(comment.thread_id, comment.parent_id)

    async def chain(self, thread_id: str, comment_id: str) -> builtins.list[Comment]:
        """``comment_id`` and its ancestors, oldest first, walked one read at a time
        (comments stored before paths were kept; :meth:`ancestors` is the one-query way)."""
        chain: builtins.list[Comment] = []
        seen: set[str] = set()
        current: str | None = comment_id
        while current is not None and current not in seen and len(chain) < MAX_CHAIN_DEPTH:
            seen.add(current)
            try:
                comment = await self.get(thread_id, current)
            except NotFound:
                break  # an orphan: its parent is gone; the chain starts here
            chain.append(comment)
            current = comment.parent_id
        chain.reverse()
        return chain
