"""The sort orders each person chose last (rows of the ``users`` table under ``PK_PREFS``)."""

from __future__ import annotations

from playhouse.constants import PK_PREFS, TABLE_USERS
from playhouse.storage.accounts import user_key
from playhouse.storage.models import Prefs
from playhouse.storage.tables import Tables, from_entity, to_entity


class PrefRepo:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    async def get(self, username: str) -> Prefs:
        """The person's choices; the defaults when they never chose."""
        key = user_key(username)
        entity = await self.t.get(TABLE_USERS, PK_PREFS, key, f"preferences of {key}")
        return Prefs() if entity is None else from_entity(entity, Prefs)

    async def save(self, username: str, prefs: Prefs) -> None:
        key = user_key(username)
        await self.t.upsert(TABLE_USERS, to_entity(prefs, PK_PREFS, key), f"preferences of {key}")
