"""Worker benchmark: the old one-request-at-a-time design against the batching worker, on
transformers and on CTranslate2.

Four workloads, one after the other in one run (models and requests in
``bench/worker_models.py``, built once and cached under ``var/bench``):

primary       a GPT-2-shaped model (6 layers x 512 by default, the project's byte-level BPE
              tokenizer, a short CPU training run so that it learns to close its tags)
              answers reply requests of mixed prompt lengths (chains of 0-16 comments, about
              25-300 tokens). Its replies close their tag after ~10 tokens, so the prompt pass
              dominates: on a CPU that pass is compute-bound and barely cheaper per token in a
              batch, so batching alone cannot win much here.
decode-heavy  the same shape and tokenizer with random-init weights (it closes a tag only by
              chance, so nearly every reply runs to ``max_new_tokens``) on short prompts
              (chains of 0-2 comments). Decode steps dominate.
gpt2-small    a random-init GPT-2 small (12 x 768, 124 M parameters with a 50,257-token
              vocabulary), the size of real personas, on prompts of ~100-250 tokens.
thread-heavy  the trained model answering 8 replies in each of 8 threads with long posts
              (replies to the post's comments, interleaved as a scheduler round sends
              them): prompts that share the post header, for the shared-prefix saving.

Every workload uses the same seeds and ``max_new_tokens`` (48); the variants are:

A  the old design: load the model from disk for every request, one request at a time;
B  the model loaded once, one request at a time (transformers);
C  the real :class:`~playhouse.generation.worker.Worker` through Azurite queues (started
   here in a temporary folder), transformers engine: the requests are sent to
   ``gen-interactive``, the worker runs in burst mode (batched), the results are read back
   from ``gen-results-interactive``;
D  the very batches C generated, called in-process with no queue (the ceiling for C);
E  C with transformers' continuous batching (``make_engine(..., continuous_batching=True)``;
   its manager is built and warmed up with one batch before any timing, the warm-up seconds
   on their own line);
F  the same Worker through Azurite with ``worker.engine = "ctranslate2"`` (what ``auto``
   picks here): the model converted to CTranslate2 int8 once (cached under
   ``var/bench/ctranslate2``; the conversion and load seconds on their own line), shared
   prompt prefixes computed once, calls grouped by length;
G  the very batches F generated, in-process with no queue (the ceiling for F);
H  G with shared prefixes off (thread-heavy only: the saving).

The primary and decode-heavy workloads run A-D, F and G, and E with ``--with-e`` (off by
default: transformers sizes E's paged cache from the free memory, about 14 GB of RAM on a
CPU, which a shared 24 GB machine cannot spare; an earlier run was killed for it);
gpt2-small runs B, C, D, F and G (A is load-dominated), thread-heavy F, G and H.
All variants go through the same engine code (``TextEngine.run``: prompt building,
generation, parsing), so the only differences are the engine, model loading, batching and
queues. Every variant samples each request once (the persona's ``max_attempts`` is 1 unless
``--attempts`` says otherwise) and counts the tokens it really generated: for ``generate()``
each row up to its last non-pad token (finished rows are right-padded by ``generate()``, so
a row that stopped early at its end tag counts only what it wrote, not the padded steps it
sat through in a batch); for continuous batching and CTranslate2 the length of each returned
sequence. The primary workload also prints issue 15's int8 quality gate on the benchmark
model (perplexity on held-out tag-format text, valid replies int8 against float32).

Prints the tables and writes them to ``bench/results/worker.md`` (``--out``). ``--quick`` is
a smoke run (tiny models, a few requests, a couple of minutes, most of it the continuous-
batching warm-ups) that writes under var/bench.

    .venv/bin/python bench/worker.py            # the full run, ~15 min on 2 CPU cores
    .venv/bin/python bench/worker.py --quick    # smoke check
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from bench.gentools import (  # noqa: E402
    Counter,
    instrument,
    instrument_continuous,
    instrument_ct2,
    quiet_logs,
)
from bench.worker_models import (  # noqa: E402
    BOT,
    DECODE_DEPTHS,
    DEPTHS,
    FULL,
    GPT2_SMALL,
    NEVER,
    QUICK,
    SMALL_DEPTHS,
    corpus,
    ensure_model,
    ensure_random_model,
    ensure_small_model,
    make_requests,
    make_thread_requests,
)
from bench.worker_report import report, version_of  # noqa: E402

if TYPE_CHECKING:
    from playhouse.generation.completion import Outcome
    from playhouse.generation.text import TextModel
    from playhouse.messages import GenerationRequest
    from playhouse.personas import Cast, Persona

# --- options -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=None,
                   help="requests for B, C and D (default 64; 8 with --quick)")
    p.add_argument("--a-requests", type=int, default=None,
                   help="requests for A, the first N of the same list (default: all)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="tokens per completion at most (default 48; 16 with --quick)")
    p.add_argument("--attempts", type=int, default=1,
                   help="samples per request before giving up (persona max_attempts)")
    p.add_argument("--batch-size", type=int, default=32, help="worker batch_size")
    p.add_argument("--gather-ms", type=int, default=None, help="worker gather_ms")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--rounds", type=int, default=None,
                   help="run every variant this many times and keep each one's fastest "
                        "(the machine is shared; default 3, 1 with --quick)")
    p.add_argument("--decode-rounds", type=int, default=None,
                   help="rounds of the decode-heavy workload (default 2, 1 with --quick; "
                        "0 skips it)")
    p.add_argument("--small-requests", type=int, default=None,
                   help="requests of the GPT-2-small workload (default 32; 4 with --quick)")
    p.add_argument("--small-rounds", type=int, default=1,
                   help="rounds of the GPT-2-small workload (0 skips it)")
    p.add_argument("--thread-rounds", type=int, default=None,
                   help="rounds of the thread-heavy workload (default 3, 1 with --quick; "
                        "0 skips it)")
    p.add_argument("--quality-requests", type=int, default=None,
                   help="seeded requests of the int8 quality line (default 512; 32 quick)")
    p.add_argument("--with-e", action="store_true",
                   help="also run E (transformers' continuous batching): its paged cache takes "
                        "~14 GB of RAM on a CPU, sized from the free memory")
    p.add_argument("--held-out-lines", type=int, default=48,
                   help="held-out corpus threads the quality line's perplexity is taken on")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (a few minutes)")
    p.add_argument("--out", type=Path, default=None,
                   help="markdown table (default bench/results/worker.md; "
                        "var/bench/worker-quick.md with --quick)")
    p.add_argument("--cache", type=Path, default=ROOT / "var" / "bench",
                   help="where the benchmark model is built and reused")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached model")
    p.add_argument("--threads", type=int, default=1, help="torch threads (keep 1 here)")
    args = p.parse_args(argv)
    args.shape = QUICK if args.quick else FULL
    args.small_shape = (2, 128, 4) if args.quick else GPT2_SMALL
    if args.small_requests is None:
        args.small_requests = 4 if args.quick else 32
    args.small_rounds = max(0, args.small_rounds)
    if args.thread_rounds is None:
        args.thread_rounds = 1 if args.quick else 3
    args.thread_rounds = max(0, args.thread_rounds)
    if args.quality_requests is None:
        args.quality_requests = 32 if args.quick else 512
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    args.rounds = max(1, args.rounds)
    if args.decode_rounds is None:
        args.decode_rounds = 1 if args.quick else 2
    args.decode_rounds = max(0, args.decode_rounds)
    if args.requests is None:
        args.requests = 8 if args.quick else 64
    if args.a_requests is None:
        args.a_requests = args.requests
    args.a_requests = max(1, min(args.a_requests, args.requests))
    if args.max_new_tokens is None:
        args.max_new_tokens = 16 if args.quick else 48
    if args.out is None:
        args.out = (args.cache / "worker-quick.md") if args.quick else (
            ROOT / "bench" / "results" / "worker.md"
        )
    return args


# --- the variants ------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    what: str
    requests: int
    seconds: float
    counter: Counter
    ok: int
    latencies: list[float] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.counter.tokens

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def req_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _entries(requests: Sequence[GenerationRequest]) -> list[tuple[str, GenerationRequest]]:
    return [(r.request_id, r) for r in requests]


def run_a(path: Path, persona: Persona, requests: Sequence[GenerationRequest]) -> Run:
    """The old design: a fresh load from disk for every request."""
    from playhouse.generation.engines import TextEngine
    from playhouse.generation.text import TextModel

    counter = Counter()
    ok = 0
    latencies = []
    started = time.perf_counter()
    for key, request in _entries(requests):
        engine = TextEngine(
            lambda _p: str(path), device="cpu",
            loader=lambda p: instrument(TextModel.load(p, device="cpu"), counter),
        )
        ok += sum(o.ok for o in engine.run(persona, [(key, request)], request.seed, NEVER))
        engine.close()
        latencies.append(time.perf_counter() - started)
    seconds = time.perf_counter() - started
    return Run("A", "load per request, batch 1", len(requests), seconds, counter, ok, latencies)


def run_b(model: TextModel, counter: Counter, persona: Persona,
          requests: Sequence[GenerationRequest]) -> Run:
    """The model loaded once, one request at a time."""
    from playhouse.generation.engines import TextEngine

    engine = TextEngine(lambda _p: "bench", device="cpu", loader=lambda _p: model)
    engine.models.get("bench")
    counter.reset()
    ok = 0
    latencies = []
    started = time.perf_counter()
    for key, request in _entries(requests):
        ok += sum(o.ok for o in engine.run(persona, [(key, request)], request.seed, NEVER))
        latencies.append(time.perf_counter() - started)
    seconds = time.perf_counter() - started
    return Run("B", "loaded once, batch 1", len(requests), seconds, _copy(counter), ok,
               latencies)


Batch = tuple["Persona", list[tuple[str, "GenerationRequest"]], "int | None"]


class RecordingEngine:
    """A TextEngine that remembers every batch the worker handed it (for D)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.queues = inner.queues
        self.batches: list[Batch] = []

    def run(self, persona: Persona, entries: Sequence[tuple[str, GenerationRequest]],
            seed: int | None, abort: threading.Event) -> list[Outcome]:
        self.batches.append((persona, list(entries), seed))
        outcomes: list[Outcome] = self.inner.run(persona, entries, seed, abort)
        return outcomes

    def close(self) -> None:
        self.inner.close()


