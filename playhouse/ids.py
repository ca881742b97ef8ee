"""Time-ordered, collision-free identifiers used as Azure Table row keys.

An id is 26 lowercase hex characters, ``{micros:016x}{counter:04x}{random:06x}``:
microseconds since the epoch, a per-process tie-breaker and a random tail. Lexical order
equals creation order within one process (the counter breaks ties in the same
microsecond) and across processes up to clock skew; the random tail makes collisions
between processes vanishingly unlikely.

``invert(id)`` maps an id to a key that sorts newest-first, so a single-partition
range query lists a room's threads from the newest without scanning.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

_MAX = (1 << 64) - 1
_lock = threading.Lock()
_last_micros = 0
_counter = 0

ID_LENGTH = 26


def new_id(now: float | None = None) -> str:
    """A fresh id that sorts after every id this process made before."""
    global _last_micros, _counter
    micros = int((time.time() if now is None else now) * 1_000_000)
    with _lock:
        if micros <= _last_micros:
            micros = _last_micros
            _counter += 1
            if _counter > 0xFFFF:
                micros += 1
                _counter = 0
        else:
            _counter = 0
        _last_micros = micros
        counter = _counter
    return f"{micros:016x}{counter:04x}{os.urandom(3).hex()}"


def id_time(id_: str) -> float:
    """Seconds since the epoch at which ``id_`` was made."""
    return int(id_[:16], 16) / 1_000_000


def invert(id_: str) -> str:
    """A key that sorts in the opposite order of ``id_`` (newest first)."""
    return "".join(f"{15 - int(c, 16):x}" for c in id_)


def is_id(value: str) -> bool:
    """True when ``value`` has the shape of an id (26 lowercase hex characters)."""
    return len(value) == ID_LENGTH and all(c in "0123456789abcdef" for c in value)


def derived_id(seed_id: str, salt: str) -> str:
    """A deterministic id with the time of ``seed_id``, for idempotent writes.

    The results consumer writes a bot's comment under ``derived_id(request_id, "c")``
    so a redelivered result maps to the same row key.
    """
    tail = hashlib.blake2b(f"{seed_id}:{salt}".encode(), digest_size=5).hexdigest()
    return seed_id[:16] + tail
