"""The shared table helper: names, entity codec, error translation, paging and batches.

Every repository goes through :class:`Tables`, so the rules live in one place:

* physical names carry the storage namespace (:func:`table_name`);
* a struct becomes an entity with :func:`to_entity` (None is omitted, tuples are JSON,
  strings longer than one property allows are split into ``name``, ``name__1``, …) and
  comes back with :func:`from_entity`;
* SDK exceptions become playhouse errors in :func:`translate` (callers never see an
  Azure stack trace);
* :meth:`Tables.page` follows continuation tokens until a page is full and hands out an
  opaque token; :meth:`Tables.submit` chunks transactions by partition and by 100.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any, TypeVar, get_origin

import msgspec
import structlog
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient

from playhouse.constants import TABLE_BATCH_MAX
from playhouse.errors import BadRequest, Conflict, InvalidInput, NotFound, StorageUnavailable

log = structlog.get_logger()

S = TypeVar("S", bound=msgspec.Struct)
Entity = dict[str, Any]

PART_CHARS = 16_000
"""Characters per stored part of a long string: at most 32,000 UTF-16 units even when
every character is outside the BMP, under Azure's 64 KiB property limit."""
PART_SEP = "__"
KEY_MAX_CHARS = 512
_FORBIDDEN_KEY_CHARS = frozenset("/\\#?")
ROWS_PER_QUERY = 14
"""Row keys per query of :meth:`Tables.rows` (with the partition key: 15 comparisons)."""
ETAG_RETRIES = 40
"""Read-modify-write attempts before a contended row gives up with Conflict."""


# -- names ---------------------------------------------------------------------------


def table_name(namespace: str, name: str) -> str:
    """Physical table name: the namespace glued to the logical name, hyphens dropped."""
    return (namespace + name).replace("-", "")


# -- validation ----------------------------------------------------------------------


def check_key(kind: str, value: str) -> str:
    """Reject what Azure forbids in PartitionKey/RowKey, with a readable reason (a name or
    id that cannot exist: the asker's mistake, :class:`BadRequest`)."""
    if not value:
        raise BadRequest(f"{kind} must not be empty")
    if len(value) > KEY_MAX_CHARS:
        raise BadRequest(f"{kind} is longer than {KEY_MAX_CHARS} characters")
    for ch in value:
        if ch in _FORBIDDEN_KEY_CHARS or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
            raise BadRequest(f"{kind} {value!r} contains the forbidden character {ch!r}")
    check_text(kind, value)
    return value


def check_text(field: str, value: str, max_chars: int | None = None) -> str:
    """Reject text the service would choke on: NUL, lone surrogates, over-long values.

    Azurite stores NUL intact but Azure's table service does not promise to, and no
    user-visible text needs one, so playhouse rejects it everywhere.
    """
    if max_chars is not None and len(value) > max_chars:
        raise InvalidInput(f"{field} is {len(value)} characters, over the {max_chars} limit")
    if "\x00" in value:
        raise InvalidInput(f"{field} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{field} is not valid Unicode (lone surrogate)") from exc
    return value


# -- entity codec --------------------------------------------------------------------


@cache
def _tuple_fields(cls: type[msgspec.Struct]) -> frozenset[str]:
    return frozenset(
        f.name for f in msgspec.structs.fields(cls) if get_origin(f.type) is tuple
    )


@cache
def _required_fields(cls: type[msgspec.Struct]) -> tuple[str, ...]:
    return tuple(f.name for f in msgspec.structs.fields(cls) if f.required)


def to_entity(obj: msgspec.Struct, partition: str, row: str, **extra: Any) -> Entity:
    """A struct as a table entity under ``partition``/``row`` (``etag`` is not stored)."""
    entity: Entity = {"PartitionKey": partition, "RowKey": row}
    values = {f: getattr(obj, f) for f in obj.__struct_fields__ if f != "etag"}
    values.update(extra)
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, tuple | list):
            value = msgspec.json.encode(value).decode()
        if isinstance(value, str):
            entity.update(text_properties(name, value))
            continue
        entity[name] = value
    return entity


def text_properties(name: str, value: str) -> Entity:
    """``value`` as the properties that store it: ``name``, and ``name__1`` … when it is
    longer than one property allows (checked, see :func:`check_text`)."""
    check_text(name, value)
    if len(value) <= PART_CHARS:
        return {name: value}
    parts = [value[i : i + PART_CHARS] for i in range(0, len(value), PART_CHARS)]
    out: Entity = {name: parts[0]}
    for n, part in enumerate(parts[1:], start=1):
        out[f"{name}{PART_SEP}{n}"] = part
    return out


