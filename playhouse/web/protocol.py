"""The websocket protocol: typed JSON messages, one msgspec struct per message type.

Every frame is a JSON object whose ``type`` field names the message (msgspec's tagged
unions). The browser sends :data:`ClientMessage`; the server answers and pushes
:data:`ServerEvent`: the answers below, and the live events of :mod:`playhouse.events`
(published once for every watcher). A refused frame is answered with :class:`Error`,
whose code comes from :mod:`playhouse.errors`.

Client → server: ``subscribe``, ``history``, ``post``, ``vote``, ``unsubscribe``, ``ping``.
Server → client: ``hello``, ``subscribed``, ``history``, ``ack``, ``voted``, ``error``,
``pong``, and the live events (``comment``, ``thinking``, ``comment_replaced``,
``comment_changed``, ``waiting``, ``thread``, ``thread_changed``, ``score``, ``presence``,
``inbox``, ``prefs``, ...).

Texts travel twice: raw and as the server's safe HTML (:mod:`playhouse.views`,
:mod:`playhouse.markdown`), which is what pages show.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

import msgspec

from playhouse.constants import COMMENT_MAX_CHARS, TITLE_MAX_CHARS
from playhouse.errors import BadJson, ErrorCode, ForgedAuthor, FrameTooLarge, InvalidInput
from playhouse.events import LiveEvent
from playhouse.views import CommentOut, ThreadOut

MAX_PENDING_IDS: Final = 20
"""Placeholders one ``subscribe`` may ask about (each is a storage read)."""
CLIENT_ID_MAX: Final = 64
ID_MAX: Final = 64
ROOM_NAME_MAX: Final = 64

Id = Annotated[str, msgspec.Meta(max_length=ID_MAX)]
RoomText = Annotated[str, msgspec.Meta(max_length=ROOM_NAME_MAX)]


# --------------------------------------------------------------------- client → server
class Subscribe(msgspec.Struct, frozen=True, tag="subscribe", forbid_unknown_fields=True):
    """Watch a room (its new threads) or, with ``thread_id``, one thread's comments.

    ``after`` resumes from the last id the page has seen (a comment id in a thread, a
    thread id in a room); ``pending`` lists placeholders the page still shows, so their
    current state is sent again after a reconnect.
    """

    room: RoomText
    thread_id: Id | None = None
    after: Id | None = None
    pending: Annotated[tuple[Id, ...], msgspec.Meta(max_length=MAX_PENDING_IDS)] = ()


class HistoryRequest(msgspec.Struct, frozen=True, tag="history", forbid_unknown_fields=True):
    """The next page of a thread's comments after ``after`` (the subscription's thread)."""

    after: Id


class PostMessage(msgspec.Struct, frozen=True, tag="post", forbid_unknown_fields=True):
    """Start a thread (``thread_id`` null, ``title`` set) or reply in one.

    The author is always the session's user: there is no author field, and a frame that
    carries one is refused as forged.
    """

    room: RoomText
    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=CLIENT_ID_MAX)]
    text: str = ""
    """At most ``COMMENT_MAX_CHARS`` (a longer one is refused ``too_long``, saying so)."""
    title: str = ""
    """At most ``TITLE_MAX_CHARS``; the frame's size bounds both."""
    thread_id: Id | None = None
    parent_id: Id | None = None


class VoteMessage(msgspec.Struct, frozen=True, tag="vote", forbid_unknown_fields=True):
    """Vote on a thread's post (``comment_id`` null) or one of its comments: +1 up, -1
    down, 0 withdraws. The voter is the session's user; ``room`` must be the socket's
    subscription. Answered by ``voted`` (or an ``error`` with the same ``client_id``)."""

    room: RoomText
    thread_id: Id
    value: Literal[-1, 0, 1]
    comment_id: Id | None = None
    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=CLIENT_ID_MAX)] | None = None


class Unsubscribe(msgspec.Struct, frozen=True, tag="unsubscribe", forbid_unknown_fields=True):
    pass