def padded_engine(model: TextModel) -> Any:
    """A TextEngine serving the already loaded (instrumented) ``model`` for any persona."""
    from playhouse.generation.engines import TextEngine

    engine = TextEngine(lambda _p: "bench", device="cpu", loader=lambda _p: model)
    engine.models.get("bench")
    return engine


async def run_c_async(
    conn: str, namespace: str, inner: Any, counter: Counter, cast: Cast,
    requests: Sequence[GenerationRequest], args: argparse.Namespace,
    name: str = "C", what: str = "Worker via Azurite queues, batched",
) -> tuple[Run, list[Batch]]:
    """The real Worker through Azurite: send, run in burst mode, read the results.

    ``inner`` is the worker's engine (padded batches for C, continuous batching for E); it
    is not closed here, so its loaded model (and E's manager) serves every round."""
    from playhouse.config import WorkerSettings
    from playhouse.constants import QUEUE_INTERACTIVE, poison_queue, results_queue
    from playhouse.generation.worker import Worker
    from playhouse.messages import decode_result, encode
    from playhouse.storage import Storage

    storage = await Storage.connect(conn, namespace=namespace)
    try:
        await storage.ensure()
        sends = [storage.queues.send(QUEUE_INTERACTIVE, encode(r)) for r in requests]
        for i in range(0, len(sends), 16):
            await asyncio.gather(*sends[i : i + 16])
        depth = await storage.queues.depth(QUEUE_INTERACTIVE)
        engine = RecordingEngine(inner)
        settings = WorkerSettings(device="cpu", batch_size=args.batch_size,
                                  **({"gather_ms": args.gather_ms}
                                     if args.gather_ms is not None else {}))
        worker = Worker(queues=storage.queues, blobs=None, cast=cast, engine=engine,
                        settings=settings, burst=True)
        counter.reset()
        t0_wall = time.time()
        started = time.perf_counter()
        await worker.main()
        seconds = time.perf_counter() - started
        results = []
        while len(results) < len(requests):
            got = await storage.queues.receive(results_queue(QUEUE_INTERACTIVE),
                                               max_messages=32)
            if not got:
                break
            results += [decode_result(m.content) for m in got]
            await asyncio.gather(*(storage.queues.delete(m) for m in got))
        left = await storage.queues.depth(QUEUE_INTERACTIVE)
        poisoned = await storage.queues.depth(poison_queue(QUEUE_INTERACTIVE))
    finally:
        await storage.close()
    mine = {r.request_id for r in requests}
    results = [r for r in results if r.request_id in mine]
    latencies = sorted(r.finished_at - t0_wall for r in results)
    run = Run(name, what, len(requests), seconds, _copy(counter), sum(r.ok for r in results),
              latencies)
    run.notes = {
        "queued": depth, "results": len(results), "left_in_queue": left,
        "poisoned": poisoned, "worker_batches": list(worker.stats.batch_sizes),
        "generate_s": worker.stats.generated_s, "gather_ms": settings.gather_ms,
    }
    return run, engine.batches


