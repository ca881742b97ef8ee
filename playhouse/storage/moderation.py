"""Reports and the mod log.

Keys:

* ``reports``: PK the room (lowercase), RK the report id. A report's id derives from
  what it is about and who filed it (:func:`report_id_for`), so one person reports one
  item once, and the word filter holds it once. A room's open reports are one
  single-partition query (its moderators' queue); every room's, one table query (admins').
* ``modlog``: every entry twice, PK the room (lowercase; the site's actions under
  :data:`~playhouse.constants.SITE_ROOM`) and PK :data:`~playhouse.constants.MODLOG_ALL`,
  RK ``ids.invert(entry id)``: a room's log and the whole log, newest first, are each one
  single-partition range query.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import structlog

from playhouse import ids
from playhouse.constants import MODLOG_ALL, TABLE_MODLOG, TABLE_REPORTS
from playhouse.errors import NotFound
from playhouse.storage.accounts import room_key
from playhouse.storage.models import ModEntry, Page, Report
from playhouse.storage.tables import Tables, check_key, from_entity, to_entity

log = structlog.get_logger()


def report_id_for(item_id: str, reporter: str) -> str:
    """The id of ``reporter``'s report about ``item_id`` (a comment or a thread): derived,
    so a second report of the same item by the same person is the same row."""
    return ids.derived_id(item_id, f"report:{reporter.casefold()}")


class ReportRepo:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    async def file(self, report: Report) -> Report:
        """Store a new report; Conflict when this reporter reported this item already."""
        room = room_key(report.room)
        rid = check_key("report id", report.report_id)
        await self.t.insert(TABLE_REPORTS, to_entity(report, room, rid), f"report {rid}")
        log.info("report.filed", room=report.room, thread_id=report.thread_id,
                 comment_id=report.comment_id or "-", reporter=report.reporter,
                 reason=report.reason)
        return report

    async def get(self, room: str, report_id: str) -> Report:
        report = await self.find(room, report_id)
        if report is None:
            raise NotFound(f"no report {report_id!r} in r/{room}")
        return report

    async def find(self, room: str, report_id: str) -> Report | None:
        entity = await self.t.get(TABLE_REPORTS, room_key(room),
                                  check_key("report id", report_id), f"report {report_id}")
        return None if entity is None else from_entity(entity, Report)

    async def open_in(self, room: str, *, limit: int = 500) -> list[Report]:
        """``room``'s open reports, oldest item first."""
        entities = await self.t.query(
            TABLE_REPORTS, "PartitionKey eq @pk and state eq @open", f"reports of {room}",
            parameters={"pk": room_key(room), "open": "open"}, limit=limit,
        )
        return [from_entity(e, Report) for e in entities]

    async def open_everywhere(self, *, limit: int = 500) -> list[Report]:
        """Every room's open reports (what a site admin's queue shows)."""
        entities = await self.t.query(
            TABLE_REPORTS, "state eq @open", "open reports", parameters={"open": "open"},
            limit=limit,
        )
        return [from_entity(e, Report) for e in entities]

    async def about(self, room: str, thread_id: str, comment_id: str | None) -> list[Report]:
        """Every report (open or not) about the thread's post (``comment_id`` None) or one
        of its comments."""
        entities = await self.t.query(
            TABLE_REPORTS, "PartitionKey eq @pk and thread_id eq @tid", f"reports of {room}",
            parameters={"pk": room_key(room), "tid": thread_id},
        )
        return [r for r in (from_entity(e, Report) for e in entities)
                if r.comment_id == comment_id]

    async def resolve(self, report: Report, resolution: str, by: str) -> Report:
        """Close ``report`` with what settled it (a closed one keeps its first answer)."""
        now = time.time()

        def close(current: Report) -> Report:
            if current.state != "open":
                return current
            return msgspec.structs.replace(current, state="resolved", resolution=resolution,
                                           resolved_by=by, resolved_at=now)

        closed, _ = await self.t.modify(TABLE_REPORTS, room_key(report.room),
                                        report.report_id, Report, close,
                                        f"report {report.report_id}")
        return closed

    async def resolve_about(self, room: str, thread_id: str, comment_id: str | None,
                            resolution: str, by: str) -> int:
        """Close every open report about one item; how many were open."""
        todo = [r for r in await self.about(room, thread_id, comment_id) if r.state == "open"]
        await asyncio.gather(*(self.resolve(r, resolution, by) for r in todo))
        return len(todo)


class ModLogRepo:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    async def write(self, entry: ModEntry) -> ModEntry:
        """Store ``entry`` in its room's log and in the whole log (together)."""
        rk = ids.invert(entry.entry_id)
        what = f"mod log {entry.entry_id}"
        await asyncio.gather(
            self.t.insert(TABLE_MODLOG, to_entity(entry, room_key(entry.room), rk), what),
            self.t.insert(TABLE_MODLOG, to_entity(entry, MODLOG_ALL, rk), what),
        )
        log.info("mod.logged", action=entry.action, room=entry.room, actor=entry.actor,
                 target_user=entry.target_user or "-", thread_id=entry.thread_id or "-",
                 comment_id=entry.comment_id or "-")
        return entry

    async def of_room(self, room: str, *, limit: int = 100,
                      token: str | None = None) -> Page[ModEntry]:
        """A page of ``room``'s log, newest first."""
        return await self._page(room_key(room), limit, token)

    async def everything(self, *, limit: int = 100, token: str | None = None) -> Page[ModEntry]:
        """A page of the whole log (every room's and the site's), newest first."""
        return await self._page(MODLOG_ALL, limit, token)

    async def _page(self, pk: str, limit: int, token: str | None) -> Page[ModEntry]:
        entities, nxt = await self.t.page(
            TABLE_MODLOG, "PartitionKey eq @pk", f"mod log of {pk}", limit=limit, token=token,
            parameters={"pk": pk}, partition=pk,
        )
        return Page(items=[from_entity(e, ModEntry) for e in entities], next=nxt)
