"""Choosing whom you hear: muting bots and blocking people.

A person's muted bots and blocked people live on their user row (``User.muted``,
``User.blocked``). What they mute or block is hidden in their views (pages and their
sockets show it as a stub, its replies kept; a room's list leaves such threads out), a
muted bot is never called by their posts (:func:`playhouse.web.posting.decide_calls`),
and neither notifies them (:mod:`playhouse.web.inbox`). A change is published on their
user channel, so their open pages on every instance hide and call accordingly.

:class:`Viewer` is what a request knows of the person looking: read once per request
(:func:`viewer_of`), and kept by a socket for its life (updated by those events).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from litestar import Request, get, post
from litestar.response import Redirect, Template

from playhouse import views
from playhouse.constants import MUTED_MAX
from playhouse.errors import BadRequest, Conflict, LoginRequired, NotFound
from playhouse.storage.models import User
from playhouse.web.context import WebContext, context_of, current_user
from playhouse.web.forms import read_form
from playhouse.web.templating import page

log = structlog.get_logger()

VIEWER_KEY = "viewer"
"""Where a request keeps its :class:`Viewer` (``request.state``)."""


@dataclass(frozen=True)
class Viewer:
    """The person looking (None: anonymous) and what they chose not to see."""

    user: str | None = None
    muted: frozenset[str] = frozenset()
    """Persona names."""
    blocked: frozenset[str] = frozenset()
    """Canonical (lowercase) user names."""

    @classmethod
    def of(cls, user: str | None, row: User | None) -> Viewer:
        if user is None or row is None:
            return cls(user=user)
        return cls(user=user, muted=frozenset(row.muted), blocked=frozenset(row.blocked))

    def hides(self, author: str, is_bot: bool) -> str:
        """Why this viewer does not see what ``author`` wrote (``""``: they see it)."""
        return views.hidden_reason(author, is_bot, muted=self.muted, blocked=self.blocked)


async def load_viewer(ctx: WebContext, user: str | None) -> Viewer:
    if user is None:
        return Viewer()
    return Viewer.of(user, await ctx.storage.users.find(user))


async def viewer_of(request: Request[Any, Any, Any]) -> Viewer:
    """The request's viewer, read once per request."""
    known = request.state.get(VIEWER_KEY)
    if isinstance(known, Viewer):
        return known
    viewer = await load_viewer(context_of(request), current_user(request))
    request.state[VIEWER_KEY] = viewer
    return viewer


def _require(request: Request[Any, Any, Any]) -> str:
    user = current_user(request)
    if user is None:
        raise LoginRequired("log in first")
    return user


def _add(names: tuple[str, ...], name: str, what: str) -> tuple[str, ...]:
    if name in names:
        return names
    if len(names) >= MUTED_MAX:
        raise Conflict(f"you can {what} at most {MUTED_MAX}; undo one first")
    return (*names, name)


async def set_muted(ctx: WebContext, user: str, bot: str, *, mute: bool) -> User:
    """Mute (or unmute) the persona ``bot`` for ``user``; NotFound for no such bot."""
    persona = next((p for p in ctx.cast.personas if p.casefold() == bot.casefold()), None)
    if persona is None:
        raise NotFound(f"there is no bot named u/{bot[:64]}")

    def change(row: User) -> User:
        muted = (_add(row.muted, persona, "mute bots") if mute
                 else tuple(m for m in row.muted if m != persona))
        return _replace(row, muted=muted)

    row = await ctx.storage.users.change(user, change)
    log.info("bot.muted" if mute else "bot.unmuted", username=user, persona=persona)
    ctx.broadcast.prefs(user, row.muted, row.blocked)
    return row


async def set_blocked(ctx: WebContext, user: str, other: str, *, block: bool) -> User:
    """Block (or unblock) the person ``other`` for ``user``."""
    if ctx.is_persona(other):
        raise BadRequest(f"u/{other} is a bot: mute it instead")
    target = await ctx.storage.users.find(other)
    if target is None:
        raise NotFound(f"there is nobody named u/{other[:64]}")
    name = target.username
    if name == user.casefold():
        raise BadRequest("you cannot block yourself")

    def change(row: User) -> User:
        blocked = (_add(row.blocked, name, "block people") if block
                   else tuple(b for b in row.blocked if b != name))
        return _replace(row, blocked=blocked)

    row = await ctx.storage.users.change(user, change)
    log.info("user.blocked" if block else "user.unblocked", username=user, other=name)
    ctx.broadcast.prefs(user, row.muted, row.blocked)
    return row


def _replace(row: User, **changes: Any) -> User:
    return msgspec.structs.replace(row, **changes)


async def _next(request: Request[Any, Any, Any], fallback: str) -> str:
    """Where a form sends the person back: its ``next`` when it is a path of this site."""
    form = await read_form(request)
    target = form.get("next", "")
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return fallback


@post("/bots/{bot:str}/mute")
async def mute(request: Request[Any, Any, Any], bot: str) -> Redirect:
    """Mute a bot: hidden in your views, never called by your posts."""
    await set_muted(context_of(request), _require(request), bot, mute=True)
    return Redirect(path=await _next(request, "/settings"))


@post("/bots/{bot:str}/unmute")
async def unmute(request: Request[Any, Any, Any], bot: str) -> Redirect:
    await set_muted(context_of(request), _require(request), bot, mute=False)
    return Redirect(path=await _next(request, "/settings"))


@post("/u/{name:str}/block")
async def block(request: Request[Any, Any, Any], name: str) -> Redirect:
    """Block a person: their threads and comments are hidden from you and never notify
    you."""
    await set_blocked(context_of(request), _require(request), name, block=True)
    return Redirect(path=await _next(request, "/settings"))


@post("/u/{name:str}/unblock")
async def unblock(request: Request[Any, Any, Any], name: str) -> Redirect:
    await set_blocked(context_of(request), _require(request), name, block=False)
    return Redirect(path=await _next(request, "/settings"))


@get("/settings", name="settings")
async def settings_page(request: Request[Any, Any, Any]) -> Template | Redirect:
    """Your muted bots and blocked people, each with its undo; every other bot to mute."""
    user = current_user(request)
    if user is None:
        return Redirect(path="/login?next=/settings")
    ctx = context_of(request)
    viewer = await viewer_of(request)
    muted = sorted(viewer.muted)
    others = sorted(p for p in ctx.cast.personas if p not in viewer.muted)
    return page(request, "settings.html", muted=muted, blocked=sorted(viewer.blocked),
                others=others)


ROUTES = [mute, unmute, block, unblock, settings_page]