def run_replay(engine: Any, counter: Counter, batches: Sequence[Batch], name: str,
               what: str) -> Run:
    """Batches a worker generated, again, in-process with no queue (its ceiling): D for C's
    batches on the transformers engine, G for F's on CTranslate2, H for F's without shared
    prefixes."""
    counter.reset()
    ok = 0
    n = 0
    latencies = []
    started = time.perf_counter()
    for persona, entries, seed in batches:
        outcomes = engine.run(persona, entries, seed, NEVER)
        ok += sum(o.ok for o in outcomes)
        n += len(entries)
        latencies += [time.perf_counter() - started] * len(entries)
    seconds = time.perf_counter() - started
    return Run(name, what, n, seconds, _copy(counter), ok, latencies)


def _copy(counter: Counter) -> Counter:
    return Counter(**{**counter.__dict__, "batch_sizes": list(counter.batch_sizes)})


def warm_up(engine: Any, persona: Persona, requests: Sequence[GenerationRequest]) -> None:
    """One small batch and one single request, so no variant pays its engine's first calls."""
    engine.run(persona, _entries(requests[:4]), 1, NEVER)
    engine.run(persona, _entries(requests[4:5]), 2, NEVER)


def continuous_engine(
    path: Path, persona: Persona, requests: Sequence[GenerationRequest],
    prompt_lens: Sequence[int], counter: Counter, args: argparse.Namespace,
) -> tuple[Any, float, int]:
    """E's engine, built as ``playhouse worker`` builds it with ``continuous_batching`` on,
    its model loaded and its manager warmed up with one batch of the longest prompts (so
    the manager is sized for the worst batch). Returns the engine, the warm-up seconds and
    the warm-up batch's size."""
    from playhouse.generation.engines import make_engine

    engine: Any = make_engine("text", args.cache, device="cpu", max_models=1,
                              max_bytes=4 << 30, continuous_batching=True)
    instrument_continuous(engine.models.get(persona.model), counter)
    longest = sorted(range(len(requests)), key=lambda i: -prompt_lens[i])[: args.batch_size]
    started = time.perf_counter()
    engine.run(persona, _entries([requests[i] for i in longest]), 1, NEVER)
    return engine, time.perf_counter() - started, len(longest)


