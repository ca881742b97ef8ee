"""Accounts: register, log in, log out.

Passwords are hashed with argon2 (in a worker thread: hashing is slow on purpose). The
session is Litestar's client-side cookie, encrypted and authenticated with AES-GCM, so
a tampered cookie reads as no session at all; logging out voids every copy of it
(:mod:`playhouse.web.sessions`). Forms carry Litestar's CSRF token.

Login attempts are limited per address; wrong passwords strictly per (address, user
name), so someone guessing is slowed without locking the name's owner out, and loosely
per user name, a ceiling past which only an address with no recent failure for that name
may still try. A correct password gives back what its attempt took. Registrations are
limited per address.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from dataclasses import dataclass
from math import ceil
from typing import Annotated, Any

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from litestar import Request, get, post
from litestar.middleware.session.client_side import ClientSideSessionBackend, CookieBackendConfig
from litestar.params import Parameter
from litestar.response import Redirect, Template

from playhouse import ids
from playhouse.errors import Conflict, InvalidInput
from playhouse.storage.models import User
from playhouse.web.context import (
    SESSION_ID,
    SESSION_ISSUED,
    SESSION_MAX_AGE_S,
    SESSION_USER,
    client_ip,
    context_of,
    current_user,
)
from playhouse.web.forms import read_form
from playhouse.web.templating import page

log = structlog.get_logger()

USERNAME = re.compile(r"^[A-Za-z0-9_-]{3,24}$")
PASSWORD_MIN = 8
PASSWORD_MAX = 256
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist (same time as a real check);
    made on first use, not at import."""
    return _hasher.hash("not a real password, only for timing")


class _SessionBackend(ClientSideSessionBackend):
    """Litestar's cookie backend, reading any malformed cookie as no session.

    Litestar 2.25 suppresses a failed decryption but not a cookie whose (authenticated,
    unencrypted) expiry part was altered: that raised a JSON error and answered 500.
    """

    def load_data(self, data: list[bytes]) -> dict[str, Any]:
        try:
            return super().load_data(data)
        except Exception as exc:  # untrusted input: any parse failure means "no session"
            log.warning("session.rejected", reason=type(exc).__name__)
            return {}


@dataclass
class SessionConfig(CookieBackendConfig):
    """Encrypted, authenticated session cookie (AES-GCM), tamper-safe."""

    _backend_class = _SessionBackend


