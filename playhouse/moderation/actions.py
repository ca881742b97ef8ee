"""What moderators do, each action checked, written, logged and shown live.

:class:`Moderation` is handed storage and the broadcaster (a web instance's, or one on
Redis for ``playhouse admin``); it never opens either. Every action checks the actor's
powers in the room of the item acted on (its stored room, never one the request names:
a moderator of r/A is refused in r/B), refuses what cannot be (removing what is removed,
banning someone who is not there) with a reason, writes the mod log entry first (so an
action whose own write then fails is still on record, and nothing a removal hides is
ever only in the row it hides), then the change, then shows it (:mod:`playhouse.events`).

A removal keeps the item's text in its row (``gone="removed"``; :mod:`playhouse.views`
shows the tombstone) and copies it into the mod log, so a restore brings it back as it
was. Locking a thread fails the bots' answers still awaited in it. A site ban also ends
every session of the banned (:meth:`~playhouse.storage.accounts.UserRepo.end_sessions`)
and tells their sockets on every instance to close.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import structlog

from playhouse import ids
from playhouse.applying import failure_text
from playhouse.constants import SITE_ROOM
from playhouse.errors import Conflict, Forbidden, InvalidInput
from playhouse.moderation.roles import MODERATOR, OWNER, Powers, describe_rank
from playhouse.storage.models import Comment, ModAction, ModEntry, Report, Room, Thread

if TYPE_CHECKING:
    from playhouse.events import Broadcaster
    from playhouse.storage import Storage

log = structlog.get_logger()

REASON_MAX_CHARS = 500
ItemT = TypeVar("ItemT", Thread, Comment)


def clean_reason(reason: str) -> str:
    """A moderator's reason as stored: one line, at most :data:`REASON_MAX_CHARS`."""
    text = " ".join(reason.split())
    if "\x00" in text:
        raise InvalidInput("the reason contains a NUL character")
    if len(text) > REASON_MAX_CHARS:
        raise InvalidInput(f"the reason is {len(text)} characters, at most "
                           f"{REASON_MAX_CHARS}")
    return text


def _item(comment_id: str | None) -> str:
    return "that comment" if comment_id else "that thread"


def _guarded(ok: Callable[[Any], bool], refusal: str,
             **changes: Any) -> Callable[[ItemT], ItemT]:
    """A pure change of a thread or comment row: ``changes``, unless the row as read
    again fails ``ok`` (someone else acted first: Conflict with ``refusal``)."""

    def change(current: ItemT) -> ItemT:
        if not ok(current):
            raise Conflict(refusal)
        return msgspec.structs.replace(current, **changes)

    return change


