"""What a worker counts: batches, answers, failures, the latency of its batches, and per
persona its samples and why they were rejected. The heartbeat reports these figures (the
status page and ``/metrics`` read them)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from playhouse.storage.ops import BATCH_BUCKETS, LATENCY_BUCKETS

if TYPE_CHECKING:
    from playhouse.explain import Trace


@dataclass
class PersonaStats:
    answered: int = 0
    failed: int = 0
    last_answer_at: float = 0.0
    last_error: str = ""
    samples: int = 0
    """Samples drawn (every attempt of every request)."""
    rejections: dict[str, int] = field(default_factory=dict)
    """Rejected samples by reason (``no_end_tag``, ``near_copy`` ...)."""

    def sampled(self, trace: Trace | None) -> None:
        """Count the attempts of one request."""
        if trace is None:
            return
        for attempt in trace.attempts:
            self.samples += 1
            if not attempt.accepted:
                reason = attempt.reason or "invalid"
                self.rejections[reason] = self.rejections.get(reason, 0) + 1


@dataclass
class WorkerStats:
    batches: int = 0
    answered: int = 0
    failed: int = 0
    poisoned: int = 0
    renewals: int = 0
    generated_s: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)
    tokens: int = 0
    batch_counts: list[int] = field(default_factory=lambda: [0] * (len(BATCH_BUCKETS) + 1))
    """Batches per :data:`BATCH_BUCKETS` bound (not cumulative), the last one +Inf."""
    latency_counts: list[int] = field(
        default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1)
    )
    """Requests per :data:`LATENCY_BUCKETS` bound of their batch's generation time."""
    latency_sum: float = 0.0
    personas: dict[str, PersonaStats] = field(default_factory=dict)
    last_error: str = ""
    last_error_at: float = 0.0

    def batch(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.generated_s += seconds
        self.batch_sizes.append(size)
        self.batch_counts[_bucket(BATCH_BUCKETS, size)] += 1
        self.latency_counts[_bucket(LATENCY_BUCKETS, seconds)] += size
        self.latency_sum += seconds * size

    def persona(self, name: str) -> PersonaStats:
        return self.personas.setdefault(name, PersonaStats())

    def error(self, persona: str | None, reason: str) -> None:
        self.last_error, self.last_error_at = reason[:500], time.time()
        if persona:
            stats = self.persona(persona)
            stats.failed += 1
            stats.last_error = reason[:500]


def _bucket(bounds: Sequence[float], value: float) -> int:
    return next((i for i, bound in enumerate(bounds) if value <= bound), len(bounds))


__all__ = ["PersonaStats", "WorkerStats"]
