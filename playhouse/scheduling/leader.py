"""One scheduler across instances: whoever holds the blob lease on ``leases/scheduler``.

Every instance calls :meth:`Leadership.step` every ``lease_s / 3`` seconds: the leader
renews its lease, the others try to acquire it. Azure lets a lease lapse ``lease_s``
(15-60) seconds after its last renewal, so when the leader dies another instance takes
over within one lease period (plus one step). An instance counts itself leader only
until ``lease_s - margin`` after the start of its last successful request, measured on
its own monotonic clock, so a leader cut off from storage stops scheduling before the
service can hand the lease to someone else. A renewal the service refuses (the lease
was lost) ends the leadership at once; a renewal that fails for any other reason keeps
it until that deadline, and the next step tries again. :meth:`release` hands the lease
back on a clean exit, so the next leader does not wait for it to lapse.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import structlog
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.blob.aio import BlobClient, BlobLeaseClient

from playhouse.constants import CONTAINER_LEASES, SCHEDULER_LEASE_BLOB
from playhouse.errors import ConfigError

if TYPE_CHECKING:
    from playhouse.storage.blobs import BlobStore

log = structlog.get_logger()

LEASE_MIN_S: Final = 15
LEASE_MAX_S: Final = 60


def check_lease_s(lease_s: int) -> int:
    if not LEASE_MIN_S <= lease_s <= LEASE_MAX_S:
        raise ConfigError(
            f"scheduler.lease_s must be between {LEASE_MIN_S} and {LEASE_MAX_S}, got {lease_s}"
        )
    return lease_s


class Leadership:
    """The lease as seen by one instance."""

    def __init__(
        self,
        blobs: BlobStore,
        *,
        lease_s: int = 30,
        blob: str = SCHEDULER_LEASE_BLOB,
        owner: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lease_s = check_lease_s(lease_s)
        self.owner = owner or str(uuid.uuid4())
        self.margin_s = max(2.0, lease_s / 5)
        self._blobs = blobs
        self._blob_name = blob
        self._monotonic = monotonic
        self._valid_until = 0.0
        self._lease: BlobLeaseClient | None = None
        self._blob_ready = False

    @property
    def step_s(self) -> float:
        """How often :meth:`step` should run."""
        return self.lease_s / 3

    @property
    def is_leader(self) -> bool:
        return self._lease is not None and self._monotonic() < self._valid_until

    def _client(self) -> BlobClient:
        return self._blobs.container(CONTAINER_LEASES).get_blob_client(self._blob_name)

    async def _ensure_blob(self, client: BlobClient) -> None:
        if self._blob_ready:
            return
        with contextlib.suppress(ResourceExistsError):  # it exists (perhaps leased): enough
            await client.upload_blob(b"", overwrite=False)
        self._blob_ready = True

    async def step(self) -> bool:
        """Renew (leader) or try to acquire (follower); returns whether this one leads."""
        if self._lease is not None:
            await self._renew(self._lease)
            if self._lease is not None:
                return self.is_leader
        return await self._acquire()

    async def _acquire(self) -> bool:
        client = self._client()
        lease = BlobLeaseClient(client, lease_id=self.owner)
        started = self._monotonic()
        try:
            await self._ensure_blob(client)
            await lease.acquire(lease_duration=self.lease_s)
        except HttpResponseError as exc:
            if exc.status_code == 409:  # LeaseAlreadyPresent: someone else leads
                return False
            log.warning("leader.unreachable", owner=self.owner, reason=_reason(exc))
            return False
        except AzureError as exc:
            log.warning("leader.unreachable", owner=self.owner, reason=_reason(exc))
            return False
        self._lease = lease
        self._valid_until = started + self.lease_s - self.margin_s
        log.info("leader.acquired", owner=self.owner, lease_s=self.lease_s)
        return True

    async def _renew(self, lease: BlobLeaseClient) -> None:
        started = self._monotonic()
        try:
            await lease.renew()
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):  # the service says the lease is not ours
                self._lost(_reason(exc))
            else:
                self._stumbled(exc)
            return
        except AzureError as exc:
            self._stumbled(exc)
            return
        self._valid_until = started + self.lease_s - self.margin_s

    def _stumbled(self, exc: Exception) -> None:
        if self.is_leader:
            log.warning("leader.renew_failed", owner=self.owner, reason=_reason(exc),
                        valid_for_s=round(self._valid_until - self._monotonic(), 1))
        else:
            self._lost(_reason(exc))

    def _lost(self, reason: str) -> None:
        log.warning("leader.lost", owner=self.owner, reason=reason)
        self._lease = None
        self._valid_until = 0.0

    async def release(self) -> None:
        """Give the lease back (a clean exit); the next leader need not wait for it."""
        lease, self._lease = self._lease, None
        self._valid_until = 0.0
        if lease is None:
            return
        try:
            await lease.release()
        except AzureError as exc:
            log.warning("leader.release_failed", owner=self.owner, reason=_reason(exc))
            return
        log.info("leader.released", owner=self.owner)

    def abandon(self) -> None:
        """Forget the lease without releasing it (what a crash does; tests use it)."""
        self._lease = None
        self._valid_until = 0.0


def _reason(exc: Exception) -> str:
    code = getattr(exc, "error_code", None)
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{code}: {first}"[:200] if code else first[:200]
