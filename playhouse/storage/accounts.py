"""People and rooms: users, rooms and memberships.

Keys (all lowercase so that names are case-insensitive, as people expect):

* ``users``: PK ``user``, RK the user name;
* ``rooms``: PK ``room``, RK the room name;
* ``members``: two rows per membership, PK ``r.<room>`` / RK user (who is in a room) and
  PK ``u.<user>`` / RK room (which rooms a user joined), so both listings are
  single-partition queries. Join writes the room row last and leave deletes it first:
  whoever asks "is X a member of R" reads the room row, which is true only while both
  rows exist.

Roles beyond membership live in the same rows: a room's moderators, and ``banned``
(a ban is a membership that is not one: :meth:`MemberRepo.is_member` says no). The site
is a room too, :data:`~playhouse.constants.SITE_ROOM`: role ``admin`` there makes a site
admin, ``banned`` bans from the whole site. So what a person may do in a room, the room's
row and the site's, is one query on their own partition (:meth:`MemberRepo.standing`).
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Sequence

import msgspec
import structlog

from playhouse.constants import (
    PK_ROOMS,
    PK_USERS,
    SITE_ROOM,
    TABLE_MEMBERS,
    TABLE_ROOMS,
    TABLE_USERS,
)
from playhouse.errors import Conflict, NotFound
from playhouse.ids import id_time
from playhouse.storage.models import Membership, Page, Role, Room, User
from playhouse.storage.tables import Tables, check_key, from_entity, to_entity

log = structlog.get_logger()


def user_key(username: str) -> str:
    return check_key("user name", username.strip().lower())


def room_key(room: str) -> str:
    return check_key("room name", room.strip().lower())


class UserRepo:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    async def create(self, user: User) -> User:
        """Store a new user; Conflict when the name is taken (in any letter case)."""
        key = user_key(user.username)
        user = msgspec.structs.replace(user, username=key)
        await self.t.insert(TABLE_USERS, to_entity(user, PK_USERS, key), f"user {key}")
        log.info("user.created", username=key)
        return user

    async def get(self, username: str) -> User:
        key = user_key(username)
        entity = await self.t.get(TABLE_USERS, PK_USERS, key, f"user {key}")
        if entity is None:
            raise NotFound(f"no user named {username!r}")
        return from_entity(entity, User)

    async def find(self, username: str) -> User | None:
        try:
            return await self.get(username)
        except NotFound:
            return None

    async def set_password_hash(self, username: str, password_hash: str) -> User:
        key = user_key(username)
        user, _ = await self.t.modify(
            TABLE_USERS, PK_USERS, key, User,
            lambda u: msgspec.structs.replace(u, password_hash=password_hash),
            f"user {key}",
        )
        return user

    async def change(self, username: str, change: Callable[[User], User]) -> User:
        """Read-modify-write the user's row (ETag retries; ``change`` must be pure)."""
        key = user_key(username)
        try:
            user, _ = await self.t.modify(TABLE_USERS, PK_USERS, key, User, change,
                                          f"user {key}")
        except NotFound:
            raise NotFound(f"no user named {username!r}") from None
        return user

    async def end_session(self, username: str, session_id: str, *, keep_s: float) -> User:
        """Void the one session ``session_id`` of ``username`` (log out of one browser).
        Ids older than ``keep_s`` go: their sessions have expired anyway."""
        key = user_key(username)
        oldest = time.time() - keep_s

        def add(u: User) -> User:
            kept = tuple(s for s in u.ended_sessions if s != session_id and id_time(s) > oldest)
            return msgspec.structs.replace(u, ended_sessions=(*kept, session_id))

        user, _ = await self.t.modify(TABLE_USERS, PK_USERS, key, User, add, f"user {key}")
        return user

    async def end_sessions(self, username: str, at: float) -> User:
        """Void every session of ``username`` issued at or before ``at`` (log out everywhere)."""
        key = user_key(username)
        user, _ = await self.t.modify(
            TABLE_USERS, PK_USERS, key, User,
            lambda u: msgspec.structs.replace(u, sessions_after=max(u.sessions_after, at)),
            f"user {key}",
        )
        return user


