"""People first inside one process: the bots' work yields to a person's.

The web app and the worker each do two kinds of work on one event loop and one storage
account: a person's (in the web app, a post being stored and its bots asked, the answer
they wait for being applied; in the worker, a person's request generating and its result
being sent) and the bots' (their results being applied, or sent). :class:`PeopleFirst`
counts the person's work in progress; the bots' work waits for its turn before each
storage step, never longer than ``yield_s`` at a time, so a person's work is not queued
behind writes for bot answers nobody is waiting for, and the bots still move on while
people keep posting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

PEOPLE_FIRST_S = 1.0
"""Longest the bots' work waits for a person's, each time it yields."""


class PeopleFirst:
    """A count of the person's work in progress, and a turn for the bots' work."""

    def __init__(self, yield_s: float = PEOPLE_FIRST_S) -> None:
        self.yield_s = yield_s
        self.busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.yielded = 0
        """How many times the bots' work waited (tests, metrics)."""

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """A person's work is in progress for the duration of the block."""
        self.busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.busy -= 1
            if self.busy == 0:
                self._idle.set()

    async def turn(self) -> None:
        """Return when no person's work is in progress, or after ``yield_s``."""
        if self.busy == 0:
            return
        self.yielded += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.yield_s)
