"""How far a batch got, told while it runs: a sample rejected, the request re-sampled.

An engine runs in the worker's executor thread and does no I/O; the worker wants to tell
people that their bot is retrying after a rejected sample. :func:`reporting` installs a
sink for the thread that runs one batch, and :func:`report_retry` (called by
:func:`playhouse.generation.completion.complete` between sampling rounds) hands it the
requests about to be sampled again. Engines need no parameter for it, so every engine
(and every fake one) keeps the one ``run`` signature; without a sink nothing happens.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Retry:
    """A request about to be sampled again."""

    key: str
    """The item's key (its queue message id)."""
    attempt: int
    """The attempt about to start (2 for the first retry)."""
    max_attempts: int
    reason: str
    """Why the last sample was rejected."""


class ProgressSink(Protocol):
    def __call__(self, retries: Sequence[Retry]) -> None: ...


_local = threading.local()


@contextlib.contextmanager
def reporting(sink: ProgressSink) -> Iterator[None]:
    """Send what the batch run in this thread reports to ``sink`` (called in this thread:
    hand it to the event loop with ``call_soon_threadsafe``)."""
    previous = getattr(_local, "sink", None)
    _local.sink = sink
    try:
        yield
    finally:
        _local.sink = previous


def report_retry(retries: Sequence[Retry]) -> None:
    """Tell this thread's sink (if any) which requests are sampled again; never raises."""
    sink: ProgressSink | None = getattr(_local, "sink", None)
    if sink is None or not retries:
        return
    with contextlib.suppress(Exception):
        sink(retries)
