"""Profiles: ``/u/<name>`` for a person, a persona page for a bot.

Both show the account's threads and comments newest first (its history,
:mod:`playhouse.storage.authored`: one range query per page, never a scan), its karma and
its rooms. A private room's items and the room itself are shown only to its members. A
bot's page adds who it is: display name, avatar, bio, what it was trained on (the
persona's description, model and tag grammar), when it is awake (its active hours,
shown in the viewer's time zone by ``why.js``, as everywhere) and its place on the leaderboard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request, get
from litestar.response import Template

from playhouse import views
from playhouse.errors import NotFound
from playhouse.storage.models import Authored, Page
from playhouse.web import leaderboard
from playhouse.web.context import context_of, current_user
from playhouse.web.pages import Token
from playhouse.web.templating import page

if TYPE_CHECKING:
    from playhouse.web.context import WebContext

PAGE_SIZE = 25
MAX_READS = 4
"""Pages of history read to fill one page when private items are left out."""


async def _visibility(ctx: WebContext, viewer: str | None) -> tuple[dict[str, bool], set[str]]:
    """Room key → public, and the rooms ``viewer`` is a member of."""
    rooms = {r.name.casefold(): r.public for r in await ctx.storage.rooms.all()}
    mine: set[str] = set()
    if viewer is not None:
        mine = {m.room.casefold() for m in await ctx.storage.members.of_user(viewer)}
    return rooms, mine


def _visible(room: str, rooms: dict[str, bool], mine: set[str]) -> bool:
    key = room.casefold()
    return key in rooms and (rooms[key] or key in mine)


async def history(ctx: WebContext, name: str, token: str | None, rooms: dict[str, bool],
                  mine: set[str]) -> Page[Authored]:
    """A page of ``name``'s items that the viewer may see (private rooms left out)."""
    shown: list[Authored] = []
    for _ in range(MAX_READS):
        listed = await ctx.storage.authored.page(name, limit=PAGE_SIZE, token=token)
        shown += [i for i in listed.items if not i.gone and _visible(i.room, rooms, mine)]
        token = listed.next
        if token is None or len(shown) >= PAGE_SIZE // 2:
            break
    return Page(items=shown, next=token)


@get("/u/{name:str}", name="profile")
async def profile(request: Request[Any, Any, Any], name: str, token: Token = None) -> Template:
    ctx = context_of(request)
    viewer = current_user(request)
    persona = next((p for p in ctx.cast.personas.values()
                    if p.name.casefold() == name.casefold()), None)
    if persona is None:
        user = await ctx.storage.users.find(name)
        if user is None:
            raise NotFound(f"no one is called u/{name}")
        shown_name = user.display_name
    else:
        shown_name = persona.name
    rooms, mine = await _visibility(ctx, viewer)
    items = await history(ctx, shown_name, token, rooms, mine)
    karma = await ctx.storage.authored.karma(shown_name)
    context: dict[str, Any] = {"who": shown_name, "items": items.items, "next_page": items.next,
                               "karma": karma, "persona": None, "standing": None}
    if persona is None:
        joined = await ctx.storage.members.of_user(shown_name)
        context["rooms"] = sorted({m.room for m in joined if _visible(m.room, rooms, mine)},
                                  key=str.casefold)
    else:
        every = await ctx.storage.rooms.all()
        lives = {r.name for r in every if persona.name in views.room_bots(r, ctx.cast)}
        context["rooms"] = sorted((r for r in lives if _visible(r, rooms, mine)),
                                  key=str.casefold)
        context["persona"] = persona
        context["standing"] = await leaderboard.rank_of(request, persona.name)
        context["board_size"] = len(ctx.cast.personas)
    return page(request, "profile.html", **context)


ROUTES = [profile]
