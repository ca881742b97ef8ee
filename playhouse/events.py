"""Live events: what watchers of a room or a thread are told, and the one broadcaster.

Every event is a tagged msgspec struct (its ``type`` names it, as in the websocket
protocol), encoded once by :meth:`Broadcaster.send` and published on the channels it
belongs to: comments, placeholders, where a placeholder's answer stands (``waiting``),
replacements, edits and moderators' actions on their thread's channel; new threads,
thread activity, edits of a post and presence on their room's channel; an item's new score
(``score``) on its thread's channel and, for a thread's own votes, its room's too; a
person's own events (logged out, the inbox, muted and blocked, banned, access ended) on
their user channel. Channel names come from
:mod:`playhouse.constants` under the storage namespace. A web instance publishes through
Litestar Channels (memory, or Redis across instances); a scheduler in its own process
publishes straight to the same Redis. Sockets read events back with :func:`decode_event`,
typed, never by looking at bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import msgspec
import structlog

from playhouse.constants import CHANNEL_ROOM, CHANNEL_THREAD, CHANNEL_USER, channel_name
from playhouse.views import (
    CommentOut,
    NotificationOut,
    ThreadOut,
    WaitState,
    comment_out,
    thread_out,
)

if TYPE_CHECKING:
    from litestar.channels.backends.base import ChannelsBackend

    from playhouse.storage.models import Comment, Tally, Thread

log = structlog.get_logger()


class CommentEvent(msgspec.Struct, frozen=True, tag="comment", kw_only=True):
    """A new comment in a thread."""

    comment: CommentOut


class Thinking(msgspec.Struct, frozen=True, tag="thinking", kw_only=True):
    """A bot was asked to answer: its placeholder comment."""

    comment: CommentOut


class CommentReplaced(msgspec.Struct, frozen=True, tag="comment_replaced", kw_only=True):
    """A placeholder became the bot's answer (or its visible failure note)."""

    comment: CommentOut


class CommentChanged(msgspec.Struct, frozen=True, tag="comment_changed", kw_only=True):
    """A comment was edited, deleted (its tombstone) or shows another of its answers."""

    comment: CommentOut


class ThreadChanged(msgspec.Struct, frozen=True, tag="thread_changed", kw_only=True):
    """A thread's post was edited or deleted (its tombstone); on its room's channel, which
    the thread's own page hears too."""

    thread: ThreadOut


class WaitUpdate(msgspec.Struct, frozen=True, tag="waiting", kw_only=True):
    """Where a placeholder's answer stands now (queued, generating, retrying, no worker
    running ...): the page shows it under the "thinking…"."""

    thread_id: str
    comment_id: str
    wait: WaitState


class ThreadEvent(msgspec.Struct, frozen=True, tag="thread", kw_only=True):
    """A new thread, or fresh activity (reply count, last activity) on one: upsert by id."""

    thread: ThreadOut


class ScoreEvent(msgspec.Struct, frozen=True, tag="score", kw_only=True):
    """An item's votes changed (at most about one event per item per second: a burst of
    votes is coalesced). ``version`` grows with every vote: keep the highest seen."""

    room: str
    thread_id: str
    item_id: str
    """The thread id itself for the thread's own votes, else the comment id."""
    ups: int
    downs: int
    score: int
    version: int


class Presence(msgspec.Struct, frozen=True, tag="presence", kw_only=True):
    """Who watches ``room`` through the server ``instance`` (merge instances client-side)."""

    room: str
    instance: str
    users: tuple[str, ...]
    anonymous: int
    ask: bool = False
    """Someone started watching through ``instance``: every other instance with viewers of
    ``room`` answers with its own list, so the newcomer's page sees them all at once."""


class Moderated(msgspec.Struct, frozen=True, tag="moderated", kw_only=True):
    """A moderator acted on a comment or a thread (``action``: ``removed``, ``restored``,
    ``locked``, ``unlocked``, ``approved``): the item as everyone sees it now."""

    action: str
    thread_id: str
    comment: CommentOut | None = None
    thread: ThreadOut | None = None
    reason: str = ""


