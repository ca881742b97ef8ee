"""What edits and deletions replaced: the earlier texts of threads and comments.

Keys: ``revisions``: PK the thread id (a post's revisions) or the comment id, RK a fresh
id, so an item's revisions come oldest first from one partition. A revision is written
before the row it comes from is changed, so a failure in between leaves a copy too many,
never a text lost. Revisions are kept server-side: no page, socket or prompt reads them.
"""

from __future__ import annotations

import builtins

import structlog

from playhouse import ids
from playhouse.constants import TABLE_REVISIONS
from playhouse.storage.models import Revision
from playhouse.storage.tables import Tables, check_key, from_entity, to_entity

log = structlog.get_logger()


class RevisionRepo:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    async def add(self, revision: Revision) -> None:
        pk = check_key("item id", revision.item_id)
        await self.t.insert(TABLE_REVISIONS, to_entity(revision, pk, ids.new_id()),
                            f"revision of {pk}")
        log.info("revision.kept", item_id=pk, reason=revision.reason, by=revision.by)

    async def of(self, item_id: str, *, limit: int = 200) -> builtins.list[Revision]:
        """``item_id``'s revisions, oldest first."""
        pk = check_key("item id", item_id)
        entities = await self.t.query(TABLE_REVISIONS, "PartitionKey eq @pk",
                                      f"revisions of {pk}", parameters={"pk": pk}, limit=limit)
        return [from_entity(e, Revision) for e in entities]
