"""One place that turns playhouse errors into HTTP answers: a page, or JSON under /api."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException
from litestar.response import Template
from litestar.types import ExceptionHandlersMap

from playhouse.errors import PlayhouseError
from playhouse.web.forms import NOT_UTF8
from playhouse.web.templating import page

log = structlog.get_logger()



def _answer(request: Request[Any, Any, Any], status: int, reason: str) -> Response[Any]:
    if request.url.path.startswith(("/api", "/schema")) or "text/html" not in request.headers.get(
        "accept", ""
    ):
        return Response({"status_code": status, "detail": reason}, status_code=status,
                        media_type=MediaType.JSON)
    template: Template = page(request, "error.html", status_code=status, status=status,
                              reason=reason)
    return template


def on_playhouse_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # The status is the error class's own (errors.CODES): a login asked for is a 401,
    # a rate limit a 429, storage out of reach a 503.
    status = exc.status if isinstance(exc, PlayhouseError) else 500
    if status >= 500:
        log.warning("request.failed", path=request.url.path, reason=str(exc))
    return _answer(request, status, str(exc))


def on_http_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, HTTPException)
    return _answer(request, exc.status_code, str(exc.detail))


def on_bad_encoding(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Text in a request that is not valid UTF-8 (a multipart field, say): the sender's
    mistake, refused with the reason (never stored as replacement characters)."""
    return _answer(request, 400, NOT_UTF8)


HANDLERS: ExceptionHandlersMap = {PlayhouseError: on_playhouse_error, HTTPException: on_http_error,
                                  UnicodeDecodeError: on_bad_encoding}
