"""One dump line → a cleaned submission or comment, or the reason it is left out.

A dump line is a JSON object with Reddit's fields (hundreds of them; a handful are read).
It is a comment when it has ``link_id``, a submission when it has ``title``. The kept fields
are cleaned once, here, and written to the temporary buckets as compact records
(:class:`Submission`, :class:`Reply`):

* ``&amp;``, ``&lt;`` and ``&gt;`` (Reddit's escapes in markdown) become ``&``, ``<``, ``>``;
* newlines are normalised, control characters dropped, outer space stripped
  (:func:`playhouse.grammar.clean_text`);
* a post body is cut to ``max_body_chars`` (it is repeated in every example of its thread).

Which records are dropped outright and which stay as context but are never trained on is
decided by :class:`Filters`; see :meth:`Filters.judge_comment` and
:meth:`Filters.judge_submission`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import msgspec

from playhouse.constants import COMMENT_MAX_CHARS, TITLE_MAX_CHARS
from playhouse.errors import InvalidInput
from playhouse.grammar import clean_text

GONE_BODIES: Final = frozenset({"[deleted]", "[removed]", "[ Removed by Reddit ]", ""})
"""Bodies that mean the text is gone."""
GONE_AUTHORS: Final = frozenset({"[deleted]", "[removed]", ""})
DEFAULT_EXCLUDED_AUTHORS: Final = ("AutoModerator",)
MAX_URL_CHARS: Final = 2000
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENTITIES: Final = re.compile(r"&(amp|lt|gt);")
_ENTITY_TEXT: Final = {"amp": "&", "lt": "<", "gt": ">"}


class DumpRecord(msgspec.Struct, kw_only=True):
    """The fields read from a dump line; any other field is ignored."""

    id: str | None = None
    subreddit: str | None = None
    author: str | None = None
    created_utc: int | float | str | None = None
    score: int | None = None
    title: str | None = None
    selftext: str | None = None
    url: str | None = None
    is_self: bool | None = None
    body: str | None = None
    link_id: str | None = None
    parent_id: str | None = None


class Submission(msgspec.Struct, array_like=True, tag="s"):
    """A kept submission, as stored in a bucket."""

    id: str
    subreddit: str
    author: str
    """``""`` when the account is gone."""
    created: int
    title: str
    body: str
    url: str | None
    """Set for a link post (which has no body)."""
    trainable: bool
    """Whether the post itself may be an example (its thread is used either way)."""


class Reply(msgspec.Struct, array_like=True, tag="c"):
    """A kept comment, as stored in a bucket."""

    id: str
    thread: str
    """The submission's id, without the ``t3_`` prefix."""
    parent: str
    """``t3_…`` for a top-level comment, ``t1_…`` for a reply to a comment."""
    author: str
    created: int
    body: str
    trainable: bool
    """Whether the comment may end an example (it is context for its replies either way)."""


Kept = Submission | Reply

_decoder: Final = msgspec.json.Decoder(DumpRecord)
_bucket_decoder: Final = msgspec.json.Decoder(Kept)
_encoder: Final = msgspec.json.Encoder()


def encode_kept(record: Kept) -> bytes:
    """One bucket line (no newline)."""
    return _encoder.encode(record)


def decode_kept(line: bytes) -> Kept:
    record: Kept = _bucket_decoder.decode(line)
    return record


