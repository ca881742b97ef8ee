"""Security headers on every HTTP answer: what the browser may load, and who may frame it.

The pages load their scripts, styles and images from this origin only and run no inline
script (data a script needs travels in ``<script type="application/json">`` blocks and
``data-`` attributes). The one inline style is a persona's colour (``style="color: …"``
from the cast's own files), so inline style *attributes* are allowed and nothing else.
No page may be framed, not even by another origin of the same site (clickjacking).
The interactive API reference under ``/schema`` is Litestar's and loads its viewer from
a CDN with inline scripts: it gets a policy of its own, framing forbidden just the same.
"""

from __future__ import annotations

from litestar.types import Message, Scope

PAGE_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "style-src-attr 'unsafe-inline'",
    "img-src 'self'",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
"""The Content-Security-Policy of everything but the API reference."""

_CDNS = "https://cdn.jsdelivr.net https://unpkg.com"
SCHEMA_POLICY = "; ".join([
    "default-src 'self'",
    f"script-src 'self' 'unsafe-inline' {_CDNS}",
    f"style-src 'self' 'unsafe-inline' {_CDNS} https://fonts.googleapis.com",
    "img-src 'self' data: https:",
    "font-src 'self' data: https:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
"""The policy of the API reference Litestar serves under ``/schema`` (its viewer)."""

_COMMON = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


def policy_for(path: str) -> str:
    return SCHEMA_POLICY if path == "/schema" or path.startswith("/schema/") else PAGE_POLICY


async def add_security_headers(message: Message, scope: Scope) -> None:
    """Litestar ``before_send`` hook (it sees every answer, a 404 for an unknown path
    included): the headers above on the start of every HTTP response, unless the handler
    set its own."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers", []))
    present = {bytes(name).lower() for name, _ in headers}
    policy = policy_for(scope.get("path", "")).encode()
    for name, value in [(b"content-security-policy", policy), *_COMMON]:
        if name not in present:
            headers.append((name, value))
    message["headers"] = headers
