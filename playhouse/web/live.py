"""The websocket endpoint ``/ws``: subscribe to a room or a thread, page history, post,
vote.

Every socket holds at most one subscription (a room, or a thread with its room). The
channel subscription starts *before* the history is read, and live events that arrive
while the history is being sent are held back and sent after it, minus the comments the
history already carried: a resuming page sees no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec
import structlog
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from playhouse import ids
from playhouse.constants import PATH_MAX
from playhouse.errors import (
    BadRequest,
    Banned,
    Forbidden,
    InvalidInput,
    LoginRequired,
    NotFound,
    NotSubscribed,
    PlayhouseError,
    StorageUnavailable,
    TooFast,
    TooManySockets,
    describe,
)
from playhouse.events import (
    AccessEnded,
    BanNotice,
    CommentChanged,
    CommentEvent,
    CommentReplaced,
    InboxEvent,
    LiveEvent,
    LoggedOut,
    PrefsChanged,
    Presence,
    Thinking,
    ThreadChanged,
    ThreadEvent,
    decode_event,
)
from playhouse.storage.models import Comment, Thread
from playhouse.storage.threads import no_thread
from playhouse.views import comment_out, hide, sees_held, thread_out
from playhouse.web.budget import SocketBudget, frame_cost
from playhouse.web.context import SESSION_ID, WebContext, client_ip, context_of, current_user
from playhouse.web.inbox import unread_count
from playhouse.web.posting import announce, check_rate, store_post
from playhouse.web.prefs import Viewer, load_viewer
from playhouse.web.protocol import (
    Ack,
    ClientMessage,
    Error,
    Hello,
    History,
    HistoryRequest,
    Ping,
    Pong,
    PostMessage,
    ServerEvent,
    Subscribe,
    Subscribed,
    Unsubscribe,
    VoteMessage,
    client_id_of,
    decode_client,
    encode_frame,
)
from playhouse.web.votes import on_socket_vote

if TYPE_CHECKING:
    from litestar.channels import Subscriber

log = structlog.get_logger()

UNAVAILABLE = "storage is unavailable right now: nothing was saved; send it again in a moment"


class Session:
    """One connected socket: its user, its subscription, and the pump of live events."""

    def __init__(self, ctx: WebContext, socket: WebSocket[Any, Any, Any]) -> None:
        self.ctx = ctx
        self.socket = socket
        self.user = current_user(socket)
        session = socket.scope.get("session")
        self.session_id = session.get(SESSION_ID) if isinstance(session, dict) else None
        self.ip = client_ip(socket)
        self.send_lock = asyncio.Lock()
        self.subscriber: Subscriber | None = None
        self.pump: asyncio.Task[None] | None = None
        self.room: str | None = None
        self.thread_id: str | None = None
        self.replaying = False
        self.held: list[tuple[bytes, LiveEvent]] = []
        self.replayed: set[str] = set()
        self.closed = False
        self.account: Subscriber | None = None
        """The user's own channel: a logout anywhere closes this socket."""
        self.account_pump: asyncio.Task[None] | None = None
        self.budget = SocketBudget.from_settings(ctx.settings.web)
        self.socket_id = f"{ctx.instance}:{ids.new_id()}"
        self.slotted = False
        """Counted in :attr:`WebContext.slots` (released when the socket ends)."""
        self.moderates: bool | None = None
        """Whether the user moderates the room subscribed to (asked when something held
        by the word filter is about to be sent: only they and its author see it)."""
        self.viewer = Viewer(user=self.user)
        """What this socket's user chose not to see (kept current by their channel)."""
        self.loading: asyncio.Task[None] | None = None
        """Reading :attr:`viewer` (a post waits for it: its calls depend on it)."""

    # ------------------------------------------------------------------ sending
    async def send(self, event: ServerEvent) -> None:
        await self.send_text(encode_frame(event))

    async def send_text(self, text: str) -> None:
        if self.closed:
            return
        async with self.send_lock:
            try:
                await self.socket.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.closed = True

    async def refuse(self, exc: BaseException, client_id: str | None = None) -> None:
        """Answer with the error frame ``exc`` maps to (:mod:`playhouse.errors`)."""
        code, _, reason = describe(exc)
        if isinstance(exc, StorageUnavailable):
            reason = UNAVAILABLE
        await self.send(Error(code=code, reason=reason, client_id=client_id))

    async def _on_event(self, data: bytes) -> None:
        event = decode_event(data)
        if event is None:
            return
        if isinstance(event, Presence):
            asked = self.ctx.presence.to_answer(event, self.ctx.instance,
                                                asyncio.get_running_loop().time())
            if asked is not None:
                self.ctx.announcer.changed(asked, force=True)
        if self.replaying:
            self.held.append((data, event))
            return
        frame = self._frame(data, event)
        if frame is not None:
            await self.send_text(frame)

    def _frame(self, data: bytes, event: LiveEvent) -> str | None:
        """What this socket is sent of a live event: as published, or, from someone its
        user hides, a stub of a comment (its place in the tree kept) and no thread in a
        room's list (None)."""
        if not (self.viewer.muted or self.viewer.blocked):
            return data.decode()
        match event:
            case CommentEvent() | Thinking() | CommentReplaced() | CommentChanged():
                why = self.viewer.hides(event.comment.author, event.comment.is_bot)
                if why:
                    return encode_frame(msgspec.structs.replace(
                        event, comment=hide(event.comment, why)))
            case ThreadEvent() | ThreadChanged():
                if self.thread_id is None and self.viewer.hides(event.thread.author,
                                                                event.thread.is_bot):
                    return None
            case _:
                pass
        return data.decode()

    async def _run_pump(self, subscriber: Subscriber) -> None:
        async for data in subscriber.iter_events():
            await self._on_event(data)
            if self.closed:
                return

    # ------------------------------------------------------------------ the loop
    async def run(self) -> None:
        await self.socket.accept()
        await self.send(Hello(user=self.user, instance=self.ctx.instance))
        try:
            full = await self.ctx.slots.claim(self.socket_id, self.ip, self.user)
            if full is not None:
                await self._refuse_socket(full)
                return
            self.slotted = True
            log.info("socket.opened", user=self.user or "-", ip=self.ip)
            if self.user is not None:
                self.account = await self.ctx.channels.subscribe(
                    [self.ctx.broadcast.channels.user(self.user)]
                )
                self.account_pump = asyncio.create_task(self._watch_account(self.account))
                # Read beside the loop: the socket answers (and closes) at once meanwhile.
                self.loading = asyncio.create_task(self._load_viewer())
            while not self.closed:
                event = await self.socket.receive()
                if event["type"] == "websocket.disconnect":
                    break
                text, data = event.get("text"), event.get("bytes")
                frame = text if isinstance(text, str) else data
                frame = frame if isinstance(frame, str | bytes) else b""
                verdict = self.budget.charge()
                if verdict == "ok":
                    await self.handle_frame(frame)
                else:
                    await self._too_fast(frame, verdict)
        except WebSocketDisconnect:
            pass
        finally:
            self.closed = True
            if self.loading is not None and not self.loading.done():
                self.loading.cancel()
            await self.unsubscribe()
            await self._stop_watching_account()
            if self.slotted:
                await self.ctx.slots.release(self.socket_id, self.ip, self.user)
            log.info("socket.closed", user=self.user or "-")

    async def _refuse_socket(self, full: str) -> None:
        """Over the cap of open sockets (``full``: ``address`` or ``user``): say so, close."""
        web = self.ctx.settings.web
        if full == "user":
            reason = (f"you have {web.ws_sockets_per_user} live pages open already; close "
                      "some and reload this one")
        else:
            reason = (f"{web.ws_sockets_per_address} live pages are open from your address "
                      "already; close some and reload this one")
        log.warning("socket.refused", reason="too_many_sockets", cap=full, ip=self.ip,
                    user=self.user or "-")
        await self.refuse(TooManySockets(reason))
        await self._close(1008, "too many open sockets")

    async def _too_fast(self, frame: str | bytes, verdict: str) -> None:
        """A frame over the socket's budget: not handled, answered ``too_fast`` (with its
        client id, so the page settles a post); a socket that keeps on past its patience
        is closed with 1008 (policy violation), so it is told at most that many times."""
        client_id = client_id_of(frame)
        if verdict == "close":
            log.warning("socket.flooded", user=self.user or "-", ip=self.ip,
                        refused=self.budget.refused)
            await self.refuse(TooFast("too many messages, too fast: this connection is "
                                      "closed; reload the page"), client_id)
            await self._close(1008, "too many messages")
        else:
            await self.refuse(TooFast("too many messages, too fast: this one was not "
                                      "handled; wait a moment and send it again"), client_id)

    async def _close(self, code: int, reason: str) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            await self.socket.close(code=code, reason=reason)

    async def _load_viewer(self) -> None:
        """Read what the user hides and tell the page its unread count (the badge is as
        fresh as the socket); storage failing here costs the badge, not the socket."""
        try:
            self.viewer = await load_viewer(self.ctx, self.user)
            unread = await unread_count(self.ctx, self.viewer)
        except PlayhouseError as exc:
            log.warning("socket.viewer_failed", user=self.user or "-", reason=str(exc)[:200])
            return
        await self.send(InboxEvent(unread=unread))

    async def _watch_account(self, subscriber: Subscriber) -> None:
        """The user's own events, from any instance: the inbox's count and what they hide
        go to the page; a logout of its session closes the socket (the page reconnects, and
        the voided cookie makes the new socket anonymous); so does a ban from the site
        (told, and closed for good); a ban from a room, or the end of a membership, is told
        to the page, and stops the subscription when the room is no longer readable."""
        async for data in subscriber.iter_events():
            event = decode_event(data)
            if isinstance(event, PrefsChanged):
                self.viewer = Viewer(user=self.user, muted=frozenset(event.muted),
                                     blocked=frozenset(event.blocked))
            if isinstance(event, InboxEvent | PrefsChanged):
                await self.send_text(data.decode())
                continue
            if isinstance(event, LoggedOut) and event.ends(self.session_id):
                await self.refuse(LoginRequired("you logged out; log in again to post"))
                await self._close(4401, "logged out")
                log.info("socket.logged_out", user=self.user or "-")
                return
            if isinstance(event, BanNotice) and event.room is None:
                if self.user is not None:  # this instance refuses their cookie at once too
                    self.ctx.sessions.forget(self.user)
                await self.send_text(data.decode())
                because = f" ({event.reason})" if event.reason else ""
                await self.refuse(Banned(f"you are banned from the site{because}", site=True))
                await self._close(4403, "banned")
                log.info("socket.banned", user=self.user or "-")
                return
            if isinstance(event, BanNotice | AccessEnded) and event.room is not None:
                await self.send_text(data.decode())
                await self._recheck(event.room)

    async def _recheck(self, room: str) -> None:
        """The user's access to ``room`` changed: stop watching it if they may no longer
        read it."""
        if self.room is None or self.room.casefold() != room.casefold():
            return
        self.moderates = None
        try:
            await self.ctx.readable_room(room, self.user)
        except Forbidden as exc:
            await self.unsubscribe()
            await self.refuse(exc)
            log.info("socket.access_ended", user=self.user or "-", room=room)
        except PlayhouseError as exc:
            log.warning("socket.recheck_failed", room=room, reason=str(exc)[:200])

    async def _stop_watching_account(self) -> None:
        pump, self.account_pump = self.account_pump, None
        subscriber, self.account = self.account, None
        await self._drop(pump, subscriber)

    async def _drop(self, pump: asyncio.Task[None] | None, subscriber: Subscriber | None) -> None:
        """Stop a pump (unless it is the task asking) and end its channel subscription."""
        if pump is not None and pump is not asyncio.current_task():
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
        if subscriber is not None:
            with contextlib.suppress(Exception):
                await self.ctx.channels.unsubscribe(subscriber)

    async def handle_frame(self, frame: str | bytes) -> None:
        """Answer one frame. Nothing a frame holds ends the socket: a frame that is not a
        message is answered with an error, and so is one the server fails on."""
        try:
            msg = decode_client(frame)
        except PlayhouseError as exc:
            await self.refuse(exc, client_id_of(frame))
            return
        except Exception:  # decode_client raises only InvalidInput; kept as a last guard
            log.exception("socket.decode_failed", user=self.user or "-")
            await self.refuse(InvalidInput("the server could not read that message"),
                              client_id_of(frame))
            return
        # A refused post (or vote) is answered with its client id, so the page settles it
        # (shows the reason, keeps the text) instead of waiting for an answer that never
        # comes. A vote costs what a post does: its frame.
        client_id = msg.client_id if isinstance(msg, PostMessage | VoteMessage) else None
        if isinstance(msg, Subscribe):  # it reads storage: it costs more of the budget
            verdict = self.budget.charge(frame_cost("subscribe", len(msg.pending)))
            if verdict != "ok":
                await self._too_fast(frame, verdict)
                return
        try:
            await self.dispatch(msg)
        except StorageUnavailable as exc:
            log.warning("socket.storage_unavailable", user=self.user or "-", reason=str(exc))
            await self.refuse(exc, client_id)
        except Banned as exc:
            await self.refuse(exc, client_id)
            if exc.site:  # the ban landed before its notice reached this instance
                await self._close(4403, "banned")
        except PlayhouseError as exc:
            await self.refuse(exc, client_id)
        except Exception as exc:
            log.exception("socket.failed", user=self.user or "-")
            await self.refuse(exc, client_id)

    async def dispatch(self, msg: ClientMessage) -> None:
        if isinstance(msg, PostMessage):
            await self.post(msg)
        elif isinstance(msg, Subscribe):
            await self.subscribe(msg)
        elif isinstance(msg, HistoryRequest):
            await self.history(msg)
        elif isinstance(msg, Unsubscribe):
            await self.unsubscribe()
        elif isinstance(msg, VoteMessage):
            await on_socket_vote(self, msg)
        elif isinstance(msg, Ping):
            await self.send(Pong())

    # ------------------------------------------------------------ subscriptions
    async def subscribe(self, msg: Subscribe) -> None:
        if msg.after is not None and not ids.is_id(msg.after):
            raise BadRequest("`after` is not an id")
        room, _ = await self.ctx.readable_room(msg.room, self.user)
        thread = None
        if msg.thread_id is not None:
            thread = await _thread_in(self.ctx, msg.thread_id, room.name)
            if thread.held and not sees_held(thread.author, self.user, moderator=await
                                             self.ctx.sees_held(room.name, self.user)):
                raise no_thread(thread.thread_id, room.name)
        await self.unsubscribe()
        names = self.ctx.broadcast.channels
        channels = [names.room(room.name)]
        if thread is not None:
            channels.append(names.thread(thread.thread_id))
        self.replaying = True
        self.held, self.replayed = [], set()
        self.subscriber = await self.ctx.channels.subscribe(channels)
        self.pump = asyncio.create_task(self._run_pump(self.subscriber))
        self.room, self.thread_id = room.name, msg.thread_id
        self.moderates = None
        self.ctx.presence.enter(room.name, self.user)
        try:
            await self.send(Subscribed(room=room.name, thread_id=msg.thread_id))
            if thread is not None:
                await self._thread_history(room.name, thread.thread_id, msg.after, resume=True)
                await self._pending(thread.thread_id, msg.pending)
            else:
                await self._room_history(room.name, msg.after)
        finally:
            await self._release_held()
        # This page learns who watches through this instance now, from its own socket;
        # everyone else hears of the newcomer in the coalesced list (other instances
        # answer its ``ask`` with theirs).
        await self.send(self.ctx.presence.event(room.name, self.ctx.instance))
        self.ctx.announcer.changed(room.name, ask=True)
        log.info("socket.subscribed", user=self.user or "-", room=room.name,
                 thread_id=msg.thread_id or "-")

    async def _release_held(self) -> None:
        held, self.held = self.held, []
        self.replaying = False
        for data, event in held:
            if isinstance(event, CommentEvent) and event.comment.id in self.replayed:
                continue  # the history carried it
            frame = self._frame(data, event)
            if frame is not None:
                await self.send_text(frame)
        self.replayed = set()

    async def _thread_history(self, room: str, thread_id: str, after: str | None,
                              *, resume: bool = False) -> None:
        page = self.ctx.settings.web.history_page
        if after is None:
            listed = await self.ctx.storage.comments.list(thread_id, limit=page)
            items, more = listed.items, listed.next is not None
        elif resume:
            # Ids are taken before the write, so a comment can be stored (and shown) after
            # one with a later id: resuming strictly after the last id seen would skip it
            # when the server died in between. A resuming subscription starts a grace
            # window earlier (pages upsert comments by id, so the overlap shows nothing
            # twice) and sends up to RESUME_PAGES pages at once, so the client's "after
            # my last id" paging continues from the end of what it was sent, never from
            # the middle of the overlap.
            cap = page * RESUME_PAGES
            found = await self.ctx.storage.comments.after(thread_id, resume_point(after),
                                                          limit=cap + 1)
            chunks = [found[i : i + page] for i in range(0, min(len(found), cap), page)]
            for chunk in chunks[:-1]:
                await self._send_history(room, thread_id, chunk, more=True)
            items, more = (chunks[-1] if chunks else []), len(found) > cap
        else:
            found = await self.ctx.storage.comments.after(thread_id, after, limit=page + 1)
            items, more = found[:page], len(found) > page
        await self._send_history(room, thread_id, items, more=more)

    async def _shown(self, room: str, author: str) -> bool:
        """Whether this socket's user sees an item of ``author`` the word filter held."""
        if self.moderates is None:
            self.moderates = await self.ctx.sees_held(room, self.user)
        return sees_held(author, self.user, moderator=self.moderates)

    async def _send_history(self, room: str, thread_id: str, items: list[Comment],
                            *, more: bool) -> None:
        items = [c for c in items if not c.held or await self._shown(room, c.author)]
        comments = tuple(comment_out(c, hidden=self.viewer.hides(c.author, c.is_bot))
                         for c in items)
        self.replayed.update(c.id for c in comments)
        await self.send(History(room=room, thread_id=thread_id, comments=comments, more=more))

    async def _room_history(self, room: str, after: str | None) -> None:
        page = self.ctx.settings.web.history_page
        if after is None:
            listed = await self.ctx.storage.threads.list(room, limit=page)
            threads, more = listed.items, listed.next is not None
        else:
            newer = await self.ctx.storage.threads.since(room, ids.id_time(after), limit=page + 1)
            newer = [t for t in newer if t.thread_id > after]
            threads, more = newer[:page], len(newer) > page
        threads = [t for t in threads if not t.held or await self._shown(room, t.author)]
        shown = tuple(thread_out(t) for t in threads
                      if not self.viewer.hides(thread_out(t).author, t.is_bot))
        await self.send(History(room=room, threads=shown, more=more))

    async def _pending(self, thread_id: str, pending: tuple[str, ...]) -> None:
        """Send the current state of placeholders the page still shows (after a reconnect):
        read a query at a time, :data:`PATH_MAX` ids each."""
        wanted = [c for c in dict.fromkeys(pending) if ids.is_id(c) and c not in self.replayed]
        found: list[Comment] = []
        for start in range(0, len(wanted), PATH_MAX):
            try:
                found += await self.ctx.storage.comments.some(thread_id,
                                                              wanted[start:start + PATH_MAX])
            except PlayhouseError as exc:
                log.warning("socket.pending_failed", thread_id=thread_id, reason=str(exc)[:200])
        for comment in found:
            out = comment_out(comment, hidden=self.viewer.hides(comment.author,
                                                                comment.is_bot))
            self.replayed.add(comment.comment_id)
            if comment.status == "placeholder":
                await self.send(Thinking(comment=out))
            else:
                await self.send(CommentReplaced(comment=out))

    async def history(self, msg: HistoryRequest) -> None:
        if self.room is None:
            raise NotSubscribed("subscribe to a room or thread first")
        if not ids.is_id(msg.after):
            raise BadRequest("`after` is not an id")
        if self.thread_id is not None:
            await self._thread_history(self.room, self.thread_id, msg.after)
        else:
            await self._room_history(self.room, msg.after)
        self.replayed = set()

    async def unsubscribe(self) -> None:
        pump, self.pump = self.pump, None
        subscriber, self.subscriber = self.subscriber, None
        await self._drop(pump, subscriber)
        if self.room is not None:
            room, self.room, self.thread_id = self.room, None, None
            self.ctx.presence.leave(room, self.user)
            self.ctx.announcer.changed(room)

    # ------------------------------------------------------------------ posting
    async def post(self, msg: PostMessage) -> None:
        if self.user is None:
            raise LoginRequired("log in to post")
        if self.room is None or self.room.casefold() != msg.room.casefold():
            raise NotSubscribed(f"subscribe to r/{msg.room} before posting there")
        with self.ctx.people.working():  # the bots' results wait (playhouse.priority)
            await check_rate(self.ctx, self.user, self.ip)
            if self.loading is not None:
                await self.loading  # whom the user muted decides whom the post calls
            stored = await store_post(self.ctx, self.user, msg, muted=self.viewer.muted)
            comment_id = stored.comment.comment_id if stored.comment else None
            await self.send(Ack(client_id=msg.client_id, thread_id=stored.thread.thread_id,
                                comment_id=comment_id, called=stored.called,
                                not_called=stored.not_called, notice=stored.notice))
            log.info("post.accepted", user=self.user, room=stored.room.name,
                     thread_id=stored.thread.thread_id, comment_id=comment_id or "-")
            announce(self.ctx, stored)