def ct2_engine(persona: Persona, counter: Counter, args: argparse.Namespace, *,
               share: bool = True, quantization: str = "auto") -> tuple[Any, Any, float]:
    """F's engine, built as ``playhouse worker`` builds it with ``worker.engine =
    "ctranslate2"`` (what ``auto`` picks here): the model converted (once, cached under
    ``var/bench/ctranslate2``) and loaded. Returns the engine, its model (instrumented) and
    the seconds the conversion (or the cache hit) and load took."""
    from playhouse.generation.ct2 import Ct2Model
    from playhouse.generation.engines import make_engine

    engine: Any = make_engine(
        "text", args.cache, device="cpu", max_models=1, max_bytes=4 << 30,
        engine="ctranslate2", convert_dir=args.cache / "ctranslate2", threads=args.threads,
        share_prefixes=share, quantization=quantization,
    )
    started = time.perf_counter()
    model = engine.models.get(persona.model)
    seconds = time.perf_counter() - started
    assert isinstance(model, Ct2Model)
    instrument_ct2(model, counter, args.max_new_tokens)
    return engine, model, seconds


# --- the workloads -----------------------------------------------------------------------


@dataclass
class Workload:
    key: str
    """"primary", "decode-heavy", "gpt2-small" or "thread-heavy"."""
    ns: str
    """Azurite namespace letter."""
    title: str
    path: Path
    meta: dict[str, Any]
    persona: Persona
    cast: Cast
    requests: list[GenerationRequest]
    rounds: int
    a_requests: int
    variants: str = "ABCDEFG"
    prompt_lens: list[int] = field(default_factory=list)
    runs: dict[str, Run] = field(default_factory=dict)
    all_seconds: dict[str, list[float]] = field(default_factory=dict)
    load_s: float = 0.0
    e_warm_s: float = 0.0
    e_warm_rows: int = 0
    f_load_s: float = 0.0
    f_quantization: str = ""
    quality: dict[str, Any] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        """What the ratio lines of this workload start with."""
        return "" if self.key == "primary" else f"{self.key} "