def safe_next(target: str | None) -> str:
    """Only same-site paths may be redirected to after logging in (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def check_new_account(username: str, password: str, reserved: set[str]) -> str | None:
    """The reason a registration is refused, or None."""
    if not USERNAME.match(username):
        return "user names are 3-24 letters, digits, '_' or '-'"
    if username.casefold() in reserved:
        return "that name belongs to a bot"
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        return f"passwords are {PASSWORD_MIN}-{PASSWORD_MAX} characters"
    if "\x00" in password:
        return "passwords cannot contain NUL"
    return None


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    return dict((await read_form(request)).items())


@get("/login", name="login")
async def login_page(
    request: Request[Any, Any, Any],
    target: Annotated[str | None, Parameter(query="next", max_length=500)] = None,
) -> Template:
    return page(request, "login.html", next=safe_next(target), error=None, username="")


@post("/login")
async def login(request: Request[Any, Any, Any]) -> Template | Redirect:
    ctx = context_of(request)
    form = await _form(request)
    username = form.get("username", "").strip()
    password = form.get("password", "")
    target = safe_next(form.get("next"))
    ip = client_ip(request)

    def refused(wait: float, why: str) -> Template:
        log.warning("login.limited", ip=ip, username=username[:40], why=why)
        return page(request, "login.html", status_code=429, next=target, username=username,
                    error=LIMITED[why].format(name=username, wait=max(1, ceil(wait))))

    wait = await ctx.limits.logins_per_ip.take(ip)
    if wait:
        return refused(wait, "address")
    # Only a possible name has buckets (junk names cannot fill the limiter's memory).
    counted = USERNAME.match(username) is not None
    pair = f"{ip} {username.casefold()}"
    by_user = False
    if counted:
        # The strict limit is per (address, name): it slows whoever guesses, not the owner.
        fresh = await ctx.limits.login_failures_per_client.untouched(pair)
        wait = await ctx.limits.login_failures_per_client.take(pair)
        if wait:
            return refused(wait, "client")
        # The per-name ceiling holds back a guess spread over many addresses; an address
        # with no recent failure for this name may still try (the owner's own device).
        wait = await ctx.limits.login_failures_per_user.take(username.casefold())
        by_user = not wait
        if wait and not fresh:
            return refused(wait, "user")
    user = None
    if counted:
        user = await ctx.storage.users.find(username)
    ok = await asyncio.to_thread(_verify, user.password_hash if user else None, password)
    if user is None or not ok or user.disabled:
        log.info("login.failed", username=username[:40], ip=ip)
        return page(request, "login.html", status_code=400, next=target, username=username,
                    error="wrong user name or password")
    # A correct password is not a failure: give back what the attempt took.
    await ctx.limits.login_failures_per_client.give_back(pair)
    if by_user:
        await ctx.limits.login_failures_per_user.give_back(username.casefold())
    start_session(request, user)
    log.info("login.succeeded", username=user.username)
    return Redirect(path=target)


LIMITED = {
    "address": "too many login attempts from your address; try again in {wait} s",
    "client": "too many wrong passwords for u/{name} from your address; try again in "
              "{wait} s (this does not lock u/{name} out elsewhere)",
    "user": "u/{name} has had too many wrong passwords from several places, and this device "
            "had one of them: try again in {wait} s, or log in from a device that has "
            "not failed recently",
}
"""Why a login attempt was held back, as the page says it."""


def start_session(request: Request[Any, Any, Any], user: User) -> None:
    """A new session for ``user``: its own id (to end it alone) and its issue time."""
    request.set_session({SESSION_USER: user.display_name, SESSION_ISSUED: time.time(),
                         SESSION_ID: ids.new_id()})


def _verify(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; without a hash (no such user) it checks against a
    dummy one, so both answers take as long."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


@get("/register", name="register")
async def register_page(request: Request[Any, Any, Any]) -> Template:
    return page(request, "register.html", error=None, username="")


@post("/register")
async def register(request: Request[Any, Any, Any]) -> Template | Redirect:
    ctx = context_of(request)
    form = await _form(request)
    username = form.get("username", "").strip()
    password = form.get("password", "")
    ip = client_ip(request)
    wait = await ctx.limits.registrations_per_ip.take(ip)
    if wait:
        return page(request, "register.html", status_code=429, username=username,
                    error=f"too many new accounts from here; try again in {wait:.0f} s")
    reserved = {name.casefold() for name in ctx.cast.personas}
    problem = check_new_account(username, password, reserved)
    if problem is None and password != form.get("password2", password):
        problem = "the two passwords differ"
    if problem is not None:
        return page(request, "register.html", status_code=400, username=username, error=problem)
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    try:
        user = await ctx.storage.users.create(User(
            username=username, display_name=username, password_hash=password_hash,
            created_at=time.time(),
        ))
    except (Conflict, InvalidInput):
        return page(request, "register.html", status_code=400, username=username,
                    error="that name is taken")
    start_session(request, user)
    log.info("account.registered", username=user.username, ip=ip)
    return Redirect(path="/")


@post("/logout")
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    """End this session and every copy of it: a cookie copied before logging out no longer
    logs anyone in. With ``everywhere`` set, end all of the user's sessions (every
    browser). The user's open sockets of those sessions, on every instance, are closed."""
    ctx = context_of(request)
    user = current_user(request)
    session_id = request.session.get(SESSION_ID) if isinstance(request.session, dict) else None
    everywhere = bool((await _form(request)).get("everywhere"))
    request.clear_session()
    if user:
        if everywhere or not isinstance(session_id, str):  # (sessions from before ids)
            everywhere = True
            await ctx.storage.users.end_sessions(user, time.time())
            ctx.broadcast.logged_out(user)
        else:
            await ctx.storage.users.end_session(user, session_id, keep_s=SESSION_MAX_AGE_S)
            ctx.broadcast.logged_out(user, session_id)
        ctx.sessions.forget(user)
        log.info("account.logged_out", username=user, everywhere=everywhere)
    return Redirect(path="/")


ROUTES = [login_page, login, register_page, register, logout]