class RoomRepo:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    async def create(self, room: Room) -> Room:
        """Store a new room; Conflict when a room of that name exists."""
        key = room_key(room.name)
        await self.t.insert(TABLE_ROOMS, to_entity(room, PK_ROOMS, key), f"room {room.name}")
        log.info("room.created", room=room.name, public=room.public)
        return room

    async def ensure(self, rooms: Iterable[Room]) -> int:
        """Create the rooms that do not exist yet (the seed); returns how many were new."""
        created = 0
        for room in rooms:
            try:
                await self.create(room)
                created += 1
            except Conflict:
                continue
        return created

    async def get(self, name: str) -> Room:
        key = room_key(name)
        entity = await self.t.get(TABLE_ROOMS, PK_ROOMS, key, f"room {name}")
        if entity is None:
            raise NotFound(f"no room named {name!r}")
        return from_entity(entity, Room)

    async def list(self, *, limit: int = 200, token: str | None = None) -> Page[Room]:
        entities, nxt = await self.t.page(
            TABLE_ROOMS, "PartitionKey eq @pk", "list rooms", limit=limit, token=token,
            parameters={"pk": PK_ROOMS}, partition=PK_ROOMS,
        )
        return Page(items=[from_entity(e, Room) for e in entities], next=nxt)

    async def all(self) -> builtins.list[Room]:
        entities = await self.t.query(
            TABLE_ROOMS, "PartitionKey eq @pk", "list rooms", parameters={"pk": PK_ROOMS}
        )
        return [from_entity(e, Room) for e in entities]

    async def modify(self, name: str, change: Callable[[Room], Room]) -> Room:
        """Read-modify-write the room (ETag retries, so a counter written meanwhile is
        kept; ``change`` must be pure). NotFound when there is none."""
        key = room_key(name)
        room, etag = await self.t.modify(TABLE_ROOMS, PK_ROOMS, key, Room, change,
                                         f"room {name}")
        return msgspec.structs.replace(room, etag=etag)

    async def touch(
        self, name: str, *, threads: int = 0, comments: int = 0, at: float | None = None,
        known: Room | None = None, answers: Sequence[tuple[str, float]] = (),
    ) -> Room:
        """Count new threads/comments and move ``last_activity`` forward (never back);
        ``answers`` are the bots' answers counted, (persona, when), kept for an hour in
        ``bot_recent``; ``known`` is the row as the caller last saw it (with its ETag):
        tried first, without a read."""
        when = time.time() if at is None else at
        key = room_key(name)

        def change(room: Room) -> Room:
            return msgspec.structs.replace(
                room,
                thread_count=room.thread_count + threads,
                comment_count=room.comment_count + comments,
                last_activity=max(room.last_activity, when),
                bot_recent=_recent(room.bot_recent, answers, time.time())
                if answers or room.bot_recent else room.bot_recent,
            )

        if known is not None and known.etag:
            updated = change(known)
            try:
                etag = await self.t.update(TABLE_ROOMS, to_entity(updated, PK_ROOMS, key),
                                           f"room {name}", etag=known.etag)
                return msgspec.structs.replace(updated, etag=etag)
            except Conflict:
                pass  # changed since: read it again
        room, etag = await self.t.modify(TABLE_ROOMS, PK_ROOMS, key, Room, change,
                                         f"room {name}")
        return msgspec.structs.replace(room, etag=etag)


class Standing(msgspec.Struct, frozen=True, kw_only=True):
    """A person's rows for one room and for the site (either may be missing)."""

    room: Membership | None = None
    site: Membership | None = None


