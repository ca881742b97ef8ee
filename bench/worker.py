"""Worker benchmark: the old one-request-at-a-time design against the batching worker.

Two workloads, one after the other in one run, each answered five ways (A-E below):

primary       one GPT-2-shaped model (6 layers x 512 by default, the project's byte-level BPE
              tokenizer, a short CPU training run so that it learns to close its tags; cached
              under ``var/bench``) answers reply requests of mixed prompt lengths (chains of
              0-16 comments, about 25-300 tokens). Its replies close their tag after ~10
              tokens, so the prompt pass dominates: on a CPU that pass is compute-bound and
              barely cheaper per token in a batch, so batching cannot win much here.
decode-heavy  the same shape and tokenizer with random-init weights (it closes a tag only by
              chance, so nearly every reply runs to ``max_new_tokens``) on short prompts
              (chains of 0-2 comments). Decode steps dominate: a step streams all the
              weights for one token per row, so one step of 32 rows costs far less than
              32 steps of one row.

Both use the same seeds and ``max_new_tokens`` (48); the variants are:

A  the old design: load the model from disk for every request, one request at a time;
B  the model loaded once, one request at a time;
C  the real :class:`~playhouse.generation.worker.Worker` through Azurite queues (started
   here in a temporary folder): the requests are sent to ``gen-interactive``, the worker runs
   in burst mode (batched), the results are read back from ``gen-results-interactive``;
D  the very batches C generated, called in-process with no queue (the ceiling for C);
E  C with transformers' continuous batching: the same Worker through Azurite, its engine
   from ``make_engine(..., continuous_batching=True)``. The manager it keeps per model costs
   seconds to build, so E's engine is built and warmed up with one batch before any timing
   (the warm-up seconds are reported on their own line) and reused by every round.

A, B and D go through the same engine code as C (``TextEngine.run``: prompt building, one
``generate()``, parsing), so the only differences are model loading, batching and queues.
Every variant samples each request once (the persona's ``max_attempts`` is 1 unless
``--attempts`` says otherwise) and counts the tokens it really generated: for ``generate()``
each row up to its last non-pad token (finished rows are right-padded by ``generate()``, so
a row that stopped early at its end tag counts only what it wrote, not the padded steps it
sat through in a batch); for continuous batching the length of each returned sequence.

Prints two tables and writes them to ``bench/results/worker.md`` (``--out``). ``--quick`` is
a smoke run (tiny models, a few requests, about a minute, most of it the two continuous-
batching warm-ups) that writes under var/bench.

    .venv/bin/python bench/worker.py            # the full run, <= 10 min on 2 CPU cores
    .venv/bin/python bench/worker.py --quick    # smoke check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
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

from bench.gentools import Counter, instrument, instrument_continuous, quiet_logs  # noqa: E402

if TYPE_CHECKING:
    from playhouse.generation.completion import Outcome
    from playhouse.generation.text import TextModel
    from playhouse.messages import GenerationRequest
    from playhouse.personas import Cast, Persona

MODEL_VERSION = 1
"""Bump when the way the benchmark model is built changes (invalidates the cache)."""
BOT = "CoopBot"

NEVER = threading.Event()
"""An abort event no one sets: the bench runs engines outside a worker."""
"""The persona whose sampling parameters the benchmark uses (its model is replaced)."""
DEPTHS = (0, 1, 2, 3, 4, 6, 8, 10, 13, 16)
"""Chain depths the primary requests cycle through: prompts from ~25 to ~400 tokens."""
DECODE_DEPTHS = (0, 1, 2)
"""Chain depths of the decode-heavy requests: short prompts (~25-60 tokens)."""


# --- options -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    n_layer: int
    n_embd: int
    n_head: int
    train_steps: int
    train_s: float
    corpus_threads: int


FULL = Shape(n_layer=6, n_embd=512, n_head=8, train_steps=150, train_s=150.0,
             corpus_threads=300)
QUICK = Shape(n_layer=2, n_embd=128, n_head=4, train_steps=40, train_s=10.0, corpus_threads=60)


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
    p.add_argument("--quick", action="store_true", help="tiny smoke run (< 1 min)")
    p.add_argument("--out", type=Path, default=None,
                   help="markdown table (default bench/results/worker.md; "
                        "var/bench/worker-quick.md with --quick)")
    p.add_argument("--cache", type=Path, default=ROOT / "var" / "bench",
                   help="where the benchmark model is built and reused")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached model")
    p.add_argument("--threads", type=int, default=1, help="torch threads (keep 1 here)")
    args = p.parse_args(argv)
    args.shape = QUICK if args.quick else FULL
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


# --- the model ---------------------------------------------------------------------------


def corpus(cast: Cast, shape: Shape, seed: int) -> list[str]:
    """Training lines in the tag grammar for every text persona (deterministic)."""
    from playhouse.demo.corpus import persona_corpus, union_corpus

    text = [p for _, p in sorted(cast.personas.items()) if p.kind == "text"]
    corpora = []
    for persona in text:
        others = [p.name for p in text if p.name != persona.name][:4]
        corpora.append(
            persona_corpus(persona.name, persona.rooms, persona.keywords.positive,
                           others=others, n_threads=shape.corpus_threads, seed=seed)
        )
    return union_corpus(corpora, seed=seed)


def model_dir(args: argparse.Namespace) -> Path:
    s = args.shape
    return args.cache / (
        f"gpt2-{s.n_layer}x{s.n_embd}-v{MODEL_VERSION}-seed{args.seed}-steps{s.train_steps}"
    )


def build_model(path: Path, lines: Sequence[str], shape: Shape, seed: int) -> dict[str, Any]:
    """Tokenizer + GPT-2 trained for a few steps (bounded by ``shape.train_s``), saved."""
    import torch
    import torch.nn.functional as F
    from transformers import GPT2Config, GPT2LMHeadModel

    from playhouse.demo.build import build_tokenizer

    started = time.perf_counter()
    staging = path.with_name(path.name + f".staging-{os.getpid()}")
    tokenizer = build_tokenizer(lines, staging)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=shape.n_embd,
        n_layer=shape.n_layer, n_head=shape.n_head,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    samples = [[*ids[:127], eos] for ids in
               tokenizer(list(lines), add_special_tokens=False)["input_ids"] if ids]
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    warmup = max(1, shape.train_steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * max(0.1, 1 - s / shape.train_steps),
    )
    model.train()
    losses: list[float] = []
    steps = 0
    while steps < shape.train_steps and time.perf_counter() - started < shape.train_s:
        batch = rng.sample(samples, 8)
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        labels = input_ids.masked_fill(mask == 0, -100)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                               labels[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        steps += 1
    model.eval()
    model.save_pretrained(str(staging))
    tail = losses[-10:]
    meta = {
        "layers": shape.n_layer, "width": shape.n_embd, "heads": shape.n_head,
        "params": model.num_parameters(), "vocab": len(tokenizer), "steps": steps,
        "final_loss": round(sum(tail) / len(tail), 3) if tail else None,
        "build_s": round(time.perf_counter() - started, 1),
    }
    (staging / "bench-model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if path.exists():
        import shutil

        shutil.rmtree(path)
    staging.rename(path)
    return meta


def random_model_dir(args: argparse.Namespace) -> Path:
    s = args.shape
    return args.cache / f"gpt2-{s.n_layer}x{s.n_embd}-v{MODEL_VERSION}-seed{args.seed}-random"


def build_random_model(path: Path, tokenizer_from: Path, shape: Shape,
                       seed: int) -> dict[str, Any]:
    """The trained model's tokenizer and a random-init GPT-2 of the same shape, saved."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    started = time.perf_counter()
    staging = path.with_name(path.name + f".staging-{os.getpid()}")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_from))
    tokenizer.save_pretrained(str(staging))
    torch.manual_seed(seed + 1)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=shape.n_embd,
        n_layer=shape.n_layer, n_head=shape.n_head,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.eval()
    model.save_pretrained(str(staging))
    meta = {
        "layers": shape.n_layer, "width": shape.n_embd, "heads": shape.n_head,
        "params": model.num_parameters(), "vocab": len(tokenizer), "steps": 0,
        "final_loss": None, "random_init": True,
        "build_s": round(time.perf_counter() - started, 1),
    }
    (staging / "bench-model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if path.exists():
        import shutil

        shutil.rmtree(path)
    staging.rename(path)
    return meta


def ensure_random_model(args: argparse.Namespace, trained: Path,
                        rebuild: bool) -> tuple[Path, dict[str, Any]]:
    path = random_model_dir(args)
    meta_file = path / "bench-model.json"
    if meta_file.is_file() and not rebuild:
        return path, {**json.loads(meta_file.read_text(encoding="utf-8")), "cached": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the random-init model under {path} (once; cached) ...", flush=True)
    return path, {**build_random_model(path, trained, args.shape, args.seed), "cached": False}


def ensure_model(args: argparse.Namespace, lines: Sequence[str]) -> tuple[Path, dict[str, Any]]:
    path = model_dir(args)
    meta_file = path / "bench-model.json"
    if meta_file.is_file() and not args.rebuild:
        return path, {**json.loads(meta_file.read_text(encoding="utf-8")), "cached": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the benchmark model under {path} (once; cached) ...", flush=True)
    return path, {**build_model(path, lines, args.shape, args.seed), "cached": False}


# --- the requests ------------------------------------------------------------------------


def make_requests(
    lines: Sequence[str], persona: Persona, n: int, seed: int,
    depths: Sequence[int] = DEPTHS,
) -> list[GenerationRequest]:
    """``n`` reply requests for ``persona``: corpus threads whose chains are stretched to
    the ``depths`` (:data:`DEPTHS`: mixed prompt lengths), each with its own seed."""
    import msgspec

    from playhouse import grammar
    from playhouse.asking import reply_request
    from playhouse.constants import QUEUE_INTERACTIVE
    from playhouse.storage.models import Comment, Thread

    rng = random.Random(seed)
    parsed = [grammar.parse_training_line(line) for line in lines[:400]]
    pool = [c for t in parsed for c in t.comments]
    requests = []
    now = time.time()
    for i in range(n):
        src = parsed[rng.randrange(len(parsed))]
        post = src.post
        depth = depths[i % len(depths)]
        comments = list(src.comments[:-1])  # the persona's own last comment is the answer
        while len(comments) < depth:
            comments.append(pool[rng.randrange(len(pool))])
        comments = comments[:depth]
        thread = Thread(
            thread_id=f"t{i:04d}", room=post.room, title=post.title, body=post.body,
            url=post.url, author=post.author or "Visitor", is_bot=False, persona=None,
            created_at=now, last_activity=now,
        )
        chain = [
            Comment(comment_id=f"c{i:04d}-{j:02d}", thread_id=thread.thread_id, room=post.room,
                    parent_id=None, author=c.author, is_bot=False, persona=None, text=c.text,
                    created_at=now)
            for j, c in enumerate(comments)
        ]
        request = reply_request(
            persona=persona, thread=thread, chain=chain,
            parent_id=chain[-1].comment_id if chain else None,
            queue=QUEUE_INTERACTIVE, request_id=f"bench-{i:04d}",
        )
        requests.append(msgspec.structs.replace(request, seed=seed * 1000 + i))
    return requests


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


def run_d(model: TextModel, counter: Counter, batches: Sequence[Batch]) -> Run:
    """C's batches again, in-process, no queue: the ceiling."""
    from playhouse.generation.engines import TextEngine

    engine = TextEngine(lambda _p: "bench", device="cpu", loader=lambda _p: model)
    engine.models.get("bench")
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
    return Run("D", "C's batches in-process, no queue", n, seconds, _copy(counter), ok,
               latencies)


def _copy(counter: Counter) -> Counter:
    return Counter(**{**counter.__dict__, "batch_sizes": list(counter.batch_sizes)})


def warm_up(model: TextModel, persona: Persona, requests: Sequence[GenerationRequest]) -> None:
    """One small batch and one single request, so no variant pays torch's first calls."""
    from playhouse.generation.engines import TextEngine

    engine = TextEngine(lambda _p: "bench", device="cpu", loader=lambda _p: model)
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


# --- the workloads -----------------------------------------------------------------------


@dataclass
class Workload:
    key: str
    """"primary" or "decode-heavy"."""
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
    prompt_lens: list[int] = field(default_factory=list)
    runs: dict[str, Run] = field(default_factory=dict)
    all_seconds: dict[str, list[float]] = field(default_factory=dict)
    load_s: float = 0.0
    e_warm_s: float = 0.0
    e_warm_rows: int = 0

    @property
    def prefix(self) -> str:
        """What the ratio lines of this workload start with."""
        return "" if self.key == "primary" else f"{self.key} "


def run_workload(wl: Workload, conn: str, args: argparse.Namespace,
                 step: Callable[[str, int, Run], None]) -> None:
    """Every round of B, C, D, E, A on ``wl``; keeps the figures the table shows."""
    from playhouse.generation.completion import build_prompt
    from playhouse.generation.text import TextModel

    TextModel.load(str(wl.path), device="cpu").close()  # imports and page cache, not timed
    load_started = time.perf_counter()
    counter = Counter()
    model = instrument(TextModel.load(str(wl.path), device="cpu"), counter)
    wl.load_s = time.perf_counter() - load_started
    wl.prompt_lens = [model.count_tokens(build_prompt(r, wl.persona, model))
                      for r in wl.requests]
    warm_up(model, wl.persona, wl.requests)
    e_counter = Counter()
    print(f"[{wl.key}] warming up continuous batching (builds its manager) ...", flush=True)
    e_engine, wl.e_warm_s, wl.e_warm_rows = continuous_engine(
        wl.path, wl.persona, wl.requests, wl.prompt_lens, e_counter, args
    )
    print(f"[{wl.key}] E warm-up {wl.e_warm_s:.1f} s", flush=True)
    c_engine = padded_engine(model)
    rounds: list[dict[str, Run]] = []
    try:
        for n in range(wl.rounds):
            runs: dict[str, Run] = {}
            runs["B"] = run_b(model, counter, wl.persona, wl.requests)
            step(wl.key, n, runs["B"])
            runs["C"], batches = asyncio.run(
                run_c_async(conn, f"b{wl.ns}{n}c", c_engine, counter, wl.cast, wl.requests,
                            args)
            )
            step(wl.key, n, runs["C"])
            runs["D"] = run_d(model, counter, batches)
            step(wl.key, n, runs["D"])
            runs["E"], _ = asyncio.run(
                run_c_async(conn, f"b{wl.ns}{n}e", e_engine, e_counter, wl.cast, wl.requests,
                            args, name="E",
                            what="C with transformers' continuous batching")
            )
            step(wl.key, n, runs["E"])
            runs["A"] = run_a(wl.path, wl.persona, wl.requests[: wl.a_requests])
            step(wl.key, n, runs["A"])
            rounds.append(runs)
    finally:
        e_engine.close()
        model.close()
    # A, B and E: each one's fastest round. C and D: the pair from one round (D replays that
    # round's batches of C), the round where the two together were fastest.
    wl.runs = {k: min((r[k] for r in rounds), key=lambda run: run.seconds) for k in "ABE"}
    pair = min(rounds, key=lambda r: r["C"].seconds + r["D"].seconds)
    wl.runs["C"], wl.runs["D"] = pair["C"], pair["D"]
    wl.all_seconds = {k: [round(r[k].seconds, 2) for r in rounds] for k in "ABCDE"}


# --- the report --------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def _model_line(meta: dict[str, Any]) -> str:
    trained = (f"{meta['steps']} training steps, final loss {meta['final_loss']}"
               if not meta.get("random_init") else "random init, untrained")
    return (f"GPT-2 shape {meta['layers']} layers x {meta['width']} "
            f"({meta['params'] / 1e6:.1f} M parameters, vocab {meta['vocab']}, {trained}), fp32")


def workload_section(wl: Workload, ctx: dict[str, Any], number: int) -> list[str]:
    a, b, c, d, e = (wl.runs[k] for k in "ABCDE")
    lens = sorted(wl.prompt_lens)
    g = wl.persona.generation
    bk = b.counter
    out = [
        f"## {number}. {wl.title}",
        "",
        f"Model: {_model_line(wl.meta)}; {'reused from' if wl.meta['cached'] else 'built in'} "
        f"{ctx['rel'](wl.path)}.",
        f"Requests: {b.requests} replies for {BOT} (temperature {g.temperature}, top_k "
        f"{g.top_k}, top_p {g.top_p}, repetition_penalty {g.repetition_penalty}), "
        f"max_new_tokens {g.max_new_tokens}, {g.max_attempts} attempt(s) each, prompts of "
        f"{lens[0]}-{lens[-1]} tokens (median {lens[len(lens) // 2]}), one seed per request "
        "shared by all variants.",
        f"Shape of the work (B's counts): {bk.prompt_tokens} prompt tokens and {bk.tokens} "
        f"generated tokens ({bk.tokens / max(1, bk.rows):.1f} per reply, "
        f"{bk.tokens / max(1, bk.rows * g.max_new_tokens):.0%} of max_new_tokens).",
        f"Rounds: {wl.rounds}, all seconds: "
        + ", ".join(f"{k} {v}" for k, v in wl.all_seconds.items()) + ".",
        "",
        "| variant | what | requests | ok | tokens generated | seconds | tokens/s | requests/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in (a, b, c, d, e):
        what = r.what
        if r is a and a.requests < b.requests:
            what += f" (only the first {a.requests} requests: A is load-dominated)"
        out.append(
            f"| {r.name} | {what} | {r.requests} | {r.ok} | {r.tokens} | {r.seconds:.2f} | "
            f"{r.tok_s:.1f} | {r.req_s:.2f} |"
        )
    p = wl.prefix
    e_batch_s = e.notes["generate_s"] / max(1, len(e.notes["worker_batches"]))
    out += [
        "",
        "Ratios are of throughput in requests/s (the tokens/s ratios follow them):",
        "",
        "```",
        f"{p}ratio C/B = {c.req_s / b.req_s:.2f}",
        f"{p}ratio C/A = {c.req_s / a.req_s:.2f}",
        f"{p}ratio C/D = {c.req_s / d.req_s:.2f}",
        f"{p}ratio E/C = {e.req_s / c.req_s:.2f}",
        f"{p}tokens/s ratios: C/B = {c.tok_s / b.tok_s:.2f}, C/A = {c.tok_s / a.tok_s:.2f}, "
        f"C/D = {c.tok_s / d.tok_s:.2f}, E/C = {e.tok_s / c.tok_s:.2f}",
        f"{p}E warm-up = {wl.e_warm_s:.1f} s (continuous-batching manager build + one batch of "
        f"the {wl.e_warm_rows} longest prompts, once per model, before any timing; "
        f"{wl.e_warm_s - e_batch_s:.1f} s more than a timed E batch, {e_batch_s:.2f} s)",
        f"{p}C request latency (all {c.requests} queued at t0, "
        f"t0 -> result on gen-results-interactive): "
        f"p50 = {pct(c.latencies, 50):.2f} s, p95 = {pct(c.latencies, 95):.2f} s",
        f"{p}E request latency (same): p50 = {pct(e.latencies, 50):.2f} s, "
        f"p95 = {pct(e.latencies, 95):.2f} s",
        f"{p}B request latency (same burst, one at a time): p50 = "
        f"{pct(b.latencies, 50):.2f} s, p95 = {pct(b.latencies, 95):.2f} s",
        "```",
        "",
        "Details:",
        "",
    ]
    for r in (c, e):
        out.append(
            f"- {r.name}: worker batches {r.notes['worker_batches']} (batch_size "
            f"{ctx['batch_size']}, gather_ms {r.notes['gather_ms']}); generation "
            f"{r.notes['generate_s']:.2f} s of {r.seconds:.2f} s, queues and the rest "
            f"{r.seconds - r.notes['generate_s']:.2f} s; {r.notes['results']} results read, "
            f"{r.notes['left_in_queue']} requests left, {r.notes['poisoned']} in the poison "
            f"queue (invalid outputs, {g.max_attempts} attempt(s))."
        )
    for r in (a, b, c, d, e):
        k = r.counter
        if k.continuous:
            out.append(
                f"- {r.name}: {k.calls} generate_batch() calls, {k.rows} rows, prompt tokens "
                f"{k.prompt_tokens} (no padding), {k.tokens} tokens generated (finished rows "
                "leave the batch at once: no idle decode slots)."
            )
        else:
            out.append(
                f"- {r.name}: {k.calls} generate() calls, {k.rows} rows, prompt tokens "
                f"{k.prompt_tokens} real / {k.prompt_padded} with padding, decode slots "
                f"{k.slots} for {k.tokens} tokens ({k.tokens / max(1, k.slots):.0%} useful)."
            )
    out += [
        f"- Model load (A, per request): {wl.load_s:.2f} s measured once before the runs.",
        "",
    ]
    return out


def report(workloads: Sequence[Workload], ctx: dict[str, Any]) -> str:
    out = [
        "# Worker benchmark",
        "",
        f"Run {ctx['when']} by `{ctx['command']}` on {ctx['machine']}; load average "
        f"(1/5/15 min) {ctx['load_start']} at the start and {ctx['load_end']} at the end "
        f"({ctx['seconds']:.0f} s in all). torch {ctx['torch']} / transformers "
        f"{ctx['transformers']}, {ctx['threads']} torch thread(s).",
        "",
        "Two workloads, each answered five ways on the same requests and seeds: A (load per "
        "request, batch 1: the old design), B (loaded once, batch 1), C (`playhouse worker` "
        "through Azurite, padded batches), D (C's batches in-process: C's ceiling), E (C with "
        "`make_engine(..., continuous_batching=True)`: transformers' continuous batching). "
        "Each round runs B, C, D, E, A in turn on a shared machine; the tables keep A's, B's "
        "and E's fastest rounds and the C+D pair of the round where C and D together were "
        "fastest (D replays that round's batches of C). Tokens are the ones really generated: "
        "per row up to its last non-pad token for `generate()`, the returned sequence for "
        "continuous batching.",
        "",
    ]
    for n, wl in enumerate(workloads, 1):
        out += workload_section(wl, ctx, n)
    out += notes(workloads)
    return "\n".join(out).rstrip("\n") + "\n"


def notes(workloads: Sequence[Workload]) -> list[str]:
    by = {wl.key: wl for wl in workloads}
    out = ["## Notes", ""]
    prim = by.get("primary")
    dec = by.get("decode-heavy")

    def shape(wl: Workload) -> str:
        k = wl.runs["B"].counter
        return (f"{k.prompt_tokens} prompt tokens against {k.tokens} generated "
                f"({k.prompt_tokens / max(1, k.tokens):.1f} : 1)")

    if prim is not None:
        b, c = prim.runs["B"], prim.runs["C"]
        out.append(
            f"- **Primary = prompt-pass-bound.** The trained model closes its tag after a few "
            f"tokens, so the work is {shape(prim)}. On a CPU the prompt pass is compute-bound: "
            "a prompt token costs about the same alone or in a batch of 32, so batching can "
            "only save on the short decode part, and padding mixed-length prompts (even "
            "split into length buckets) adds prompt tokens. Hence C/B = "
            f"{c.req_s / b.req_s:.2f} here (target 4)."
        )
    if dec is not None:
        b, c = dec.runs["B"], dec.runs["C"]
        against = (f" against {prim.runs['C'].req_s / prim.runs['B'].req_s:.2f} on the "
                   "primary workload" if prim is not None else "")
        out.append(
            f"- **Decode-heavy = decode-bound.** The random-init model (same shape and "
            "tokenizer) closes a tag only by chance, so replies run to max_new_tokens, on "
            f"short prompts: {shape(dec)}. A decode step streams all the weights for one "
            "token per row, so one step of 32 rows costs far less than 32 steps of one: this is "
            f"where batching can pay on a CPU, C/B = {c.req_s / b.req_s:.2f}{against}. "
            "Its outputs are "
            "noise, so nearly every request fails validation (the `ok` column); each failure "
            "is still a result (and, in C and E, a poison-queue entry), so every variant "
            "answers all requests."
        )
    def winner(ratio: float) -> str:
        if ratio > 1.05:
            return "continuous batching wins"
        return "padded batches win" if ratio < 0.95 else "a tie"

    ratios = [wl.runs["E"].req_s / wl.runs["C"].req_s for wl in workloads]
    verdict = "; ".join(f"{wl.key} E/C = {r:.2f} ({winner(r)})"
                        for wl, r in zip(workloads, ratios, strict=True))
    default = (
        "so the worker keeps padded batches as its default on CPU (`worker.continuous_batching` "
        "off)" if max(ratios) < 1.0 else
        "so continuous batching is worth turning on (`worker.continuous_batching`) for the "
        "workloads where it wins"
    )
    out.append(
        f"- **Continuous batching (E) against padded batches (C) on this CPU:** {verdict}; "
        f"{default}. E also pays a one-off manager build per model (the warm-up lines above; "
        "mostly zeroing the manager's static tensors), which the worker keeps alive per "
        "loaded model, and, in transformers "
        f"{_version('transformers')}, every `generate_batch` call restarts the manager's "
        "generation loop and re-zeroes those tensors (about 0.5 s of a 0.65-0.8 s call with "
        "the --quick model, seen with a sampling profiler), a fixed cost per worker batch. "
        "Transformers' "
        "continuous batching also drops the repetition penalty "
        "(`RepetitionPenaltyLogitsProcessor isn't supported by CB`), so E samples without "
        "the persona's repetition_penalty."
    )
    out.append("")
    return out


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
    path, meta = ensure_model(args, lines)
    rpath, rmeta = ensure_random_model(args, path, rebuild=args.rebuild or not meta["cached"])

    def workload(key: str, ns: str, title: str, model_path: Path, model_meta: dict[str, Any],
                 depths: Sequence[int], rounds: int) -> Workload:
        persona = msgspec.structs.replace(
            base,
            model=str(model_path.resolve()),  # what make_engine resolves (E)
            generation=msgspec.structs.replace(
                base.generation, max_new_tokens=args.max_new_tokens,
                max_attempts=args.attempts,
            ),
        )
        return Workload(
            key=key, ns=ns, title=title, path=model_path, meta=model_meta, persona=persona,
            cast=Cast(personas={persona.name: persona}, rooms=cast.rooms),
            requests=make_requests(lines, persona, args.requests, args.seed, depths),
            rounds=rounds, a_requests=args.a_requests,
        )

    workloads = [workload(
        "primary", "p",
        "Primary workload: trained model, mixed prompts, short replies (prompt-pass-bound)",
        path, meta, DEPTHS, args.rounds,
    )]
    if args.decode_rounds:
        workloads.append(workload(
            "decode-heavy", "d",
            "Decode-heavy workload: random-init model, short prompts, replies run to "
            "max_new_tokens (decode-bound)",
            rpath, rmeta, DECODE_DEPTHS, args.decode_rounds,
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


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


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
