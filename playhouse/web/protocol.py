"""The websocket protocol: typed JSON messages, one msgspec struct per message type.

Every frame is a JSON object whose ``type`` field names the message (msgspec's tagged
unions). The browser sends :data:`ClientMessage`; the server answers and pushes
:data:`ServerEvent`. Events meant for many sockets are encoded once by :func:`encode`
and published through Litestar Channels as text.

Client → server: ``subscribe``, ``history``, ``post``, ``vote``, ``unsubscribe``, ``ping``.
Server → client: ``hello``, ``subscribed``, ``history``, ``ack``, ``voted``, ``comment``,
``thinking``, ``comment_replaced``, ``thread``, ``score``, ``presence``, ``error``, ``pong``.

Texts travel twice: raw (``text``, ``title``, ``body``) and as the server's safe HTML
(``html``, ``title_html``, ``body_html``, see :mod:`playhouse.web.markdown`), which is
what pages show: a browser never turns text into HTML itself.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from playhouse.constants import COMMENT_MAX_CHARS, TITLE_MAX_CHARS

MAX_FRAME_BYTES: Final = 16 * 1024
"""Largest frame the server reads; a bigger one is answered with an ``error``."""
MAX_PENDING_IDS: Final = 50
CLIENT_ID_MAX: Final = 64

Id = Annotated[str, msgspec.Meta(max_length=64)]
RoomName = Annotated[str, msgspec.Meta(max_length=64)]
ErrorCode = Literal[
    "bad_json",
    "bad_message",
    "frame_too_large",
    "too_long",
    "empty",
    "forged_author",
    "login_required",
    "forbidden",
    "not_found",
    "rate_limited",
    "not_subscribed",
    "overloaded",
    "internal",
]


# --------------------------------------------------------------------------- views
class PersonaLook(msgspec.Struct, frozen=True):
    name: str
    display_name: str
    kind: str
    colour: str
    avatar: str
    bio: str = ""
    rooms: tuple[str, ...] = ()


class CommentOut(msgspec.Struct, frozen=True, kw_only=True):
    """A comment as pages, the API and the websocket show it."""

    id: str
    thread_id: str
    room: str
    parent_id: str | None
    author: str
    is_bot: bool
    text: str
    created_at: str
    """ISO 8601, UTC."""
    status: str = "ok"
    """``ok``, ``placeholder`` (the bot is thinking) or ``failed``."""
    depth: int = 0
    persona: str | None = None
    image_url: str | None = None
    html: str = ""
    """``text`` rendered (safe Markdown); empty while the bot is thinking."""


class ThreadOut(msgspec.Struct, frozen=True, kw_only=True):
    """A thread's post and its activity."""

    id: str
    room: str
    title: str
    body: str
    author: str
    is_bot: bool
    created_at: str
    last_activity: str
    comment_count: int
    url: str | None = None
    persona: str | None = None
    image_url: str | None = None
    title_html: str = ""
    """``title`` rendered inline, without links (listings show it inside a link)."""
    body_html: str = ""


class RoomOut(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str
    public: bool
    threads: int
    comments: int
    last_activity: str | None
    bots: tuple[str, ...]
    default_bot: str | None = None
    member: bool = False


# --------------------------------------------------------------------- client → server
class Subscribe(msgspec.Struct, frozen=True, tag="subscribe", forbid_unknown_fields=True):
    """Watch a room (its new threads) or, with ``thread_id``, one thread's comments.

    ``after`` resumes from the last id the page has seen (a comment id in a thread, a
    thread id in a room); ``pending`` lists placeholders the page still shows, so their
    current state is sent again after a reconnect.
    """

    room: RoomName
    thread_id: Id | None = None
    after: Id | None = None
    pending: Annotated[tuple[Id, ...], msgspec.Meta(max_length=MAX_PENDING_IDS)] = ()


class HistoryRequest(msgspec.Struct, frozen=True, tag="history", forbid_unknown_fields=True):
    """The next page of a thread's comments after ``after`` (the subscription's thread)."""

    after: Id


class Post(msgspec.Struct, frozen=True, tag="post", forbid_unknown_fields=True):
    """Start a thread (``thread_id`` null, ``title`` set) or reply in one.

    The author is always the session's user: there is no author field, and a frame that
    carries one is refused as forged.
    """

    room: RoomName
    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=CLIENT_ID_MAX)]
    text: Annotated[str, msgspec.Meta(max_length=COMMENT_MAX_CHARS * 4)] = ""
    title: Annotated[str, msgspec.Meta(max_length=TITLE_MAX_CHARS * 4)] = ""
    thread_id: Id | None = None
    parent_id: Id | None = None


class Vote(msgspec.Struct, frozen=True, tag="vote", forbid_unknown_fields=True):
    """Vote on a thread's post (``comment_id`` null) or one of its comments: +1 up, -1
    down, 0 withdraws. The voter is the session's user; ``room`` must be the socket's
    subscription. Answered by ``voted`` (or an ``error`` with the same ``client_id``)."""

    room: RoomName
    thread_id: Id
    value: Literal[-1, 0, 1]
    comment_id: Id | None = None
    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=CLIENT_ID_MAX)] | None = None


class Unsubscribe(msgspec.Struct, frozen=True, tag="unsubscribe", forbid_unknown_fields=True):
    pass


class Ping(msgspec.Struct, frozen=True, tag="ping", forbid_unknown_fields=True):
    pass


