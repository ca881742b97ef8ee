"""The error hierarchy: one base, a few kinds that callers branch on."""

from __future__ import annotations


class PlayhouseError(Exception):
    """Base of every error playhouse raises on purpose."""


class ConfigError(PlayhouseError):
    """Settings or persona files are invalid."""


class StorageUnavailable(PlayhouseError):
    """Azure Storage (or Azurite) cannot be reached."""


class NotFound(PlayhouseError):
    """A row, room, thread or persona does not exist."""


class Forbidden(PlayhouseError):
    """The caller may not see or do this."""


class Conflict(PlayhouseError):
    """A concurrent writer changed the row first (stale ETag) or the row already exists."""


class InvalidInput(PlayhouseError):
    """User or queue input that cannot be accepted; the message says why."""


class InvalidCompletion(PlayhouseError):
    """A model's output failed validation; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ModelUnavailable(PlayhouseError):
    """A persona's model cannot be loaded."""


class Interrupted(PlayhouseError):
    """A batch was stopped part way because its worker is shutting down."""