WHAT = {
    "A": "load per request, batch 1",
    "B": "loaded once, batch 1",
    "C": "Worker via Azurite queues, batched",
    "D": "C's batches in-process, no queue",
    "E": "C with transformers' continuous batching",
    "F": "Worker via Azurite, CTranslate2 engine",
    "G": "F's batches in-process, no queue",
    "H": "F's batches in-process, shared prefixes off",
}


def run_workload(wl: Workload, conn: str, args: argparse.Namespace,
                 step: Callable[[str, int, Run], None]) -> None:
    """Every round of the workload's variants (B, C, D, E, F, G, A in that order when
    present); keeps the figures the table shows."""
    from playhouse.generation.completion import build_prompt
    from playhouse.generation.engines import TextEngine
    from playhouse.generation.text import TextModel

    v = wl.variants
    counter = Counter()
    model: TextModel | None = None
    if "B" in v or "C" in v:
        TextModel.load(str(wl.path), device="cpu").close()  # imports and page cache
        load_started = time.perf_counter()
        model = instrument(TextModel.load(str(wl.path), device="cpu"), counter)
        wl.load_s = time.perf_counter() - load_started
        wl.prompt_lens = [model.count_tokens(build_prompt(r, wl.persona, model))
                          for r in wl.requests]
        warm_up(TextEngine(lambda _p: "bench", loader=lambda _p: model), wl.persona,
                wl.requests)
    e_counter = Counter()
    e_engine = None
    if "E" in v:
        print(f"[{wl.key}] warming up continuous batching (builds its manager) ...", flush=True)
        e_engine, wl.e_warm_s, wl.e_warm_rows = continuous_engine(
            wl.path, wl.persona, wl.requests, wl.prompt_lens, e_counter, args
        )
        print(f"[{wl.key}] E warm-up {wl.e_warm_s:.1f} s", flush=True)
    f_counter = Counter()
    h_counter = Counter()
    f_engine = h_engine = g_engine = None
    if "F" in v:
        print(f"[{wl.key}] CTranslate2: converting (once, cached) and loading ...", flush=True)
        f_engine, f_model, wl.f_load_s = ct2_engine(wl.persona, f_counter, args)
        wl.f_quantization = f_model.quantization
        print(f"[{wl.key}] F conversion + load {wl.f_load_s:.1f} s ({wl.f_quantization})",
              flush=True)
        if not wl.prompt_lens:
            wl.prompt_lens = [f_model.count_tokens(build_prompt(r, wl.persona, f_model))
                              for r in wl.requests]
        g_engine = TextEngine(lambda _p: "g", loader=lambda _p: f_model)
        warm_up(g_engine, wl.persona, wl.requests)
        if "H" in v:
            h_engine, _, _ = ct2_engine(wl.persona, h_counter, args, share=False)
            warm_up(h_engine, wl.persona, wl.requests)
    c_engine = padded_engine(model) if model is not None and "C" in v else None
    rounds: list[dict[str, Run]] = []
    try:
        for n in range(wl.rounds):
            runs: dict[str, Run] = {}
            if "B" in v:
                assert model is not None
                runs["B"] = run_b(model, counter, wl.persona, wl.requests)
                step(wl.key, n, runs["B"])
            if "C" in v:
                runs["C"], batches = asyncio.run(
                    run_c_async(conn, f"b{wl.ns}{n}c", c_engine, counter, wl.cast,
                                wl.requests, args)
                )
                step(wl.key, n, runs["C"])
                runs["D"] = run_replay(c_engine, counter, batches, "D", WHAT["D"])
                step(wl.key, n, runs["D"])
            if "E" in v:
                runs["E"], _ = asyncio.run(
                    run_c_async(conn, f"b{wl.ns}{n}e", e_engine, e_counter, wl.cast,
                                wl.requests, args, name="E", what=WHAT["E"])
                )
                step(wl.key, n, runs["E"])
            if "F" in v:
                runs["F"], batches = asyncio.run(
                    run_c_async(conn, f"b{wl.ns}{n}f", f_engine, f_counter, wl.cast,
                                wl.requests, args, name="F", what=WHAT["F"])
                )
                step(wl.key, n, runs["F"])
                runs["G"] = run_replay(g_engine, f_counter, batches, "G", WHAT["G"])
                step(wl.key, n, runs["G"])
                if "H" in v:
                    runs["H"] = run_replay(h_engine, h_counter, batches, "H", WHAT["H"])
                    step(wl.key, n, runs["H"])
            if "A" in v:
                runs["A"] = run_a(wl.path, wl.persona, wl.requests[: wl.a_requests])
                step(wl.key, n, runs["A"])
            rounds.append(runs)
        if "F" in v and wl.key == "primary":
            wl.quality = quality(wl, g_engine, f_counter, args)
    finally:
        for engine in (e_engine, f_engine, h_engine):
            if engine is not None:
                engine.close()
        if model is not None:
            model.close()
    # A, B, E, H: each one's fastest round. C+D and F+G: the pair from one round (the second
    # replays that round's batches of the first), the round where the two were fastest.
    wl.runs = {k: min((r[k] for r in rounds), key=lambda run: run.seconds)
               for k in "ABEH" if k in v}
    for first, second in ("CD", "FG"):
        if first in v:
            pair = min(rounds, key=lambda r: r[first].seconds + r[second].seconds)
            wl.runs[first], wl.runs[second] = pair[first], pair[second]
    wl.all_seconds = {k: [round(r[k].seconds, 2) for r in rounds] for k in sorted(wl.runs)}


