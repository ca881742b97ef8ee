"""Bot calls that outlive the web process that took the post (an outbox on a queue).

A person's post that calls bots is acknowledged only after two writes: first a
:class:`BotCall` on the ``bot-calls`` queue, hidden for ``web.bot_call_grace_s`` seconds,
then the post itself. The posting instance calls the bots at once and deletes the
message when that is done. If it dies anywhere in between (SIGKILL after the ack, say),
the message surfaces after the grace and :class:`CallRecovery`, which runs in every web
instance, makes the same call. Every step of a call is idempotent on the request id
derived from the comment and persona, so a call made twice (a slow first attempt
racing the recovery) still asks each bot once.

A call whose post is not in storage is one whose post was never stored, and so never
acknowledged: it is dropped once it is older than :data:`ORPHAN_AFTER_S`. A call that
keeps failing for another reason goes to ``bot-calls-poison`` after ``max_attempts``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import msgspec
import structlog

from playhouse.constants import QUEUE_BOT_CALLS, RECEIVE_MAX
from playhouse.errors import InvalidInput, NotFound, PlayhouseError, StorageUnavailable
from playhouse.storage import Storage
from playhouse.storage.models import Comment, Room, Thread
from playhouse.storage.queues import Received
from playhouse.web.loops import BackgroundLoop

log = structlog.get_logger()

ORPHAN_AFTER_S = 60.0
"""A call older than this whose post is not stored is dropped: the post was refused or its
process died before writing it, so nobody was told it was accepted. (The post is written
right after its call; a live process that is only slow makes its own call anyway.)"""


class BotCall(msgspec.Struct, kw_only=True, frozen=True):
    """The bots a stored post calls, as the queue holds it until they are asked."""

    room: str
    thread_id: str
    comment_id: str | None = None
    """None for a new thread (its room's default bot answers the thread)."""
    personas: tuple[str, ...] = ()
    """Who was called when the post was taken, after its caps: the recovery asks them."""
    at: float = 0.0
    v: int = 1


_decoder = msgspec.json.Decoder(BotCall)


def decode_call(data: bytes) -> BotCall:
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"malformed bot call: {exc}") from exc


async def reserve(storage: Storage, call: BotCall, *, grace_s: int) -> Received:
    """Put ``call`` on the queue, hidden for ``grace_s`` seconds; the handle deletes it."""
    return await storage.queues.enqueue(
        QUEUE_BOT_CALLS, msgspec.json.encode(call), visibility_timeout=grace_s
    )


async def release(storage: Storage, handle: Received) -> None:
    """Delete a call that was made. A failure only means that the recovery makes the call
    again, idempotently, so it is logged and swallowed."""
    try:
        await storage.queues.delete(handle)
    except PlayhouseError as exc:
        log.info("bot_call.release_failed", message_id=handle.id, reason=str(exc))


Found = tuple[Room, Thread, Comment | None, Comment | None]
"""A stored post: its room, its thread, the comment (None for the thread) and its parent."""
Caller = Callable[[Room, Thread, Comment | None, Comment | None, tuple[str, ...] | None],
                  Awaitable[None]]
"""Makes the call: (room, thread, comment or None for a new thread, its parent, the bots
to ask, None when the message does not say)."""


class CallRecovery(BackgroundLoop):
    """Polls ``bot-calls`` for calls their instance did not finish, and makes them."""

    name = "bot_calls"

    def __init__(
        self,
        storage: Storage,
        caller: Caller,
        *,
        poll_min_s: float = 0.5,
        poll_max_s: float = 5.0,
        visibility_timeout: int = 60,
        max_attempts: int = 5,
        orphan_after_s: float = ORPHAN_AFTER_S,
    ) -> None:
        super().__init__()
        self.storage = storage
        self.caller = caller
        self.poll_min_s = poll_min_s
        self.poll_max_s = poll_max_s
        self.visibility_timeout = visibility_timeout
        self.max_attempts = max_attempts
        self.orphan_after_s = orphan_after_s

    async def run_once(self) -> int:
        """Handle one page of surfaced calls; returns how many messages were handled."""
        messages = await self.storage.queues.receive(
            QUEUE_BOT_CALLS, max_messages=RECEIVE_MAX, visibility_timeout=self.visibility_timeout
        )
        for message in messages:
            await self.handle(message)
        return len(messages)

    async def handle(self, message: Received) -> None:
        queues = self.storage.queues
        try:
            call = decode_call(message.content)
        except InvalidInput as exc:
            log.warning("bot_call.malformed", message_id=message.id, reason=str(exc))
            await queues.to_poison(message, str(exc))
            return
        try:
            found = await self._load(call)
            if found is None:
                age = time.time() - (message.inserted_at or call.at or time.time())
                if age >= self.orphan_after_s:
                    log.info("bot_call.orphan_dropped", thread_id=call.thread_id,
                             comment_id=call.comment_id, age_s=round(age))
                    await queues.delete(message)
                else:
                    log.info("bot_call.post_not_found_yet", thread_id=call.thread_id,
                             comment_id=call.comment_id, age_s=round(age))
                return  # the post may still be on its way in: look again later
            await self.caller(*found, call.personas or None)
        except StorageUnavailable as exc:
            log.warning("bot_call.retry", thread_id=call.thread_id, reason=str(exc))
            return  # the message surfaces again after its visibility timeout
        except PlayhouseError as exc:
            if message.dequeue_count >= self.max_attempts:
                log.error("bot_call.poisoned", thread_id=call.thread_id, reason=str(exc))
                await queues.to_poison(message, f"could not call: {exc}")
            else:
                log.warning("bot_call.retry", thread_id=call.thread_id, reason=str(exc),
                            attempt=message.dequeue_count)
            return
        await queues.delete(message)
        log.info("bot_call.recovered", thread_id=call.thread_id, comment_id=call.comment_id,
                 personas=list(call.personas), attempt=message.dequeue_count)

    async def _load(self, call: BotCall) -> Found | None:
        """The stored post the call is for, or None when it is not (or no longer) stored."""
        try:
            thread = await self.storage.threads.get(call.thread_id)
            room = await self.storage.rooms.get(thread.room)
            if call.comment_id is None:
                return room, thread, None, None
            comment = await self.storage.comments.get(thread.thread_id, call.comment_id)
            parent = None
            if comment.parent_id is not None:
                parent = await self.storage.comments.get(thread.thread_id, comment.parent_id)
        except NotFound:
            return None
        return room, thread, comment, parent

    async def run(self) -> None:
        wait = self.poll_min_s
        while not self.stopping:
            try:
                handled = await self.run_once()
            except PlayhouseError as exc:
                log.warning("bot_call.poll_failed", reason=str(exc))
                handled = 0
            wait = self.poll_min_s if handled else min(wait * 2, self.poll_max_s)
            await self.pause(wait)
