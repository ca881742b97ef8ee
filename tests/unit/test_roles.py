"""Who may do what: ranks from a person's rows, and the refusals that name the reason."""

from __future__ import annotations

import pytest

from playhouse.constants import SITE_ROOM
from playhouse.errors import Banned, Forbidden
from playhouse.moderation.roles import (
    ADMIN,
    BANNED,
    MEMBER,
    MODERATOR,
    NOBODY,
    OWNER,
    Powers,
    describe_rank,
    refuse_post,
)
from playhouse.storage.accounts import Standing
from playhouse.storage.models import Membership, Role, Room


def row(room: str, role: Role, reason: str = "") -> Membership:
    return Membership(room=room, username="ann", role=role, joined_at=1.0, reason=reason)


def room(public: bool = True) -> Room:
    return Room(name="Tea", description="", public=public, default_bot=None, bots=(),
                created_by="olga", created_at=1.0, last_activity=1.0)


@pytest.mark.parametrize(("standing", "rank"), [
    (Standing(), NOBODY),
    (Standing(room=row("tea", "member")), MEMBER),
    (Standing(room=row("tea", "moderator")), MODERATOR),
    (Standing(room=row("tea", "owner")), OWNER),
    (Standing(room=row("tea", "banned")), BANNED),
    (Standing(room=row("tea", "member"), site=row(SITE_ROOM, "admin")), ADMIN),
    (Standing(room=row("tea", "owner"), site=row(SITE_ROOM, "banned")), BANNED),
])
def test_rank_comes_from_the_room_row_and_the_site_row(standing: Standing, rank: int) -> None:
    assert Powers.of("ann", "tea", standing).rank == rank


def test_an_admin_named_in_the_settings_is_one_without_a_row() -> None:
    assert Powers.of("Ann", "tea", Standing(), admins=("ann",)).site_admin
    assert Powers.of("bea", "tea", Standing(), admins=("ann",)).rank == NOBODY


def test_powers_reach_only_those_who_rank_below() -> None:
    mod = Powers.of("mia", "tea", Standing(room=row("tea", "moderator")))
    owner = Powers.of("olga", "tea", Standing(room=row("tea", "owner")))
    member = Powers.of("ann", "tea", Standing(room=row("tea", "member")))
    assert mod.may_act_on(member) and owner.may_act_on(mod)
    assert not mod.may_act_on(owner) and not mod.may_act_on(mod)
    assert Powers.the_operator().may_act_on(Powers.of("a", None, Standing(
        site=row(SITE_ROOM, "admin"))))
    assert describe_rank(owner) == "an owner of r/tea"


def test_a_ban_refuses_posting_with_its_reason() -> None:
    with pytest.raises(Banned, match=r"banned from r/Tea \(spam\)") as raised:
        refuse_post(room(), Standing(room=row("tea", "banned", "spam")))
    assert not raised.value.site
    with pytest.raises(Banned, match="banned from the site") as site:
        refuse_post(room(), Standing(site=row(SITE_ROOM, "banned")))
    assert site.value.site


def test_a_private_room_refuses_non_members_and_a_public_one_takes_anyone() -> None:
    with pytest.raises(Forbidden, match="private"):
        refuse_post(room(public=False), Standing())
    refuse_post(room(public=False), Standing(room=row("tea", "member")))
    refuse_post(room(), Standing())
