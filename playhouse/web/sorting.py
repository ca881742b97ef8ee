"""The orders people choose: in the URL (``?sort=top&t=week``), remembered per person.

A page with ``sort`` in its URL shows that order and, for a logged-in person, remembers
it (their next visit without one uses it); a page without shows what they chose last,
or the default: hot for a room (top: of the day), best for a thread's comments. An
unknown order is a 400 with the choices, not a silent default.

A thread's comments are sorted here, in memory: the page reads them all anyway (one
partition), and their tallies in one more query. Siblings are ordered, the tree kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, get_args

import msgspec
import structlog
from litestar.params import Parameter

from playhouse import ranking
from playhouse.errors import InvalidInput, PlayhouseError
from playhouse.storage.models import CommentSort, Prefs, RoomSort, Tally, TopWindow

if TYPE_CHECKING:
    from playhouse.web.context import WebContext
    from playhouse.web.pages import Node

log = structlog.get_logger()

ROOM_SORTS: tuple[RoomSort, ...] = get_args(RoomSort)
WINDOWS: tuple[TopWindow, ...] = get_args(TopWindow)
COMMENT_SORTS: tuple[CommentSort, ...] = get_args(CommentSort)
SortParam = Annotated[str | None, Parameter(query="sort", max_length=20)]
WindowParam = Annotated[str | None, Parameter(query="t", max_length=10)]


def _choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise InvalidInput(f"unknown {what} {value[:20]!r}: one of {', '.join(choices)}")
    return value


async def _prefs(ctx: WebContext, user: str | None) -> Prefs:
    if user is None:
        return Prefs()
    try:
        return await ctx.storage.prefs.get(user)
    except PlayhouseError as exc:
        log.warning("prefs.unreadable", user=user, reason=str(exc))
        return Prefs()


async def _remember(ctx: WebContext, user: str | None, before: Prefs, after: Prefs) -> None:
    if user is None or before == after:
        return
    try:
        await ctx.storage.prefs.save(user, after)
    except PlayhouseError as exc:  # the page still shows the order asked for
        log.warning("prefs.unsaved", user=user, reason=str(exc))


async def room_order(ctx: WebContext, user: str | None, sort: str | None,
                     window: str | None) -> tuple[RoomSort, TopWindow]:
    prefs = await _prefs(ctx, user)
    if sort is None and window is None:
        return prefs.room_sort, prefs.window
    chosen = msgspec.structs.replace(
        prefs,
        room_sort=_choice(sort.lower(), ROOM_SORTS, "order") if sort else prefs.room_sort,
        window=_choice(window.lower(), WINDOWS, "period") if window else prefs.window,
    )
    await _remember(ctx, user, prefs, chosen)
    return chosen.room_sort, chosen.window


async def comment_order(ctx: WebContext, user: str | None, sort: str | None) -> CommentSort:
    prefs = await _prefs(ctx, user)
    if sort is None:
        return prefs.comment_sort
    chosen = msgspec.structs.replace(
        prefs, comment_sort=_choice(sort.lower(), COMMENT_SORTS, "comment order"))
    await _remember(ctx, user, prefs, chosen)
    return chosen.comment_sort


def comment_key(order: CommentSort, tally: Tally | None, created_at: float) -> tuple[float, ...]:
    ups, downs = (tally.ups, tally.downs) if tally is not None else (0, 0)
    if order == "best":
        return (-ranking.wilson(ups, ups + downs), -(ups - downs), created_at)
    if order == "top":
        return (-(ups - downs), created_at)
    if order == "new":
        return (-created_at,)
    if order == "old":
        return (created_at,)
    return (-ranking.controversy(ups, downs), -(ups + downs), created_at)


def sort_tree(nodes: list[Node], order: CommentSort, tallies: Mapping[str, Tally]) -> None:
    """Order every level of the tree in place."""
    nodes.sort(key=lambda n: comment_key(order, tallies.get(n.comment.comment_id),
                                         n.comment.created_at))
    for node in nodes:
        sort_tree(node.replies, order, tallies)
