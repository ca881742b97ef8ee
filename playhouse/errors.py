"""The error hierarchy: one base, and one class per way a request can be refused.

Every refusal the site gives — over HTTP, over the websocket, from a queue handler — is a
:class:`PlayhouseError` subclass. Each class carries its wire ``code`` (what a websocket
``error`` frame and a JSON answer say) and its HTTP ``status``; :data:`CODES` lists them
in one table, and the HTTP handler and the websocket map an error through it and nothing
else. Callers branch on the class, never on the message text.
"""

from __future__ import annotations

from typing import ClassVar, Literal

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
    "conflict",
    "rate_limited",
    "too_fast",
    "too_many_sockets",
    "not_subscribed",
    "overloaded",
    "config",
    "model_unavailable",
    "invalid_completion",
    "interrupted",
    "internal",
]


class PlayhouseError(Exception):
    """Base of every error playhouse raises on purpose; ``str()`` is the reason shown."""

    code: ClassVar[ErrorCode] = "internal"
    status: ClassVar[int] = 500


class ConfigError(PlayhouseError):
    """Settings or persona files are invalid."""

    code: ClassVar[ErrorCode] = "config"


class StorageUnavailable(PlayhouseError):
    """Azure Storage (or Azurite) cannot be reached: nothing was saved, try again."""

    code: ClassVar[ErrorCode] = "overloaded"
    status: ClassVar[int] = 503


class NotFound(PlayhouseError):
    """A row, room, thread or persona does not exist."""

    code: ClassVar[ErrorCode] = "not_found"
    status: ClassVar[int] = 404


class Forbidden(PlayhouseError):
    """The caller may not see or do this."""

    code: ClassVar[ErrorCode] = "forbidden"
    status: ClassVar[int] = 403


class LoginRequired(Forbidden):
    """Only a logged-in person may do this."""

    code: ClassVar[ErrorCode] = "login_required"
    status: ClassVar[int] = 401


class Conflict(PlayhouseError):
    """A concurrent writer changed the row first (stale ETag) or the row already exists."""

    code: ClassVar[ErrorCode] = "conflict"
    status: ClassVar[int] = 409


class RateLimited(PlayhouseError):
    """Too many of these too fast; the reason says when to try again."""

    code: ClassVar[ErrorCode] = "rate_limited"
    status: ClassVar[int] = 429


class TooFast(RateLimited):
    """A websocket sending more messages than its budget: this one was not handled."""

    code: ClassVar[ErrorCode] = "too_fast"


class TooManySockets(RateLimited):
    """More live sockets open at once from one address, or for one user, than allowed."""

    code: ClassVar[ErrorCode] = "too_many_sockets"


class InvalidInput(PlayhouseError):
    """User or queue input that cannot be accepted; the message says why."""

    code: ClassVar[ErrorCode] = "bad_message"
    status: ClassVar[int] = 400


class BadRequest(InvalidInput):
    """A well-formed message that asks for something that cannot be (a name that cannot
    exist, an id of the wrong shape)."""

    code: ClassVar[ErrorCode] = "bad_request"


class BadJson(InvalidInput):
    """A frame that is not JSON."""

    code: ClassVar[ErrorCode] = "bad_json"


class FrameTooLarge(InvalidInput):
    """A frame larger than the server reads."""

    code: ClassVar[ErrorCode] = "frame_too_large"
    status: ClassVar[int] = 413


class TooLong(InvalidInput):
    """A text over its length limit."""

    code: ClassVar[ErrorCode] = "too_long"


class Empty(InvalidInput):
    """A text that is empty once cleaned."""

    code: ClassVar[ErrorCode] = "empty"


class ForgedAuthor(InvalidInput):
    """A post that names its own author: the author is always the logged-in user."""

    code: ClassVar[ErrorCode] = "forged_author"


class NotSubscribed(InvalidInput):
    """A websocket message that needs a subscription first."""

    code: ClassVar[ErrorCode] = "not_subscribed"


class InvalidCompletion(PlayhouseError):
    """A model's output failed validation; ``reason`` is a short machine-readable code."""

    code: ClassVar[ErrorCode] = "invalid_completion"

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ModelUnavailable(PlayhouseError):
    """A persona's model cannot be loaded."""

    code: ClassVar[ErrorCode] = "model_unavailable"
    status: ClassVar[int] = 503


class Interrupted(PlayhouseError):
    """A batch was stopped part way because its worker is shutting down."""

    code: ClassVar[ErrorCode] = "interrupted"
    status: ClassVar[int] = 503


CODES: dict[type[PlayhouseError], tuple[ErrorCode, int]] = {
    cls: (cls.code, cls.status)
    for cls in (
        PlayhouseError, ConfigError, StorageUnavailable, NotFound, Forbidden, LoginRequired,
        Conflict, RateLimited, TooFast, TooManySockets, InvalidInput, BadRequest, BadJson,
        FrameTooLarge, TooLong, Empty, ForgedAuthor, NotSubscribed, InvalidCompletion,
        ModelUnavailable, Interrupted,
    )
}
"""Every error class with its wire code and HTTP status (a test checks each code has one)."""


def describe(exc: BaseException) -> tuple[ErrorCode, int, str]:
    """(code, HTTP status, reason) for any exception: a PlayhouseError by its class, any
    other as an internal error whose details stay in the log."""
    if isinstance(exc, PlayhouseError):
        return exc.code, exc.status, str(exc) or exc.code.replace("_", " ")
    return "internal", 500, "the server failed to handle that"
