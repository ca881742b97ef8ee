"""What the poison queues hold, for an operator: list them, and purge them.

A poison entry (:class:`~playhouse.storage.queues.PoisonEntry`) says which queue a message
came from, why it was given up and when, and carries the message itself (or the name of
the blob that holds it). The same message can be parked twice when a worker dies between
parking it and deleting the original; :func:`peek_poison` shows such copies once, with a
count.
Peeking shows at most the 32 oldest entries of a queue (Azure Queues' own limit); the
depth is the queue's whole count.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from playhouse.constants import CONTAINER_PAYLOADS, QUEUES, RECEIVE_MAX, poison_queue
from playhouse.errors import InvalidInput
from playhouse.storage.queues import PoisonEntry, QueueStore, decode_poison

if TYPE_CHECKING:
    pass

log = structlog.get_logger()

_fields = msgspec.json.Decoder(dict[str, Any])

_SHOWN_FIELDS = ("persona", "kind", "room", "request_id", "thread_id", "comment_id")
"""Fields of the parked message worth showing (requests, results and bot calls have
some of them)."""


@dataclass
class Shown:
    """One parked message: its entry (None when the entry itself is unreadable), and how
    many copies of it the sample held."""

    entry: PoisonEntry | None
    copies: int = 1


@dataclass
class QueueReport:
    queue: str
    """The poison queue's logical name (``gen-interactive-poison``)."""
    depth: int
    shown: list[Shown] = field(default_factory=list)


def pick_queues(name: str | None) -> tuple[str, ...]:
    """The work queues whose poison queues ``name`` selects (all when None); either the
    queue or its poison queue may be named. InvalidInput for any other name."""
    if name is None:
        return QUEUES
    for queue in QUEUES:
        if name in (queue, poison_queue(queue)):
            return (queue,)
    known = ", ".join(QUEUES)
    raise InvalidInput(f"no queue named {name!r}; the queues are: {known}")


async def peek_poison(
    queues: QueueStore, selected: Sequence[str], *, limit: int
) -> list[QueueReport]:
    """A report for each selected queue whose poison queue holds anything."""
    reports: list[QueueReport] = []
    for queue in selected:
        name = poison_queue(queue)
        depth = await queues.depth(name)
        if depth == 0:
            continue
        report = QueueReport(queue=name, depth=depth)
        by_message: dict[str, Shown] = {}
        for data in await queues.peek(name, RECEIVE_MAX):
            try:
                entry = decode_poison(data)
            except InvalidInput:
                report.shown.append(Shown(None))
                continue
            seen = by_message.get(entry.message_id)
            if seen is not None:
                seen.copies += 1
                continue
            by_message[entry.message_id] = shown = Shown(entry)
            report.shown.append(shown)
        del report.shown[limit:]
        reports.append(report)
    return reports


def describe_entry(entry: PoisonEntry) -> str:
    """The parked message in a few words: persona, kind, room and ids when it has them."""
    if entry.payload_blob:
        return f"(message in blob {CONTAINER_PAYLOADS}/{entry.payload_blob})"
    try:
        fields = _fields.decode(base64.b64decode(entry.content_b64))
    except (ValueError, msgspec.DecodeError):
        return f"(not JSON, {len(entry.content_b64) * 3 // 4} bytes)"
    words = [f"{k}={fields[k]}" for k in _SHOWN_FIELDS if isinstance(fields.get(k), str)]
    return " ".join(words) or "(no known fields)"


async def purge(queues: QueueStore, selected: Sequence[str]) -> dict[str, int]:
    """Delete every entry of the selected queues' poison queues, and the payload blobs
    they point to; the number deleted per poison queue."""
    deleted: dict[str, int] = {}
    for queue in selected:
        name = poison_queue(queue)
        count = 0
        while batch := await queues.receive(name, max_messages=RECEIVE_MAX,
                                            visibility_timeout=60):
            for message in batch:
                try:
                    blob = decode_poison(message.content).payload_blob
                except InvalidInput:
                    blob = None
                if blob and queues.payloads is not None:
                    await queues.payloads.delete(CONTAINER_PAYLOADS, blob)
                if await queues.delete(message):
                    count += 1
        if count:
            deleted[name] = count
            log.info("poison.purged", queue=name, deleted=count)
    return deleted
