"""``playhouse poison [list|purge]``: what the poison queues hold, for an operator."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from playhouse.config import Settings
from playhouse.constants import RECEIVE_MAX

if TYPE_CHECKING:
    from playhouse.storage.poison import QueueReport

HELP = "what the poison queues hold: list or purge it"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=("list", "purge"), default="list")
    parser.add_argument("--queue", help="one queue (gen-image or gen-image-poison); default all")
    parser.add_argument("--limit", type=int, default=10,
                        help="entries shown per queue (at most 32, the oldest)")


def main(args: argparse.Namespace, settings: Settings) -> int:
    from playhouse.errors import InvalidInput
    from playhouse.storage import Storage
    from playhouse.storage.poison import peek_poison, pick_queues, purge

    selected = pick_queues(args.queue)
    if not 1 <= args.limit <= RECEIVE_MAX:
        raise InvalidInput(f"--limit is 1 to {RECEIVE_MAX}, not {args.limit}")

    async def act() -> str:
        async with Storage.open(settings.storage, ensure=False) as storage:
            if args.action == "purge":
                deleted = await purge(storage.queues, selected)
                if not deleted:
                    return "nothing to purge\n"
                return "".join(f"{name}: deleted {n}\n" for name, n in deleted.items())
            return format_reports(await peek_poison(storage.queues, selected,
                                                    limit=args.limit))

    sys.stdout.write(asyncio.run(act()))
    return 0


def format_reports(reports: Sequence[QueueReport], *, now: float | None = None) -> str:
    """The reports as text, one block per poison queue."""
    from playhouse.storage.poison import describe_entry

    if not reports:
        return "every poison queue is empty\n"
    now = time.time() if now is None else now
    lines: list[str] = []
    for report in reports:
        distinct = len(report.shown)
        lines.append(f"{report.queue}: {report.depth} entr{'y' if report.depth == 1 else 'ies'}"
                     f" (showing {distinct})")
        for shown in report.shown:
            if shown.entry is None:
                lines.append("  (unreadable entry)")
                continue
            entry = shown.entry
            copies = f"  [{shown.copies} copies]" if shown.copies > 1 else ""
            lines.append(f"  {_age(now - entry.at):>6} ago  after {entry.dequeue_count} "
                         f"deliveries  {describe_entry(entry)}{copies}")
            lines.append(f"      {entry.reason[:300]}")
    return "\n".join(lines) + "\n"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