@dataclass
class Moderation:
    """The moderators' actions over one storage and fan-out."""

    storage: Storage
    broadcast: Broadcaster
    admins: Collection[str] = ()
    """Names that are site admins by the settings (``web.admins``)."""
    on_site_ban: Callable[[str], None] = lambda username: None
    """Told of each user banned from the site (a web instance forgets their cached
    session row, so this instance refuses them at once)."""

    # ---------------------------------------------------------------- powers
    async def powers(self, user: str, room: str | None) -> Powers:
        """``user``'s powers in ``room`` (None: the site alone): one query."""
        standing = await self.storage.members.standing(room or SITE_ROOM, user)
        return Powers.of(user, room, standing, self.admins)

    async def moderator(self, user: str | Powers, room: Room, *,
                        at_least: int = MODERATOR) -> Powers:
        """``user``'s powers in ``room``; Forbidden, saying which rooms they do moderate,
        unless they rank ``at_least`` there."""
        if isinstance(user, Powers):
            powers = user if user.operator else await self.powers(user.name, room.name)
        else:
            powers = await self.powers(user, room.name)
        if powers.rank >= at_least:
            return powers
        what = "own" if at_least >= OWNER else "moderate"
        mine = await self.rooms_of(powers.name, owned=at_least >= OWNER)
        elsewhere = f" (you {what} {', '.join('r/' + r for r in mine)})" if mine else ""
        raise Forbidden(f"you do not {what} r/{room.name}{elsewhere}: only its "
                        f"{'owners' if at_least >= OWNER else 'moderators'} and the site's "
                        "admins can do that")

    async def rooms_of(self, user: str, *, owned: bool = False) -> list[str]:
        """The names of the rooms ``user`` moderates (``owned``: owns), as they are
        spelled."""
        roles = ("owner",) if owned else ("owner", "moderator")
        keys = [m.room for m in await self.storage.members.of_user(user) if m.role in roles]
        rooms = await asyncio.gather(*(self.storage.rooms.get(k) for k in keys),
                                     return_exceptions=True)
        return sorted((r.name for r in rooms if isinstance(r, Room)), key=str.casefold)

    async def site_admin(self, user: str | Powers) -> Powers:
        if isinstance(user, Powers) and user.operator:
            return user
        name = user.name if isinstance(user, Powers) else user
        powers = await self.powers(name, None)
        if not powers.site_admin or powers.site_banned is not None:
            raise Forbidden("only the site's admins can do that")
        return powers

    async def _target(self, username: str, room: str) -> tuple[str, Powers]:
        """The canonical display name of ``username`` and their powers in ``room``
        (NotFound when there is no such user)."""
        user = await self.storage.users.get(username)
        standing = await self.storage.members.standing(room, user.username)
        return user.display_name, Powers.of(user.display_name, room, standing, self.admins)

    # ---------------------------------------------------------------- the log
    async def record(self, powers: Powers, action: ModAction, room: str, *, reason: str = "",
                     target_user: str | None = None, thread_id: str | None = None,
                     comment_id: str | None = None, text: str = "",
                     detail: str = "") -> ModEntry:
        """Write one line of the mod log."""
        return await self.storage.modlog.write(ModEntry(
            entry_id=ids.new_id(), room=room, actor=powers.name, action=action,
            at=time.time(), reason=reason, target_user=target_user, thread_id=thread_id,
            comment_id=comment_id, text=text, detail=detail,
        ))

    # ---------------------------------------------------------------- items
    async def _room_of(self, thread: Thread) -> Room:
        return await self.storage.rooms.get(thread.room)

    async def remove(self, user: str | Powers, thread_id: str, comment_id: str | None,
                     reason: str = "") -> tuple[Thread, Comment | None]:
        """Tombstone a comment (or the thread's post) for everyone; its text is kept in
        its row and copied into the mod log."""
        reason = clean_reason(reason)
        thread = await self.storage.threads.get(thread_id)
        powers = await self.moderator(user, await self._room_of(thread))
        if comment_id is None:
            if thread.gone:
                raise Conflict(f"that thread is {thread.gone} already")
            await self.record(powers, "remove", thread.room, reason=reason,
                              target_user=thread.author, thread_id=thread.thread_id,
                              text=_thread_text(thread))

            thread = await self.storage.threads.change(thread_id, _guarded(
                lambda t: not t.gone, "that thread is gone already", gone="removed",
                held=False))
            await self._settle_reports(thread.room, thread_id, None, "remove", powers)
            self.broadcast.moderated("removed", thread=thread, reason=reason)
            return thread, None
        comment = await self.storage.comments.get(thread_id, comment_id)
        if comment.gone:
            raise Conflict(f"that comment is {comment.gone} already")
        if comment.status == "placeholder":
            raise InvalidInput("that bot has not answered yet: there is nothing to remove")
        await self.record(powers, "remove", thread.room, reason=reason,
                          target_user=comment.author, thread_id=thread_id,
                          comment_id=comment_id, text=comment.text,
                          detail=f"picture {comment.image_blob}" if comment.image_blob else "")

        comment = await self.storage.comments.change(thread_id, comment_id, _guarded(
            lambda c: not c.gone, "that comment is gone already", gone="removed",
            held=False))
        await self._settle_reports(thread.room, thread_id, comment_id, "remove", powers)
        self.broadcast.moderated("removed", thread=thread, comment=comment, reason=reason)
        return thread, comment

    async def restore(self, user: str | Powers, thread_id: str, comment_id: str | None,
                      reason: str = "") -> tuple[Thread, Comment | None]:
        """Undo a removal: the item shows again as it was."""
        reason = clean_reason(reason)
        thread = await self.storage.threads.get(thread_id)
        powers = await self.moderator(user, await self._room_of(thread))
        current_gone = thread.gone if comment_id is None else (
            await self.storage.comments.get(thread_id, comment_id)).gone
        if current_gone != "removed":
            raise Conflict(f"{_item(comment_id)} is not removed" if not current_gone else
                           f"{_item(comment_id)} was deleted by its author: only a removal "
                           "can be undone")
        await self.record(powers, "restore", thread.room, reason=reason, thread_id=thread_id,
                          comment_id=comment_id)

        def removed(item: Thread | Comment) -> bool:
            return item.gone == "removed"

        refusal = f"{_item(comment_id)} is not removed"
        if comment_id is None:
            thread = await self.storage.threads.change(
                thread_id, _guarded(removed, refusal, gone=""))
            self.broadcast.moderated("restored", thread=thread, reason=reason)
            return thread, None
        comment = await self.storage.comments.change(
            thread_id, comment_id, _guarded(removed, refusal, gone=""))
        self.broadcast.moderated("restored", thread=thread, comment=comment, reason=reason)
        return thread, comment

    async def lock(self, user: str | Powers, thread_id: str, *, locked: bool = True,
                   reason: str = "") -> Thread:
        """Lock a thread (no new comments, by people or bots; the bots' answers still
        awaited in it end as failures), or unlock it."""
        reason = clean_reason(reason)
        thread = await self.storage.threads.get(thread_id)
        powers = await self.moderator(user, await self._room_of(thread))
        word = "locked" if locked else "unlocked"
        if thread.locked == locked:
            raise Conflict(f"that thread is {word} already")
        await self.record(powers, "lock" if locked else "unlock", thread.room, reason=reason,
                          thread_id=thread_id)

        thread = await self.storage.threads.change(thread_id, _guarded(
            lambda t: t.locked != locked, f"that thread is {word} already", locked=locked))
        self.broadcast.moderated(word, thread=thread, reason=reason)
        if locked:
            await self._fail_awaited(thread)
        return thread

    async def _fail_awaited(self, thread: Thread) -> None:
        """Placeholders still waiting in a thread just locked become failures (an answer
        that comes later finds no placeholder to fill and is dropped as a duplicate)."""
        token: str | None = None
        while True:
            listed = await self.storage.comments.list(thread.thread_id, limit=1000,
                                                      token=token)
            for comment in listed.items:
                if comment.status != "placeholder":
                    continue
                current = await self.storage.comments.get(thread.thread_id,
                                                          comment.comment_id)
                if current.status != "placeholder":
                    continue
                failed = msgspec.structs.replace(
                    current, status="failed",
                    text=failure_text(current.persona or current.author,
                                      "the thread was locked"))
                try:
                    failed = await self.storage.comments.replace(failed)
                except Conflict:
                    continue  # the answer came first
                self.broadcast.replaced(failed)
            token = listed.next
            if token is None:
                return

    async def approve(self, user: str | Powers, thread_id: str,
                      comment_id: str | None) -> tuple[Room, Thread, Comment | None]:
        """Show what the word filter held (its author is not told apart from any post
        after this; the caller shows it live and counts it)."""
        thread = await self.storage.threads.get(thread_id)
        room = await self._room_of(thread)
        powers = await self.moderator(user, room)
        held = thread.held if comment_id is None else (
            await self.storage.comments.get(thread_id, comment_id)).held
        if not held:
            raise Conflict(f"{_item(comment_id)} is not waiting for approval")
        await self.record(powers, "approve", thread.room, thread_id=thread_id,
                          comment_id=comment_id)

        def waiting(item: Thread | Comment) -> bool:
            return item.held

        refusal = f"{_item(comment_id)} is not waiting for approval"
        comment = None
        if comment_id is None:
            thread = await self.storage.threads.change(
                thread_id, _guarded(waiting, refusal, held=False))
        else:
            comment = await self.storage.comments.change(
                thread_id, comment_id, _guarded(waiting, refusal, held=False))
        await self._settle_reports(thread.room, thread_id, comment_id, "approve", powers)
        return room, thread, comment

    async def dismiss(self, user: str | Powers, room: str, report_id: str,
                      reason: str = "") -> Report:
        """Close a report without acting on what it is about."""
        reason = clean_reason(reason)
        report = await self.storage.reports.get(room, report_id)
        powers = await self.moderator(user, await self.storage.rooms.get(report.room))
        if report.state != "open":
            raise Conflict(f"that report was settled already ({report.resolution} by "
                           f"u/{report.resolved_by})")
        await self.record(powers, "dismiss", report.room, reason=reason,
                          target_user=report.author, thread_id=report.thread_id,
                          comment_id=report.comment_id,
                          detail=f"report by u/{report.reporter}: {report.reason}")
        return await self.storage.reports.resolve(report, "dismiss", powers.name)

    async def _settle_reports(self, room: str, thread_id: str, comment_id: str | None,
                              resolution: str, powers: Powers) -> None:
        try:
            await self.storage.reports.resolve_about(room, thread_id, comment_id,
                                                     resolution, powers.name)
        except Conflict as exc:  # contended: they stay open, to be settled again
            log.warning("report.unsettled", thread_id=thread_id, reason=str(exc))

    # ---------------------------------------------------------------- people
    async def ban(self, user: str | Powers, username: str, room: Room | None,
                  reason: str = "") -> str:
        """Ban ``username`` from ``room`` (None: from the site: admins only; it also ends
        their sessions and closes their sockets everywhere). Returns their name."""
        reason = clean_reason(reason)
        where = SITE_ROOM if room is None else room.name
        powers = (await self.site_admin(user) if room is None
                  else await self.moderator(user, room))
        name, target = await self._target(username, where)
        scope = "the site" if room is None else f"r/{room.name}"
        if (target.site_banned is not None) if room is None else target.role == "banned":
            raise Conflict(f"u/{name} is banned from {scope} already")
        if not powers.may_act_on(target):
            raise Forbidden(f"u/{name} is {describe_rank(target)}: you cannot ban them")
        await self.record(powers, "ban", where, reason=reason, target_user=name)
        await self.storage.members.assign(where, name, "banned", by=powers.name,
                                          reason=reason)
        if room is None:
            await self.storage.users.end_sessions(name, time.time())
            self.on_site_ban(name)
        self.broadcast.banned(name, None if room is None else room.name, reason)
        log.info("user.banned", username=name, room=where, by=powers.name)
        return name

    async def unban(self, user: str | Powers, username: str, room: Room | None,
                    reason: str = "") -> str:
        """Lift a ban (they are no member of the room after it: they join again, or are
        added again to a private room)."""
        reason = clean_reason(reason)
        where = SITE_ROOM if room is None else room.name
        powers = (await self.site_admin(user) if room is None
                  else await self.moderator(user, room))
        name, target = await self._target(username, where)
        banned = target.site_banned is not None if room is None else target.role == "banned"
        if not banned:
            scope = "the site" if room is None else f"r/{where}"
            raise Conflict(f"u/{name} is not banned from {scope}")
        await self.record(powers, "unban", where, reason=reason, target_user=name)
        await self.storage.members.leave(where, name)
        return name

    async def grant(self, user: str | Powers, username: str, room: Room | None,
                    reason: str = "") -> str:
        """Make ``username`` a moderator of ``room`` (its owners and the admins may), or a
        site admin (``room`` None: the operator only)."""
        reason = clean_reason(reason)
        return await (self._grant_admin(user, username, reason) if room is None
                      else self._grant_moderator(user, username, room, reason))

    async def _grant_moderator(self, user: str | Powers, username: str, room: Room,
                               reason: str) -> str:
        powers = await self.moderator(user, room, at_least=OWNER)
        name, target = await self._target(username, room.name)
        if target.site_banned is not None or target.role == "banned":
            raise Conflict(f"u/{name} is banned from "
                           f"{'the site' if target.site_banned else 'r/' + room.name}: "
                           "lift the ban first")
        if target.role in ("moderator", "owner"):
            raise Conflict(f"u/{name} is {describe_rank(target)} already")
        await self.record(powers, "grant", room.name, reason=reason, target_user=name,
                          detail="moderator")
        await self.storage.members.assign(room.name, name, "moderator", by=powers.name)
        return name

    async def _grant_admin(self, user: str | Powers, username: str, reason: str) -> str:
        powers = user if isinstance(user, Powers) else await self.powers(user, None)
        if not powers.operator:
            raise Forbidden("only the operator grants site admin (`playhouse admin grant`)")
        name, target = await self._target(username, SITE_ROOM)
        if target.site_banned is not None:
            raise Conflict(f"u/{name} is banned from the site: lift the ban first")
        standing = await self.storage.members.get(SITE_ROOM, name)
        if standing is not None and standing.role == "admin":
            raise Conflict(f"u/{name} is a site admin already")
        await self.record(powers, "grant", SITE_ROOM, reason=reason, target_user=name,
                          detail="site admin")
        await self.storage.members.assign(SITE_ROOM, name, "admin", by=powers.name)
        return name

    async def revoke(self, user: str | Powers, username: str, room: Room | None,
                     reason: str = "") -> str:
        """Undo :meth:`grant`: a moderator becomes a member again; a site admin, nobody
        in particular (one named in ``web.admins`` stays one: the caller says so)."""
        reason = clean_reason(reason)
        where = SITE_ROOM if room is None else room.name
        if room is None:
            powers = user if isinstance(user, Powers) else await self.powers(user, None)
            if not powers.operator:
                raise Forbidden("only the operator revokes site admin "
                                "(`playhouse admin revoke`)")
        else:
            powers = await self.moderator(user, room, at_least=OWNER)
        name, _ = await self._target(username, where)
        row = await self.storage.members.get(where, name)
        wanted = "admin" if room is None else "moderator"
        if row is None or row.role != wanted:
            what = "a site admin" if room is None else f"a moderator of r/{where}"
            raise Conflict(f"u/{name} is not {what}")
        await self.record(powers, "revoke", where, reason=reason, target_user=name,
                          detail="site admin" if room is None else "moderator")
        if room is None:
            await self.storage.members.leave(SITE_ROOM, name)
        else:
            await self.storage.members.set_role(room.name, name, "member")
        return name



def _thread_text(thread: Thread) -> str:
    """What a thread's post says, for the mod log."""
    parts = [thread.title]
    if thread.url:
        parts.append(thread.url)
    if thread.body:
        parts.append(thread.body)
    if thread.image_blob:
        parts.append(f"[picture {thread.image_blob}]")
    return "\n\n".join(parts)