def quality(wl: Workload, int8_engine: Any, counter: Counter,
            args: argparse.Namespace) -> dict[str, Any]:
    """Issue 15's int8 quality gate on the benchmark model: perplexity on held-out text in
    the tag grammar (corpus threads of another seed, none of them trained on) of the int8
    and float32 conversions against the fp32 original, and the share of valid replies for
    the same seeded requests, int8 against float32 (both CTranslate2)."""
    from playhouse.generation.convert import ensure_converted, quality_gate

    cache = args.cache / "ctranslate2"
    int8 = ensure_converted(wl.path, cache, "int8")
    fp32 = ensure_converted(wl.path, cache, "float32")
    trained = set(args.lines)
    held_out = [line for line in corpus(args.cast, args.shape, args.seed + 1)
                if line not in trained][: args.held_out_lines]
    gate = quality_gate(wl.path, [(int8.path, "int8"), (fp32.path, "float32")],
                        device="cpu", lines=held_out)
    requests = make_requests(args.lines, wl.persona, args.quality_requests, args.seed + 99)
    shares: dict[str, float] = {}
    fp32_counter = Counter()
    fp32_engine, _, _ = ct2_engine(wl.persona, fp32_counter, args, quantization="float32")
    try:
        for name, engine in (("int8", int8_engine), ("float32", fp32_engine)):
            ok = 0
            for k in range(0, len(requests), args.batch_size):
                chunk = requests[k : k + args.batch_size]
                ok += sum(o.ok for o in engine.run(wl.persona, _entries(chunk), 4242, NEVER))
            shares[name] = ok / len(requests)
    finally:
        fp32_engine.close()
    return {
        "reference": gate["reference"], "int8": gate["int8"], "float32": gate["float32"],
        "tokens": int(gate["tokens"]), "lines": len(held_out), "requests": len(requests),
        "shares": shares,
    }


