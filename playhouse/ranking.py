"""How threads and comments rank: Reddit's hot, the Wilson lower bound, controversy.

Pure functions of vote counts and times, shared by the listing index (which turns a rank
into a row key, so a single-partition range query returns the best first) and by the
pages (which sort a thread's comments in memory).

* **hot** (a room's default order): ``sign(s)·log10(max(|s|, 1)) + (t - EPOCH) / 45000``
  where ``s`` is ups minus downs and ``t`` the creation time in seconds. Ten times the
  score is worth 12.5 hours of age, and the rank of a thread never changes while nobody
  votes, so the order does not need re-sorting as time passes.
* **wilson** (a thread's "best" comments, the leaderboard): the lower bound of the
  Wilson score interval of the up-vote share at 80% confidence (z = 1.2816), so one
  up-vote out of one does not beat 90 out of 100.
* **controversy**: many votes, evenly split: ``(ups + downs) ** (minority / majority)``,
  0 unless the item has both kinds.

The ``*_key`` functions encode a rank as fixed-width digits that sort best first.
"""

from __future__ import annotations

import math

HOT_EPOCH = 1_134_028_003
"""Reddit's epoch for hot (8 December 2005); only differences matter."""
HOT_PERIOD_S = 45_000
"""Seconds of age that weigh as much as a tenfold score."""
WILSON_Z = 1.281551565545
"""80% one-sided confidence, as Reddit's "best"."""

_HOT_SCALE = 10_000_000
_HOT_OFFSET = 10**16
_TOP_OFFSET = 10**13
_MAX_MICROS = (1 << 64) - 1


def hot(ups: int, downs: int, created_at: float) -> float:
    """Reddit's hot rank of an item with these votes, made at ``created_at`` (epoch s)."""
    score = ups - downs
    order = math.log10(max(abs(score), 1))
    sign = 1 if score > 0 else -1 if score < 0 else 0
    return round(sign * order + (created_at - HOT_EPOCH) / HOT_PERIOD_S, 7)


def wilson(ups: int, total: int, z: float = WILSON_Z) -> float:
    """Lower bound of the Wilson interval of ``ups / total``; 0.0 without votes."""
    if total <= 0:
        return 0.0
    ups = min(max(ups, 0), total)
    p = ups / total
    z2 = z * z
    centre = p + z2 / (2 * total)
    spread = z * math.sqrt((p * (1 - p) + z2 / (4 * total)) / total)
    return max(0.0, (centre - spread) / (1 + z2 / total))


def controversy(ups: int, downs: int) -> float:
    """How evenly split and how large the vote is (0.0 unless both kinds exist)."""
    if ups <= 0 or downs <= 0:
        return 0.0
    magnitude = ups + downs
    balance = downs / ups if ups > downs else ups / downs
    return float(magnitude**balance)


def hot_key(ups: int, downs: int, created_at: float) -> str:
    """17 digits; a hotter item has a smaller key."""
    value = _HOT_OFFSET - round(hot(ups, downs, created_at) * _HOT_SCALE)
    return f"{min(max(value, 0), 10**17 - 1):017d}"


def top_key(score: int) -> str:
    """14 digits; a higher score has a smaller key."""
    value = _TOP_OFFSET - score
    return f"{min(max(value, 0), 10**14 - 1):014d}"


def recent_key(ts: float) -> str:
    """16 hex digits; a later time has a smaller key."""
    micros = min(max(int(ts * 1_000_000), 0), _MAX_MICROS)
    return f"{_MAX_MICROS - micros:016x}"
