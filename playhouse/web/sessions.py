"""Sessions a user has ended stay ended, copied cookies included.

The session is a client-side cookie (encrypted and authenticated, see
:mod:`playhouse.web.auth`), so clearing it at logout only clears the browser's copy. So
logging out also writes to the user's row: the session's own id (``User.ended_sessions``)
when logging out of one browser, or the time (``User.sessions_after``) when logging out
everywhere. This middleware, inside the session middleware, drops a session that was
ended either way, is older than :data:`~playhouse.web.context.SESSION_MAX_AGE_S`, or
belongs to a user who is disabled or gone, before a handler sees it. Rows are cached per
instance for :data:`CACHE_S` seconds: another instance honours a logout within that time,
this one at once. When storage cannot be read, the last row read (or the session as it
is) is used: an outage does not log everyone out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from playhouse.errors import NotFound, PlayhouseError
from playhouse.storage import Storage
from playhouse.storage.models import User
from playhouse.web.context import SESSION_ID, SESSION_ISSUED, SESSION_MAX_AGE_S, SESSION_USER

log = structlog.get_logger()

CACHE_S = 5.0


@dataclass(frozen=True, slots=True)
class _Row:
    read_at: float
    after: float
    ended: frozenset[str]


_UNKNOWN = _Row(0.0, 0.0, frozenset())
"""Storage could not be read and nothing is cached: the session stands."""


class SessionGuard:
    """Checks each request's session against its user's row (cached briefly)."""

    def __init__(
        self, storage: Storage, *, cache_s: float = CACHE_S,
        max_age_s: float = SESSION_MAX_AGE_S,
    ) -> None:
        self.storage = storage
        self.cache_s = cache_s
        self.max_age_s = max_age_s
        self._rows: dict[str, _Row] = {}
        """user name (casefolded) → what voids its sessions."""

    def forget(self, username: str) -> None:
        self._rows.pop(username.casefold(), None)

    async def _row(self, username: str) -> _Row:
        key = username.casefold()
        now = time.monotonic()
        cached = self._rows.get(key)
        if cached is not None and now - cached.read_at < self.cache_s:
            return cached
        try:
            user: User | None = await self.storage.users.get(username)
        except NotFound:
            user = None
        except PlayhouseError as exc:
            log.warning("session.check_failed", reason=str(exc))
            return cached if cached is not None else _UNKNOWN
        if user is None or user.disabled:  # every session is void
            row = _Row(now, float("inf"), frozenset())
        else:
            row = _Row(now, user.sessions_after, frozenset(user.ended_sessions))
        if len(self._rows) > 10_000:
            self._rows.clear()
        self._rows[key] = row
        return row

    async def valid(self, session: dict[str, Any]) -> bool:
        user = session.get(SESSION_USER)
        if not isinstance(user, str) or not user:
            return True  # anonymous: nothing to check
        issued = session.get(SESSION_ISSUED)
        issued_at = float(issued) if isinstance(issued, int | float) else 0.0
        if issued_at <= time.time() - self.max_age_s:
            return False
        row = await self._row(user)
        return issued_at > row.after and session.get(SESSION_ID) not in row.ended

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] in (ScopeType.HTTP, ScopeType.WEBSOCKET):
                session = scope.get("session")
                if isinstance(session, dict) and not await self.valid(session):
                    log.info("session.void", username=str(session.get(SESSION_USER))[:40])
                    scope["session"] = {}
            await app(scope, receive, send)

        return guarded