# --- main --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"

    import logging

    import msgspec
    import structlog
    import torch
    import transformers

    from playhouse.emulator import Azurite
    from playhouse.personas import Cast, load_cast_strict

    torch.set_num_threads(args.threads)
    quiet_logs()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    began = time.perf_counter()
    load_start = _loadavg()

    cast = load_cast_strict(ROOT / "personas")
    base = cast.personas[BOT]
    lines = corpus(cast, args.shape, args.seed)
    args.lines = lines
    args.cast = cast
    path, meta = ensure_model(args, lines)
    rpath, rmeta = ensure_random_model(args, path, rebuild=args.rebuild or not meta["cached"])

    def workload(key: str, ns: str, title: str, model_path: Path, model_meta: dict[str, Any],
                 requests: Callable[[Persona], list[GenerationRequest]], rounds: int,
                 variants: str) -> Workload:
        persona = msgspec.structs.replace(
            base,
            model=str(model_path.resolve()),  # what make_engine resolves (E, F)
            generation=msgspec.structs.replace(
                base.generation, max_new_tokens=args.max_new_tokens,
                max_attempts=args.attempts,
            ),
        )
        return Workload(
            key=key, ns=ns, title=title, path=model_path, meta=model_meta, persona=persona,
            cast=Cast(personas={persona.name: persona}, rooms=cast.rooms),
            requests=requests(persona), rounds=rounds, a_requests=args.a_requests,
            variants=variants,
        )

    workloads = [workload(
        "primary", "p",
        "Primary workload: trained model, mixed prompts, short replies (prompt-pass-bound)",
        path, meta, lambda p: make_requests(lines, p, args.requests, args.seed, DEPTHS),
        args.rounds, "ABCDEFG" if args.with_e else "ABCDFG",
    )]
    if args.decode_rounds:
        workloads.append(workload(
            "decode-heavy", "d",
            "Decode-heavy workload: random-init model, short prompts, replies run to "
            "max_new_tokens (decode-bound)",
            rpath, rmeta,
            lambda p: make_requests(lines, p, args.requests, args.seed, DECODE_DEPTHS),
            args.decode_rounds, "ABCDEFG" if args.with_e else "ABCDFG",
        ))
    if args.small_rounds:
        spath, smeta = ensure_small_model(args, path, rebuild=args.rebuild)
        workloads.append(workload(
            "gpt2-small", "s",
            "GPT-2-small workload: random-init 124 M model, prompts of ~100-250 tokens",
            spath, smeta,
            lambda p: make_requests(lines, p, args.small_requests, args.seed, SMALL_DEPTHS),
            args.small_rounds, "BCDFG",
        ))
    if args.thread_rounds:
        per_thread = 8
        n_threads = max(1, args.requests // per_thread)
        for key, ns, body, what in (("thread-heavy", "t", 24, "long posts"),
                                    ("thread-heavy-short", "u", 6, "short posts")):
            workloads.append(workload(
                key, ns,
                f"Thread-heavy workload, {what}: trained model, {per_thread} replies in "
                f"each of {n_threads} threads (shared prefixes)",
                path, meta,
                lambda p, body=body: make_thread_requests(lines, p, n_threads, per_thread,
                                                          args.seed, body_comments=body),
                args.thread_rounds, "FGH",
            ))

    step = _progress(began)
    with tempfile.TemporaryDirectory(prefix="bench-azurite-") as tmp:
        emulator = Azurite(Path(tmp), root=ROOT)
        emulator.start()
        try:
            for wl in workloads:
                run_workload(wl, emulator.connection_string, args, step)
        finally:
            emulator.stop()

    def rel(p: Path) -> str:
        return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)

    ctx = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python bench/worker.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{os.cpu_count()} CPU cores (shared), no GPU",
        "torch": torch.__version__, "transformers": transformers.__version__,
        "ctranslate2": version_of("ctranslate2"),
        "threads": torch.get_num_threads(), "batch_size": args.batch_size, "rel": rel,
        "load_start": load_start, "load_end": _loadavg(),
        "seconds": time.perf_counter() - began,
    }
    text = report(workloads, ctx)
    print()
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"written to {args.out} in {time.perf_counter() - began:.0f} s total")
    return 0


def _loadavg() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _progress(began: float) -> Callable[[str, int, Run], None]:
    def step(key: str, n: int, run: Run) -> None:
        print(f"[{time.perf_counter() - began:6.1f} s] {key} round {n + 1} {run.name}: "
              f"{run.requests} requests in {run.seconds:.2f} s ({run.req_s:.2f} req/s, "
              f"{run.tok_s:.1f} tok/s)", flush=True)

    return step


if __name__ == "__main__":
    sys.exit(main())
