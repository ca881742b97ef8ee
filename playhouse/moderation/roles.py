"""Who may do what: roles ranked, and the refusals that name the reason. No I/O.

The ranks, lowest first: banned (from the room or the site), nobody in particular, a
member, a room's moderator, its owner, a site admin, the operator (``playhouse admin``
at the machine). A moderator (or anyone above) may moderate the room: remove and
restore, lock, approve what the word filter held, ban people who rank below them. An
owner also appoints and dismisses moderators and edits the room. Site admins moderate
every room and ban from the whole site; the operator also grants and revokes admins.
A site admin is one whose site membership (:data:`~playhouse.constants.SITE_ROOM`) says
``admin``, or one named in ``web.admins``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from playhouse.errors import Banned, Forbidden
from playhouse.storage.accounts import Standing
from playhouse.storage.models import Membership, Role, Room

BANNED: Final = -1
NOBODY: Final = 0
MEMBER: Final = 1
MODERATOR: Final = 2
OWNER: Final = 3
ADMIN: Final = 4
OPERATOR: Final = 5
ROLE_RANKS: dict[Role | None, int] = {"banned": BANNED, None: NOBODY, "member": MEMBER,
                                      "moderator": MODERATOR, "owner": OWNER}
RANK_NAMES = {MEMBER: "a member", MODERATOR: "a moderator", OWNER: "an owner",
              ADMIN: "a site admin", OPERATOR: "the operator"}
OPERATOR_NAME: Final = "(operator)"
"""How the mod log names ``playhouse admin`` (no user name has parentheses)."""


@dataclass(frozen=True, slots=True)
class Powers:
    """What one person may do in one room (``room`` None: on the site alone)."""

    name: str
    room: str | None
    role: Role | None
    """Their role in ``room`` (None: none)."""
    site_admin: bool = False
    site_banned: Membership | None = None
    operator: bool = False

    @classmethod
    def of(cls, name: str, room: str | None, standing: Standing,
           admins: Collection[str] = ()) -> Powers:
        """``name``'s powers from their standing (``admins``: the names in ``web.admins``)."""
        site = standing.site
        listed = name.casefold() in {a.casefold() for a in admins}
        return cls(
            name=name, room=room,
            role=standing.room.role if standing.room is not None else None,
            site_admin=(site is not None and site.role == "admin") or listed,
            site_banned=site if site is not None and site.role == "banned" else None,
        )

    @classmethod
    def the_operator(cls) -> Powers:
        return cls(name=OPERATOR_NAME, room=None, role=None, site_admin=True, operator=True)

    @property
    def rank(self) -> int:
        if self.operator:
            return OPERATOR
        if self.site_banned is not None:
            return BANNED
        if self.site_admin:
            return ADMIN
        return ROLE_RANKS.get(self.role, NOBODY)

    @property
    def moderates(self) -> bool:
        return self.rank >= MODERATOR

    @property
    def owns(self) -> bool:
        return self.rank >= OWNER

    def may_act_on(self, target: Powers) -> bool:
        """Whether these powers reach ``target`` (a ban, a dismissal): only those who rank
        below, the banned included."""
        return target.rank < self.rank


def describe_rank(powers: Powers) -> str:
    """``a moderator of r/X``, ``a site admin`` ... for refusals."""
    name = RANK_NAMES.get(powers.rank, "nobody in particular")
    if powers.rank in (MEMBER, MODERATOR, OWNER) and powers.room is not None:
        return f"{name} of r/{powers.room}"
    return name


def refuse_post(room: Room, standing: Standing) -> None:
    """Raise what keeps someone of ``standing`` from posting, commenting, voting or
    calling a bot in ``room`` (a ban of the site or the room, a private room they are not
    a member of); nothing when they may."""
    site = standing.site
    if site is not None and site.role == "banned":
        raise Banned(f"you are banned from the site{_because(site.reason)}", site=True)
    mine = standing.room
    if mine is not None and mine.role == "banned":
        raise Banned(f"you are banned from r/{room.name}{_because(mine.reason)}: you can "
                     "read it, not post, comment or call bots there")
    if not room.public and mine is None:
        raise Forbidden(f"r/{room.name} is private: only its members can post there")


def _because(reason: str) -> str:
    return f" ({reason})" if reason else ""
