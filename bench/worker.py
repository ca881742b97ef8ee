"""Worker benchmark: the old one-request-at-a-time design against the batching worker.

One GPT-2-shaped model (6 layers x 512 by default, the project's byte-level BPE tokenizer,
a short CPU training run so that it learns to close its tags; cached under ``var/bench``)
answers the same reply requests (mixed prompt lengths, same seeds, ``max_new_tokens`` 48)
four ways, side by side in one run:

A  the old design: load the model from disk for every request, one request at a time;
B  the model loaded once, one request at a time;
C  the real :class:`~playhouse.generation.worker.Worker` through Azurite queues (started
   here in a temporary folder): the requests are sent to ``gen-interactive``, the worker runs
   in burst mode (batched), the results are read back from ``gen-results``;
D  the very batches C generated, called in-process with no queue (the ceiling for C).

A, B and D go through the same engine code as C (``TextEngine.run``: prompt building, one
``generate()``, parsing), so the only differences are model loading, batching and queues.
Every variant samples each request once (the persona's ``max_attempts`` is 1 unless
``--attempts`` says otherwise) and counts the tokens it really generated: the non-pad tokens
of each row that ``generate()`` returned, so a row that stopped early at its end tag counts
only what it wrote (the padded steps it sat through in a batch are not counted).

Prints a table and writes it to ``bench/results/worker.md`` (``--out``). ``--quick`` is a
smoke run (a tiny model, a few requests, well under a minute) that writes under var/bench.

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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

if TYPE_CHECKING:
    from playhouse.generation.completion import Outcome
    from playhouse.generation.text import TextModel
    from playhouse.messages import GenerationRequest
    from playhouse.personas import Cast, Persona

MODEL_VERSION = 1
"""Bump when the way the benchmark model is built changes (invalidates the cache)."""
BOT = "CoopBot"
"""The persona whose sampling parameters the benchmark uses (its model is replaced)."""
DEPTHS = (0, 1, 2, 3, 4, 6, 8, 10, 13, 16)
"""Chain depths the requests cycle through: prompts from ~25 to ~400 tokens."""


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
    from playhouse.generation.corpus import persona_corpus, union_corpus

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

    from playhouse.generation.demo import build_tokenizer

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
    lines: Sequence[str], persona: Persona, n: int, seed: int
) -> list[GenerationRequest]:
    """``n`` reply requests for ``persona``: corpus threads whose chains are stretched to
    the depths in :data:`DEPTHS` (so prompt lengths are mixed), each with its own seed."""
    import msgspec

    from playhouse import grammar
    from playhouse.constants import QUEUE_INTERACTIVE
    from playhouse.jobs import reply_request
    from playhouse.storage.models import Comment, Thread

    rng = random.Random(seed)
    parsed = [grammar.parse_training_line(line) for line in lines[:400]]
    pool = [c for t in parsed for c in t.comments]
    requests = []
    now = time.time()
    for i in range(n):
        src = parsed[rng.randrange(len(parsed))]
        post = src.post
        depth = DEPTHS[i % len(DEPTHS)]
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


# --- counting what generate() really did ---------------------------------------------------


@dataclass
class Counter:
    calls: int = 0
    rows: int = 0
    tokens: int = 0
    """Non-pad tokens generated (what the variant really produced)."""
    slots: int = 0
    """rows x new-token width: the decode steps paid for, finished rows included."""
    prompt_tokens: int = 0
    prompt_padded: int = 0
    batch_sizes: list[int] = field(default_factory=list)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


def instrument(model: TextModel, counter: Counter) -> TextModel:
    """Count the rows, prompt padding and generated tokens of every ``generate()`` call."""
    inner = model.model.generate
    pad = model.tokenizer.pad_token_id

    def generate(*a: Any, **kw: Any) -> Any:
        out = inner(*a, **kw)
        ids = kw["input_ids"]
        new = out[:, ids.shape[1]:]
        counter.calls += 1
        counter.rows += int(ids.shape[0])
        counter.batch_sizes.append(int(ids.shape[0]))
        counter.tokens += int((new != pad).sum())
        counter.slots += int(new.numel())
        counter.prompt_tokens += int(kw["attention_mask"].sum())
        counter.prompt_padded += int(ids.numel())
        return out

    model.model.generate = generate
    return model


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
        ok += sum(o.ok for o in engine.run(persona, [(key, request)], request.seed))
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
        ok += sum(o.ok for o in engine.run(persona, [(key, request)], request.seed))
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
            seed: int | None) -> list[Outcome]:
        self.batches.append((persona, list(entries), seed))
        outcomes: list[Outcome] = self.inner.run(persona, entries, seed)
        return outcomes

    def close(self) -> None:
        self.inner.close()


async def run_c_async(
    conn: str, namespace: str, model: TextModel, counter: Counter, cast: Cast, persona: Persona,
    requests: Sequence[GenerationRequest], args: argparse.Namespace,
) -> tuple[Run, list[Batch]]:
    """The real Worker through Azurite: send, run in burst mode, read the results."""
    from playhouse.config import WorkerSettings
    from playhouse.constants import QUEUE_INTERACTIVE, QUEUE_RESULTS, poison_queue
    from playhouse.generation.engines import TextEngine
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
        inner = TextEngine(lambda _p: "bench", device="cpu", loader=lambda _p: model)
        inner.models.get("bench")
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
            got = await storage.queues.receive(QUEUE_RESULTS, max_messages=32)
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
    run = Run("C", "Worker via Azurite queues, batched", len(requests), seconds,
              _copy(counter), sum(r.ok for r in results), latencies)
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
        outcomes = engine.run(persona, entries, seed)
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
    engine.run(persona, _entries(requests[:4]), 1)
    engine.run(persona, _entries(requests[4:5]), 2)


# --- the report --------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def report(runs: dict[str, Run], ctx: dict[str, Any]) -> str:
    a, b, c, d = runs["A"], runs["B"], runs["C"], runs["D"]
    out = [
        "# Worker benchmark",
        "",
        f"Run {ctx['when']} by `{ctx['command']}` on {ctx['machine']}.",
        "",
        f"Model: GPT-2 shape {ctx['model']['layers']} layers x {ctx['model']['width']} "
        f"({ctx['model']['params'] / 1e6:.1f} M parameters, vocab {ctx['model']['vocab']}, "
        f"{ctx['model']['steps']} training steps, final loss {ctx['model']['final_loss']}), "
        f"fp32, torch {ctx['torch']} / transformers {ctx['transformers']}, "
        f"{ctx['threads']} torch thread(s).",
        f"Requests: {b.requests} replies for {BOT} (temperature {ctx['temperature']}, "
        f"top_k {ctx['top_k']}, top_p {ctx['top_p']}, repetition_penalty "
        f"{ctx['repetition_penalty']}), max_new_tokens {ctx['max_new_tokens']}, "
        f"{ctx['attempts']} attempt(s) each, prompts of {ctx['prompt_min']}-{ctx['prompt_max']} "
        f"tokens (median {ctx['prompt_median']}), one seed per request shared by all variants.",
        "",
        f"Each variant ran {ctx['rounds']} time(s), interleaved (B, C, D, A per round), on a "
        "shared machine; the table keeps A's and B's fastest rounds and the C+D pair of the "
        "round where C and D together were fastest (D replays that round's batches of C). "
        "All rounds, seconds: "
        + ", ".join(f"{k} {v}" for k, v in ctx["all_seconds"].items()) + ".",
        "",
        "| variant | what | requests | ok | tokens generated | seconds | tokens/s | requests/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in (a, b, c, d):
        what = r.what
        if r is a and a.requests < b.requests:
            what += f" (only the first {a.requests} requests: A is load-dominated)"
        out.append(
            f"| {r.name} | {what} | {r.requests} | {r.ok} | {r.tokens} | {r.seconds:.2f} | "
            f"{r.tok_s:.1f} | {r.req_s:.2f} |"
        )
    out += [
        "",
        "Ratios are of throughput in requests/s (the tokens/s ratios follow them):",
        "",
        "```",
        f"ratio C/B = {c.req_s / b.req_s:.2f}",
        f"ratio C/A = {c.req_s / a.req_s:.2f}",
        f"ratio C/D = {c.req_s / d.req_s:.2f}",
        f"tokens/s ratios: C/B = {c.tok_s / b.tok_s:.2f}, C/A = {c.tok_s / a.tok_s:.2f}, "
        f"C/D = {c.tok_s / d.tok_s:.2f}",
        f"C request latency (all {c.requests} queued at t0, t0 -> result on gen-results): "
        f"p50 = {pct(c.latencies, 50):.2f} s, p95 = {pct(c.latencies, 95):.2f} s",
        f"B request latency (same burst, one at a time): p50 = {pct(b.latencies, 50):.2f} s, "
        f"p95 = {pct(b.latencies, 95):.2f} s",
        "```",
        "",
        "Details:",
        "",
        f"- C: worker batches {c.notes['worker_batches']} (batch_size {ctx['batch_size']}, "
        f"gather_ms {c.notes['gather_ms']}); generation {c.notes['generate_s']:.2f} s of "
        f"{c.seconds:.2f} s, queues and the rest {c.seconds - c.notes['generate_s']:.2f} s; "
        f"{c.notes['results']} results read, {c.notes['left_in_queue']} requests left, "
        f"{c.notes['poisoned']} in the poison queue (invalid outputs, {ctx['attempts']} "
        "attempt(s)).",
    ]
    for r in (a, b, c, d):
        k = r.counter
        out.append(
            f"- {r.name}: {k.calls} generate() calls, {k.rows} rows, prompt tokens "
            f"{k.prompt_tokens} real / {k.prompt_padded} with padding, decode slots "
            f"{k.slots} for {k.tokens} tokens ({k.tokens / max(1, k.slots):.0%} useful)."
        )
    out.append(f"- Model load (A, per request): {ctx['load_s']:.2f} s measured once before "
               f"the runs; model {'reused from' if ctx['model']['cached'] else 'built in'} "
               f"{ctx['model_dir']}.")
    return "\n".join(out) + "\n"


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
    from playhouse.generation.text import TextModel
    from playhouse.personas import Cast, load_cast_strict

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    began = time.perf_counter()

    cast = load_cast_strict(ROOT / "personas")
    base = cast.personas[BOT]
    persona = msgspec.structs.replace(
        base,
        generation=msgspec.structs.replace(
            base.generation, max_new_tokens=args.max_new_tokens, max_attempts=args.attempts
        ),
    )
    bench_cast = Cast(personas={persona.name: persona}, rooms=cast.rooms)
    lines = corpus(cast, args.shape, args.seed)
    path, meta = ensure_model(args, lines)
    requests = make_requests(lines, persona, args.requests, args.seed)

    TextModel.load(str(path), device="cpu").close()  # imports and page cache, not timed
    load_started = time.perf_counter()
    counter = Counter()
    model = instrument(TextModel.load(str(path), device="cpu"), counter)
    load_s = time.perf_counter() - load_started
    from playhouse.generation.completion import build_prompt

    prompt_lens = sorted(model.count_tokens(build_prompt(r, persona, model)) for r in requests)
    warm_up(model, persona, requests)

    rounds: list[dict[str, Run]] = []
    step = _progress(began)
    with tempfile.TemporaryDirectory(prefix="bench-azurite-") as tmp:
        emulator = Azurite(Path(tmp), root=ROOT)
        emulator.start()
        try:
            for n in range(args.rounds):
                runs: dict[str, Run] = {}
                runs["B"] = run_b(model, counter, persona, requests)
                step(n, runs["B"])
                runs["C"], batches = asyncio.run(
                    run_c_async(emulator.connection_string, f"bench{n}", model, counter,
                                bench_cast, persona, requests, args)
                )
                step(n, runs["C"])
                runs["D"] = run_d(model, counter, batches)
                step(n, runs["D"])
                runs["A"] = run_a(path, persona, requests[: args.a_requests])
                step(n, runs["A"])
                rounds.append(runs)
        finally:
            emulator.stop()
    # A and B: each one's fastest round. C and D: the pair from one round (D replays that
    # round's batches of C), the round where the two together were fastest.
    runs = {k: min((r[k] for r in rounds), key=lambda run: run.seconds) for k in "AB"}
    pair = min(rounds, key=lambda r: r["C"].seconds + r["D"].seconds)
    runs["C"], runs["D"] = pair["C"], pair["D"]
    all_seconds = {k: [round(r[k].seconds, 2) for r in rounds] for k in "ABCD"}

    g = persona.generation
    ctx = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python bench/worker.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{os.cpu_count()} CPU cores (shared), no GPU",
        "model": meta, "model_dir": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT)
        else str(path),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "threads": torch.get_num_threads(), "temperature": g.temperature, "top_k": g.top_k,
        "top_p": g.top_p, "repetition_penalty": g.repetition_penalty,
        "max_new_tokens": g.max_new_tokens, "attempts": g.max_attempts,
        "prompt_min": prompt_lens[0], "prompt_max": prompt_lens[-1],
        "prompt_median": prompt_lens[len(prompt_lens) // 2], "batch_size": args.batch_size,
        "load_s": load_s, "rounds": args.rounds, "all_seconds": all_seconds,
    }
    text = report(runs, ctx)
    print()
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"written to {args.out} in {time.perf_counter() - began:.0f} s total")
    return 0


def _progress(began: float) -> Callable[[int, Run], None]:
    def step(n: int, run: Run) -> None:
        print(f"[{time.perf_counter() - began:6.1f} s] round {n + 1} {run.name}: "
              f"{run.requests} requests in "
              f"{run.seconds:.2f} s ({run.req_s:.2f} req/s, {run.tok_s:.1f} tok/s)", flush=True)

    return step


if __name__ == "__main__":
    sys.exit(main())
