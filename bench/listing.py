"""Listing benchmark: the first page of a 100,000-thread room, index vs scan, on Azurite.

The script starts its own Azurite (disk mode, in a temporary folder), then

1. builds the hot listing of a room of ``--threads`` threads (creation times spread over
   90 days, random votes and activity): one row per thread under its hot key, written
   into the room's ``listings`` partition with batch transactions of 100 rows, exactly
   the rows the app writes for that order (:func:`playhouse.storage.listings.keys`);
2. times the room's first page (``--page`` threads, Hot, its default order) and the next
   one through :meth:`ListingIndex.page`, ``--repeat`` times each, counting the HTTP
   requests each page costs (a hook on the table client);
3. times the same first page without the index, side by side: read every thread of the
   room (all of its rows, one partition) and sort them in memory by hot, which is what a
   design without a rank-keyed index has to do for Hot or Top;
4. builds a smaller room (``--full-threads``) with every row the app keeps (hot, top,
   new, active, day and week buckets, state) and times each order's first page, to show
   every order costs one request (two for the day/week windows).

Why the big room holds its hot rows only: Azurite's table store (LokiJS) looks a row up
by scanning its partition on every insert, so building a partition costs time squared in
its size: 100,000 rows take about 50 minutes on this machine, the 700,000 rows of a
100,000-thread room's full index would take most of a day. Azure Table Storage keys
rows by (PartitionKey, RowKey); a range query's cost there does not grow with the
partition (Azurite's does, which makes this benchmark pessimistic for the index).

Prints a table with the ratio and writes it to ``bench/results/listing.md`` (``--out``).
``--quick`` (5,000 threads) writes under ``var/bench`` unless ``--out`` says otherwise.

    .venv/bin/python bench/listing.py            # 100,000 threads, ~50 minutes
    .venv/bin/python bench/listing.py --quick    # smoke check, ~1 minute
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from azure.data.tables.aio import TableServiceClient  # noqa: E402

from playhouse import ids, ranking  # noqa: E402
from playhouse.constants import TABLE_LISTINGS  # noqa: E402
from playhouse.emulator import Azurite  # noqa: E402
from playhouse.errors import StorageUnavailable  # noqa: E402
from playhouse.logconfig import configure  # noqa: E402
from playhouse.storage import Storage  # noqa: E402
from playhouse.storage.listings import ORDER_PREFIX, ListingIndex, keys  # noqa: E402
from playhouse.storage.models import ListingRow  # noqa: E402
from playhouse.storage.tables import Tables, from_entity, to_entity  # noqa: E402

ROOM = "Big"
SMALL = "Small"
DAY = 86_400.0


def make_rows(count: int, seed: int, room: str = ROOM) -> list[ListingRow]:
    rng = random.Random(seed)
    now = time.time()
    created = sorted(now - rng.random() * 90 * DAY for _ in range(count))
    rows = []
    for n, at in enumerate(created):
        ups = int(rng.paretovariate(1.2)) - 1
        downs = int(ups * rng.random() * 0.4)
        rows.append(ListingRow(
            thread_id=ids.new_id(at), room=room, title=f"thread number {n}", author=f"u{n % 500}",
            is_bot=n % 3 == 0, persona=None, created_at=at,
            last_activity=min(now, at + rng.random() * 2 * DAY), comment_count=rng.randint(0, 40),
            ups=ups, downs=downs, version=ups + downs,
        ))
    return rows


async def build(storage: Storage, rows: list[ListingRow], parallel: int,
                order: str | None) -> tuple[int, float]:
    """Write the rows in batch transactions of 100, ``parallel`` at a time: the rows of
    one ``order``, or (None) every row the app keeps for each thread."""
    started = time.perf_counter()
    batch = 100 if order is not None else 100 // 7  # a thread's rows stay in one batch
    queue = [rows[i:i + batch] for i in range(0, len(rows), batch)]
    queue.reverse()
    written = 0
    total = len(rows)

    async def write(part: list[ListingRow]) -> int:
        if order is None:
            return await storage.listings.bulk(part)
        ops = [("upsert", to_entity(r, r.room.lower(), keys(r)[order])) for r in part]
        return len(await storage.tables.submit(TABLE_LISTINGS, ops, "bench rows"))

    async def writer() -> None:
        nonlocal written
        while queue:
            part = queue.pop()
            for attempt in range(5):  # upserts: a batch that timed out is written again
                try:
                    done = await write(part)
                    break
                except StorageUnavailable as exc:
                    print(f"  retrying a batch ({exc})", file=sys.stderr, flush=True)
                    await asyncio.sleep(2 * (attempt + 1))
            else:
                raise RuntimeError("Azurite did not take a batch after 5 attempts")
            written += done
            if order is not None and written % 10_000 < done:
                rate = written / (time.perf_counter() - started)
                print(f"  {time.strftime('%H:%M:%S')} built {written:,}/{total:,} rows "
                      f"({rate:,.0f} rows/s)",
                      file=sys.stderr, flush=True)

    await asyncio.gather(*(writer() for _ in range(parallel)))
    return written, time.perf_counter() - started


def counting(connection_string: str, namespace: str) -> tuple[ListingIndex, TableServiceClient,
                                                               list[str]]:
    log: list[str] = []

    def hook(request: Any) -> None:
        log.append(request.http_request.url)

    service = TableServiceClient.from_connection_string(connection_string, raw_request_hook=hook)
    return ListingIndex(Tables(service, namespace)), service, log


Case = tuple[str, Any, Any, bool]
BIG_CASES: list[Case] = [("hot, first page", "hot", "all", False),
                         ("hot, second page", "hot", "all", True)]
FULL_CASES: list[Case] = [
    ("hot", "hot", "all", False), ("new", "new", "all", False),
    ("top (all time)", "top", "all", False), ("active", "active", "all", False),
    ("top (last day)", "top", "day", False), ("top (last week)", "top", "week", False),
]


async def time_pages(index: ListingIndex, log: list[str], room: str, cases: list[Case],
                     page: int, repeat: int) -> list[tuple[str, float, float, int, str]]:
    out = []
    for label, sort, window, second in cases:
        times: list[float] = []
        requests = 0
        first = ""
        token = None
        if second:
            token = (await index.page(room, sort, window=window, limit=page)).next
        for _ in range(repeat):
            log.clear()
            start = time.perf_counter()
            listed = await index.page(room, sort, window=window, limit=page, token=token)
            times.append((time.perf_counter() - start) * 1000)
            requests = len(log)
            first = listed.items[0].title if listed.items else "-"
        out.append((label, statistics.median(times), max(times), requests, first))
    return out


async def time_scan(tables: Tables, log: list[str], page: int,
                    repeat: int) -> tuple[float, int, int, str]:
    times: list[float] = []
    requests = rows = 0
    first = ""
    prefix = ORDER_PREFIX["hot"]
    for _ in range(repeat):
        log.clear()
        start = time.perf_counter()
        entities = await tables.query(
            TABLE_LISTINGS, "PartitionKey eq @pk", "scan", parameters={"pk": ROOM.lower()})
        states = [from_entity(e, ListingRow) for e in entities
                  if str(e["RowKey"]).startswith(prefix)]
        states.sort(key=lambda r: -ranking.hot(r.ups, r.downs, r.created_at))
        top = states[:page]
        times.append((time.perf_counter() - start) * 1000)
        requests, rows, first = len(log), len(states), top[0].title
    return statistics.median(times), requests, rows, first


async def main(args: argparse.Namespace) -> str:
    configure(level="warning", fmt="console")
    with tempfile.TemporaryDirectory(prefix="listing-bench-") as folder:
        azurite = Azurite(Path(folder), root=ROOT)
        azurite.start()
        try:
            storage = await Storage.connect(azurite.connection_string, namespace="bench")
            try:
                await storage.ensure()
                small = make_rows(args.full_threads, args.seed + 1, SMALL)
                full_written, full_s = await build(storage, small, args.parallel, None)
                rows = make_rows(args.threads, args.seed)
                written, build_s = await build(storage, rows, args.parallel, "hot")
                index, service, log = counting(azurite.connection_string, "bench")
                try:
                    await index.page(ROOM, "hot", limit=args.page)  # warm the connection
                    pages = await time_pages(index, log, ROOM, BIG_CASES, args.page,
                                             args.repeat)
                    scan_ms, scan_requests, scanned, scan_first = await time_scan(
                        index.t, log, args.page, args.scan_repeat)
                    full = await time_pages(index, log, SMALL, FULL_CASES, args.page,
                                            args.repeat)
                finally:
                    await service.close()
            finally:
                await storage.close()
        finally:
            azurite.stop()
    hot_ms = pages[0][1]
    assert pages[0][4] == scan_first, (pages[0][4], scan_first)  # the same first thread
    lines = [
        "# Listing benchmark",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M')} by `python bench/listing.py"
        f"{' --quick' if args.quick else ''}` on {os.cpu_count()} CPU cores (shared), "
        f"Python {platform.python_version()}; Azurite (disk mode) and this client on the "
        "same machine.",
        "",
        f"A room of {args.threads:,} threads: its hot listing, {written:,} rows in one "
        f"`listings` partition, written with batch transactions of 100 rows, {args.parallel} "
        f"at a time, in {build_s:.0f} s ({written / build_s:,.0f} rows/s; Azurite scans the "
        "partition on every insert, see the script's docstring). A page = "
        f"{args.page} threads; median and max of {args.repeat} runs ({args.scan_repeat} for "
        "the scan); requests = HTTP requests to the table service for that page.",
        "",
        f"| room of {args.threads:,} threads | median ms | max ms | requests | first thread |",
        "|---|---:|---:|---:|---|",
        *(f"| {label} (index) | {med:.1f} | {worst:.1f} | {req} | {first} |"
          for label, med, worst, req, first in pages),
        f"| hot, first page without the index: read all {scanned:,} threads, sort | "
        f"{scan_ms:,.0f} | - | {scan_requests} | {scan_first} |",
        "",
        f"Every order of a room of {args.full_threads:,} threads with its whole index "
        f"({full_written:,} rows: hot, top, new, active, day and week buckets, state; "
        f"built in {full_s:.0f} s):",
        "",
        "| first page of | median ms | max ms | requests | first thread |",
        "|---|---:|---:|---:|---|",
        *(f"| {label} | {med:.1f} | {worst:.1f} | {req} | {first} |"
          for label, med, worst, req, first in full),
        "",
        f"Hot's first page: {hot_ms:.1f} ms from the index vs {scan_ms:,.0f} ms by scanning "
        f"the room: **{scan_ms / hot_ms:,.0f}x** faster, and 1 request instead of "
        f"{scan_requests}.",
        "",
        "```",
        f"threads = {args.threads}",
        f"hot_page_ms = {hot_ms:.1f}",
        f"scan_ms = {scan_ms:.0f}",
        f"ratio = {scan_ms / hot_ms:.0f}",
        "```",
        "",
    ]
    return "\n".join(lines)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--scan-repeat", type=int, default=2)
    parser.add_argument("--full-threads", type=int, default=2_000)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.threads = min(args.threads, 5_000)
        args.full_threads = min(args.full_threads, 500)
        args.repeat, args.scan_repeat = 5, 1
    if args.out is None:
        args.out = (ROOT / "var" / "bench" / "listing.md" if args.quick
                    else ROOT / "bench" / "results" / "listing.md")
    return args


if __name__ == "__main__":
    arguments = parse()
    table = asyncio.run(main(arguments))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(table, encoding="utf-8")
    print(table)
