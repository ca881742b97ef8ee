"""Votes: one row per person per item, and the item's tally, changed in one transaction.

Keys (table ``votes``):

* PK the thread id, RK ``v.<item>.<voter>``: the voter's vote (+1 or -1) on the item
  (the thread id itself for the post, a comment id for a comment). The key makes "one
  vote per person per item" a property of the table, not of the code.
* same PK, RK ``s.<item>``: the item's :class:`~playhouse.storage.models.Tally`.
  A vote row and the tally it changes live in one partition and are written in one
  entity-group transaction, each step with an ETag precondition (or insert-if-absent):
  both apply or neither does, so the tally always equals the item's vote rows, and two
  voters racing never lose an update: the loser's transaction fails and is tried again
  on fresh reads. A vote equal to the one stored writes nothing (retries are idempotent).
  All of a thread's tallies come from one range query (``s.`` rows).
* PK ``u.<voter>``, RK ``<thread id>.<item>``: a copy of the voter's own vote, written
  after the transaction, for showing the arrows (one range query per page). It is a view:
  the ``v.`` row is the vote.

Within one process, votes on the same item wait for each other (a lock per item) instead
of racing on its ETag; between processes the ETag decides.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec
import structlog
from azure.data.tables import UpdateMode

from playhouse import ids
from playhouse.constants import PK_VOTER_PREFIX, TABLE_VOTES
from playhouse.errors import Conflict, InvalidInput, NotFound
from playhouse.storage.accounts import user_key
from playhouse.storage.models import Tally
from playhouse.storage.tables import (
    Entity,
    Operation,
    RowLocks,
    Tables,
    etag_of,
    from_entity,
    if_match,
)

log = structlog.get_logger()

VOTE_RETRIES = 200
"""Transactions one vote tries before giving up with Conflict (each lost race is one)."""
VALUES = (-1, 0, 1)


def _item(thread_id: str, item_id: str) -> tuple[str, str]:
    if not ids.is_id(thread_id) or not ids.is_id(item_id):
        raise NotFound(f"no item {item_id!r} in thread {thread_id!r}")
    return thread_id, item_id


def tally_key(item_id: str) -> str:
    return f"s.{item_id}"


def vote_key(item_id: str, voter: str) -> str:
    return f"v.{item_id}.{voter}"


@dataclass(frozen=True)
class VoteCast:
    """What a vote did: the tally after it, and the voter's vote before it."""

    tally: Tally
    previous: int
    value: int

    @property
    def changed(self) -> bool:
        return self.previous != self.value


