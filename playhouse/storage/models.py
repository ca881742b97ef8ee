"""Rows as values: one frozen msgspec struct per table, plus a generic page of results.

The repositories turn table entities into these structs and back; nothing outside
``playhouse.storage`` sees an Azure entity. ``etag`` fields carry the row's version for
optimistic concurrency and are never written as a property.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

import msgspec

T = TypeVar("T")

Role = Literal["owner", "moderator", "member", "banned", "admin"]
"""A membership's role: ``owner``, ``moderator`` and ``member`` of a room; ``banned`` from
it (not a member: a public room is read-only to them, a private one closed); ``admin`` and
``banned`` also of the site (:data:`~playhouse.constants.SITE_ROOM`)."""

JobState = Literal["called", "pending", "done", "failed"]
"""``called``: recorded before a person's post is acknowledged, not queued yet (the call
recovery queues it if its web instance died); ``pending``: queued; then ``done``/``failed``."""
CommentStatus = Literal["ok", "failed", "placeholder", "declined"]
"""``declined``: a bot that was called and will not answer (asleep, a cap reached); its
``notice`` says why."""
NotificationKind = Literal["reply", "mention"]
ProgressState = Literal["generating", "retrying", "answered"]


class User(msgspec.Struct, frozen=True, kw_only=True):
    username: str
    """Canonical (lowercase) user name; the row key."""
    display_name: str
    password_hash: str
    created_at: float
    disabled: bool = False
    sessions_after: float = 0.0
    """Sessions issued at or before this time are void (set by logging out everywhere)."""
    ended_sessions: tuple[str, ...] = ()
    """Ids of single sessions ended by logging out of one browser; an id older than the
    session lifetime is dropped the next time one is added."""
    muted: tuple[str, ...] = ()
    """Bots (persona names) this person muted: hidden in their views, never called by
    their posts, never in their inbox."""
    blocked: tuple[str, ...] = ()
    """People (canonical user names) this person blocked: their threads and comments are
    hidden from this person, and they never reach this person's inbox."""


