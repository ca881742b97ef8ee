"""Helpers for the "why this reply?" and waiting tests: a canned model behind the real
text engine (real prompts in the real grammar, real re-sampling), the real worker, and
the app's own results consumer applying what it answers."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from litestar import Litestar

from playhouse.config import WorkerSettings
from playhouse.generation.engines import TextEngine
from playhouse.generation.heartbeat import Heartbeat
from playhouse.generation.text import SamplingParams
from playhouse.generation.worker import Worker
from playhouse.personas import Cast, load_cast_strict
from playhouse.storage import Storage
from playhouse.web.consumer import ResultsConsumer

from .conftest import SHIPPED_PERSONAS
from .web_support import ctx_of

WORKER = WorkerSettings(gather_ms=0, visibility_timeout_s=60, poll_min_s=0.01, poll_max_s=0.05)
REJECTED = "rambling on without ever closing the tag"


class CannedModel:
    """Writes an unclosed reply the first time it sees a prompt, a closed one after:
    every answer has one rejected attempt (``no_end_tag``) and one accepted. Tokens are
    ``chars_per_token`` characters. Remembers every prompt it was given."""

    context_size = 1024
    memory_bytes = 1
    device = "cpu"
    engine_name = "canned"

    def __init__(self, chars_per_token: int = 4) -> None:
        self.chars_per_token = chars_per_token
        self.prompts: list[str] = []
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(text) // self.chars_per_token

    def generate(self, prompts: Sequence[str], params: SamplingParams, *,
                 stop: Sequence[str], seed: int | None = None,
                 abort: threading.Event | None = None) -> list[str]:
        out = []
        with self._lock:
            for prompt in prompts:
                self.prompts.append(prompt)
                tries = self._seen.get(prompt, 0)
                self._seen[prompt] = tries + 1
                if tries == 0:
                    out.append(REJECTED)
                elif prompt.endswith("<|sot|>"):  # a new thread: its title and body
                    out.append(f"A canned title {tries + 1}<|eot|><|sost|>a body<|eost|>")
                else:
                    out.append(f"a canned answer, try {tries + 1}<|eor|>")
        return out

    def close(self) -> None:
        pass


def canned_worker(storage: Storage, cast: Cast, model: CannedModel, *,
                  burst: bool = True, heartbeat_s: float | None = None) -> Worker:
    """The real worker over ``model`` (every text persona), writing progress rows."""
    engine = TextEngine(lambda persona: persona.name, loader=lambda _path: model)
    reporter = None
    if heartbeat_s is not None:
        reporter = Heartbeat(storage.workers, storage.metrics, kind="text",
                             interval_s=heartbeat_s, host="test-box")
    return Worker(queues=storage.queues, blobs=storage.blobs, cast=cast, engine=engine,
                  settings=WORKER, burst=burst, reporter=reporter, progress=storage.progress)


async def answer_all(app: Litestar, storage: Storage, cast: Cast, model: CannedModel,
                     **worker: Any) -> int:
    """Generate what is queued (a burst of the worker) and apply every result through the
    app's consumer, counters written; how many results were applied."""
    await canned_worker(storage, cast, model, **worker).main()
    consumer: ResultsConsumer = app.state["consumer"]
    handled = 0
    while n := await consumer.run_once():
        handled += n
    await ctx_of(app).counters.flush()
    return handled


def cast_with(folder: Path, extra: dict[str, str]) -> Cast:
    """The shipped cast plus personas given as file name → TOML text."""
    import shutil

    shutil.copytree(SHIPPED_PERSONAS, folder)
    for name, text in extra.items():
        (folder / name).write_text(text, encoding="utf-8")
    return load_cast_strict(folder)


def persona_toml(name: str, *, rooms: str = '["Technology"]', activity: str = "",
                 weights: str = "", generation: str = "") -> str:
    return (f'name = "{name}"\ndisplay_name = "{name}"\nkind = "text"\nmodel = "m"\n'
            f"rooms = {rooms}\n\n[activity]\nposts_per_day = 0\n{activity}\n"
            f"\n[activity.weights]\n{weights}\n\n[generation]\n{generation}\n")
