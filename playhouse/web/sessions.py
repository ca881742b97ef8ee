"""Sessions a user has ended stay ended, copied cookies included.

The session is a client-side cookie (encrypted and authenticated, see
:mod:`playhouse.web.auth`), so clearing it at logout only clears the browser's copy. Logging
out also records the time on the user's row (``User.sessions_after``); this middleware,
inside the session middleware, drops any session issued at or before that time, or of a
user who is disabled or gone, before a handler sees it. Rows are cached per instance for
:data:`CACHE_S` seconds: another instance honours a logout within that time, this one at
once. When storage cannot be read, the last row read (or the session as it is) is used:
an outage does not log everyone out.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from playhouse.errors import NotFound, PlayhouseError
from playhouse.storage import Storage
from playhouse.web.context import SESSION_ISSUED, SESSION_USER

log = structlog.get_logger()

CACHE_S = 5.0


class SessionGuard:
    """Checks each request's session against its user's row (cached briefly)."""

    def __init__(self, storage: Storage, *, cache_s: float = CACHE_S) -> None:
        self.storage = storage
        self.cache_s = cache_s
        self._rows: dict[str, tuple[float, float | None]] = {}
        """user name (casefolded) → (read at, sessions_after; None: no such user, or
        disabled)."""

    def forget(self, username: str) -> None:
        self._rows.pop(username.casefold(), None)

    async def _voided_before(self, username: str) -> float | None:
        key = username.casefold()
        now = time.monotonic()
        cached = self._rows.get(key)
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1]
        try:
            user = await self.storage.users.get(username)
            after: float | None = None if user.disabled else user.sessions_after
        except NotFound:
            after = None
        except PlayhouseError as exc:
            log.warning("session.check_failed", reason=str(exc))
            return cached[1] if cached is not None else 0.0
        if len(self._rows) > 10_000:
            self._rows.clear()
        self._rows[key] = (now, after)
        return after

    async def valid(self, session: dict[str, Any]) -> bool:
        user = session.get(SESSION_USER)
        if not isinstance(user, str) or not user:
            return True  # anonymous: nothing to check
        issued = session.get(SESSION_ISSUED)
        issued_at = float(issued) if isinstance(issued, int | float) else 0.0
        after = await self._voided_before(user)
        return after is not None and issued_at > after

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] in (ScopeType.HTTP, ScopeType.WEBSOCKET):
                session = scope.get("session")
                if isinstance(session, dict) and not await self.valid(session):
                    log.info("session.void", username=str(session.get(SESSION_USER))[:40])
                    scope["session"] = {}
            await app(scope, receive, send)

        return guarded