class VoteRepo:
    def __init__(self, tables: Tables) -> None:
        self.t = tables
        self._locks = RowLocks()

    async def cast(self, thread_id: str, item_id: str, voter: str, value: int) -> VoteCast:
        """Set ``voter``'s vote on the item to ``value`` (+1, -1, or 0 to withdraw it)."""
        if value not in VALUES:
            raise InvalidInput("a vote is +1, -1 or 0")
        key = _item(thread_id, item_id)
        voter_key = user_key(voter)
        async with self._locks.hold(key):
            cast = await self._cast(thread_id, item_id, voter_key, value)
        if cast.changed:
            log.info("vote.cast", thread_id=thread_id, item_id=item_id, voter=voter_key,
                     value=value, score=cast.tally.score, version=cast.tally.version)
        return cast

    async def _cast(self, thread_id: str, item_id: str, voter: str, value: int) -> VoteCast:
        what = f"vote of {voter} on {item_id}"
        for attempt in range(VOTE_RETRIES):
            tally_row, vote_row = await asyncio.gather(
                self.t.get(TABLE_VOTES, thread_id, tally_key(item_id), what),
                self.t.get(TABLE_VOTES, thread_id, vote_key(item_id, voter), what),
            )
            tally = (from_entity(tally_row, Tally) if tally_row is not None
                     else Tally(thread_id=thread_id, item_id=item_id))
            previous = int(vote_row["value"]) if vote_row is not None else 0
            if previous == value:
                return VoteCast(tally=tally, previous=previous, value=value)
            updated = msgspec.structs.replace(
                tally,
                ups=tally.ups + (value == 1) - (previous == 1),
                downs=tally.downs + (value == -1) - (previous == -1),
                version=tally.version + 1,
            )
            ops: list[Operation] = [_tally_step(updated, tally_row)]
            vote: Entity = {"PartitionKey": thread_id, "RowKey": vote_key(item_id, voter),
                            "voter": voter, "value": value}
            if vote_row is None:
                ops.append(("create", vote))
            elif value == 0:
                ops.append(("delete", vote, if_match(etag_of(vote_row))))
            else:
                ops.append(("update", vote, {"mode": UpdateMode.REPLACE,
                                             **if_match(etag_of(vote_row))}))
            try:
                await self.t.transact(TABLE_VOTES, ops, what)
            except (Conflict, NotFound):
                await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 1.3**attempt)))
                continue
            return VoteCast(tally=updated, previous=previous, value=value)
        log.warning("vote.contended", thread_id=thread_id, item_id=item_id, tries=VOTE_RETRIES)
        raise Conflict(f"{what}: still contended after {VOTE_RETRIES} attempts")

    async def tally(self, thread_id: str, item_id: str) -> Tally:
        thread_id, item_id = _item(thread_id, item_id)
        row = await self.t.get(TABLE_VOTES, thread_id, tally_key(item_id), f"tally of {item_id}")
        if row is None:
            return Tally(thread_id=thread_id, item_id=item_id)
        return from_entity(row, Tally)

    async def tallies(self, thread_id: str) -> dict[str, Tally]:
        """Every tally in the thread (the post's and its comments'), by item id."""
        if not ids.is_id(thread_id):
            raise NotFound(f"no thread {thread_id!r}")
        rows = await self.t.query(
            TABLE_VOTES, "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
            f"tallies of {thread_id}", parameters={"pk": thread_id, "lo": "s.", "hi": "s/"},
        )
        tallies = [from_entity(row, Tally) for row in rows]
        return {t.item_id: t for t in tallies}

    async def votes_on(self, thread_id: str, item_id: str) -> dict[str, int]:
        """Voter → vote, read from the vote rows themselves (what the tally must equal)."""
        thread_id, item_id = _item(thread_id, item_id)
        rows = await self.t.query(
            TABLE_VOTES, "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
            f"votes on {item_id}",
            parameters={"pk": thread_id, "lo": f"v.{item_id}.", "hi": f"v.{item_id}/"},
        )
        return {str(row["voter"]): int(row["value"]) for row in rows}

    # -- a voter's own votes ---------------------------------------------------------

    async def remember(self, voter: str, cast: VoteCast, *, is_thread: bool) -> None:
        """Copy the voter's vote where their pages look for it (after :meth:`cast`)."""
        pk = PK_VOTER_PREFIX + user_key(voter)
        rk = f"{cast.tally.thread_id}.{cast.tally.item_id}"
        what = f"own vote of {voter}"
        if cast.value == 0:
            await self.t.delete(TABLE_VOTES, pk, rk, what)
            return
        await self.t.upsert(TABLE_VOTES, {"PartitionKey": pk, "RowKey": rk, "value": cast.value,
                                          "is_thread": is_thread}, what)

    async def mine(self, voter: str, thread_id: str) -> dict[str, int]:
        """Item id → ``voter``'s vote, for one thread's post and comments."""
        if not ids.is_id(thread_id):
            return {}
        rows = await self.t.query(
            TABLE_VOTES, "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
            f"own votes of {voter}",
            parameters={"pk": PK_VOTER_PREFIX + user_key(voter), "lo": f"{thread_id}.",
                        "hi": f"{thread_id}/"},
        )
        return {str(row["RowKey"]).partition(".")[2]: int(row["value"]) for row in rows}

    async def mine_threads(self, voter: str, thread_ids: Iterable[str]) -> dict[str, int]:
        """Thread id → ``voter``'s vote on the post, for a page of threads (one query over
        the span of their ids)."""
        wanted = {t for t in thread_ids if ids.is_id(t)}
        if not wanted:
            return {}
        rows = await self.t.query(
            TABLE_VOTES,
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and is_thread eq true",
            f"own votes of {voter}",
            parameters={"pk": PK_VOTER_PREFIX + user_key(voter), "lo": min(wanted),
                        "hi": max(wanted) + "/"},
        )
        found: dict[str, int] = {}
        for row in rows:
            thread_id = str(row["RowKey"]).partition(".")[0]
            if thread_id in wanted:
                found[thread_id] = int(row["value"])
        return found


def _tally_step(tally: Tally, stored: Entity | None) -> Operation:
    entity: Entity = {"PartitionKey": tally.thread_id, "RowKey": tally_key(tally.item_id),
                      **msgspec.structs.asdict(tally)}
    if stored is None:
        return ("create", entity)
    return ("update", entity, {"mode": UpdateMode.REPLACE, **if_match(etag_of(stored))})