ClientMessage = Subscribe | HistoryRequest | Post | Vote | Unsubscribe | Ping


# --------------------------------------------------------------------- server → client
class Hello(msgspec.Struct, frozen=True, tag="hello", kw_only=True):
    user: str | None
    instance: str


class Subscribed(msgspec.Struct, frozen=True, tag="subscribed", kw_only=True):
    room: str
    thread_id: str | None = None


class History(msgspec.Struct, frozen=True, tag="history", kw_only=True):
    """A page of what the subscriber missed: comments (oldest first) or threads."""

    room: str
    thread_id: str | None = None
    comments: tuple[CommentOut, ...] = ()
    threads: tuple[ThreadOut, ...] = ()
    more: bool = False


class Ack(msgspec.Struct, frozen=True, tag="ack", kw_only=True):
    """The post with this ``client_id`` is stored (sent before it is broadcast)."""

    client_id: str
    thread_id: str
    comment_id: str | None = None


class Voted(msgspec.Struct, frozen=True, tag="voted", kw_only=True):
    """The vote with this ``client_id`` is stored: the voter's vote now and the item's."""

    client_id: str | None
    thread_id: str
    item_id: str
    """The thread id itself for the post, else the comment id."""
    value: int
    ups: int
    downs: int
    score: int
    version: int


class ScoreEvent(msgspec.Struct, frozen=True, tag="score", kw_only=True):
    """An item's votes changed (at most about one event per item per second: a burst of
    votes is coalesced). ``version`` grows with every vote: keep the highest seen."""

    room: str
    thread_id: str
    item_id: str
    ups: int
    downs: int
    score: int
    version: int


class CommentEvent(msgspec.Struct, frozen=True, tag="comment", kw_only=True):
    comment: CommentOut


class Thinking(msgspec.Struct, frozen=True, tag="thinking", kw_only=True):
    """A bot was asked to answer: its placeholder comment."""

    comment: CommentOut


class CommentReplaced(msgspec.Struct, frozen=True, tag="comment_replaced", kw_only=True):
    """A placeholder became the bot's answer (or its visible failure note)."""

    comment: CommentOut


class ThreadEvent(msgspec.Struct, frozen=True, tag="thread", kw_only=True):
    """A new thread, or fresh activity (reply count, last activity) on one: upsert by id."""

    thread: ThreadOut


class Presence(msgspec.Struct, frozen=True, tag="presence", kw_only=True):
    """Who watches ``room`` through the server ``instance`` (merge instances client-side)."""

    room: str
    instance: str
    users: tuple[str, ...]
    anonymous: int
    ask: bool = False
    """Someone started watching through ``instance``: every other instance with viewers of
    ``room`` answers with its own list, so the newcomer's page sees them all at once."""


class Error(msgspec.Struct, frozen=True, tag="error", kw_only=True):
    code: ErrorCode
    reason: str
    client_id: str | None = None


class Pong(msgspec.Struct, frozen=True, tag="pong"):
    pass


ServerEvent = (
    Hello
    | Subscribed
    | History
    | Ack
    | Voted
    | ScoreEvent
    | CommentEvent
    | Thinking
    | CommentReplaced
    | ThreadEvent
    | Presence
    | Error
    | Pong
)

_encoder = msgspec.json.Encoder()
_client_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
_server_decoder: msgspec.json.Decoder[ServerEvent] = msgspec.json.Decoder(ServerEvent)
_probe_decoder = msgspec.json.Decoder(dict[str, object])


class ProtocolError(Exception):
    """A frame that is not a valid client message; ``code`` and ``reason`` go back to it."""

    def __init__(self, code: ErrorCode, reason: str, client_id: str | None = None) -> None:
        super().__init__(reason)
        self.code: ErrorCode = code
        self.reason = reason
        self.client_id = client_id


def encode(event: ServerEvent | ClientMessage) -> str:
    """JSON text of a message (encoded once, then sent to every subscriber)."""
    return _encoder.encode(event).decode()


def decode_client(frame: str | bytes) -> ClientMessage:
    """Parse one frame from a browser, raising :class:`ProtocolError` with the reason."""
    size = len(frame.encode() if isinstance(frame, str) else frame)
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(
            "frame_too_large", f"frame is {size} bytes, at most {MAX_FRAME_BYTES} are read"
        )
    try:
        return _client_decoder.decode(frame)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: test it first
        raise _explain(frame, exc) from exc
    except msgspec.DecodeError as exc:
        raise ProtocolError("bad_json", f"not JSON: {exc}") from exc


def decode_server(frame: str | bytes) -> ServerEvent:
    """Parse a server event (tests and the benchmark use it)."""
    return _server_decoder.decode(frame)


def _explain(frame: str | bytes, exc: msgspec.ValidationError) -> ProtocolError:
    try:
        raw = _probe_decoder.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ProtocolError("bad_message", "a message is a JSON object with a `type` field")
    client_id = raw.get("client_id")
    cid = client_id if isinstance(client_id, str) and len(client_id) <= CLIENT_ID_MAX else None
    if raw.get("type") == "post" and ("author" in raw or "is_bot" in raw):
        return ProtocolError(
            "forged_author", "the author of a post is the logged-in user; drop `author`", cid
        )
    message = str(exc)
    if "Invalid value" in message and "type" in message:
        return ProtocolError("bad_message", f"unknown message type {str(raw.get('type'))[:40]!r}")
    return ProtocolError("bad_message", message, cid)
