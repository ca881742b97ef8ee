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
TABLE_WORKERS: Final = "workers"
"""Each worker's latest heartbeat: PK ``PK_WORKERS``, RK the worker id."""
TABLE_METRICS: Final = "metrics"
"""Time series for the status page: PK the UTC hour, RK time and source."""
TABLE_REPORTS: Final = "reports"
"""What people reported, and what the word filter held: PK the room, RK the report id."""
TABLE_MODLOG: Final = "modlog"
"""Every moderator's action: PK the room (or ``MODLOG_ALL``), RK newest first."""
TABLE_INBOX: Final = "inbox"
"""Each person's notifications: PK the user name, RK ``ids.invert(comment id)`` (newest
first; one notification per comment and recipient)."""
TABLE_REVISIONS: Final = "revisions"
"""Texts replaced by an edit or a deletion: PK the thread or comment id, RK a fresh id."""
TABLE_PROGRESS: Final = "progress"
"""Where a worker says how far it got with a request (generating, retrying): PK and RK
as the request's job row."""
TABLE_DECISIONS: Final = "decisions"
"""The scheduler's recent verdicts per persona (replied, passed, held back): PK the
persona (lowercase), RK newest first."""
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
    TABLE_WORKERS,
    TABLE_METRICS,
    TABLE_REPORTS,
    TABLE_MODLOG,
    TABLE_INBOX,
    TABLE_REVISIONS,
    TABLE_PROGRESS,
    TABLE_DECISIONS,
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
POISON_SUFFIX: Final = "-poison"

WORK_QUEUES: Final = (QUEUE_INTERACTIVE, QUEUE_BACKGROUND, QUEUE_IMAGE)
RESULT_QUEUES: Final = (QUEUE_RESULTS_INTERACTIVE, QUEUE_RESULTS)
"""Result queues in the order a consumer drains them."""
QUEUES: Final = (*WORK_QUEUES, *RESULT_QUEUES)
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
CONTAINER_EXPLANATIONS: Final = "explanations"
"""Generation traces too large for a queue message or a table property ("why this
reply?"): ``<room>/<request id>.json``, never served as they are (only through the pages
and the API, under the room's access rule)."""
CONTAINERS: Final = (CONTAINER_IMAGES, CONTAINER_LEASES, CONTAINER_PAYLOADS,
                     CONTAINER_EXPLANATIONS)

SCHEDULER_LEASE_BLOB: Final = "scheduler"

STAGING_PREFIX: Final = ".staging-"
"""Folders being built beside where they will be published (demo models, converted
models): renamed into place when complete, removed when left by a process that died."""

# Live channels (Litestar Channels: memory in one instance, Redis pub/sub across several)
CHANNEL_ROOM: Final = "room"
"""A room's events: new threads, thread activity, presence."""
CHANNEL_THREAD: Final = "thread"
"""One thread's comments, placeholders and replacements."""
CHANNEL_USER: Final = "user"
"""One person's own events on any instance: logged out (close the sockets), the inbox's
unread count (the header's badge), muted bots and blocked people changed."""
RATE_LIMIT_PREFIX: Final = "ratelimit"
"""Redis keys of the shared rate limits: ``[namespace:]ratelimit:<limit>:<key>``."""
SOCKETS_PREFIX: Final = "sockets"
"""Redis keys of the open live sockets, one sorted set per address or user:
``[namespace:]sockets:a:<ip>`` / ``[namespace:]sockets:u:<name>``."""


def channel_name(namespace: str, kind: str, key: str) -> str:
    """A live channel's name, under the storage namespace like every other external name
    (two playhouses sharing one Redis never hear each other)."""
    return f"{namespace}.{kind}.{key}" if namespace else f"{kind}.{key}"


def redis_key(namespace: str, *parts: str) -> str:
    """A Redis key under the storage namespace."""
    return ":".join((namespace, *parts) if namespace else parts)

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
MUTED_MAX: Final = 200
"""Bots one person may mute, and people one person may block (each list)."""
TITLE_MAX_CHARS: Final = 300
RECEIVE_MAX: Final = 32
FILTER_COMPARISONS_MAX: Final = 15
"""Azure Tables allows at most this many comparisons in one $filter."""
PATH_MAX: Final = FILTER_COMPARISONS_MAX - 1
"""Ancestor ids a comment keeps (its chain is one query: PartitionKey plus one RowKey
comparison each); older ancestors fall outside any GPT-2 prompt's budget anyway."""

SITE_ROOM: Final = "~site"
"""The site itself, as a room of the ``members`` table: a membership of it with role
``admin`` makes a site admin, one with role ``banned`` bans from the whole site (``~``
cannot start a room name, so no room is ever called this)."""
MODLOG_ALL: Final = "~all"
"""The mod log partition every action is also written to (what admins read)."""
FILTER_REPORTER: Final = "~filter"
"""The ``reporter`` of a report the word filter filed when it held an item."""

SEED_CREATOR: Final = "playhouse"
"""``created_by`` of the rooms the playhouse seeds from the cast (not a person's)."""
DEFAULT_ROOM: Final = "CoopAndPabloPlayHouse"
DEFAULT_BOT: Final = "ImageBot"

# Azurite's well-known development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT: Final = "devstoreaccount1"
AZURITE_KEY: Final = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
