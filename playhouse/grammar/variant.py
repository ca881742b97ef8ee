"""A grammar variant: how one family of models writes a thread on one line, as a value.

A :class:`Grammar` is a :class:`Layout` (which tags it writes where), two codecs (how titles
and other free text are escaped), the strings a tokenizer should hold as single tokens and
the sampling defaults its models want. Its methods are the only writers and readers of the
format: training lines, new-post and reply prompts, the stop strings, and the parsers of
generated posts and replies. The variants themselves are in :mod:`playhouse.grammar`.

Whatever the layout, a prompt is written *closed*: the title, body and every comment of the
context end with their end tags, and only the bot's own open tag is left open. Tags are
chosen on the full chain, oldest first: a comment by the post's author is ``soopr``, one by
the author of the comment two levels up is ``soocr`` (the post author is checked first),
any other ``sor``; a layout without ``reply_sense`` writes ``sor`` only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from playhouse.constants import COMMENT_MAX_CHARS, TITLE_MAX_CHARS
from playhouse.errors import InvalidCompletion, InvalidInput
from playhouse.grammar.codecs import Codec
from playhouse.grammar.tags import (
    END_OF_TEXT,
    LINK_END,
    LINK_POST,
    LINK_START,
    LINK_THREAD_END,
    OC_REPLY,
    OP_REPLY,
    OPEN_PREFIXES,
    POST_END_TAGS,
    REPLY,
    REPLY_END_TAGS,
    TEXT_END,
    TEXT_POST,
    TEXT_START,
    TEXT_THREAD_END,
    THREAD_END_TAGS,
    TITLE_END,
    TITLE_START,
    end_tag,
)
from playhouse.grammar.values import (
    GPT2_CONTEXT,
    ChainEntry,
    FittedPrompt,
    ParsedPost,
    ParsedThread,
    Post,
    check_blocked,
    check_fragments,
    check_name,
    check_near_copy,
    clean,
)

_NAME: Final = r"[A-Za-z0-9_-]{1,64}"
_HEADER_RE: Final = re.compile(rf"<\|({TEXT_POST}|{LINK_POST})(?: r/({_NAME}))?\|>")
_OPEN_RE: Final = re.compile(rf"<\|({REPLY}|{OP_REPLY}|{OC_REPLY})(?: u/({_NAME}))?\|>")

Sampling = tuple[tuple[str, float | int], ...]


@dataclass(frozen=True)
class Layout:
    """Which tags a variant writes, and how strictly it reads what a model wrote."""

    reply_sense: bool
    """`` r/ROOM`` and `` u/NAME`` inside open tags, and the ``soopr``/``soocr`` kinds."""
    closed_lines: bool
    """Training lines close the title (``<|eot|>``), body and every comment."""
    name_last: bool
    """The last comment of a training line keeps its `` u/NAME``."""
    name_bot: bool
    """The bot's own open tag at the end of a reply prompt carries its name."""
    op_top_level: bool
    """A top-level reply by the post's author is ``soopr`` (otherwise ``sor``: ssi-bot's
    data never holds such a comment and its server writes ``<|sor|>`` there)."""
    writes_url: bool
    """A link post's URL is written between ``<|sol|>`` and ``<|eol|>``."""
    thread_end: bool
    """A training line ends with ``<|eoss|>`` (``<|eols|>`` for a link) and ``<|endoftext|>``."""
    strict: bool
    """A reply must end with a comment's end tag and a post with ``<|eot|>`` and
    ``<|eost|>``/``<|eol|>``; otherwise the first ``<|`` of any kind ends a field."""


def _field(text: str, start: int) -> tuple[str, int]:
    """The raw field starting at ``start`` and where it ends (the next ``<|``, or -1)."""
    cut = text.find("<|", start)
    return (text[start:] if cut == -1 else text[start:cut]), cut


def _grandparent(chain: Sequence[ChainEntry], position: int) -> str | None:
    return chain[position - 2].author if position >= 2 else None


