"""The tags every thread grammar is written in (playhouse's and ssi-bot's share one set).

A post opens with ``<|soss …|>`` (text) or ``<|sols …|>`` (link), its title sits between
``<|sot|>`` and ``<|eot|>``, its body between ``<|sost|>`` and ``<|eost|>`` (a link's URL
between ``<|sol|>`` and ``<|eol|>``). A comment opens with ``<|sor …|>`` (a reply),
``<|soopr …|>`` (the post's author writes: "original post reply") or ``<|soocr …|>`` (the
author of the comment two levels up writes: "original comment reply") and closes with the
matching ``<|eor|>``, ``<|eoopr|>`` or ``<|eoocr|>``. ssi-bot's training lines end a whole
thread with ``<|eoss|>`` / ``<|eols|>`` and GPT-2's ``<|endoftext|>``.
"""

from __future__ import annotations

import re
from typing import Final

TITLE_START: Final = "<|sot|>"
TITLE_END: Final = "<|eot|>"
TEXT_START: Final = "<|sost|>"
TEXT_END: Final = "<|eost|>"
LINK_START: Final = "<|sol|>"
LINK_END: Final = "<|eol|>"
TEXT_THREAD_END: Final = "<|eoss|>"
LINK_THREAD_END: Final = "<|eols|>"
END_OF_TEXT: Final = "<|endoftext|>"
"""GPT-2's end-of-text token, written out at the end of ssi-bot's training lines."""

TEXT_POST: Final = "soss"
LINK_POST: Final = "sols"
REPLY: Final = "sor"
OP_REPLY: Final = "soopr"
OC_REPLY: Final = "soocr"
REPLY_KINDS: Final = (REPLY, OP_REPLY, OC_REPLY)

POST_END_TAGS: Final[tuple[str, ...]] = (TEXT_END, LINK_END)
"""The tags that close a post header."""

REPLY_END_TAGS: Final[tuple[str, ...]] = ("<|eor|>", "<|eoopr|>", "<|eoocr|>")
"""The tags that close a comment."""

THREAD_END_TAGS: Final[tuple[str, ...]] = (TEXT_THREAD_END, LINK_THREAD_END)
"""The tags that end an ssi-bot training line's thread."""

OPEN_PREFIXES: Final[tuple[str, ...]] = tuple(
    "<|" + kind for kind in (TEXT_POST, LINK_POST, *REPLY_KINDS)
)
"""The start of every open tag (an open tag may carry `` r/ROOM`` or `` u/NAME``)."""

ALL_TAGS: Final[tuple[str, ...]] = (
    TITLE_START,
    TITLE_END,
    TEXT_START,
    TEXT_END,
    LINK_START,
    LINK_END,
    *REPLY_END_TAGS,
    *OPEN_PREFIXES,
    "|>",
)
"""The playhouse grammar's strings to register as added tokens with a tokenizer.

The closed tags are whole tokens. An open tag carries a name (``<|sor u/NAME|>``), so it is
registered as its prefix (``<|soss``, ``<|sols``, ``<|sor``, ``<|soopr``, ``<|soocr``) plus the
shared closer ``|>``; the `` r/ROOM``/`` u/NAME`` in between is ordinary text. Escaped free
text never contains ``<|`` or ``|>``, so none of these can match inside user text.
"""


def end_tag(kind: str) -> str:
    """The end tag of an open tag's kind: ``sor`` → ``<|eor|>``."""
    return f"<|e{kind[1:]}|>"


_TAG_NAMES: Final = (
    "sot|eot|sost|eost|sol|eol|soss|sols|eoss|eols|sor|eor|soopr|eoopr|soocr|eoocr|endoftext"
)
FRAGMENT_RE: Final = re.compile(
    r"<\||\|>"  # the two halves of any tag
    r"|\b(?:soss|sols)\s*r/|\b(?:sor|soopr|soocr)\s*u/"  # the inside of an open tag
    r"|\b(?:sost|eost|soss|eoss|eols|soopr|eoopr|soocr|eoocr)\b"  # tag names, not words
    rf"|<(?:{_TAG_NAMES})\b|\|(?:{_TAG_NAMES})\b"  # a tag name after half a bracket
)
"""What generated text must not hold: any piece of a tag (no persona forges one)."""