class BadRecord(Exception):
    """A line that is not a usable record; the message says why (for the stats and the log)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class Skip(Exception):
    """A well-formed record that the filters leave out; ``reason`` is a stats key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_line(line: bytes) -> DumpRecord:
    """Decode one dump line; :class:`BadRecord` (``not_json`` or ``bad_record``) otherwise."""
    try:
        return _decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise BadRecord("bad_record", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise BadRecord("not_json", str(exc)) from exc


def _timestamp(value: int | float | str | None) -> int:
    if value is None:
        raise BadRecord("bad_record", "missing created_utc")
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            raise BadRecord("bad_record", f"created_utc is not a number: {value[:40]!r}") from None
    return int(value)


def unescape_entities(text: str) -> str:
    """Undo Reddit's ``&amp;``/``&lt;``/``&gt;`` (and nothing else), in one pass."""
    return _ENTITIES.sub(lambda m: _ENTITY_TEXT[m.group(1)], text)


def _bare_id(value: str) -> str:
    return value.split("_", 1)[1] if value.startswith(("t1_", "t3_")) else value


def parse_date(text: str) -> int:
    """``YYYY-MM-DD`` (UTC midnight) as a Unix timestamp; ValueError when malformed."""
    return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class Filters:
    """What to keep. Subreddit and author names are compared case-insensitively."""

    subreddits: frozenset[str]
    """Lower-cased subreddit names to keep."""
    since: int | None = None
    """Keep records created at or after this Unix time."""
    until: int | None = None
    """Keep records created before this Unix time."""
    min_score: int | None = None
    """A comment (or post) scoring less is context only, never an example."""
    excluded_authors: frozenset[str] = field(
        default_factory=lambda: frozenset(a.casefold() for a in DEFAULT_EXCLUDED_AUTHORS)
    )
    """Lower-cased authors (bots, AutoModerator) whose writing is never an example."""
    max_body_chars: int = 2000
    """Post bodies are cut to this many characters."""
    max_comment_chars: int = COMMENT_MAX_CHARS
    """A longer comment is dropped (with its replies)."""

    @classmethod
    def create(
        cls,
        subreddits: list[str],
        *,
        excluded_authors: list[str] | None = None,
        since: int | None = None,
        until: int | None = None,
        min_score: int | None = None,
        max_body_chars: int = 2000,
        max_comment_chars: int = COMMENT_MAX_CHARS,
    ) -> Filters:
        authors = DEFAULT_EXCLUDED_AUTHORS if excluded_authors is None else excluded_authors
        return cls(
            subreddits=frozenset(s.strip().removeprefix("r/").casefold() for s in subreddits),
            since=since,
            until=until,
            min_score=min_score,
            excluded_authors=frozenset(a.strip().removeprefix("u/").casefold() for a in authors),
            max_body_chars=max_body_chars,
            max_comment_chars=max_comment_chars,
        )

    def _common(self, record: DumpRecord) -> tuple[str, str, int]:
        """(id, subreddit, created) of a record in scope; BadRecord or Skip otherwise."""
        if not record.id:
            raise BadRecord("bad_record", "missing id")
        if not record.subreddit:
            raise BadRecord("bad_record", "missing subreddit")
        if record.subreddit.casefold() not in self.subreddits:
            raise Skip("other_subreddit")
        created = _timestamp(record.created_utc)
        if (self.since is not None and created < self.since) or (
            self.until is not None and created >= self.until
        ):
            raise Skip("out_of_dates")
        return record.id, record.subreddit, created

    def _trainable(self, author: str, score: int | None) -> bool:
        if not author or author.casefold() in self.excluded_authors:
            return False
        return self.min_score is None or (score is not None and score >= self.min_score)

    def judge_comment(self, record: DumpRecord) -> Reply:
        """The kept comment, or :class:`Skip` with the reason it is dropped.

        Dropped: other subreddits, outside the dates, a deleted/removed body or author, an
        author name the grammar cannot write, an empty or too long body. Kept as context
        only (``trainable`` false): excluded authors and scores under ``min_score``.
        """
        comment_id, _, created = self._common(record)
        if record.body is None or record.link_id is None or record.parent_id is None:
            raise BadRecord("bad_record", "a comment needs body, link_id and parent_id")
        author = record.author or ""
        if record.body.strip() in GONE_BODIES or author in GONE_AUTHORS:
            raise Skip("deleted")
        if not _NAME_RE.fullmatch(author):
            raise Skip("bad_author")
        try:
            body = clean_text(unescape_entities(record.body), max_chars=self.max_comment_chars)
        except InvalidInput as exc:
            raise Skip("too_long" if "too long" in str(exc) else "deleted") from None
        return Reply(
            id=_bare_id(comment_id),
            thread=_bare_id(record.link_id),
            parent=record.parent_id,
            author=author,
            created=created,
            body=body,
            trainable=self._trainable(author, record.score),
        )

    def judge_submission(self, record: DumpRecord) -> Submission:
        """The kept submission, or :class:`Skip` with the reason it is dropped.

        Dropped: other subreddits, outside the dates, an empty or too long title, a text
        post whose body was deleted or removed. A gone author is kept as ``""`` (its thread
        is still good); the post is then never an example itself.
        """
        post_id, subreddit, created = self._common(record)
        if record.title is None:
            raise BadRecord("bad_record", "a submission needs a title")
        author = record.author or ""
        if author in GONE_AUTHORS or not _NAME_RE.fullmatch(author):
            author = ""
        try:
            title = clean_text(unescape_entities(record.title), max_chars=TITLE_MAX_CHARS)
        except InvalidInput:
            raise Skip("bad_title") from None
        url: str | None = None
        body = ""
        selftext = (record.selftext or "").strip()
        is_self = record.is_self if record.is_self is not None else not record.url
        if is_self:
            if selftext in GONE_BODIES - {""}:
                raise Skip("deleted")
            body = unescape_entities(selftext)
            try:
                body = clean_text(body, max_chars=len(body) + 1)[: self.max_body_chars].rstrip()
            except InvalidInput:
                body = ""
        else:
            try:
                url = clean_text(unescape_entities(record.url or ""), max_chars=MAX_URL_CHARS)
            except InvalidInput:
                raise Skip("bad_url") from None
        return Submission(
            id=_bare_id(post_id),
            subreddit=subreddit,
            author=author,
            created=created,
            title=title,
            body=body,
            url=url,
            trainable=self._trainable(author, record.score),
        )

    def judge(self, record: DumpRecord) -> Kept:
        """A comment when the record has ``link_id``, a submission when it has ``title``."""
        if record.link_id is not None:
            return self.judge_comment(record)
        if record.title is not None:
            return self.judge_submission(record)
        raise BadRecord("bad_record", "neither a submission (title) nor a comment (link_id)")
