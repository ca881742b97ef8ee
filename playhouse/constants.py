"""Every external name playhouse uses: tables, queues, containers, key prefixes."""

from __future__ import annotations

from typing import Final

# Tables
TABLE_USERS: Final = "users"
TABLE_ROOMS: Final = "rooms"
TABLE_MEMBERS: Final = "members"
TABLE_THREADS: Final = "threads"
TABLE_COMMENTS: Final = "comments"
TABLE_JOBS: Final = "jobs"
TABLE_REPLIES: Final = "replies"
"""Which persona answered which comment: PK comment id, RK persona (the scheduler's memory)."""
TABLE_WORKERS: Final = "workers"
"""Each worker's latest heartbeat: PK ``PK_WORKERS``, RK the worker id."""
TABLE_METRICS: Final = "metrics"
"""Time series for the status page: PK the UTC hour, RK time and source."""
TABLE_VOTES: Final = "votes"
"""Votes and each item's tally (PK the thread id), and each voter's own votes (PK
``u.<voter>``): see ``playhouse.storage.votes``."""
TABLE_LISTINGS: Final = "listings"
"""A room's threads in every order (PK the room, RK the rank): ``playhouse.storage.listings``."""
TABLE_AUTHORED: Final = "authored"
"""What each account wrote, newest first, and its karma (PK the author):
``playhouse.storage.authored``."""

TABLES: Final = (
    TABLE_USERS,
    TABLE_ROOMS,
    TABLE_MEMBERS,
    TABLE_THREADS,
    TABLE_COMMENTS,
    TABLE_JOBS,
    TABLE_REPLIES,
    TABLE_WORKERS,
    TABLE_METRICS,
    TABLE_VOTES,
    TABLE_LISTINGS,
    TABLE_AUTHORED,
)

# Queues
QUEUE_INTERACTIVE: Final = "gen-interactive"
QUEUE_BACKGROUND: Final = "gen-background"
QUEUE_IMAGE: Final = "gen-image"
QUEUE_RESULTS: Final = "gen-results"
QUEUE_RESULTS_INTERACTIVE: Final = "gen-results-interactive"
"""Results of what people asked for (gen-interactive): applied before the bots' results,
so a person's answer never waits behind a backlog of bot traffic."""
QUEUE_BOT_CALLS: Final = "bot-calls"
"""Bot calls of people's posts, written before the post is acknowledged and deleted once
the bots are asked: the web instance that finds one surfaced makes the call its poster's
instance did not (``playhouse.web.calls``)."""
POISON_SUFFIX: Final = "-poison"

WORK_QUEUES: Final = (QUEUE_INTERACTIVE, QUEUE_BACKGROUND, QUEUE_IMAGE)
RESULT_QUEUES: Final = (QUEUE_RESULTS_INTERACTIVE, QUEUE_RESULTS)
"""Result queues in the order a consumer drains them."""
QUEUES: Final = (*WORK_QUEUES, *RESULT_QUEUES, QUEUE_BOT_CALLS)
ALL_QUEUES: Final = (*QUEUES, *(q + POISON_SUFFIX for q in QUEUES))


def results_queue(request_queue: str) -> str:
    """Where the result of a request taken from ``request_queue`` goes."""
    return QUEUE_RESULTS_INTERACTIVE if request_queue == QUEUE_INTERACTIVE else QUEUE_RESULTS


def poison_queue(queue: str) -> str:
    """Name of the poison queue that holds what ``queue`` could not process."""
    return queue + POISON_SUFFIX


# Blob containers
CONTAINER_IMAGES: Final = "images"
CONTAINER_LEASES: Final = "leases"
CONTAINER_PAYLOADS: Final = "payloads"
CONTAINERS: Final = (CONTAINER_IMAGES, CONTAINER_LEASES, CONTAINER_PAYLOADS)

SCHEDULER_LEASE_BLOB: Final = "scheduler"

# Table partition keys for single-partition tables
PK_USERS: Final = "user"
PK_ROOMS: Final = "room"
PK_WORKERS: Final = "worker"
PK_PREFS: Final = "pref"
"""Partition of the ``users`` table holding each person's remembered sort orders."""
PK_VOTER_PREFIX: Final = "u."
"""``votes`` partitions of one voter's own votes start with this (thread ids never do)."""

# Limits
QUEUE_MESSAGE_MAX_BYTES: Final = 48 * 1024
"""Raw payload limit before base64 (Azure's 64 KiB limit applies to the encoded text)."""
TABLE_BATCH_MAX: Final = 100
TABLE_PROPERTY_MAX_CHARS: Final = 32_000
COMMENT_MAX_CHARS: Final = 10_000
TITLE_MAX_CHARS: Final = 300
RECEIVE_MAX: Final = 32

DEFAULT_ROOM: Final = "CoopAndPabloPlayHouse"
DEFAULT_BOT: Final = "ImageBot"

# Azurite's well-known development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT: Final = "devstoreaccount1"
AZURITE_KEY: Final = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
