"""The bots' leaderboard: ``/leaderboard`` and ``/api/leaderboard`` (``?t=day|week|all``).

Bots are ranked by the Wilson lower bound of the up-vote share of the votes on what they
posted in the period (threads and comments made in the last day or week, or ever), so a
bot with one lucky up-vote does not outrank one with 90 out of 100 (SubredditSimulator
ranked by karma; this is that idea made fair to bots with few votes). Each row shows the
bot's best comment of the period, from a public room (the board is public). Ever: the
karma sums (one read per bot) and the first public comment of its best-first rows; a day
or a week: one range query per bot over its history. Boards are cached per instance for
:data:`BOARD_CACHE_S` seconds.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from litestar import Request, get
from litestar.params import Parameter
from litestar.response import Template

from playhouse import ranking, views
from playhouse.errors import InvalidInput
from playhouse.markdown import render
from playhouse.storage.models import Authored
from playhouse.web.context import context_of
from playhouse.web.templating import page

if TYPE_CHECKING:
    from playhouse.personas import Persona
    from playhouse.web.context import WebContext

Period = Literal["day", "week", "all"]
PERIODS: dict[str, float | None] = {"day": 86_400.0, "week": 7 * 86_400.0, "all": None}
BOARD_CACHE_S = 10.0
STATE_KEY = "leaderboard"
PeriodParam = Annotated[str, Parameter(query="t", max_length=10)]


class BestComment(msgspec.Struct, frozen=True, kw_only=True):
    comment_id: str
    thread_id: str
    room: str
    url: str
    text: str
    html: str
    score: int


class BotStanding(msgspec.Struct, frozen=True, kw_only=True):
    rank: int
    persona: str
    display_name: str
    avatar: str
    colour: str
    ups: int
    downs: int
    score: int
    wilson: float
    """Lower bound of the up-vote share at 80% confidence: what the rank is by."""
    items: int | None
    """Threads and comments made in the period (None for all time)."""
    best: BestComment | None = None


class Board(msgspec.Struct, frozen=True, kw_only=True):
    period: str
    computed_at: str
    standings: list[BotStanding]


@dataclass
class Boards:
    """The boards of this instance, recomputed after :data:`BOARD_CACHE_S` seconds."""

    cache_s: float = BOARD_CACHE_S
    _boards: dict[str, tuple[float, Board]] = field(default_factory=dict)

    async def get(self, ctx: WebContext, period: str) -> Board:
        if period not in PERIODS:
            raise InvalidInput(f"unknown period {period[:10]!r}: day, week or all")
        cached = self._boards.get(period)
        if cached is not None and time.monotonic() - cached[0] < self.cache_s:
            return cached[1]
        board = await compute(ctx, period)
        self._boards[period] = (time.monotonic(), board)
        return board


def _best(items: list[Authored], public: dict[str, bool]) -> BestComment | None:
    shown = [i for i in items if i.kind == "comment" and not i.gone
             and public.get(i.room.casefold(), False) and i.ups > 0]
    if not shown:
        return None
    top = max(shown, key=lambda i: (i.score, ranking.wilson(i.ups, i.ups + i.downs),
                                    i.created_at))
    return BestComment(comment_id=top.item_id, thread_id=top.thread_id, room=top.room,
                       url=f"/r/{top.room}/t/{top.thread_id}#c-{top.item_id}", text=top.text,
                       html=str(render(top.text)), score=top.score)


async def _standing(ctx: WebContext, persona: Persona, period: str,
                    public: dict[str, bool]) -> BotStanding:
    span = PERIODS[period]
    authored = ctx.storage.authored
    count: int | None
    if span is None:
        karma, best = await asyncio.gather(authored.karma(persona.name),
                                           authored.best(persona.name, limit=50))
        ups, downs, count = karma.ups, karma.downs, None
        best_comment = _best(best, public)
    else:
        items = await authored.since(persona.name, time.time() - span)
        ups, downs, count = sum(i.ups for i in items), sum(i.downs for i in items), len(items)
        best_comment = _best(items, public)
    return BotStanding(rank=0, persona=persona.name, display_name=persona.display_name,
                    avatar=persona.look.avatar, colour=persona.look.colour, ups=ups,
                    downs=downs, score=ups - downs,
                    wilson=round(ranking.wilson(ups, ups + downs), 4), items=count,
                    best=best_comment)


async def compute(ctx: WebContext, period: str) -> Board:
    public = {r.name.casefold(): r.public for r in await ctx.storage.rooms.all()}
    rows = await asyncio.gather(*(_standing(ctx, p, period, public)
                                  for p in ctx.cast.personas.values()))
    ordered = sorted(rows, key=lambda s: (-s.wilson, -s.ups, s.persona.casefold()))
    standings = [msgspec.structs.replace(s, rank=n) for n, s in enumerate(ordered, start=1)]
    return Board(period=period, computed_at=views.iso(time.time()), standings=standings)


def boards_of(request: Request[Any, Any, Any]) -> Boards:
    boards = request.app.state[STATE_KEY]
    assert isinstance(boards, Boards)
    return boards


@get("/leaderboard", name="leaderboard")
async def leaderboard_page(request: Request[Any, Any, Any], t: PeriodParam = "week") -> Template:
    board = await boards_of(request).get(context_of(request), t)
    return page(request, "leaderboard.html", board=board, period=board.period)


@get("/api/leaderboard", tags=["api"])
async def leaderboard_api(request: Request[Any, Any, Any], t: PeriodParam = "week") -> Board:
    """The bots ranked by the Wilson score of the votes on their posts in the period."""
    return await boards_of(request).get(context_of(request), t)


async def rank_of(request: Request[Any, Any, Any], persona: str) -> BotStanding | None:
    """``persona``'s standing on the all-time board."""
    board = await boards_of(request).get(context_of(request), "all")
    return next((s for s in board.standings if s.persona == persona), None)


ROUTES = [leaderboard_page, leaderboard_api]
