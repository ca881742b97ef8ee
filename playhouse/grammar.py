"""The tag grammar shared by training and inference (ssi-bot compatible, version 1).

A thread is written as one line of text. The post comes first, as a header::

    <|soss r/ROOM|><|sot|>TITLE<|eot|><|sost|>BODY<|eost|>     a text post
    <|sols r/ROOM|><|sot|>TITLE<|eot|><|sol|>URL<|eol|>        a link post

then every comment of the chain, oldest first, each in one of three wrappers::

    <|sor u/AUTHOR|>TEXT<|eor|>        an ordinary reply
    <|soopr u/AUTHOR|>TEXT<|eoopr|>    the author wrote the post ("original post reply")
    <|soocr u/AUTHOR|>TEXT<|eoocr|>    the author wrote the comment two levels up
                                       ("original comment reply": a back-and-forth)

The post author is checked first. A training line is the header followed by every comment of
the chain, all closed. A reply prompt is the header, the ancestors of the comment to write and
the bot's open tag (chosen by the same rule, as if the bot's comment were the next in the
chain); the model writes ``TEXT<|eor|>``. A new-post prompt is ``<|soss r/ROOM|><|sot|>`` (or
``<|sols …``) and the model writes the rest of the header.

Free text (titles, bodies, urls, comments) is escaped so that it can never forge a tag and so
that a line never holds a newline:

* ``\\`` becomes ``\\\\`` and a newline (``\\r\\n`` and ``\\r`` count as one) becomes the two
  characters ``\\n``;
* a ``|`` right after a ``<`` becomes ``\\|`` and a ``>`` right after a ``|`` becomes ``\\>``,
  so ``<|`` and ``|>`` never occur in escaped text (``<|>`` becomes ``<\\|\\>``).

:func:`unescape` scans left to right and turns ``\\\\``, ``\\n``, ``\\|`` and ``\\>`` back;
any other backslash sequence (models produce odd ones) is kept as it is. Because escaped text
never contains ``<|``, a field always ends at the first ``<|`` after it starts, which is how
:func:`parse_reply`, :func:`parse_post` and :func:`parse_training_line` cut.

Room and author names are written raw inside tags and must match ``[A-Za-z0-9_-]{1,64}``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from playhouse.constants import COMMENT_MAX_CHARS, TITLE_MAX_CHARS
from playhouse.errors import Empty, InvalidCompletion, InvalidInput, TooLong

GRAMMAR_VERSION: Final[int] = 1

TITLE_START: Final = "<|sot|>"
TITLE_END: Final = "<|eot|>"
TEXT_START: Final = "<|sost|>"
TEXT_END: Final = "<|eost|>"
LINK_START: Final = "<|sol|>"
LINK_END: Final = "<|eol|>"

_TEXT_POST: Final = "soss"
_LINK_POST: Final = "sols"
_REPLY: Final = "sor"
_OP_REPLY: Final = "soopr"
_OC_REPLY: Final = "soocr"
_REPLY_KINDS: Final = (_REPLY, _OP_REPLY, _OC_REPLY)

POST_END_TAGS: Final[tuple[str, ...]] = (TEXT_END, LINK_END)
"""The tags that close a post header (and end a new-post generation)."""

REPLY_END_TAGS: Final[tuple[str, ...]] = ("<|eor|>", "<|eoopr|>", "<|eoocr|>")
"""The tags that close a comment (and end a reply generation)."""

_OPEN_PREFIXES: Final[tuple[str, ...]] = tuple(
    "<|" + kind for kind in (_TEXT_POST, _LINK_POST, *_REPLY_KINDS)
)

ALL_TAGS: Final[tuple[str, ...]] = (
    TITLE_START,
    TITLE_END,
    TEXT_START,
    TEXT_END,
    LINK_START,
    LINK_END,
    *REPLY_END_TAGS,
    *_OPEN_PREFIXES,
    "|>",
)
"""Strings to register as added tokens with a tokenizer.