class MemberRepo:
    def __init__(self, tables: Tables) -> None:
        self.t = tables

    async def join(self, room: str, username: str, role: Role = "member") -> Membership:
        """Make ``username`` a member with ``role``; one who is a member already keeps
        the role they have (an owner who joins or is added stays an owner): roles change
        only through :meth:`set_role`."""
        existing = await self.get(room, username)
        if existing is not None:
            return existing
        member = Membership(room=room_key(room), username=user_key(username), role=role,
                            joined_at=time.time())
        await self._write(member)
        log.info("room.joined", room=member.room, username=member.username, role=role)
        return member

    async def set_role(self, room: str, username: str, role: Role) -> Membership:
        """Give a member another role; NotFound when ``username`` is not a member."""
        existing = await self.get(room, username)
        if existing is None:
            raise NotFound(f"u/{username} is not a member of r/{room}")
        member = msgspec.structs.replace(existing, role=role)
        await self._write(member)
        log.info("room.role_changed", room=member.room, username=member.username, role=role)
        return member

    async def assign(self, room: str, username: str, role: Role, *, by: str = "",
                     reason: str = "") -> tuple[Membership | None, Membership]:
        """Give ``username`` ``role`` in ``room`` whatever they had (a ban replaces a
        membership, an appointment makes a member): (the row before, the row now)."""
        before = await self.get(room, username)
        member = Membership(room=room_key(room), username=user_key(username), role=role,
                            joined_at=time.time(), by=by, reason=reason)
        await self._write(member)
        log.info("room.role_changed", room=member.room, username=member.username, role=role,
                 by=by or "-")
        return before, member

    async def standing(self, room: str, username: str) -> Standing:
        """``username``'s row in ``room`` and in the site, in one query (their partition).
        The user's partition is written first and deleted last (see :meth:`_write`): it may
        tell of a membership a moment before and after the room's row does."""
        r, u = room_key(room), user_key(username)
        entities = await self.t.query(
            TABLE_MEMBERS, "PartitionKey eq @pk and ( RowKey eq @room or RowKey eq @site )",
            f"standing of {u}", parameters={"pk": f"u.{u}", "room": r, "site": SITE_ROOM},
        )
        rows = {str(e["RowKey"]): from_entity(e, Membership) for e in entities}
        return Standing(room=rows.get(r) if r != SITE_ROOM else None, site=rows.get(SITE_ROOM))

    async def _write(self, member: Membership) -> None:
        """Both rows; the room's row last (it is what "is X a member" reads)."""
        r, u = member.room, member.username
        await self.t.upsert(TABLE_MEMBERS, to_entity(member, f"u.{u}", r), f"membership {u}")
        await self.t.upsert(TABLE_MEMBERS, to_entity(member, f"r.{r}", u), f"membership {u}")

    async def leave(self, room: str, username: str) -> bool:
        """Remove a membership; False when there was none."""
        r, u = room_key(room), user_key(username)
        was = await self.t.delete(TABLE_MEMBERS, f"r.{r}", u, f"membership {u}")
        await self.t.delete(TABLE_MEMBERS, f"u.{u}", r, f"membership {u}")
        if was:
            log.info("room.left", room=r, username=u)
        return was

    async def get(self, room: str, username: str) -> Membership | None:
        r, u = room_key(room), user_key(username)
        entity = await self.t.get(TABLE_MEMBERS, f"r.{r}", u, f"membership {u}")
        return None if entity is None else from_entity(entity, Membership)

    async def is_member(self, room: str, username: str) -> bool:
        """Whether ``username`` is a member of ``room`` (a ban is no membership)."""
        member = await self.get(room, username)
        return member is not None and member.role != "banned"

    async def of_room(self, room: str, *, limit: int = 1000) -> list[Membership]:
        r = room_key(room)
        entities = await self.t.query(
            TABLE_MEMBERS, "PartitionKey eq @pk", f"members of {r}",
            parameters={"pk": f"r.{r}"}, limit=limit,
        )
        return [from_entity(e, Membership) for e in entities]

    async def staff(self, room: str) -> list[Membership]:
        """``room``'s owners and moderators (the service filters: one short answer however
        many members the room has)."""
        r = room_key(room)
        entities = await self.t.query(
            TABLE_MEMBERS, "PartitionKey eq @pk and ( role eq @owner or role eq @mod )",
            f"staff of {r}", parameters={"pk": f"r.{r}", "owner": "owner", "mod": "moderator"},
        )
        return [from_entity(e, Membership) for e in entities]

    async def of_user(self, username: str, *, limit: int = 1000) -> list[Membership]:
        """``username``'s rows in rooms (bans included; the site's row left out)."""
        u = user_key(username)
        entities = await self.t.query(
            TABLE_MEMBERS, "PartitionKey eq @pk", f"rooms of {u}",
            parameters={"pk": f"u.{u}"}, limit=limit,
        )
        return [m for m in (from_entity(e, Membership) for e in entities)
                if m.room != SITE_ROOM]


RECENT_KEEP = 200
"""Bot answers a room's row keeps (the hourly caps are far below it)."""
RECENT_S = 3600.0


def _recent(recent: tuple[tuple[str, float], ...], answers: Sequence[tuple[str, float]],
            now: float) -> tuple[tuple[str, float], ...]:
    """``recent`` with ``answers`` added: the last hour only, oldest first, at most
    :data:`RECENT_KEEP`."""
    kept = sorted(((n, t) for n, t in (*recent, *answers) if t >= now - RECENT_S),
                  key=lambda pair: pair[1])
    return tuple(kept[-RECENT_KEEP:])
