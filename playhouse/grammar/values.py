"""What the grammars write and read: posts, comments, parsed threads and posts, and the
checks every piece of generated text must pass whatever grammar it came in."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from playhouse.constants import COMMENT_MAX_CHARS
from playhouse.errors import Empty, InvalidCompletion, InvalidInput, TooLong
from playhouse.grammar.tags import FRAGMENT_RE

GPT2_CONTEXT: Final = 1024
"""GPT-2's context window: prompt plus new tokens must fit it."""

_NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CONTROL_RE: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def check_name(name: str, what: str) -> None:
    """Room and author names are written raw inside tags: ``[A-Za-z0-9_-]{1,64}``."""
    if not _NAME_RE.fullmatch(name):
        raise InvalidInput(f"invalid {what} name: {name[:80]!r}")


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def clean(text: str) -> str:
    """Newlines normalised, control characters (but ``\\n``/``\\t``) and lone surrogates
    removed, outer whitespace stripped."""
    text = normalise_newlines(text).replace("\u2028", "\n").replace("\u2029", "\n")
    return _CONTROL_RE.sub("", text).strip()


def clean_text(text: str, *, max_chars: int = COMMENT_MAX_CHARS) -> str:
    """Normalise user input: newlines to ``\\n``, control characters (but ``\\n``/``\\t``) and
    lone surrogates removed, outer whitespace stripped.

    Raises :class:`InvalidInput` when nothing is left or more than ``max_chars`` is.
    """
    cleaned = clean(text)
    if not cleaned:
        raise Empty("empty")
    if len(cleaned) > max_chars:
        raise TooLong(f"too long: {len(cleaned)} characters, at most {max_chars}")
    return cleaned


@dataclass(frozen=True)
class Post:
    """A thread's post. ``url`` set makes it a link post (which has no body).

    ``author`` is not written into the header (no grammar's headers have one); it decides
    which comments are tagged ``soopr``. ``""`` means unknown, and so does a ``room`` of
    ``""`` (an ssi-bot-2021 line names no room); a grammar that writes the room refuses it.
    """

    room: str
    title: str
    body: str = ""
    url: str | None = None
    author: str = ""

    def __post_init__(self) -> None:
        if self.room:
            check_name(self.room, "room")
        if self.author:
            check_name(self.author, "author")
        if self.url is not None and self.body:
            raise InvalidInput("a link post has no body")


@dataclass(frozen=True)
class ChainEntry:
    """One comment of a chain. ``author`` ``""`` means unknown (ssi-bot lines leave names
    out); a grammar that writes the name refuses it."""

    author: str
    text: str

    def __post_init__(self) -> None:
        if self.author:
            check_name(self.author, "author")


@dataclass(frozen=True)
class FittedPrompt:
    """A reply prompt cut to its token budget, and what the cut left out."""

    prompt: str
    dropped: int = 0
    """The oldest comments of the chain left out to fit."""
    cut_at: int = 0
    """Where in ``prompt`` they were (the end of the post's header); 0 when none were."""
    body_chars: int | None = None
    """The post's body was cut to this many characters (None: whole)."""


@dataclass(frozen=True)
class ParsedThread:
    """A parsed training line: the post and the chain of comments, oldest first.

    ``post.author`` is ``""`` unless a named ``soopr`` comment reveals it.
    """

    post: Post
    comments: tuple[ChainEntry, ...]


@dataclass(frozen=True)
class ParsedPost:
    """A generated post: ``url`` is ``None`` for a text post, ``body`` is ``""`` for a link."""

    title: str
    body: str
    url: str | None


# --- what generated text must pass ----------------------------------------------------


def check_fragments(*fields: str) -> None:
    for value in fields:
        found = FRAGMENT_RE.search(value)
        if found:
            raise InvalidCompletion("tag_fragment", repr(found.group()))


def check_blocked(blocked_words: Sequence[str], *fields: str) -> None:
    for word in blocked_words:
        word = word.strip()
        if not word:
            continue
        pattern = re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)
        if any(pattern.search(value) for value in fields):
            raise InvalidCompletion("blocked_word", word)


def _squash(text: str) -> str:
    return " ".join(text.casefold().split())


def check_near_copy(text: str, ancestors: Sequence[str], similarity: float) -> None:
    mine = _squash(text)
    for ancestor in ancestors:
        theirs = _squash(ancestor)
        if not theirs:
            continue
        matcher = difflib.SequenceMatcher(None, mine, theirs, autojunk=False)
        # The cheap upper bounds first; ratio() is quadratic in the worst case.
        if (
            matcher.real_quick_ratio() >= similarity
            and matcher.quick_ratio() >= similarity
            and matcher.ratio() >= similarity
        ):
            raise InvalidCompletion("near_copy", f"{matcher.ratio():.3f}")