class BanNotice(msgspec.Struct, frozen=True, tag="banned", kw_only=True):
    """On a user's channel: they were banned from ``room`` (None: the whole site, and
    their sockets close)."""

    room: str | None = None
    reason: str = ""


class AccessEnded(msgspec.Struct, frozen=True, tag="access_ended", kw_only=True):
    """On a user's channel: they are no longer a member of the private ``room`` (a socket
    watching it stops)."""

    room: str
    reason: str = ""


class LoggedOut(msgspec.Struct, frozen=True, tag="logged_out", kw_only=True):
    """On a user's channel: close that user's sockets of ``session`` (None: all of them)."""

    session: str | None = None

    def ends(self, session_id: object) -> bool:
        return self.session is None or self.session == session_id


class InboxEvent(msgspec.Struct, frozen=True, tag="inbox", kw_only=True):
    """On a user's channel: their inbox changed. ``unread`` is the new count when known
    (it is after a read or on connecting); a new notification says ``added`` (1) and
    comes with ``latest``, and every open page adds it to the count it shows."""

    unread: int | None = None
    added: int = 0
    latest: NotificationOut | None = None


class PrefsChanged(msgspec.Struct, frozen=True, tag="prefs", kw_only=True):
    """On a user's channel: the bots they mute and the people they block now (their
    sockets hide and call accordingly)."""

    muted: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()


LiveEvent = (CommentEvent | Thinking | CommentReplaced | CommentChanged | WaitUpdate
             | ThreadEvent | ThreadChanged | ScoreEvent | Presence | LoggedOut | InboxEvent
             | PrefsChanged | Moderated | BanNotice | AccessEnded)
"""Everything published on a channel."""

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[LiveEvent] = msgspec.json.Decoder(LiveEvent)