class Room(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str
    public: bool
    default_bot: str | None
    bots: tuple[str, ...]
    created_by: str
    created_at: float
    last_activity: float
    thread_count: int = 0
    comment_count: int = 0
    bots_post: bool = True
    """Whether the scheduler may start threads here (its owner may say no)."""
    own_bots: bool = False
    """``bots`` is the whole list (its owner edited it); else the personas whose files
    name the room live here too."""
    bot_recent: tuple[tuple[str, float], ...] = ()
    """(persona, when) of the bots' answers here in the last hour, oldest first: the
    hourly cap a person's call meets (moved with the counters)."""
    etag: str | None = None
    """Row version as read (the activity counters update it conditionally)."""


class Membership(msgspec.Struct, frozen=True, kw_only=True):
    room: str
    username: str
    role: Role
    joined_at: float
    """When it began (a ban: when it was made)."""
    by: str = ""
    """Who gave this role, when someone else did (a moderator's appointer, a ban's maker)."""
    reason: str = ""
    """Why (a ban's reason)."""


class Thread(msgspec.Struct, frozen=True, kw_only=True):
    thread_id: str
    room: str
    title: str
    body: str
    url: str | None
    author: str
    is_bot: bool
    persona: str | None
    created_at: float
    last_activity: float
    comment_count: int = 0
    image_blob: str | None = None
    job_id: str | None = None
    edited_at: float | None = None
    """When its author last edited it (None: never); earlier versions are in ``revisions``."""
    gone: str = ""
    """``""``, ``"deleted"`` (by its author) or ``"removed"`` (by a moderator): a tombstone
    (:func:`playhouse.views.visible_thread`). A deleted thread's text is no longer in this
    row (``revisions`` has it); a removed one keeps it here (for a restore; the mod log has
    a copy), never shown."""
    held: bool = False
    """Held by the word filter: shown to its author and moderators only, until approved."""
    locked: bool = False
    """No new comments, by people or bots."""
    bot_replies: tuple[tuple[str, int], ...] = ()
    """Answers per bot in this thread: the per-thread cap a person's call meets (moved
    with the counters)."""
    etag: str | None = None
    """Row version as read (the activity counters update it conditionally)."""


class Alternative(msgspec.Struct, frozen=True, kw_only=True):
    """One answer of a bot comment that was asked again (a re-roll)."""

    text: str
    image_blob: str | None = None
    job_id: str | None = None
    """The request that made it."""
    created_at: float = 0.0


class Comment(msgspec.Struct, frozen=True, kw_only=True):
    comment_id: str
    thread_id: str
    room: str
    parent_id: str | None
    """The comment answered; None for a top-level reply to the post."""
    author: str
    is_bot: bool
    persona: str | None
    text: str
    created_at: float
    depth: int = 0
    status: CommentStatus = "ok"
    image_blob: str | None = None
    job_id: str | None = None
    path: tuple[str, ...] = ()
    """Ids of its nearest ancestors, oldest first, the parent last (at most
    :data:`~playhouse.constants.PATH_MAX`): a reply's prompt chain is one query (empty for
    top-level comments, and for comments stored before paths were kept: theirs is walked)."""
    edited_at: float | None = None
    """When its author last edited it (None: never); earlier versions are in ``revisions``."""
    gone: str = ""
    """``""``, ``"deleted"`` (by its author, or a bot's reply by the thread's author) or
    ``"removed"`` (by a moderator): a tombstone (:func:`playhouse.views.visible_comment`).
    A deleted comment's text is no longer in this row; a removed one keeps it here (for a
    restore; the mod log has a copy), never shown nor put in a prompt."""
    held: bool = False
    """Held by the word filter: shown to its author and moderators only, until approved."""
    alternatives: tuple[Alternative, ...] = ()
    """A re-rolled bot answer's answers, oldest first (empty: never re-rolled, ``text`` is
    its only one); ``text`` is ``alternatives[shown]``'s."""
    shown: int = 0
    """Which of ``alternatives`` is shown (and what later prompts see)."""
    rerolls: int = 0
    """Times another answer was asked for (each a request of its own; see
    :func:`playhouse.asking.request_id_for`)."""
    notice: str = ""
    """A declined call's reason, as :class:`~playhouse.views.WaitState` JSON."""
    etag: str | None = None
    """Row version as read; :meth:`CommentRepo.replace` makes it a precondition."""


class Revision(msgspec.Struct, frozen=True, kw_only=True):
    """A thread's or comment's text as it was before an edit or a deletion: kept
    server-side (never shown, never in a prompt)."""

    item_id: str
    """The thread id (the post) or the comment id."""
    thread_id: str
    room: str
    author: str
    title: str = ""
    text: str = ""
    image_blob: str | None = None
    written_at: float
    """When that text was written (created, or last edited)."""
    replaced_at: float
    reason: Literal["edit", "delete"]
    by: str
    """Who edited or deleted it (its author, or the thread's author for a bot's reply)."""


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One item of a person's inbox: a reply to them, or a mention of them."""

    username: str
    """The recipient (canonical)."""
    kind: NotificationKind
    room: str
    thread_id: str
    comment_id: str
    """The reply or the mentioning comment."""
    by: str
    by_bot: bool
    created_at: float
    read: bool = False
    etag: str | None = None


class Job(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    kind: str
    persona: str
    room: str
    thread_id: str | None
    parent_id: str | None
    queue: str
    state: JobState
    attempts: int
    created_at: float
    updated_at: float
    result_id: str | None = None
    error: str = ""
    payload: str = ""
    """The request JSON, kept so that a stuck job can be re-queued as it was."""
    depth: int = 0
    """Depth of the comment the answer will be (its placeholder's indentation)."""
    call: str = ""
    """Who or what called the bot, as :class:`~playhouse.explain.CallInfo` JSON (written
    with the row)."""
    trace: str = ""
    """What the worker did, as :class:`~playhouse.explain.Trace` JSON (written with the
    job's end), unless it is kept in ``trace_blob``."""
    trace_blob: str | None = None
    """The trace's blob in the explanations container, when it was too large for a row."""
    finished_at: float = 0.0
    """When the worker sent its answer."""
    applied_at: float = 0.0
    """When the answer was shown."""
    etag: str | None = None


ReportState = Literal["open", "resolved"]
ModAction = Literal[
    "remove", "restore", "lock", "unlock", "ban", "unban", "grant", "revoke", "approve",
    "dismiss", "edit_room", "add_member", "remove_member",
]


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """Someone asked the moderators to look at a thread or a comment (or the word filter
    held one: ``reporter`` is :data:`~playhouse.constants.FILTER_REPORTER`)."""

    report_id: str
    room: str
    thread_id: str
    comment_id: str | None
    """None: the thread's post itself."""
    author: str
    """Who wrote what is reported."""
    reporter: str
    reason: str
    details: str = ""
    created_at: float
    state: ReportState = "open"
    resolution: str = ""
    """What settled it: the action taken (``remove``, ``approve`` ...) or ``dismiss``."""
    resolved_by: str = ""
    resolved_at: float | None = None


class ModEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the mod log: who did what, when, why, to whom or what."""

    entry_id: str
    room: str
    """The room acted in; :data:`~playhouse.constants.SITE_ROOM` for the site's own."""
    actor: str
    action: ModAction
    at: float
    reason: str = ""
    target_user: str | None = None
    thread_id: str | None = None
    comment_id: str | None = None
    text: str = ""
    """What a removal took out of sight (a comment's text; a post's title and body), kept
    here so that nothing a person wrote is lost."""
    detail: str = ""
    """What changed, in words (a room edit's fields, a role given)."""
class JobProgress(msgspec.Struct, frozen=True, kw_only=True):
    """How far a worker got with one request (the ``progress`` table; the job's keys)."""

    request_id: str
    state: ProgressState
    at: float
    attempt: int = 1
    max_attempts: int = 1
    reason: str = ""
    """Why the last sample was rejected (``retrying``)."""
    worker: str = ""
    received_at: float = 0.0


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """One scheduling decision of one persona (the ``decisions`` table), for the status
    page: replied, passed (the draw was over the chance) or held back by a cap."""

    persona: str
    at: float
    outcome: Literal["reply", "pass", "blocked"]
    reason: str = ""
    room: str = ""
    thread_id: str = ""
    target: str = ""
    target_author: str = ""
    probability: float = 0.0
    draw: float = 0.0


ItemKind = Literal["thread", "comment"]
RoomSort = Literal["hot", "new", "top", "active"]
CommentSort = Literal["best", "top", "new", "old", "controversial"]
TopWindow = Literal["day", "week", "all"]


class Tally(msgspec.Struct, frozen=True, kw_only=True):
    """The votes on one item (a thread, or a comment): kept in the same transaction as the
    vote rows it counts, so it always equals them. ``version`` grows with every change."""

    thread_id: str
    item_id: str
    """The thread id itself for the thread's own votes, else the comment id."""
    ups: int = 0
    downs: int = 0
    version: int = 0

    @property
    def score(self) -> int:
        return self.ups - self.downs


class ListingRow(msgspec.Struct, frozen=True, kw_only=True):
    """A thread as a room's listings show it: its post, its activity and its votes."""

    thread_id: str
    room: str
    title: str
    author: str
    is_bot: bool
    persona: str | None
    created_at: float
    last_activity: float
    comment_count: int = 0
    image_blob: str | None = None
    url: str | None = None
    ups: int = 0
    downs: int = 0
    version: int = 0
    """The :class:`Tally` version these votes come from (a newer one wins)."""
    gone: str = ""
    """As the thread's: ``deleted`` or ``removed`` (shown as a tombstone), or ``""``."""
    held: bool = False
    """As the thread's: held by the word filter (listed to its author and moderators)."""
    locked: bool = False

    @property
    def score(self) -> int:
        return self.ups - self.downs


class Authored(msgspec.Struct, frozen=True, kw_only=True):
    """One thread or comment in its author's history (profile pages, karma, leaderboard)."""

    item_id: str
    kind: ItemKind
    thread_id: str
    room: str
    author: str
    is_bot: bool
    persona: str | None
    created_at: float
    title: str = ""
    """The thread's title (threads only)."""
    text: str = ""
    """The comment's text, or the start of the thread's body."""
    image_blob: str | None = None
    ups: int = 0
    downs: int = 0
    version: int = 0
    gone: str = ""
    """As the item's: ``deleted`` or ``removed`` (left out of profiles and the leaderboard;
    its text is not kept here), or ``""``."""

    @property
    def score(self) -> int:
        return self.ups - self.downs


class Karma(msgspec.Struct, frozen=True, kw_only=True):
    """The votes on everything an account wrote, summed in the same transactions that
    change its items' rows (so it equals their sum)."""

    author: str
    thread_ups: int = 0
    thread_downs: int = 0
    comment_ups: int = 0
    comment_downs: int = 0

    @property
    def thread_karma(self) -> int:
        return self.thread_ups - self.thread_downs

    @property
    def comment_karma(self) -> int:
        return self.comment_ups - self.comment_downs

    @property
    def total(self) -> int:
        return self.thread_karma + self.comment_karma

    @property
    def ups(self) -> int:
        return self.thread_ups + self.comment_ups

    @property
    def downs(self) -> int:
        return self.thread_downs + self.comment_downs


class Prefs(msgspec.Struct, frozen=True, kw_only=True):
    """The orders a person chose last (each page's URL can say otherwise)."""

    room_sort: RoomSort = "hot"
    window: TopWindow = "day"
    comment_sort: CommentSort = "best"


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    items: list[T]
    next: str | None
    """Opaque continuation token for the following page; None on the last page."""
