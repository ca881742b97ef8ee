"""What the web app runs beside its requests, from its lifespan's start to its end."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

log = structlog.get_logger()


class BackgroundLoop:
    """A coroutine (:meth:`run`) started once and stopped on shutdown; ``run`` returns
    soon after :attr:`stopping` turns true, and waits with :meth:`pause`."""

    name = "loop"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        raise NotImplementedError

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when :meth:`stop` is called meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self.run(), name=self.name)
        log.info("loop.started", loop=self.name)

    async def stop(self) -> None:
        """Ask :meth:`run` to end and wait until it has."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