async def _thread_in(ctx: WebContext, thread_id: str, room: str) -> Thread:
    """The thread, if it is in ``room``; else the one NotFound for a missing thread, so a
    thread elsewhere (a private room's, say) is not told apart from one that is not."""
    try:
        return await ctx.storage.threads.get(thread_id, room=room)
    except NotFound:
        raise no_thread(thread_id, room) from None


RESUME_GRACE_S = 10.0
"""How far before the last id it saw a resuming page is sent comments again."""
RESUME_PAGES = 10
"""Pages of history a resuming subscription is sent at once (then the client pages on)."""


def resume_point(after: str) -> str:
    """The id :data:`RESUME_GRACE_S` earlier than ``after`` (the lowest id of that time)."""
    micros = max(0, int((ids.id_time(after) - RESUME_GRACE_S) * 1_000_000))
    return f"{micros:016x}" + "0" * (ids.ID_LENGTH - 16)


def _same_origin(socket: WebSocket[Any, Any, Any]) -> bool:
    """Refuse cross-site sockets: a browser always sends Origin, and it must be this host."""
    origin = socket.headers.get("origin")
    if origin is None:
        return True  # not a browser (tests, the benchmark, scripts)
    host = socket.headers.get("host", "")
    return urlsplit(origin).netloc.lower() == host.lower()


@websocket("/ws")
async def live_socket(socket: WebSocket[Any, Any, Any]) -> None:
    """The live endpoint: typed JSON frames, see :mod:`playhouse.web.protocol`."""
    if not _same_origin(socket):
        log.warning("socket.refused", reason="cross-origin", origin=socket.headers.get("origin"))
        await socket.close(code=4403, reason="cross-origin websocket refused")
        return
    await Session(context_of(socket), socket).run()