The closed tags are whole tokens. An open tag carries a name (``<|sor u/NAME|>``), so it is
registered as its prefix (``<|soss``, ``<|sols``, ``<|sor``, ``<|soopr``, ``<|soocr``) plus the
shared closer ``|>``; the `` r/ROOM``/`` u/NAME`` in between is ordinary text. Escaped free
text never contains ``<|`` or ``|>``, so none of these can match inside user text.
"""

STOP_STRINGS: Final[tuple[str, ...]] = (*POST_END_TAGS, *REPLY_END_TAGS, *_OPEN_PREFIXES)
"""What generation stops on: every end tag and the start of every open tag.

``<|eot|>`` is deliberately absent: a new-post generation goes on past the title.
"""

_NAME: Final = r"[A-Za-z0-9_-]{1,64}"
_NAME_RE: Final = re.compile(_NAME)
_HEADER_RE: Final = re.compile(rf"<\|({_TEXT_POST}|{_LINK_POST}) r/({_NAME})\|>")
_OPEN_RE: Final = re.compile(rf"<\|({_REPLY}|{_OP_REPLY}|{_OC_REPLY}) u/({_NAME})\|>")

_ESCAPE_TAG_RE: Final = re.compile(r"(?<=<)\||(?<=\|)>")
_UNESCAPE_RE: Final = re.compile(r"\\(.)", re.DOTALL)
_UNESCAPES: Final = {"\\": "\\", "n": "\n", "|": "|", ">": ">"}

_CONTROL_RE: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_ALL_TAG_NAMES: Final = "sot|eot|sost|eost|sol|eol|soss|sols|sor|eor|soopr|eoopr|soocr|eoocr"
_FRAGMENT_RE: Final = re.compile(
    r"<\||\|>"  # the two halves of any tag
    r"|\b(?:soss|sols)\s*r/|\b(?:sor|soopr|soocr)\s*u/"  # the inside of an open tag
    r"|\b(?:sost|eost|soss|soopr|eoopr|soocr|eoocr)\b"  # tag names that are not words
    rf"|<(?:{_ALL_TAG_NAMES})\b|\|(?:{_ALL_TAG_NAMES})\b"  # a tag name after half a bracket
)


def escape(text: str) -> str:
    """Write free text so that it holds no newline, no ``<|`` and no ``|>``."""
    text = _normalise_newlines(text).replace("\\", "\\\\").replace("\n", "\\n")
    return _ESCAPE_TAG_RE.sub(lambda m: "\\" + m.group(), text)


def unescape(text: str) -> str:
    """Invert :func:`escape`; unknown backslash sequences are kept literally."""
    return _UNESCAPE_RE.sub(lambda m: _UNESCAPES.get(m.group(1), m.group()), text)


def clean_text(text: str, *, max_chars: int = COMMENT_MAX_CHARS) -> str:
    """Normalise user input: newlines to ``\\n``, control characters (but ``\\n``/``\\t``) and
    lone surrogates removed, outer whitespace stripped.

    Raises :class:`InvalidInput` when nothing is left or more than ``max_chars`` is.
    """
    cleaned = _clean(text)
    if not cleaned:
        raise Empty("empty")
    if len(cleaned) > max_chars:
        raise TooLong(f"too long: {len(cleaned)} characters, at most {max_chars}")
    return cleaned


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _clean(text: str) -> str:
    text = _normalise_newlines(text).replace("\u2028", "\n").replace("\u2029", "\n")
    return _CONTROL_RE.sub("", text).strip()


def _check_name(name: str, what: str) -> None:
    if not _NAME_RE.fullmatch(name):
        raise InvalidInput(f"invalid {what} name: {name[:80]!r}")


@dataclass(frozen=True)
class Post:
    """A thread's post. ``url`` set makes it a link post (which has no body).

    ``author`` is not written into the header (ssi-bot headers have none); it decides which
    comments are tagged ``soopr``. ``""`` means unknown.
    """

    room: str
    title: str
    body: str = ""
    url: str | None = None
    author: str = ""

    def __post_init__(self) -> None:
        _check_name(self.room, "room")
        if self.author:
            _check_name(self.author, "author")
        if self.url is not None and self.body:
            raise InvalidInput("a link post has no body")


@dataclass(frozen=True)
class Comment:
    """One comment of a chain."""

    author: str
    text: str

    def __post_init__(self) -> None:
        _check_name(self.author, "author")


@dataclass(frozen=True)
class ParsedThread:
    """A parsed training line: the post and the chain of comments, oldest first.

    ``post.author`` is ``""`` unless a ``soopr`` comment reveals it.
    """

    post: Post
    comments: tuple[Comment, ...]


@dataclass(frozen=True)
class ParsedPost:
    """A generated post: ``url`` is ``None`` for a text post, ``body`` is ``""`` for a link."""

    title: str
    body: str
    url: str | None


# Writing


def post_header(post: Post) -> str:
    """The closed header of ``post``."""
    return _header(post.room, post.title, post.body, post.url)


def _header(room: str, title: str, body: str, url: str | None) -> str:
    if url is None:
        return f"{post_prompt(room)}{escape(title)}{TITLE_END}{TEXT_START}{escape(body)}{TEXT_END}"
    return (
        f"{post_prompt(room, link=True)}{escape(title)}{TITLE_END}"
        f"{LINK_START}{escape(url)}{LINK_END}"
    )


def _reply_kind(author: str, post_author: str, grandparent_author: str | None) -> str:
    if post_author and author == post_author:
        return _OP_REPLY
    if grandparent_author is not None and author == grandparent_author:
        return _OC_REPLY
    return _REPLY


def _end_tag(kind: str) -> str:
    return f"<|e{kind[1:]}|>"


def open_tag(author: str, *, post_author: str, grandparent_author: str | None) -> str:
    """The open tag of a comment by ``author``, e.g. ``<|sor u/author|>``.

    ``grandparent_author`` is the author of the comment two levels up (``None`` when the
    comment is top-level or answers a top-level comment).
    """
    _check_name(author, "author")
    kind = _reply_kind(author, post_author, grandparent_author)
    return f"<|{kind} u/{author}|>"


def comment_block(
    author: str, text: str, *, post_author: str, grandparent_author: str | None
) -> str:
    """A closed comment: open tag, escaped text, matching end tag."""
    _check_name(author, "author")
    kind = _reply_kind(author, post_author, grandparent_author)
    return f"<|{kind} u/{author}|>{escape(text)}{_end_tag(kind)}"


def _grandparent(chain: Sequence[Comment], position: int) -> str | None:
    return chain[position - 2].author if position >= 2 else None


def _chain_blocks(post: Post, chain: Sequence[Comment]) -> list[str]:
    return [
        comment_block(
            c.author,
            c.text,
            post_author=post.author,
            grandparent_author=_grandparent(chain, i),
        )
        for i, c in enumerate(chain)
    ]


def training_line(post: Post, chain: Sequence[Comment]) -> str:
    """The header and every comment of ``chain`` (oldest first), all closed, on one line."""
    return post_header(post) + "".join(_chain_blocks(post, chain))


def post_prompt(room: str, *, link: bool = False) -> str:
    """The prompt for a new post in ``room``: ``<|soss r/ROOM|><|sot|>``."""
    _check_name(room, "room")
    kind = _LINK_POST if link else _TEXT_POST
    return f"<|{kind} r/{room}|>{TITLE_START}"


def reply_prompt(
    post: Post,
    chain: Sequence[Comment],
    bot: str,
    *,
    count_tokens: Callable[[str], int] | None = None,
    max_tokens: int | None = None,
) -> str:
    """The prompt for ``bot``'s reply to the last comment of ``chain`` (or to the post).

    ``chain`` holds the ancestors of the comment to write, oldest first. Tags are chosen on
    the full chain. With a budget (``count_tokens`` and ``max_tokens`` together) the oldest
    ancestors are dropped until the prompt fits; the header and the bot's open tag are always
    kept. If those two alone do not fit, the post body is cut short; if even an empty body
    does not fit, :class:`InvalidInput` ``"prompt over budget"`` is raised.
    """
    blocks = _chain_blocks(post, chain)
    tag = open_tag(bot, post_author=post.author, grandparent_author=_grandparent(chain, len(chain)))
    header = post_header(post)
    full = header + "".join(blocks) + tag
    if count_tokens is None and max_tokens is None:
        return full
    if count_tokens is None or max_tokens is None:
        raise ValueError("count_tokens and max_tokens go together")
    budget = max_tokens
    counter = count_tokens

    def fits(prompt: str) -> bool:
        return counter(prompt) <= budget

    if fits(full):
        return full
    if fits(header + tag):
        # Smallest number of oldest blocks to drop: dropping `hi` fits, dropping `lo` does not.
        lo, hi = 0, len(blocks)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(header + "".join(blocks[mid:]) + tag):
                hi = mid
            else:
                lo = mid
        return header + "".join(blocks[hi:]) + tag

    def with_body(length: int) -> str:
        return _header(post.room, post.title, post.body[:length], post.url) + tag

    if not post.body or not fits(with_body(0)):
        raise InvalidInput("prompt over budget")
    # Longest body prefix that fits: `lo` characters fit, `hi` do not.
    lo, hi = 0, len(post.body)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(with_body(mid)):
            lo = mid
        else:
            hi = mid
    return with_body(lo)


# Reading


def _field(text: str, start: int) -> tuple[str, int]:
    """The raw field starting at ``start`` and where it ends (the next ``<|``, or -1)."""
    cut = text.find("<|", start)
    return (text[start:] if cut == -1 else text[start:cut]), cut


def _check_fragments(*fields: str) -> None:
    for value in fields:
        found = _FRAGMENT_RE.search(value)
        if found:
            raise InvalidCompletion("tag_fragment", repr(found.group()))


def _check_blocked(blocked_words: Sequence[str], *fields: str) -> None:
    for word in blocked_words:
        word = word.strip()
        if not word:
            continue
        pattern = re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)
        if any(pattern.search(value) for value in fields):
            raise InvalidCompletion("blocked_word", word)


def _squash(text: str) -> str:
    return " ".join(text.casefold().split())


def _check_near_copy(text: str, ancestors: Sequence[str], similarity: float) -> None:
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


def parse_reply(
    completion: str,
    *,
    ancestors: Sequence[str] = (),
    blocked_words: Sequence[str] = (),
    similarity: float = 0.95,
) -> str:
    """The clean text of a reply the model generated after the bot's open tag.

    The completion is cut at its first ``<|``, which must start an end tag (anything after
    it is ignored), then unescaped and cleaned. Raises :class:`InvalidCompletion` with reason
    ``no_end_tag``, ``empty``, ``too_long``, ``tag_fragment``, ``blocked_word`` or
    ``near_copy`` (ratio at least ``similarity`` against an ancestor's text, compared
    case-folded with whitespace collapsed).
    """
    raw, cut = _field(completion, 0)
    if cut == -1 or not completion.startswith(REPLY_END_TAGS, cut):
        raise InvalidCompletion("no_end_tag")
    text = _clean(unescape(raw))
    if not text:
        raise InvalidCompletion("empty")
    if len(text) > COMMENT_MAX_CHARS:
        raise InvalidCompletion("too_long", f"{len(text)} characters")
    _check_fragments(text)
    _check_blocked(blocked_words, text)
    _check_near_copy(text, ancestors, similarity)
    return text


def parse_post(completion: str, *, blocked_words: Sequence[str] = ()) -> ParsedPost:
    """The post the model generated after ``<|sot|>``.

    Expects ``TITLE<|eot|><|sost|>BODY<|eost|>`` or ``TITLE<|eot|><|sol|>URL<|eol|>``
    (anything after the end tag is ignored). Whitespace in the title collapses to single
    spaces. Raises :class:`InvalidCompletion` with reason ``no_end_tag`` (any structural
    fault), ``empty_title``, ``title_too_long``, ``body_too_long``, ``bad_url`` (empty or
    holding whitespace), ``tag_fragment`` or ``blocked_word``.
    """
    raw_title, cut = _field(completion, 0)
    if cut == -1 or not completion.startswith(TITLE_END, cut):
        raise InvalidCompletion("no_end_tag", "title not closed by <|eot|>")
    pos = cut + len(TITLE_END)
    if completion.startswith(TEXT_START, pos):
        start, end = TEXT_START, TEXT_END
    elif completion.startswith(LINK_START, pos):
        start, end = LINK_START, LINK_END
    else:
        raise InvalidCompletion("no_end_tag", "no <|sost|> or <|sol|> after the title")
    raw_rest, cut = _field(completion, pos + len(start))
    if cut == -1 or not completion.startswith(end, cut):
        raise InvalidCompletion("no_end_tag", f"not closed by {end}")

    title = " ".join(_clean(unescape(raw_title)).split())
    if not title:
        raise InvalidCompletion("empty_title")
    if len(title) > TITLE_MAX_CHARS:
        raise InvalidCompletion("title_too_long", f"{len(title)} characters")
    rest = _clean(unescape(raw_rest))
    if start == LINK_START:
        if not rest or any(ch.isspace() for ch in rest):
            raise InvalidCompletion("bad_url", repr(rest[:80]))
        body, url = "", rest
    else:
        if len(rest) > COMMENT_MAX_CHARS:
            raise InvalidCompletion("body_too_long", f"{len(rest)} characters")
        body, url = rest, None
    _check_fragments(title, rest)
    _check_blocked(blocked_words, title, rest)
    return ParsedPost(title=title, body=body, url=url)


def _take(line: str, start: int, end_tag: str, what: str) -> tuple[str, int]:
    raw, cut = _field(line, start)
    if cut == -1 or not line.startswith(end_tag, cut):
        raise InvalidInput(f"malformed line: {what} at {start} not closed by {end_tag}")
    return unescape(raw), cut + len(end_tag)


def parse_training_line(line: str) -> ParsedThread:
    """Invert :func:`training_line` (a trailing line break is allowed).

    The tags of the comments are not checked against the soopr/soocr rule (real ssi-bot
    data may differ); the first ``soopr`` author becomes ``post.author``. Raises
    :class:`InvalidInput` saying what is malformed.
    """
    line = line.rstrip("\r\n")
    if "\n" in line or "\r" in line:
        raise InvalidInput("malformed line: holds a line break")
    header = _HEADER_RE.match(line)
    if not header or not line.startswith(TITLE_START, header.end()):
        raise InvalidInput("malformed line: no <|soss r/ROOM|><|sot|> or <|sols …> header")
    kind, room = header.group(1), header.group(2)
    title, pos = _take(line, header.end() + len(TITLE_START), TITLE_END, "title")
    body, url = "", None
    if kind == _TEXT_POST:
        if not line.startswith(TEXT_START, pos):
            raise InvalidInput(f"malformed line: no {TEXT_START} at {pos}")
        body, pos = _take(line, pos + len(TEXT_START), TEXT_END, "body")
    else:
        if not line.startswith(LINK_START, pos):
            raise InvalidInput(f"malformed line: no {LINK_START} at {pos}")
        url, pos = _take(line, pos + len(LINK_START), LINK_END, "url")

    comments: list[Comment] = []
    post_author = ""
    while pos < len(line):
        opened = _OPEN_RE.match(line, pos)
        if not opened:
            raise InvalidInput(f"malformed line: no comment open tag at {pos}")
        comment_kind, author = opened.group(1), opened.group(2)
        text, pos = _take(line, opened.end(), _end_tag(comment_kind), "comment")
        comments.append(Comment(author=author, text=text))
        if comment_kind == _OP_REPLY and not post_author:
            post_author = author
    post = Post(room=room, title=title, body=body, url=url, author=post_author)
    return ParsedThread(post=post, comments=tuple(comments))
