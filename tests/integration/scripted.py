"""A scripted engine: the real worker, generating canned text instead of running a model.

The worker loop, its queues, batching, retries and results are all real; only the text
is written by a seeded script, so scheduling tests run fast and reproducibly. The text
depends only on what is asked (persona, room, the post and chain), never on ids or on
the order requests arrive in.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
from collections import Counter
from collections.abc import AsyncIterator, Sequence

from playhouse.config import WorkerSettings
from playhouse.constants import QUEUE_BACKGROUND, QUEUE_INTERACTIVE, QUEUE_RESULTS, RESULT_QUEUES
from playhouse.generation.completion import Outcome
from playhouse.generation.engines import Engine
from playhouse.generation.worker import Worker
from playhouse.messages import GenerationRequest, GenerationResult, decode_result
from playhouse.personas import Cast, Persona
from playhouse.storage import Storage

from .web_support import build, ctx_of, serve

WORKER = WorkerSettings(gather_ms=0, visibility_timeout_s=60, poll_min_s=0.01, poll_max_s=0.05)


class ScriptedEngine:
    kind: str = "text"
    queues: tuple[str, ...] = (QUEUE_INTERACTIVE, QUEUE_BACKGROUND)

    def __init__(self, cast: Cast, seed: int) -> None:
        self.cast = cast
        self.seed = seed
        self.generated: Counter[str] = Counter()
        """Times each request id was generated."""

    def _rng(self, request: GenerationRequest) -> random.Random:
        post = request.post
        chain = "|".join(f"{c.author}:{c.text}" for c in request.chain)
        key = f"{self.seed}:{request.persona}:{request.kind}:{request.room}:" \
              f"{post.title if post else ''}:{chain}"
        return random.Random(hashlib.sha256(key.encode()).digest())

    def text(self, request: GenerationRequest) -> str:
        rng = self._rng(request)
        words = [w for p in sorted(self.cast.personas.values(), key=lambda p: p.name)
                 for w in p.keywords.positive] or ["words"]
        text = f"{rng.choice(words)} and {rng.choice(words)} again"
        roll = rng.random()
        if roll < 0.3:
            text += "?"
        elif roll < 0.4:
            others = [p.name for p in self.cast.in_room(request.room) if p.name != request.persona]
            if others:
                text += f" u/{rng.choice(others)}"
        return text

    def run(self, persona: Persona, entries: Sequence[tuple[str, GenerationRequest]],
            seed: int | None, abort: threading.Event) -> list[Outcome]:
        outcomes = []
        for key, request in entries:
            self.generated[request.request_id] += 1
            text = self.text(request)
            title = f"{request.persona} on {text}" if request.kind == "post" else ""
            outcomes.append(Outcome(key, request, True, title=title, text=text, attempts=1,
                                    tokens=len(text.split())))
        return outcomes

    def close(self) -> None:
        pass


class Answering:
    """The real worker (any engine) and the web app's real results consumer: every request
    queued is generated, applied and counted by :meth:`drain`."""

    def __init__(self, storage: Storage, cast: Cast, engine: Engine, *, seed: int = 5) -> None:
        self.storage = storage
        self.cast = cast
        self.engine = engine
        self.seed = seed

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Answering]:
        self.app = await build(self.storage, cast=self.cast)
        async with serve(self.app):
            yield self

    async def drain(self) -> list[GenerationResult]:
        """Generate what is queued (a burst of the worker), apply every result through the
        consumer, write the counters; the results applied."""
        worker = Worker(queues=self.storage.queues, blobs=self.storage.blobs, cast=self.cast,
                        engine=self.engine, settings=WORKER, burst=True, seed=self.seed)
        await worker.main()
        raw: list[bytes] = []  # read them all (to return), then hand them over again
        for queue in RESULT_QUEUES:
            while messages := await self.storage.queues.receive(queue, visibility_timeout=60):
                for message in messages:
                    raw.append(message.content)
                    await self.storage.queues.delete(message)
        for data in raw:
            await self.storage.queues.send(QUEUE_RESULTS, data)
        consumer = self.app.state["consumer"]
        while await consumer.run_once():
            pass
        await ctx_of(self.app).counters.flush()
        return [decode_result(data) for data in raw]