def from_entity(entity: Mapping[str, Any], cls: type[S]) -> S:
    """The struct stored in ``entity`` (with ``etag`` filled in when the struct has one)."""
    data: dict[str, Any] = {}
    tuples = _tuple_fields(cls)
    for name in _required_fields(cls):
        data[name] = None  # stored None is an absent property; a real value overrides below
    for name in cls.__struct_fields__:
        if name == "etag":
            metadata = getattr(entity, "metadata", None) or {}
            data[name] = metadata.get("etag")
            continue
        if name not in entity:
            continue
        value = entity[name]
        if isinstance(value, str) and f"{name}{PART_SEP}1" in entity:
            n = 1
            while f"{name}{PART_SEP}{n}" in entity:
                value += entity[f"{name}{PART_SEP}{n}"]
                n += 1
        if name in tuples and isinstance(value, str):
            value = msgspec.json.decode(value)
        if hasattr(value, "value") and not isinstance(value, str | int | float | bool):
            value = value.value  # EntityProperty (e.g. Int64)
        data[name] = value
    try:
        return msgspec.convert(data, type=cls, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"stored {cls.__name__} row is malformed: {exc}") from exc


Operation = tuple[str, Entity] | tuple[str, Entity, dict[str, Any]]
"""One step of :meth:`Tables.transact`: ``("create" | "upsert" | "update" | "delete",
entity[, options])``."""


def if_match(etag: str) -> dict[str, Any]:
    """Options of a transaction step that applies only while the row has ``etag``."""
    return {"etag": etag, "match_condition": MatchConditions.IfNotModified}


def etag_of(entity: Mapping[str, Any]) -> str:
    metadata = getattr(entity, "metadata", None) or {}
    etag = metadata.get("etag")
    return str(etag) if etag is not None else "*"


# -- errors --------------------------------------------------------------------------