@dataclass(frozen=True)
class Grammar:
    """One variant of the thread grammar; see the module docstring."""

    name: str
    summary: str
    """One line: which models speak it."""
    layout: Layout
    text: Codec
    """Bodies, comments and urls."""
    title: Codec
    token_strings: tuple[str, ...] = ()
    """Strings a tokenizer built or extended for this grammar registers as single tokens."""
    sampling: Sampling = ()
    """Generation settings a persona file that does not set them gets."""
    run_to_context: bool = False
    """``max_new_tokens`` defaults to what ``max_prompt_tokens`` leaves of GPT-2's context."""

    # --- what generation needs ---------------------------------------------------------

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """What generation stops on, posts and replies alike (a batch mixes both): every
        end tag and the start of every open tag. ``<|eot|>``, ``<|sost|>`` and ``<|sol|>``
        are absent: a new post is generated past its title."""
        stops = (*POST_END_TAGS, *REPLY_END_TAGS, *OPEN_PREFIXES)
        return (*stops, *THREAD_END_TAGS) if self.layout.thread_end else stops

    def generation_defaults(self, given: Mapping[str, object]) -> dict[str, object]:
        """The ``[generation]`` values a persona file that sets only ``given`` gets from
        this grammar (the rest take the persona struct's own defaults)."""
        defaults: dict[str, object] = {k: v for k, v in self.sampling if k not in given}
        if self.run_to_context and "max_new_tokens" not in given:
            prompt = given.get("max_prompt_tokens", defaults.get("max_prompt_tokens"))
            if type(prompt) is int and 0 < prompt < GPT2_CONTEXT:
                defaults["max_new_tokens"] = GPT2_CONTEXT - prompt
        return defaults

    # --- writing -----------------------------------------------------------------------

    def _kind(self, author: str, post_author: str, grandparent: str | None) -> str:
        if not self.layout.reply_sense or not author:
            return REPLY
        if post_author and author == post_author:
            return OP_REPLY
        if grandparent is not None and author == grandparent:
            return OC_REPLY
        return REPLY

    def _open(self, kind: str, author: str | None) -> str:
        if author is None:
            return f"<|{kind}|>"
        check_name(author, "author")
        return f"<|{kind} u/{author}|>"

    def post_prompt(self, room: str, *, link: bool = False) -> str:
        """The prompt for a new post in ``room``, e.g. ``<|soss r/ROOM|><|sot|>``."""
        kind = LINK_POST if link else TEXT_POST
        if not self.layout.reply_sense:
            return f"<|{kind}|>{TITLE_START}"
        check_name(room, "room")
        return f"<|{kind} r/{room}|>{TITLE_START}"

    def post_header(self, post: Post, *, closed: bool = True, body_chars: int | None = None) -> str:
        """The header of ``post``: closed as in a prompt, or as the layout's training lines
        write it; ``body_chars`` cuts the body (before escaping, so no escape is split)."""
        title = self.title.escape(post.title)
        opening = self.post_prompt(post.room, link=post.url is not None) + title
        if closed:
            opening += TITLE_END
        if post.url is not None:
            url = self.text.escape(post.url) if self.layout.writes_url else ""
            return f"{opening}{LINK_START}{url}{LINK_END if closed else ''}"
        body = self.text.escape(post.body if body_chars is None else post.body[:body_chars])
        return f"{opening}{TEXT_START}{body}{TEXT_END if closed else ''}"

    def open_tag(self, author: str, *, post_author: str, grandparent_author: str | None) -> str:
        """The open tag of a context comment by ``author``, e.g. ``<|sor u/author|>``.

        ``grandparent_author`` is the author of the comment two levels up (``None`` when
        the comment is top-level or answers a top-level comment).
        """
        kind = self._kind(author, post_author, grandparent_author)
        return self._open(kind, author if self.layout.reply_sense else None)

    def comment_block(
        self, author: str, text: str, *, post_author: str, grandparent_author: str | None
    ) -> str:
        """A closed context comment: open tag, escaped text, matching end tag."""
        kind = self._kind(author, post_author, grandparent_author)
        tag = self._open(kind, author if self.layout.reply_sense else None)
        return f"{tag}{self.text.escape(text)}{end_tag(kind)}"

    def _blocks(
        self, post: Post, chain: Sequence[ChainEntry], *, closed: bool, name_last: bool
    ) -> list[str]:
        blocks: list[str] = []
        for i, comment in enumerate(chain):
            kind = self._kind(comment.author, post.author, _grandparent(chain, i))
            named = self.layout.reply_sense and (name_last or i < len(chain) - 1)
            tag = self._open(kind, comment.author if named else None)
            blocks.append(tag + self.text.escape(comment.text) + (end_tag(kind) if closed else ""))
        return blocks

    def training_line(self, post: Post, chain: Sequence[ChainEntry], *,
                      drop_oldest: int = 0) -> str:
        """``post`` and every comment of ``chain`` (oldest first) as one training line.

        ``drop_oldest`` leaves out that many of the oldest comments; the tags stay the
        ones chosen on the full chain (what a prompt cut to its budget shows too).
        """
        layout = self.layout
        blocks = self._blocks(
            post, chain, closed=layout.closed_lines, name_last=layout.name_last
        )
        line = self.post_header(post, closed=layout.closed_lines) + "".join(blocks[drop_oldest:])
        if layout.thread_end:
            line += (LINK_THREAD_END if post.url is not None else TEXT_THREAD_END) + END_OF_TEXT
        return line

    def bot_tag(self, bot: str, post: Post, chain: Sequence[ChainEntry]) -> str:
        """The open tag the bot's reply to the last comment of ``chain`` is written after."""
        if chain or self.layout.op_top_level:
            kind = self._kind(bot, post.author, _grandparent(chain, len(chain)))
        else:
            kind = REPLY
        return self._open(kind, bot if self.layout.reply_sense and self.layout.name_bot else None)

    def reply_prompt(
        self,
        post: Post,
        chain: Sequence[ChainEntry],
        bot: str,
        *,
        count_tokens: Callable[[str], int] | None = None,
        max_tokens: int | None = None,
    ) -> str:
        """The prompt for ``bot``'s reply to the last comment of ``chain`` (or to the post).

        ``chain`` holds the ancestors of the comment to write, oldest first. With a budget
        (``count_tokens`` and ``max_tokens`` together) the oldest ancestors are dropped
        until the prompt fits (:meth:`fit_reply_prompt` says how many).
        """
        if count_tokens is None and max_tokens is None:
            blocks = self._blocks(post, chain, closed=True, name_last=True)
            return self.post_header(post) + "".join(blocks) + self.bot_tag(bot, post, chain)
        if count_tokens is None or max_tokens is None:
            raise ValueError("count_tokens and max_tokens go together")
        return self.fit_reply_prompt(post, chain, bot, count_tokens=count_tokens,
                                     max_tokens=max_tokens).prompt

    def fit_reply_prompt(
        self,
        post: Post,
        chain: Sequence[ChainEntry],
        bot: str,
        *,
        count_tokens: Callable[[str], int],
        max_tokens: int,
    ) -> FittedPrompt:
        """The reply prompt cut to ``max_tokens``, and what was left out to fit.

        The oldest ancestors are dropped until the prompt fits; the header and the bot's
        open tag are always kept. If those two alone do not fit, the post body is cut
        short; if even an empty body does not fit, :class:`InvalidInput` ``"prompt over
        budget"`` is raised.
        """
        blocks = self._blocks(post, chain, closed=True, name_last=True)
        tag = self.bot_tag(bot, post, chain)
        header = self.post_header(post)
        full = header + "".join(blocks) + tag

        def fits(prompt: str) -> bool:
            return count_tokens(prompt) <= max_tokens

        if fits(full):
            return FittedPrompt(full)
        if fits(header + tag):
            # Smallest number of oldest blocks to drop: dropping `hi` fits, dropping `lo` not.
            lo, hi = 0, len(blocks)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if fits(header + "".join(blocks[mid:]) + tag):
                    hi = mid
                else:
                    lo = mid
            return FittedPrompt(header + "".join(blocks[hi:]) + tag, dropped=hi,
                                cut_at=len(header))

        def with_body(length: int) -> str:
            return self.post_header(post, body_chars=length) + tag

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
        prompt = with_body(lo)
        return FittedPrompt(prompt, dropped=len(blocks),
                            cut_at=len(prompt) - len(tag) if blocks else 0, body_chars=lo)

    # --- reading what a model wrote ----------------------------------------------------

    def parse_reply(
        self,
        completion: str,
        *,
        ancestors: Sequence[str] = (),
        blocked_words: Sequence[str] = (),
        similarity: float = 0.95,
    ) -> str:
        """The clean text of a reply the model generated after the bot's open tag.

        The completion is cut at its first ``<|`` (a strict layout wants a comment's end
        tag there; anything after it is ignored), then unescaped and cleaned. Raises
        :class:`InvalidCompletion` with reason ``no_end_tag``, ``empty``, ``too_long``,
        ``tag_fragment``, ``blocked_word`` or ``near_copy`` (ratio at least ``similarity``
        against an ancestor's text, compared case-folded with whitespace collapsed).
        """
        raw, cut = _field(completion, 0)
        if cut == -1 or (self.layout.strict and not completion.startswith(REPLY_END_TAGS, cut)):
            raise InvalidCompletion("no_end_tag")
        text = clean(self.text.unescape(raw))
        if not text:
            raise InvalidCompletion("empty")
        if len(text) > COMMENT_MAX_CHARS:
            raise InvalidCompletion("too_long", f"{len(text)} characters")
        check_fragments(text)
        check_blocked(blocked_words, text)
        check_near_copy(text, ancestors, similarity)
        return text

    def parse_post(self, completion: str, *, blocked_words: Sequence[str] = ()) -> ParsedPost:
        """The post the model generated after ``<|sot|>``.

        Strict: ``TITLE<|eot|><|sost|>BODY<|eost|>`` or ``TITLE<|eot|><|sol|>URL<|eol|>``.
        Otherwise the title ends at the first ``<|`` (an ``<|eot|>`` there is skipped); a
        ``<|sost|>`` right after it starts the body, which ends at the next ``<|``; any other
        tag makes a post of its title alone. Anything after the end is ignored. Whitespace
        in the title collapses to single spaces. Raises :class:`InvalidCompletion` with
        reason ``no_end_tag`` (any structural fault), ``empty_title``, ``title_too_long``,
        ``body_too_long``, ``bad_url`` (empty or holding whitespace), ``tag_fragment`` or
        ``blocked_word``.
        """
        strict = self.layout.strict
        raw_title, cut = _field(completion, 0)
        if cut == -1:
            raise InvalidCompletion("no_end_tag", "title not closed" + (
                " by <|eot|>" if strict else ""))
        pos = cut
        if completion.startswith(TITLE_END, pos):
            pos += len(TITLE_END)
        elif strict:
            raise InvalidCompletion("no_end_tag", "title not closed by <|eot|>")
        start, end = "", ""
        if completion.startswith(TEXT_START, pos):
            start, end = TEXT_START, TEXT_END
        elif strict and completion.startswith(LINK_START, pos):
            start, end = LINK_START, LINK_END
        elif strict:
            raise InvalidCompletion("no_end_tag", "no <|sost|> or <|sol|> after the title")
        raw_rest = ""
        if start:
            raw_rest, cut = _field(completion, pos + len(start))
            if cut == -1 or (strict and not completion.startswith(end, cut)):
                raise InvalidCompletion("no_end_tag", "body not closed" + (
                    f" by {end}" if strict else ""))

        title = " ".join(clean(self.title.unescape(raw_title)).split())
        if not title:
            raise InvalidCompletion("empty_title")
        if len(title) > TITLE_MAX_CHARS:
            raise InvalidCompletion("title_too_long", f"{len(title)} characters")
        rest = clean(self.text.unescape(raw_rest))
        if start == LINK_START:
            if not rest or any(ch.isspace() for ch in rest):
                raise InvalidCompletion("bad_url", repr(rest[:80]))
            body, url = "", rest
        else:
            if len(rest) > COMMENT_MAX_CHARS:
                raise InvalidCompletion("body_too_long", f"{len(rest)} characters")
            body, url = rest, None
        check_fragments(title, rest)
        check_blocked(blocked_words, title, rest)
        return ParsedPost(title=title, body=body, url=url)

    # --- reading training lines --------------------------------------------------------

    def _take(
        self, line: str, start: int, closer: str | None, what: str, codec: Codec
    ) -> tuple[str, int]:
        raw, cut = _field(line, start)
        if cut == -1:
            raise InvalidInput(f"malformed line: {what} at {start} is not followed by a tag")
        if closer is None:
            return codec.unescape(raw), cut
        if not line.startswith(closer, cut):
            raise InvalidInput(f"malformed line: {what} at {start} not closed by {closer}")
        return codec.unescape(raw), cut + len(closer)

    def _header_shape(self) -> str:
        room = " r/ROOM" if self.layout.reply_sense else ""
        return f"<|soss{room}|><|sot|> or <|sols{room}|><|sot|>"

    def parse_training_line(self, line: str) -> ParsedThread:
        """Invert :meth:`training_line` (a trailing line break is allowed).

        The names are checked against the layout (present, absent, or absent on the last
        comment only); the kinds are not checked against the soopr/soocr rule (real data
        may differ). The first named ``soopr`` author becomes ``post.author``. Raises
        :class:`InvalidInput` saying what is malformed.
        """
        layout = self.layout
        closed = layout.closed_lines
        line = line.rstrip("\r\n")
        if "\n" in line or "\r" in line:
            raise InvalidInput("malformed line: holds a line break")
        header = _HEADER_RE.match(line)
        if (
            not header
            or (header.group(2) is not None) != layout.reply_sense
            or not line.startswith(TITLE_START, header.end())
        ):
            raise InvalidInput(f"malformed line: no {self._header_shape()} header")
        link = header.group(1) == LINK_POST
        room = header.group(2) or ""
        title, pos = self._take(line, header.end() + len(TITLE_START),
                                TITLE_END if closed else None, "title", self.title)
        opener, closer = (LINK_START, LINK_END) if link else (TEXT_START, TEXT_END)
        if not line.startswith(opener, pos):
            raise InvalidInput(f"malformed line: no {opener} at {pos}")
        rest, pos = self._take(line, pos + len(opener), closer if closed else None,
                               "url" if link else "body", self.text)
        thread_end = (LINK_THREAD_END if link else TEXT_THREAD_END) if layout.thread_end else ""

        comments: list[ChainEntry] = []
        post_author = ""
        ended = not thread_end
        while pos < len(line):
            if thread_end and line.startswith(thread_end, pos):
                pos += len(thread_end)
                if line.startswith(END_OF_TEXT, pos):
                    pos += len(END_OF_TEXT)
                if pos != len(line):
                    raise InvalidInput(f"malformed line: text after {thread_end} at {pos}")
                ended = True
                break
            opened = _OPEN_RE.match(line, pos)
            if not opened:
                raise InvalidInput(f"malformed line: no comment open tag at {pos}")
            kind, author = opened.group(1), opened.group(2) or ""
            if kind != REPLY and not layout.reply_sense:
                raise InvalidInput(f"malformed line: a {kind} comment at {pos} (only sor here)")
            text, after = self._take(line, opened.end(), end_tag(kind) if closed else None,
                                     "comment", self.text)
            last = after == len(line) or bool(thread_end and line.startswith(thread_end, after))
            named = layout.reply_sense and (layout.name_last or not last)
            if bool(author) != named:
                raise InvalidInput(
                    f"malformed line: the comment at {pos} "
                    + ("has no u/NAME" if named else "has a u/NAME this grammar leaves out")
                )
            comments.append(ChainEntry(author=author, text=text))
            if kind == OP_REPLY and author and not post_author:
                post_author = author
            pos = after
        if not ended:
            raise InvalidInput(f"malformed line: does not end with {thread_end}")
        if link:
            post = Post(room=room, title=title, url=rest, author=post_author)
        else:
            post = Post(room=room, title=title, body=rest, author=post_author)
        return ParsedThread(post=post, comments=tuple(comments))
