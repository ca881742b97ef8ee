"""Azure Storage for playhouse: tables, queues and blobs behind small async repositories.

``async with Storage.open(settings.storage) as storage:`` is how every process reaches
storage: it resolves the connection string (:func:`resolve_connection_string`), opens the
three ``.aio`` service clients, checks within ``timeout_s`` that the account answers,
creates what is missing, and closes the clients at the end. :meth:`Storage.connect` is
the step without the rest. Nothing here is opened at import time.

A ``namespace`` prefixes every table, queue and container name, so several playhouses
(or test cases) can share one account without seeing each other.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from azure.data.tables.aio import TableServiceClient
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueServiceClient

from playhouse.constants import ALL_QUEUES, CONTAINERS, TABLES
from playhouse.errors import ConfigError, PlayhouseError, StorageUnavailable
from playhouse.storage.accounts import MemberRepo, RoomRepo, UserRepo
from playhouse.storage.authored import AuthorIndex
from playhouse.storage.blobs import BlobStore
from playhouse.storage.decisions import DecisionRepo
from playhouse.storage.inbox import InboxRepo
from playhouse.storage.jobs import JobRepo
from playhouse.storage.listings import ListingIndex
from playhouse.storage.moderation import ModLogRepo, ReportRepo
from playhouse.storage.ops import MetricsRepo, WorkerRepo
from playhouse.storage.prefs import PrefRepo
from playhouse.storage.progress import ProgressRepo
from playhouse.storage.queues import QueueStore
from playhouse.storage.revisions import RevisionRepo
from playhouse.storage.tables import Tables, short, translate
from playhouse.storage.threads import CommentRepo, ThreadRepo
from playhouse.storage.votes import VoteRepo

if TYPE_CHECKING:
    from collections.abc import Callable

    from azure.core.pipeline.transport import AsyncHttpTransport

    from playhouse.config import StorageSettings

    Transport = Callable[[], AsyncHttpTransport[Any, Any]]

log = structlog.get_logger()

_NAMESPACE = re.compile(r"^(|[a-z][a-z0-9]{0,15})$")
RETRIES = 2
"""SDK-level retries per call; the callers (worker, consumer) retry at their own level."""


def resolve_connection_string(settings: StorageSettings) -> str:
    """The connection string to use: the setting, else the one a running `playhouse run`
    wrote for its emulator; a clear error when there is neither."""
    if settings.connection_string:
        return settings.connection_string
    path = Path(settings.emulator_file)
    conn = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    if not conn:
        raise PlayhouseError(
            "no storage: set PLAYHOUSE_STORAGE to an Azure Storage connection string, "
            "or start `playhouse run` (it runs the local emulator)"
        )
    return conn


def parse_connection_string(conn: str) -> dict[str, str]:
    """The ``key=value`` pairs of a connection string; ConfigError when it is not one."""
    parts: dict[str, str] = {}
    for piece in conn.strip().split(";"):
        if not piece.strip():
            continue
        key, sep, value = piece.partition("=")
        if not sep or not key.strip():
            raise ConfigError("storage connection string is malformed (expected key=value;...)")
        parts[key.strip()] = value.strip()
    account_key = parts.get("AccountKey")
    if account_key is not None:
        try:
            base64.b64decode(account_key, validate=True)
        except binascii.Error as exc:
            raise ConfigError("storage connection string: AccountKey is not base64") from exc
    if conn.strip() != "UseDevelopmentStorage=true" and "AccountName" not in parts and not any(
        k.endswith("Endpoint") for k in parts
    ):
        raise ConfigError("storage connection string has no AccountName and no endpoints")
    return parts


@dataclass
class Storage:
    """Open clients and the repositories built on them."""

    tables: Tables
    queues: QueueStore
    blobs: BlobStore
    account_key: str | None = None

    def __post_init__(self) -> None:
        self.users = UserRepo(self.tables)
        self.rooms = RoomRepo(self.tables)
        self.members = MemberRepo(self.tables)
        self.listings = ListingIndex(self.tables)
        self.authored = AuthorIndex(self.tables)
        self.votes = VoteRepo(self.tables)
        self.prefs = PrefRepo(self.tables)
        self.threads = ThreadRepo(self.tables, listings=self.listings, authored=self.authored)
        self.comments = CommentRepo(self.tables, authored=self.authored)
        self.jobs = JobRepo(self.tables)
        self.workers = WorkerRepo(self.tables)
        self.metrics = MetricsRepo(self.tables)
        self.reports = ReportRepo(self.tables)
        self.modlog = ModLogRepo(self.tables)
        self.inbox = InboxRepo(self.tables)
        self.revisions = RevisionRepo(self.tables)
        self.progress = ProgressRepo(self.tables)
        self.decisions = DecisionRepo(self.tables)

    @property
    def namespace(self) -> str:
        return self.tables.namespace

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, settings: StorageSettings, *, ensure: bool = True,
        transport: Transport | None = None,
    ) -> AsyncIterator[Storage]:
        """Connect as ``settings`` say, create what is missing (``ensure``), and close the
        clients when the block ends."""
        storage = await cls.connect(
            resolve_connection_string(settings), timeout_s=settings.timeout_s,
            namespace=settings.namespace, transport=transport,
        )
        try:
            if ensure:
                await storage.ensure()
            yield storage
        finally:
            await storage.close()

    @classmethod
    async def connect(
        cls, connection_string: str, *, timeout_s: float = 10.0, namespace: str = "",
        check: bool = True, transport: Transport | None = None,
    ) -> Storage:
        """Open the clients; with ``check``, StorageUnavailable unless the account answers
        within ``timeout_s`` (a one-line reason, never a hang). ``transport`` makes each
        client's HTTP transport (tests count round trips with one)."""
        if not _NAMESPACE.match(namespace):
            raise ConfigError(f"storage namespace {namespace!r}: 1-16 lowercase letters/digits")
        parts = parse_connection_string(connection_string)
        options: dict[str, Any] = {
            "retry_total": RETRIES,
            "retry_backoff_factor": 0.2,
            "retry_backoff_max": 2,
            "connection_timeout": max(1.0, timeout_s / 2),
            "read_timeout": 60,
        }
        def own(extra: dict[str, Any]) -> dict[str, Any]:
            return {**options, **extra, **({"transport": transport()} if transport else {})}

        try:
            table_service = TableServiceClient.from_connection_string(
                connection_string, **own({})
            )
            # The queue and blob SDKs retry with their own ExponentialRetry (15 s, then
            # 18 s ...), which ignores retry_backoff_*: without these a call to an
            # unreachable account hangs ~35 s before it fails.
            backoff: dict[str, Any] = {
                "initial_backoff": 1, "increment_base": 2, "random_jitter_range": 1,
            }
            queue_service = QueueServiceClient.from_connection_string(
                connection_string, **own(backoff)
            )
            blob_service = BlobServiceClient.from_connection_string(
                connection_string, **own(backoff)
            )
        except ValueError as exc:
            raise ConfigError(f"storage connection string is invalid: {short(exc)}") from exc
        blobs = BlobStore(blob_service, namespace)
        storage = cls(
            tables=Tables(table_service, namespace),
            queues=QueueStore(queue_service, namespace, payloads=blobs),
            blobs=blobs,
            account_key=parts.get("AccountKey"),
        )
        if check:
            try:
                await storage.ping(timeout_s)
            except BaseException:
                await storage.close()
                raise
        return storage

    async def ping(self, timeout_s: float = 10.0) -> None:
        """StorageUnavailable unless tables, queues and blobs all answer within ``timeout_s``."""

        async def tables() -> None:
            with translate("list tables", self.tables.endpoint):
                async for _ in self.tables.service.list_tables(results_per_page=1):
                    break

        async def queues() -> None:
            with translate("list queues", self.queues.endpoint):
                async for _ in self.queues.service.list_queues(results_per_page=1):
                    break

        async def blobs() -> None:
            with translate("list containers", self.blobs.endpoint):
                async for _ in self.blobs.service.list_containers(results_per_page=1):
                    break

        try:
            await asyncio.wait_for(asyncio.gather(tables(), queues(), blobs()), timeout_s)
        except TimeoutError as exc:
            raise StorageUnavailable(
                f"storage at {self.tables.endpoint} did not answer within {timeout_s:g} s"
            ) from exc

    async def ensure(self) -> None:
        """Create every table, queue and container that does not exist yet (idempotent)."""
        await asyncio.gather(
            *(self.tables.create_table(t) for t in TABLES),
            *(self.queues.create(q) for q in ALL_QUEUES),
            *(self.blobs.create(c) for c in CONTAINERS),
        )
        log.info("storage.ready", namespace=self.namespace or "-", tables=len(TABLES),
                 queues=len(ALL_QUEUES), containers=len(CONTAINERS))

    async def close(self) -> None:
        for client in self.tables._clients.values():
            await client.close()
        self.tables._clients.clear()
        await self.tables.service.close()
        await self.queues.close()
        await self.blobs.close()

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = ["Storage", "parse_connection_string", "resolve_connection_string"]