def short(exc: BaseException, limit: int = 200) -> str:
    """First line of an exception's message, cut to ``limit`` characters."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextlib.contextmanager
def translate(what: str, endpoint: str) -> Iterator[None]:
    """Turn SDK exceptions raised inside the block into playhouse errors."""
    try:
        yield
    except ResourceModifiedError as exc:
        raise Conflict(f"{what}: changed by another writer (stale ETag)") from exc
    except ResourceExistsError as exc:
        raise Conflict(f"{what}: already exists") from exc
    except ResourceNotFoundError as exc:
        raise NotFound(f"{what}: not found") from exc
    except ClientAuthenticationError as exc:
        raise StorageUnavailable(
            f"storage refused the credentials at {endpoint}: {short(exc)}"
        ) from exc
    except TableTransactionError as exc:
        code = str(getattr(exc, "error_code", "") or "")
        if code == "EntityAlreadyExists":
            raise Conflict(f"{what}: a row already exists ({short(exc)})") from exc
        if code in {"UpdateConditionNotSatisfied", "ConditionNotMet"}:
            raise Conflict(f"{what}: changed by another writer (stale ETag)") from exc
        if code == "ResourceNotFound":
            raise NotFound(f"{what}: not found") from exc
        raise InvalidInput(f"{what}: transaction rejected ({code}): {short(exc)}") from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        if status >= 500 or status in {408, 429}:
            raise StorageUnavailable(
                f"storage at {endpoint} failed ({status}): {short(exc)}"
            ) from exc
        raise InvalidInput(f"{what}: rejected by storage ({status}): {short(exc)}") from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise StorageUnavailable(f"storage unreachable at {endpoint}: {short(exc)}") from exc
    except AzureError as exc:
        raise StorageUnavailable(f"storage error at {endpoint}: {short(exc)}") from exc
    except (TimeoutError, OSError) as exc:
        raise StorageUnavailable(f"storage unreachable at {endpoint}: {short(exc)}") from exc


# -- continuation tokens -------------------------------------------------------------


def encode_token(token: Mapping[str, Any] | None) -> str | None:
    if not token:
        return None
    raw = json.dumps(dict(token), separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str | None, partition: str | None = None) -> dict[str, str] | None:
    """The SDK continuation dict inside ``token``; InvalidInput when it is not one of ours."""
    if token is None or token == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("invalid page token") from exc
    if (
        not isinstance(value, dict)
        or set(value) - {"PartitionKey", "RowKey"}
        or not all(isinstance(v, str | None) for v in value.values())
    ):
        raise InvalidInput("invalid page token")
    # The SDK's token carries the next keys base64-encoded.
    encoded = base64.b64encode(partition.encode()).decode() if partition else None
    expected = (None, partition, encoded)
    if partition is not None and value.get("PartitionKey") not in expected:
        raise InvalidInput("page token belongs to another listing")
    return value


# -- in-process serialization --------------------------------------------------------


class RowLocks:
    """One asyncio lock per key, dropped when nobody holds or awaits it: writers of the
    same row in one process take turns instead of racing on its ETag (between processes
    the ETag still decides)."""

    def __init__(self) -> None:
        self._locks: dict[object, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: object) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


# -- the helper ----------------------------------------------------------------------


class Tables:
    """The table service with the namespace applied; what every repository shares."""

    def __init__(self, service: TableServiceClient, namespace: str = "") -> None:
        self.service = service
        self.namespace = namespace
        self.endpoint = service.url
        self._clients: dict[str, TableClient] = {}

    def name(self, logical: str) -> str:
        return table_name(self.namespace, logical)

    def client(self, logical: str) -> TableClient:
        physical = self.name(logical)
        client = self._clients.get(physical)
        if client is None:
            client = self._clients[physical] = self.service.get_table_client(physical)
        return client

    def translate(self, what: str) -> contextlib.AbstractContextManager[None]:
        return translate(what, self.endpoint)

    async def create_table(self, logical: str) -> None:
        with self.translate(f"create table {logical}"):
            await self.service.create_table_if_not_exists(self.name(logical))

    # -- single rows ---------------------------------------------------------------

    async def get(self, table: str, partition: str, row: str, what: str) -> Entity | None:
        """The entity, or None when it does not exist."""
        with self.translate(what):
            try:
                entity = await self.client(table).get_entity(partition, row)
            except ResourceNotFoundError:
                return None
        return entity

    async def insert(self, table: str, entity: Entity, what: str) -> str:
        """Insert a new row (Conflict when the key exists); returns its ETag."""
        with self.translate(what):
            meta = await self.client(table).create_entity(entity)
        return str(meta.get("etag", "*"))

    async def upsert(self, table: str, entity: Entity, what: str) -> str:
        with self.translate(what):
            meta = await self.client(table).upsert_entity(entity, mode=UpdateMode.REPLACE)
        return str(meta.get("etag", "*"))

    async def update(
        self,
        table: str,
        entity: Entity,
        what: str,
        *,
        etag: str | None,
        mode: UpdateMode = UpdateMode.REPLACE,
    ) -> str:
        """Update an existing row; with ``etag``, only if it is unchanged (else Conflict)."""
        kwargs: dict[str, Any] = {"mode": mode}
        if etag is not None and etag != "*":
            kwargs.update(etag=etag, match_condition=MatchConditions.IfNotModified)
        with self.translate(what):
            meta = await self.client(table).update_entity(entity, **kwargs)
        return str(meta.get("etag", "*"))

    async def delete(self, table: str, partition: str, row: str, what: str) -> bool:
        """Delete a row; False when there was none."""
        with self.translate(what):
            try:
                entity = await self.client(table).get_entity(partition, row, select=["RowKey"])
            except ResourceNotFoundError:
                return False
            await self.client(table).delete_entity(partition, row)
        return entity is not None

    async def modify(
        self,
        table: str,
        partition: str,
        row: str,
        cls: type[S],
        change: Callable[[S], S],
        what: str,
        *,
        retries: int = ETAG_RETRIES,
    ) -> tuple[S, str]:
        """Read-modify-write with ETag retries; returns the stored value and its ETag.

        ``change`` must be pure: it may run several times under contention. NotFound
        when the row is missing, Conflict after ``retries`` lost races.
        """
        for attempt in range(retries):
            entity = await self.get(table, partition, row, what)
            if entity is None:
                raise NotFound(f"{what}: not found")
            current = from_entity(entity, cls)
            updated = change(current)
            try:
                etag = await self.update(
                    table, to_entity(updated, partition, row), what, etag=etag_of(entity)
                )
            except Conflict:
                await asyncio.sleep(random.uniform(0, 0.005 * (attempt + 1)))
                continue
            return updated, etag
        log.warning("row.contended", table=table, partition=partition, row=row, tries=retries)
        raise Conflict(f"{what}: still contended after {retries} attempts")

    # -- queries -------------------------------------------------------------------

    async def query(
        self,
        table: str,
        flt: str,
        what: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        select: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Entity]:
        """Every entity matching ``flt`` (at most ``limit``), in key order."""
        out: list[Entity] = []
        with self.translate(what):
            pages = self.client(table).query_entities(
                flt,
                parameters=dict(parameters or {}),
                select=list(select) if select else None,
                results_per_page=min(limit, 1000) if limit else None,
            )
            async for entity in pages:
                out.append(entity)
                if limit is not None and len(out) >= limit:
                    break
        return out

    async def rows(self, table: str, keys: Iterable[tuple[str, str]], what: str
                   ) -> list[Entity]:
        """The rows of ``keys`` (partition, row) that exist: one query per partition and
        per :data:`ROWS_PER_QUERY` keys (a filter allows 15 comparisons)."""
        by_partition: dict[str, list[str]] = {}
        for pk, rk in dict.fromkeys(keys):
            by_partition.setdefault(pk, []).append(rk)
        found: list[Entity] = []
        for pk, wanted in by_partition.items():
            for start in range(0, len(wanted), ROWS_PER_QUERY):
                chunk = wanted[start:start + ROWS_PER_QUERY]
                names = [f"r{i}" for i in range(len(chunk))]
                # Spaces around the parentheses: the SDK finds @names between spaces.
                flt = ("PartitionKey eq @pk and ( "
                       + " or ".join(f"RowKey eq @{n}" for n in names) + " )")
                found.extend(await self.query(
                    table, flt, what,
                    parameters={"pk": pk, **dict(zip(names, chunk, strict=True))},
                ))
        return found

    async def page(
        self,
        table: str,
        flt: str,
        what: str,
        *,
        limit: int,
        token: str | None,
        parameters: Mapping[str, Any] | None = None,
        partition: str | None = None,
    ) -> tuple[list[Entity], str | None]:
        """Up to ``limit`` entities from where ``token`` points, and the next token.

        The service may return short pages with a continuation; this keeps asking (for
        exactly the missing count) so the token handed out always points right after
        the last returned row: no duplicates, no gaps.
        """
        if not 1 <= limit <= 1000:
            raise InvalidInput("page limit must be between 1 and 1000")
        continuation: Any = decode_token(token, partition)
        items: list[Entity] = []
        with self.translate(what):
            while len(items) < limit:
                pager: Any = self.client(table).query_entities(
                    flt,
                    parameters=dict(parameters or {}),
                    results_per_page=limit - len(items),
                ).by_page(continuation_token=continuation)
                async for page in pager:
                    items.extend([e async for e in page])
                    break
                continuation = pager.continuation_token
                if not continuation:
                    break
        return items, encode_token(continuation)

    # -- transactions --------------------------------------------------------------

    async def transact(self, table: str, operations: Sequence[Operation], what: str) -> None:
        """Run ``operations`` (one partition, at most 100) as ONE atomic transaction: all
        apply or none does. An ETag precondition that fails (see :func:`if_match`) or a
        ``create`` of an existing row raises Conflict; a ``delete``/``update`` of a
        missing row raises NotFound."""
        if not 0 < len(operations) <= TABLE_BATCH_MAX:
            raise InvalidInput(f"{what}: a transaction holds 1-{TABLE_BATCH_MAX} operations")
        with self.translate(what):
            await self.client(table).submit_transaction(list(operations))

    async def submit(
        self, table: str, operations: Iterable[tuple[str, Entity]], what: str
    ) -> list[str]:
        """Run ``(op, entity)`` pairs as transactions: grouped by partition, 100 at most
        each, sequentially. Returns each operation's new ETag, in the order given. Each
        chunk is atomic; a failure raises and leaves earlier chunks written."""
        by_partition: dict[str, list[tuple[int, tuple[str, Entity]]]] = {}
        for index, (op, entity) in enumerate(operations):
            by_partition.setdefault(str(entity["PartitionKey"]), []).append((index, (op, entity)))
        etags: dict[int, str] = {}
        client = self.client(table)
        for ops in by_partition.values():
            for start in range(0, len(ops), TABLE_BATCH_MAX):
                chunk = ops[start : start + TABLE_BATCH_MAX]
                with self.translate(what):
                    answers = await client.submit_transaction([op for _, op in chunk])
                for (index, _), answer in zip(chunk, answers, strict=True):
                    etags[index] = str((answer or {}).get("etag", "*"))
        return [etags[i] for i in range(len(etags))]