def encode_event(event: LiveEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> LiveEvent | None:
    """The event in ``data``, or None (logged) when it is not one."""
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("event.undecodable", reason=str(exc)[:200])
        return None


class Channels:
    """The channel names of one playhouse (its storage namespace)."""

    def __init__(self, namespace: str = "") -> None:
        self.namespace = namespace

    def room(self, room: str) -> str:
        return channel_name(self.namespace, CHANNEL_ROOM, room.strip().casefold())

    def thread(self, thread_id: str) -> str:
        return channel_name(self.namespace, CHANNEL_THREAD, thread_id)

    def user(self, username: str) -> str:
        return channel_name(self.namespace, CHANNEL_USER, username.casefold())

    def of(self, event: LiveEvent, *, user: str | None = None) -> list[str]:
        """The channels ``event`` goes to (``user`` for a user's own events)."""
        match event:
            case CommentEvent() | Thinking() | CommentReplaced() | CommentChanged():
                return [self.thread(event.comment.thread_id)]
            case WaitUpdate():
                return [self.thread(event.thread_id)]
            case ThreadEvent() | ThreadChanged():
                return [self.room(event.thread.room)]
            case ScoreEvent():
                # A thread's own score shows in its room's listings as well.
                if event.item_id == event.thread_id:
                    return [self.thread(event.thread_id), self.room(event.room)]
                return [self.thread(event.thread_id)]
            case Presence():
                return [self.room(event.room)]
            case Moderated():
                return [self.thread(event.thread_id)]
            case LoggedOut() | InboxEvent() | PrefsChanged() | BanNotice() | AccessEnded():
                if user is None:
                    raise ValueError("a user's event needs the user")
                return [self.user(user)]


Publish = Callable[[bytes, Sequence[str]], None]
"""Hands encoded bytes to the fan-out for these channels; never blocks, never raises."""


class Broadcaster:
    """The one way anything is shown live: ``send(event)`` encodes it once and publishes
    it on its channel."""

    def __init__(self, publish: Publish, namespace: str = "") -> None:
        self._publish = publish
        self.channels = Channels(namespace)
        self._watchers: list[Callable[[LiveEvent], None]] = []

    def watch(self, watcher: Callable[[LiveEvent], None]) -> None:
        """Tell ``watcher`` of every event sent here (after it is published): the
        placeholders' watch learns of the placeholders this process shows."""
        self._watchers.append(watcher)

    def send(self, event: LiveEvent, *, user: str | None = None) -> None:
        """Publish ``event``; a fan-out that fails is logged (pages read storage, so only
        the live view misses it), never raised into what was being done."""
        try:
            self._publish(encode_event(event), self.channels.of(event, user=user))
        except Exception as exc:
            log.warning("event.publish_failed", type=type(event).__name__,
                        reason=str(exc)[:200])
        for watcher in self._watchers:
            try:
                watcher(event)
            except Exception as exc:
                log.warning("event.watcher_failed", type=type(event).__name__,
                            reason=str(exc)[:200])

    def comment(self, comment: Comment) -> None:
        self.send(CommentEvent(comment=comment_out(comment)))

    def thinking(self, placeholder: Comment) -> None:
        """A bot was asked: its placeholder (or, for a call it declined, the comment that
        says why, shown as a new comment)."""
        if placeholder.status == "declined":
            self.send(CommentEvent(comment=comment_out(placeholder)))
            return
        self.send(Thinking(comment=comment_out(placeholder)))

    def replaced(self, comment: Comment) -> None:
        self.send(CommentReplaced(comment=comment_out(comment)))

    def changed(self, comment: Comment) -> None:
        self.send(CommentChanged(comment=comment_out(comment)))

    def waiting(self, thread_id: str, comment_id: str, wait: WaitState) -> None:
        self.send(WaitUpdate(thread_id=thread_id, comment_id=comment_id, wait=wait))

    def thread(self, thread: Thread) -> None:
        self.send(ThreadEvent(thread=thread_out(thread)))

    def score(self, room: str, tally: Tally) -> None:
        """An item's votes as they are now (``tally``), in its room ``room``."""
        self.send(ScoreEvent(room=room, thread_id=tally.thread_id, item_id=tally.item_id,
                             ups=tally.ups, downs=tally.downs, score=tally.score,
                             version=tally.version))

    def thread_changed(self, thread: Thread) -> None:
        self.send(ThreadChanged(thread=thread_out(thread)))

    def logged_out(self, user: str, session: str | None = None) -> None:
        self.send(LoggedOut(session=session), user=user)

    def moderated(self, action: str, *, thread: Thread, comment: Comment | None = None,
                  reason: str = "") -> None:
        """Show a moderator's action on ``comment`` (None: on the thread itself) to the
        thread's watchers; a thread's change also to its room's."""
        if comment is not None:
            self.send(Moderated(action=action, thread_id=thread.thread_id,
                                comment=comment_out(comment), reason=reason))
            return
        self.send(Moderated(action=action, thread_id=thread.thread_id,
                            thread=thread_out(thread), reason=reason))
        self.thread(thread)

    def banned(self, user: str, room: str | None, reason: str = "") -> None:
        self.send(BanNotice(room=room, reason=reason), user=user)

    def access_ended(self, user: str, room: str, reason: str = "") -> None:
        self.send(AccessEnded(room=room, reason=reason), user=user)

    def inbox(self, user: str, event: InboxEvent) -> None:
        self.send(event, user=user)

    def prefs(self, user: str, muted: tuple[str, ...], blocked: tuple[str, ...]) -> None:
        self.send(PrefsChanged(muted=muted, blocked=blocked), user=user)


class BackendPublisher:
    """Publishes straight to a Channels backend (Redis) from a process without the web
    app's plugin (the scheduler on its own): sends run as tasks, and a failure loses only
    the live preview (pages read storage), so it is logged."""

    def __init__(self, backend: ChannelsBackend) -> None:
        self.backend = backend
        self._sending: set[asyncio.Task[None]] = set()

    def __call__(self, data: bytes, channels: Sequence[str]) -> None:
        task = asyncio.create_task(self._send(data, list(channels)))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, data: bytes, channels: list[str]) -> None:
        try:
            await self.backend.publish(data, channels)
        except Exception as exc:  # Redis down: only the live preview is lost
            log.warning("event.publish_failed", reason=str(exc)[:200])

    async def drain(self) -> None:
        await asyncio.gather(*self._sending, return_exceptions=True)
