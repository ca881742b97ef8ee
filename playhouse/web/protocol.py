"""The websocket protocol: typed JSON messages, one msgspec struct per message type.

Every frame is a JSON object whose ``type`` field names the message (msgspec's tagged
unions). The browser sends :data:`ClientMessage`; the server answers and pushes
:data:`ServerEvent`. Events meant for many sockets are encoded once by :func:`encode`
and published through Litestar Channels as text.

Client → server: ``subscribe``, ``history``, ``post``, ``unsubscribe``, ``ping``.
Server → client: ``hello``, ``subscribed``, ``history``, ``ack``, ``comment``,
``thinking``, ``comment_replaced``, ``thread``, ``presence``, ``error``, ``pong``.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

import msgspec

from playhouse.constants import COMMENT_MAX_CHARS, TITLE_MAX_CHARS

MAX_PENDING_IDS: Final = 20
"""Placeholders one ``subscribe`` may ask about (each is a storage read)."""
CLIENT_ID_MAX: Final = 64
ID_MAX: Final = 64
ROOM_NAME_MAX: Final = 64

Id = Annotated[str, msgspec.Meta(max_length=ID_MAX)]
RoomName = Annotated[str, msgspec.Meta(max_length=ROOM_NAME_MAX)]
ErrorCode = Literal[
    "bad_json",
    "bad_message",
    "bad_request",
    "frame_too_large",
    "too_long",
    "empty",
    "forged_author",
    "login_required",
    "forbidden",
    "not_found",
    "rate_limited",
    "too_fast",
    "too_many_sockets",
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
    text: str = ""
    """At most ``COMMENT_MAX_CHARS`` (a longer one is refused ``too_long``, saying so)."""
    title: str = ""
    """At most ``TITLE_MAX_CHARS``; the frame's size bounds both."""
    thread_id: Id | None = None
    parent_id: Id | None = None


class Unsubscribe(msgspec.Struct, frozen=True, tag="unsubscribe", forbid_unknown_fields=True):
    pass


class Ping(msgspec.Struct, frozen=True, tag="ping", forbid_unknown_fields=True):
    pass


ClientMessage = Subscribe | HistoryRequest | Post | Unsubscribe | Ping


def largest_valid_post() -> int:
    """Bytes of the largest frame a valid post can take: its title and text at their
    character limits, its names and ids at theirs, every character the costliest a JSON
    encoder may write for it (one outside the BMP, escaped as a surrogate pair
    ``\\ud83d\\ude00``: 12 bytes; a CJK character is 3 in UTF-8, 6 escaped; a quote 2)."""
    import json

    worst = "\U0001F600"
    post = {"type": "post", "room": worst * ROOM_NAME_MAX, "client_id": worst * CLIENT_ID_MAX,
            "text": worst * COMMENT_MAX_CHARS, "title": worst * TITLE_MAX_CHARS,
            "thread_id": worst * ID_MAX, "parent_id": worst * ID_MAX}
    return len(json.dumps(post, ensure_ascii=True).encode())


MAX_FRAME_BYTES: Final = largest_valid_post() + 1024
"""Largest frame the server reads (a bigger one is answered ``frame_too_large``): room for
the largest valid post however it is encoded, with some to spare for whitespace."""


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
    called: tuple[str, ...] = ()
    """The bots the post asks."""
    not_called: tuple[str, ...] = ()
    """Bots it named that are not asked (over the per-post cap or the user's rate)."""
    notice: str | None = None
    """Said to the poster when some bots are not asked."""


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
    """Parse one frame from a browser, raising :class:`ProtocolError` with the reason and,
    whenever the frame names one, its ``client_id`` (so the page settles that post).

    Nothing else escapes, whatever the frame holds: msgspec raises ``RecursionError`` for
    nesting past its limit (a 2 KB frame of brackets), and any other failure of the
    decoder on hostile input is the frame's fault too.
    """
    try:
        return _decode_client(frame)
    except ProtocolError as exc:
        if exc.client_id is None:
            exc.client_id = client_id_of(frame)
        raise


def _decode_client(frame: str | bytes) -> ClientMessage:
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
    except RecursionError as exc:
        raise ProtocolError("bad_message", "the message is nested too deeply "
                            "(a message is a flat JSON object)") from exc
    except Exception as exc:  # untrusted input: whatever the decoder raised, it is the frame's
        raise ProtocolError("bad_message", f"not a message ({type(exc).__name__})") from exc


def decode_server(frame: str | bytes) -> ServerEvent:
    """Parse a server event (tests and the benchmark use it)."""
    return _server_decoder.decode(frame)


def _explain(frame: str | bytes, exc: msgspec.ValidationError) -> ProtocolError:
    try:
        raw = _probe_decoder.decode(frame)
    except msgspec.ValidationError:
        return ProtocolError("bad_message", "a message is a JSON object with a `type` field")
    except Exception:  # the probe decodes every value: deep nesting, numbers out of range
        return ProtocolError("bad_message", f"not a valid message: {exc}")
    client_id = raw.get("client_id")
    cid = client_id if isinstance(client_id, str) and len(client_id) <= CLIENT_ID_MAX else None
    if raw.get("type") == "post" and ("author" in raw or "is_bot" in raw):
        return ProtocolError(
            "forged_author", "the author of a post is the logged-in user; drop `author`", cid
        )
    message = str(exc)
    if "Invalid value" in message and "type" in message:
        return ProtocolError("bad_message",
                             f"unknown message type {str(raw.get('type'))[:40]!r}", cid)
    return ProtocolError("bad_message", message, cid)


class _ClientIdProbe(msgspec.Struct):
    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=CLIENT_ID_MAX)] | None = None


_client_id_decoder = msgspec.json.Decoder(_ClientIdProbe)


_CLIENT_ID = re.compile(rf'"client_id"\s*:\s*"([^"\\\x00-\x1f]{{1,{CLIENT_ID_MAX}}})"')


def client_id_of(frame: str | bytes) -> str | None:
    """The ``client_id`` a frame carries, or None (no usable id): what an error about the
    frame is sent back with, so the page settles that post instead of waiting for an
    answer that never comes. A frame that does not decode (cut short, nested too deep,
    not JSON after the id) is searched for the first ``"client_id": "…"`` in it."""
    try:
        return _client_id_decoder.decode(frame).client_id
    except msgspec.ValidationError:
        return None  # decoded, but there is no usable id at its top level
    except Exception:  # any malformed frame (msgspec also raises RecursionError)
        text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        found = _CLIENT_ID.search(text)
        return found.group(1) if found else None
