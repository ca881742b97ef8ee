"""Blob containers: generated images, over-large payloads, and leases.

Names passed in are logical (``images``); the physical container carries the storage
namespace like the queues do. Blob names are checked (no ``..``, no leading ``/``, no
control characters) so that a name taken from a request can never escape its folder.
"""

from __future__ import annotations

import datetime as dt
import re

import structlog
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobSasPermissions, ContentSettings, generate_blob_sas
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from playhouse.errors import InvalidInput, NotFound
from playhouse.storage.queues import queue_name
from playhouse.storage.tables import translate

log = structlog.get_logger()

_BLOB_NAME = re.compile(r"^[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*$")


def check_blob_name(name: str) -> str:
    """Reject names that could address another folder or that Azure would refuse."""
    if not name or len(name) > 1024 or not _BLOB_NAME.match(name):
        raise InvalidInput(f"invalid blob name {name!r}")
    if any(part in (".", "..") for part in name.split("/")):
        raise InvalidInput(f"invalid blob name {name!r}")
    return name


class BlobStore:
    """The blob service under a namespace; containers are given by logical name."""

    def __init__(self, service: BlobServiceClient, namespace: str = "") -> None:
        self.service = service
        self.namespace = namespace
        self.endpoint = service.url
        self._clients: dict[str, ContainerClient] = {}

    def container(self, logical: str) -> ContainerClient:
        client = self._clients.get(logical)
        if client is None:
            client = self.service.get_container_client(queue_name(self.namespace, logical))
            self._clients[logical] = client
        return client

    async def create(self, logical: str) -> None:
        with translate(f"create container {logical}", self.endpoint):
            try:
                await self.container(logical).create_container()
            except ResourceExistsError:
                return

    async def put(
        self, logical: str, name: str, data: bytes, content_type: str, *, overwrite: bool = True
    ) -> None:
        check_blob_name(name)
        with translate(f"write blob {logical}/{name}", self.endpoint):
            await self.container(logical).upload_blob(
                name,
                data,
                overwrite=overwrite,
                content_settings=ContentSettings(content_type=content_type),
            )

    async def get(self, logical: str, name: str) -> tuple[bytes, str]:
        """(content, content type); NotFound when the blob does not exist."""
        check_blob_name(name)
        with translate(f"read blob {logical}/{name}", self.endpoint):
            try:
                downloader = await self.container(logical).download_blob(name)
            except ResourceNotFoundError as exc:
                raise NotFound(f"blob {logical}/{name} not found") from exc
            data = await downloader.readall()
        content_type = downloader.properties.content_settings.content_type or (
            "application/octet-stream"
        )
        return bytes(data), str(content_type)

    async def exists(self, logical: str, name: str) -> bool:
        check_blob_name(name)
        with translate(f"look up blob {logical}/{name}", self.endpoint):
            return bool(await self.container(logical).get_blob_client(name).exists())

    async def delete(self, logical: str, name: str) -> bool:
        check_blob_name(name)
        with translate(f"delete blob {logical}/{name}", self.endpoint):
            try:
                await self.container(logical).delete_blob(name)
            except ResourceNotFoundError:
                return False
        return True

    async def names(self, logical: str, prefix: str = "") -> list[str]:
        with translate(f"list blobs in {logical}", self.endpoint):
            return [
                b.name
                async for b in self.container(logical).list_blobs(name_starts_with=prefix or None)
            ]

    def sas_url(self, logical: str, name: str, *, account_key: str, minutes: int = 15) -> str:
        """A read-only URL for ``name`` that expires after ``minutes``."""
        check_blob_name(name)
        container = queue_name(self.namespace, logical)
        token = generate_blob_sas(
            account_name=str(self.service.account_name),
            container_name=container,
            blob_name=name,
            account_key=account_key,
            permission=BlobSasPermissions(read=True),
            expiry=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes),
        )
        return f"{self.container(logical).url}/{name}?{token}"

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        await self.service.close()