class Ping(msgspec.Struct, frozen=True, tag="ping", forbid_unknown_fields=True):
    pass


ClientMessage = Subscribe | HistoryRequest | PostMessage | VoteMessage | Unsubscribe | Ping


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


class Error(msgspec.Struct, frozen=True, tag="error", kw_only=True):
    """A refusal: ``code`` names its kind (:data:`playhouse.errors.ErrorCode`), ``reason``
    says what happened in words; ``client_id`` is the refused post's, when it had one."""

    code: ErrorCode
    reason: str
    client_id: str | None = None


class Pong(msgspec.Struct, frozen=True, tag="pong"):
    pass


ServerEvent = Hello | Subscribed | History | Ack | Voted | Error | Pong | LiveEvent

_encoder = msgspec.json.Encoder()
_client_decoder: msgspec.json.Decoder[ClientMessage] = msgspec.json.Decoder(ClientMessage)
_server_decoder: msgspec.json.Decoder[ServerEvent] = msgspec.json.Decoder(ServerEvent)


class _Probe(msgspec.Struct):
    """What a refused frame is looked at for: its type, its client id, a forged author."""

    type: object = None
    client_id: object = None
    author: object = msgspec.UNSET
    is_bot: object = msgspec.UNSET


_probe_decoder = msgspec.json.Decoder(_Probe)


def encode_frame(event: ServerEvent | ClientMessage) -> str:
    """JSON text of a message."""
    return _encoder.encode(event).decode()


def decode_client(frame: str | bytes) -> ClientMessage:
    """Parse one frame from a browser; an :class:`~playhouse.errors.InvalidInput` (of the
    kind that names what is wrong) when it is not a valid client message."""
    size = len(frame.encode() if isinstance(frame, str) else frame)
    if size > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"frame is {size} bytes, at most {MAX_FRAME_BYTES} are read")
    try:
        return _client_decoder.decode(frame)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: test it first
        raise _explain(frame, exc) from exc
    except msgspec.DecodeError as exc:
        raise BadJson(f"not JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidInput("the message is nested too deeply (a message is a flat JSON "
                           "object)") from exc
    except Exception as exc:  # untrusted input: whatever the decoder raised, it is the frame's
        raise InvalidInput(f"not a message ({type(exc).__name__})") from exc


_CLIENT_ID = re.compile(rf'"client_id"\s*:\s*"([^"\\\x00-\x1f]{{1,{CLIENT_ID_MAX}}})"')


def client_id_of(frame: str | bytes) -> str | None:
    """The ``client_id`` a frame carries, or None (no usable id): what an error about the
    frame is sent back with, so the page settles that post instead of waiting for an
    answer that never comes. A frame that does not decode (cut short, nested too deep,
    not JSON after the id) is searched for the first ``"client_id": "…"`` in it."""
    probe = _probe(frame)
    if probe is not None:
        cid = probe.client_id
        return cid if isinstance(cid, str) and 0 < len(cid) <= CLIENT_ID_MAX else None
    text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
    found = _CLIENT_ID.search(text)
    return found.group(1) if found else None


def _probe(frame: str | bytes) -> _Probe | None:
    try:
        return _probe_decoder.decode(frame)
    except Exception:  # any malformed frame (msgspec also raises RecursionError)
        return None


def decode_server(frame: str | bytes) -> ServerEvent:
    """Parse a server event (tests and the benchmark use it)."""
    return _server_decoder.decode(frame)


def _explain(frame: str | bytes, exc: msgspec.ValidationError) -> InvalidInput:
    raw = _probe(frame)
    if raw is None:
        return InvalidInput("a message is a JSON object with a `type` field")
    if raw.type == "post" and (raw.author is not msgspec.UNSET or raw.is_bot is not msgspec.UNSET):
        return ForgedAuthor("the author of a post is the logged-in user; drop `author`")
    message = str(exc)
    if "Invalid value" in message and "type" in message:
        return InvalidInput(f"unknown message type {str(raw.type)[:40]!r}")
    return InvalidInput(message)
