"""The websocket endpoint ``/ws``: subscribe to a room or a thread, page history, post.

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
from playhouse.errors import Forbidden, NotFound, PlayhouseError, StorageUnavailable
from playhouse.storage.models import Comment
from playhouse.web import views
from playhouse.web.context import (
    SESSION_ID,
    WebContext,
    client_ip,
    context_of,
    current_user,
    ends_session,
    room_channel,
    thread_channel,
    user_channel,
)
from playhouse.web.posting import (
    PostRefused,
    announce,
    check_rate,
    count_in_room,
    store_post,
)
from playhouse.web.protocol import (
    Ack,
    ClientMessage,
    CommentOut,
    CommentReplaced,
    Error,
    ErrorCode,
    Hello,
    History,
    HistoryRequest,
    Ping,
    Pong,
    Post,
    ProtocolError,
    ServerEvent,
    Subscribe,
    Subscribed,
    Thinking,
    Unsubscribe,
    Vote,
    decode_client,
    encode,
)

if TYPE_CHECKING:
    from litestar.channels import Subscriber

log = structlog.get_logger()

_comment_probe = msgspec.json.Decoder(dict[str, Any])


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
        self.held: list[bytes] = []
        self.replayed: set[str] = set()
        self.closed = False
        self.account: Subscriber | None = None
        """The user's own channel: a logout anywhere closes this socket."""
        self.account_pump: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ sending
    async def send(self, event: ServerEvent) -> None:
        await self.send_text(encode(event))

    async def send_text(self, text: str) -> None:
        if self.closed:
            return
        async with self.send_lock:
            try:
                await self.socket.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.closed = True

    async def error(self, code: ErrorCode, reason: str, client_id: str | None = None) -> None:
        await self.send(Error(code=code, reason=reason, client_id=client_id))

    async def _on_event(self, data: bytes) -> None:
        asked = self.ctx.presence.to_answer(data, self.ctx.instance,
                                            asyncio.get_running_loop().time())
        if asked is not None:
            self._publish_presence(asked)
        if self.replaying:
            self.held.append(data)
            return
        await self.send_text(data.decode())

    async def _run_pump(self, subscriber: Subscriber) -> None:
        async for data in subscriber.iter_events():
            await self._on_event(data)
            if self.closed:
                return

    # ------------------------------------------------------------------ the loop
    async def run(self) -> None:
        await self.socket.accept()
        await self.send(Hello(user=self.user, instance=self.ctx.instance))
        log.info("socket.opened", user=self.user or "-", ip=self.ip)
        if self.user is not None:
            self.account = await self.ctx.channels.subscribe([user_channel(self.user)])
            self.account_pump = asyncio.create_task(self._watch_account(self.account))
        try:
            while not self.closed:
                event = await self.socket.receive()
                if event["type"] == "websocket.disconnect":
                    break
                text, data = event.get("text"), event.get("bytes")
                frame = text if isinstance(text, str) else data
                await self.handle_frame(frame if isinstance(frame, str | bytes) else b"")
        except WebSocketDisconnect:
            pass
        finally:
            self.closed = True
            await self.unsubscribe()
            await self._stop_watching_account()
            log.info("socket.closed", user=self.user or "-")

    async def _watch_account(self, subscriber: Subscriber) -> None:
        """Close the socket when its session is logged out (here, or on another instance,
        or everywhere): the page reconnects, and the voided cookie makes the new socket
        anonymous."""
        async for event in subscriber.iter_events():
            if not ends_session(event, self.session_id):
                continue  # another browser of this user logged out
            await self.error("login_required", "you logged out; log in again to post")
            self.closed = True
            with contextlib.suppress(Exception):
                await self.socket.close(code=4401, reason="logged out")
            log.info("socket.logged_out", user=self.user or "-")
            return

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
        try:
            msg = decode_client(frame)
        except ProtocolError as exc:
            await self.error(exc.code, exc.reason, exc.client_id)
            return
        # A failed post is answered with its client id, so the page settles that post
        # (shows the reason, keeps the text) instead of waiting for an ack that never comes.
        client_id = msg.client_id if isinstance(msg, Post | Vote) else None
        try:
            await self.dispatch(msg)
        except StorageUnavailable as exc:
            log.warning("socket.storage_unavailable", user=self.user or "-", reason=str(exc))
            await self.error("overloaded", "storage is unavailable right now: nothing was "
                             "saved; send it again in a moment", client_id)
        except PlayhouseError as exc:
            await self.error("internal", f"could not do that: {exc}", client_id)
        except Exception:
            log.exception("socket.failed", user=self.user or "-")
            await self.error("internal", "the server failed to handle that message", client_id)

    async def dispatch(self, msg: ClientMessage) -> None:
        if isinstance(msg, Post):
            await self.post(msg)
        elif isinstance(msg, Subscribe):
            await self.subscribe(msg)
        elif isinstance(msg, HistoryRequest):
            await self.history(msg)
        elif isinstance(msg, Unsubscribe):
            await self.unsubscribe()
        elif isinstance(msg, Ping):
            await self.send(Pong())
        elif isinstance(msg, Vote):
            from playhouse.web.votes import on_socket_vote

            await on_socket_vote(self, msg)

    # ------------------------------------------------------------ subscriptions
    async def subscribe(self, msg: Subscribe) -> None:
        try:
            room, _ = await self.ctx.readable_room(msg.room, self.user)
            thread = None
            if msg.thread_id is not None:
                thread = await self.ctx.storage.threads.get(msg.thread_id)
                if thread.room.casefold() != room.name.casefold():
                    raise NotFound(f"no thread {msg.thread_id!r} in r/{room.name}")
        except Forbidden as exc:
            await self.error("forbidden", str(exc))
            return
        except NotFound as exc:
            await self.error("not_found", str(exc))
            return
        if msg.after is not None and not ids.is_id(msg.after):
            await self.error("bad_message", "`after` is not an id")
            return
        await self.unsubscribe()
        channels = [room_channel(room.name)]
        if thread is not None:
            channels.append(thread_channel(thread.thread_id))
        self.replaying = True
        self.held, self.replayed = [], set()
        self.subscriber = await self.ctx.channels.subscribe(channels)
        self.pump = asyncio.create_task(self._run_pump(self.subscriber))
        self.room, self.thread_id = room.name, msg.thread_id
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
        self._publish_presence(room.name, ask=True)
        log.info("socket.subscribed", user=self.user or "-", room=room.name,
                 thread_id=msg.thread_id or "-")

    async def _release_held(self) -> None:
        held, self.held = self.held, []
        self.replaying = False
        for data in held:
            if self.replayed and b'"type":"comment"' in data[:20]:
                event = _comment_probe.decode(data)
                if event.get("comment", {}).get("id") in self.replayed:
                    continue
            await self.send_text(data.decode())
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

    async def _send_history(self, room: str, thread_id: str, items: list[Comment],
                            *, more: bool) -> None:
        comments = tuple(views.comment_out(c) for c in items)
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
        await self.send(History(room=room, threads=tuple(views.thread_out(t) for t in threads),
                                more=more))

    async def _pending(self, thread_id: str, pending: tuple[str, ...]) -> None:
        """Send the current state of placeholders the page still shows (after a reconnect)."""
        for comment_id in pending:
            if not ids.is_id(comment_id) or comment_id in self.replayed:
                continue
            try:
                comment = await self.ctx.storage.comments.get(thread_id, comment_id)
            except (NotFound, PlayhouseError):
                continue
            out: CommentOut = views.comment_out(comment)
            self.replayed.add(comment_id)
            if comment.status == "placeholder":
                await self.send(Thinking(comment=out))
            else:
                await self.send(CommentReplaced(comment=out))

    async def history(self, msg: HistoryRequest) -> None:
        if self.room is None:
            await self.error("not_subscribed", "subscribe to a room or thread first")
            return
        if not ids.is_id(msg.after):
            await self.error("bad_message", "`after` is not an id")
            return
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
            self._publish_presence(room)

    def _publish_presence(self, room: str, *, ask: bool = False) -> None:
        self.ctx.publish(self.ctx.presence.event(room, self.ctx.instance, ask=ask),
                         room_channel(room))

    # ------------------------------------------------------------------ posting
    async def post(self, msg: Post) -> None:
        if self.user is None:
            await self.error("login_required", "log in to post", msg.client_id)
            return
        if self.room is None or self.room.casefold() != msg.room.casefold():
            await self.error("not_subscribed", f"subscribe to r/{msg.room} before posting there",
                             msg.client_id)
            return
        try:
            await check_rate(self.ctx, self.user, self.ip)
            stored = await store_post(self.ctx, self.user, msg)
        except PostRefused as exc:
            await self.error(exc.code, exc.reason, msg.client_id)
            return
        comment_id = stored.comment.comment_id if stored.comment else None
        await self.send(Ack(client_id=msg.client_id, thread_id=stored.thread.thread_id,
                            comment_id=comment_id))
        log.info("post.accepted", user=self.user, room=stored.room.name,
                 thread_id=stored.thread.thread_id, comment_id=comment_id or "-")
        announce(self.ctx, stored)
        await count_in_room(self.ctx, stored)


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
