"""How free text (titles, bodies, comments, urls) is written inside a line, and read back.

Every codec keeps a line on one line and escapes ``<|`` and ``|>`` so that no one's text can
forge a tag: a ``|`` right after a ``<`` is written ``\\|`` and a ``>`` right after a ``|``
is written ``\\>`` (``<|>`` becomes ``<\\|\\>``). Escaped text therefore never holds ``<|``,
and a field always ends at the first ``<|`` after it starts. Each ``unescape`` scans left to
right and keeps any backslash sequence it does not know as it is (models write odd ones).

* :data:`PLAYHOUSE_CODEC`: ``\\`` becomes ``\\\\`` and a newline (``\\r\\n`` and ``\\r`` count as
  one) becomes the two characters ``\\n``. Read back: ``\\\\``, ``\\n``, ``\\|``, ``\\>``.
* :data:`PYTHON_REPR`: what ssi-bot writes for bodies and comments, ``repr(text)`` without
  its quotes (``\\\\``, ``\\'``, ``\\n``, ``\\r``, ``\\t``, ``\\xNN``, ``\\uNNNN``,
  ``\\UNNNNNNNN``), then the tag escapes. Read back: those, ``\\"``, ``\\|`` and ``\\>``.
* :data:`RAW`: what ssi-bot writes for titles, the text as it is. A newline becomes ``\\n``,
  the tag escapes apply, and a backslash is doubled only where it would otherwise be read as
  one of those escapes (before ``\\``, ``n``, ``|``, ``>`` or a newline), so an ordinary
  title is written exactly as ssi-bot writes it. Read back: ``\\\\``, ``\\n``, ``\\|``, ``\\>``.

``unescape(escape(text)) == text`` for every text (for :data:`PLAYHOUSE_CODEC` and :data:`RAW`
once ``\\r\\n`` and ``\\r`` are turned into ``\\n``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from playhouse.grammar.values import normalise_newlines


@dataclass(frozen=True)
class Codec:
    """A pair of functions: text into a line's field, and a field back into text."""

    name: str
    escape: Callable[[str], str]
    unescape: Callable[[str], str]


_TAG_ESCAPE_RE: Final = re.compile(r"(?<=<)\||(?<=\|)>")


def _escape_tags(text: str) -> str:
    return _TAG_ESCAPE_RE.sub(lambda m: "\\" + m.group(), text)


_SHORT_ESCAPE_RE: Final = re.compile(r"\\(.)", re.DOTALL)
_SHORT_ESCAPES: Final = {"\\": "\\", "n": "\n", "|": "|", ">": ">"}


def _unescape_short(text: str) -> str:
    return _SHORT_ESCAPE_RE.sub(lambda m: _SHORT_ESCAPES.get(m.group(1), m.group()), text)


def _escape_playhouse(text: str) -> str:
    text = normalise_newlines(text).replace("\\", "\\\\").replace("\n", "\\n")
    return _escape_tags(text)


PLAYHOUSE_CODEC: Final = Codec("playhouse", _escape_playhouse, _unescape_short)


def _escape_repr(text: str) -> str:
    return _escape_tags(repr(text)[1:-1])


_REPR_ESCAPE_RE: Final = re.compile(
    r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.DOTALL
)
_REPR_ESCAPES: Final = {
    "\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t", "|": "|", ">": ">",
}


def _repr_char(match: re.Match[str]) -> str:
    code = match.group(1)
    if len(code) > 1:
        value = int(code[1:], 16)
        return chr(value) if value <= 0x10FFFF else match.group()
    return _REPR_ESCAPES.get(code, match.group())


def _unescape_repr(text: str) -> str:
    return _REPR_ESCAPE_RE.sub(_repr_char, text)


PYTHON_REPR: Final = Codec("python-repr", _escape_repr, _unescape_repr)

_RAW_DOUBLED_RE: Final = re.compile(r"\\(?=[\\n|>\n])")


def _escape_raw(text: str) -> str:
    text = _RAW_DOUBLED_RE.sub(r"\\\\", normalise_newlines(text))
    return _escape_tags(text).replace("\n", "\\n")


RAW: Final = Codec("raw", _escape_raw, _unescape_short)
