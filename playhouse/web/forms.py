"""Reading an HTML form strictly: what a form handler gets is the text the person typed.

Litestar decodes a URL-encoded body leniently: a percent-escape that is not UTF-8 becomes
U+FFFD and a raw byte a Latin-1 character, so the stored text silently differs from what
was sent. :func:`read_form` refuses such a form instead (``InvalidInput``: 400, with the
reason; nothing is stored). A multipart field that is not valid UTF-8 fails inside
Litestar, and :mod:`playhouse.web.errors` answers that ``UnicodeDecodeError`` the same way.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from litestar import Request
from litestar.datastructures import MultiDict
from litestar.enums import RequestEncodingType

from playhouse.errors import InvalidInput

NOT_UTF8 = "the form holds text that is not valid UTF-8: nothing was saved"


async def read_form(request: Request[Any, Any, Any]) -> MultiDict[str]:
    """The form's text fields (files are ignored), exactly as sent."""
    content_type, _ = request.content_type
    if content_type == RequestEncodingType.URL_ENCODED:
        body = await request.body()
        try:  # browsers escape every non-ASCII byte; a raw one must still be UTF-8
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                              encoding="utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise InvalidInput(NOT_UTF8) from exc
        return MultiDict(pairs)
    form = await request.form()
    return MultiDict([(k, v) for k, v in form.multi_items() if isinstance(v, str)])
