"""The queues: send, receive in pages of 32, renew, delete, and park in a poison queue.

Messages are bytes on our side and base64 on the wire (the SDK's binary policies), so a
worker on another machine with any Azure Storage client reads them the same way.
:class:`Received` is a value: renewing a message gives a new one with the new pop
receipt, and the stale one can no longer delete it (``PopReceiptMismatch`` → Conflict).

A poison entry is a JSON envelope (origin queue, reason, dequeue count, time, the
original payload); when the envelope would pass the queue's size limit, the payload goes
to the ``payloads`` container and the envelope carries the blob name, so nothing is lost.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import msgspec
import structlog
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from playhouse import ids
from playhouse.constants import (
    CONTAINER_PAYLOADS,
    QUEUE_MESSAGE_MAX_BYTES,
    RECEIVE_MAX,
    poison_queue,
)
from playhouse.errors import InvalidInput
from playhouse.storage.tables import translate

if TYPE_CHECKING:
    from playhouse.storage.blobs import BlobStore

log = structlog.get_logger()

ENCODE_POLICY = BinaryBase64EncodePolicy
DECODE_POLICY = BinaryBase64DecodePolicy


def queue_name(namespace: str, logical: str) -> str:
    """Physical queue (or container) name: ``namespace-logical``, or ``logical`` alone."""
    return f"{namespace}-{logical}" if namespace else logical


@dataclass(frozen=True)
class Received:
    """One received message and what it takes to renew or delete it."""

    queue: str
    """Logical queue name (``gen-interactive``), not the namespaced one."""
    id: str
    pop_receipt: str
    dequeue_count: int
    content: bytes
    inserted_at: float | None = None


class PoisonEntry(msgspec.Struct, kw_only=True, frozen=True):
    """What a poison queue holds: why a message could not be processed, and the message."""

    queue: str
    reason: str
    dequeue_count: int
    at: float
    message_id: str
    content_b64: str = ""
    payload_blob: str | None = None
    """Set instead of ``content_b64`` when the payload was too large for the envelope."""


_poison_decoder = msgspec.json.Decoder(PoisonEntry)


class QueueStore:
    """The queue service under a namespace; every method takes a logical queue name."""

    def __init__(
        self,
        service: QueueServiceClient,
        namespace: str = "",
        *,
        payloads: BlobStore | None = None,
    ) -> None:
        self.service = service
        self.namespace = namespace
        self.payloads = payloads
        self.endpoint = service.url
        self._clients: dict[str, QueueClient] = {}

    def client(self, logical: str) -> QueueClient:
        client = self._clients.get(logical)
        if client is None:
            client = self.service.get_queue_client(
                queue_name(self.namespace, logical),
                message_encode_policy=ENCODE_POLICY(),
                message_decode_policy=DECODE_POLICY(),
            )
            self._clients[logical] = client
        return client

    async def create(self, logical: str) -> None:
        with translate(f"create queue {logical}", self.endpoint):
            try:
                await self.client(logical).create_queue()
            except ResourceExistsError:
                return

    async def send(
        self, logical: str, data: bytes, *, visibility_timeout: int | None = None
    ) -> str:
        """Put ``data`` on the queue; returns the message id."""
        return (await self.enqueue(logical, data, visibility_timeout=visibility_timeout)).id

    async def enqueue(
        self, logical: str, data: bytes, *, visibility_timeout: int | None = None
    ) -> Received:
        """Put ``data`` on the queue; returns a handle that can delete it (even while it
        is still hidden by ``visibility_timeout``) or :meth:`renew` it."""
        if len(data) > QUEUE_MESSAGE_MAX_BYTES:
            raise InvalidInput(
                f"queue message for {logical} is {len(data)} bytes, "
                f"over the {QUEUE_MESSAGE_MAX_BYTES} limit"
            )
        with translate(f"send to {logical}", self.endpoint):
            msg = await self.client(logical).send_message(
                data, visibility_timeout=visibility_timeout
            )
        inserted = msg.inserted_on.timestamp() if msg.inserted_on else time.time()
        return Received(queue=logical, id=str(msg.id), pop_receipt=str(msg.pop_receipt),
                        dequeue_count=0, content=data, inserted_at=inserted)

    async def receive(
        self, logical: str, *, max_messages: int = RECEIVE_MAX, visibility_timeout: int = 120
    ) -> list[Received]:
        """Up to ``max_messages`` (≤ 32) messages, hidden for ``visibility_timeout`` s."""
        n = max(1, min(max_messages, RECEIVE_MAX))
        out: list[Received] = []
        with translate(f"receive from {logical}", self.endpoint):
            pager = self.client(logical).receive_messages(
                messages_per_page=n, max_messages=n, visibility_timeout=visibility_timeout
            )
            async for msg in pager:
                inserted = msg.inserted_on.timestamp() if msg.inserted_on else None
                out.append(
                    Received(
                        queue=logical,
                        id=str(msg.id),
                        pop_receipt=str(msg.pop_receipt),
                        dequeue_count=int(msg.dequeue_count or 1),
                        content=bytes(msg.content or b""),
                        inserted_at=inserted,
                    )
                )
        return out

    async def renew(self, message: Received, visibility_timeout: int) -> Received:
        """Hide ``message`` for another ``visibility_timeout`` s; returns the new handle."""
        with translate(f"renew message in {message.queue}", self.endpoint):
            updated = await self.client(message.queue).update_message(
                message.id, pop_receipt=message.pop_receipt, visibility_timeout=visibility_timeout
            )
        return replace(message, pop_receipt=str(updated.pop_receipt))

    async def delete(self, message: Received) -> bool:
        """Delete ``message``; False when it was already gone (deleted or expired)."""
        with translate(f"delete message in {message.queue}", self.endpoint):
            try:
                await self.client(message.queue).delete_message(message.id, message.pop_receipt)
            except ResourceNotFoundError:
                return False
        return True

    async def to_poison(self, message: Received, reason: str) -> None:
        """Move ``message`` to its queue's poison queue with ``reason``, then delete it."""
        entry = PoisonEntry(
            queue=message.queue,
            reason=reason[:2000],
            dequeue_count=message.dequeue_count,
            at=time.time(),
            message_id=message.id,
            content_b64=base64.b64encode(message.content).decode(),
        )
        data = msgspec.json.encode(entry)
        if len(data) > QUEUE_MESSAGE_MAX_BYTES:
            if self.payloads is None:
                raise InvalidInput("poison entry too large and no payload container")
            blob = f"poison/{message.queue}/{ids.new_id()}.bin"
            await self.payloads.put(CONTAINER_PAYLOADS, blob, message.content,
                                    "application/octet-stream")
            entry = msgspec.structs.replace(entry, content_b64="", payload_blob=blob)
            data = msgspec.json.encode(entry)
        await self.send(poison_queue(message.queue), data)
        await self.delete(message)
        log.info("message.poisoned", queue=message.queue, message_id=message.id, reason=reason)

    async def depth(self, logical: str) -> int:
        """Approximate number of messages in the queue (visible or not)."""
        with translate(f"depth of {logical}", self.endpoint):
            props = await self.client(logical).get_queue_properties()
        return int(props.approximate_message_count or 0)

    async def peek(self, logical: str, n: int = 32) -> list[bytes]:
        """Up to ``n`` visible messages' contents, without receiving them."""
        with translate(f"peek {logical}", self.endpoint):
            msgs = await self.client(logical).peek_messages(max_messages=max(1, min(n, 32)))
        return [bytes(m.content or b"") for m in msgs]

    async def clear(self, logical: str) -> None:
        with translate(f"clear {logical}", self.endpoint):
            await self.client(logical).clear_messages()

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        await self.service.close()


def decode_poison(data: bytes) -> PoisonEntry:
    """A poison queue entry; InvalidInput when ``data`` is not one."""
    try:
        return _poison_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidInput(f"malformed poison entry: {exc}") from exc
