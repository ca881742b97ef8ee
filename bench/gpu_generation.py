"""GPU generation benchmark: batch 1 against padded batches and continuous batching.

A self-contained, one-shot run for a rented GPU machine. From this project it imports only
:mod:`playhouse.generation.text` (and what that imports: ``playhouse.errors``,
``playhouse.generation.continuous``, ``.grouping``, ``.interrupt``, ``.graphs``,
``structlog``), for G :mod:`playhouse.generation.ct2` (``.convert``, ``playhouse.grammar``)
and ``bench/gentools.py`` (stdlib and torch), so it needs no Azure SDK, no msgspec and no
network: torch, transformers, tokenizers, structlog (and ctranslate2 for G) are enough.

The model is GPT-2 medium's shape (24 layers x 1024, 16 heads, 1024 positions) with random
weights, built at run time in a temporary folder with the project's byte-level BPE
tokenizer (``--tokenizer DIR``, e.g. ``var/models/demo/.base`` from ``make demo-models``;
without it a byte-level BPE with the grammar's tags is trained here on the synthetic
prompts), saved with ``save_pretrained`` (fp16 on a GPU) and loaded back through
``TextModel.load`` as the worker loads a persona's model. Random weights close a reply's tag
only by chance, but the demo tokenizer is small (about 1,000 tokens, 11 of them end a reply),
so with the worker's stops about a third to a half of the rows end early (the table counts
them); ``--stops eos`` makes every row run to ``max_new_tokens``: pure decoding. The model
has 304 M parameters rather than GPT-2 medium's 355 M because its vocabulary is the demo
tokenizer's, not GPT-2's 50,257 (no hub here to fetch that tokenizer from).

Requests are reply prompts written in the playhouse tag grammar (``playhouse.grammar``: a
post header, a chain of comments, the bot's open tag) of about 30-300 tokens, one fixed seed;
sampling is the persona defaults (``SamplingParams()``, max_new_tokens 96) and generation
stops on the worker's stop set (``playhouse.grammar.PLAYHOUSE.stop_strings``, copied below).
Each variant gets one warm-up call first (not timed) and is timed between two
``torch.cuda.synchronize()``:

A  load per request (the old design), *estimated*: ``TextModel.load`` timed ``--loads``
   times, per request = mean load + B's seconds per request;
B  the model loaded once, one request at a time (``TextModel.generate([p])``), at most
   ``--b-requests`` requests or ``--b-max-s`` seconds;
D  padded batches: ``TextModel.generate(chunk)`` over all requests in chunks of 8, 32, 64;
E  transformers' continuous batching: ``TextModel.load(..., continuous=True)``, all requests
   in one ``generate`` call (its warm-up is the same call: the manager is sized for it);
F  the launch-free path (issue 15): ``TextModel.load(..., launch_free=True)``, a static KV
   cache and the decode step captured in CUDA graphs (``playhouse.generation.graphs``,
   warmed up at load), batch 1 (F1) and padded batches of each size (F8, F32, F64); CUDA
   only (reported as skipped on a CPU);
G  CTranslate2 on the device (``playhouse.generation.ct2.Ct2Model``: float16 on CUDA, int8
   on a CPU), converted into a temporary cache first (its seconds are G's warm-up), batch 1
   (G1) and batches of each size. Needs the ``ctranslate2`` package (and, on CUDA, the CUDA
   libraries it loads); a variant that cannot run is reported as failed with the reason.

A, B, D and E run with ``launch_free=False``: today's eager path, whatever the device. The
ratios include F and G against D64 (today's best batch) and their batch-1 milliseconds per
token against B's (issue 15's targets: <= 3 ms a token at batch 1, >= 12,000 tokens/s at
batch 64, on GPT-2 medium in fp16).

Generated tokens are counted exactly, not by re-tokenizing the returned strings (which are
decoded without special tokens and would re-merge differently): ``model.generate`` is
wrapped by ``bench/gentools.py`` (as in ``bench/worker.py``) and each row counts up to its
last non-pad token (a row that stopped at a tag counts what it wrote, not the padded steps
it sat through); for continuous batching each returned sequence's length.

A variant that raises is reported as ``failed: <reason>`` and the run goes on; variants are
skipped once ``--budget-s`` has passed, and a watchdog writes what was measured and exits
if the whole run passes ``--hard-limit-s``. The markdown report (device, versions, table,
ratios) is printed last and written to ``--out`` (default ``$OUT/gpu_generation.md`` when
OUT is set, else ``var/bench/gpu_generation.md``).

    python3 bench/gpu_generation.py --tokenizer var/models/demo/.base      # on the GPU box
    .venv/bin/python bench/gpu_generation.py --quick --device cpu --tokenizer var/models/demo/.base
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
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

if TYPE_CHECKING:
    from playhouse.generation.text import SamplingParams, TextModel

# --- the grammar, by hand (playhouse.grammar and .completion import more than we carry) ---

STOPS: tuple[str, ...] = (
    "<|eost|>", "<|eol|>",  # grammar.POST_END_TAGS
    "<|eor|>", "<|eoopr|>", "<|eoocr|>",  # grammar.REPLY_END_TAGS
    "<|sor", "<|soopr", "<|soocr", "<|soss", "<|sols",  # the open tags' starts
)
"""``playhouse.grammar.PLAYHOUSE.stop_strings``: what the worker passes as ``stop``."""
ALL_TAGS: tuple[str, ...] = (
    "<|sot|>", "<|eot|>", "<|sost|>", "<|eost|>", "<|sol|>", "<|eol|>",
    "<|eor|>", "<|eoopr|>", "<|eoocr|>",
    "<|soss", "<|sols", "<|sor", "<|soopr", "<|soocr", "|>",
)
"""``grammar.ALL_TAGS``: the added tokens of the fallback tokenizer."""
BOT = "CoopBot"
ROOMS = ("cooking", "technology", "AskPlayhouse", "gardening", "football", "cats")
AUTHORS = ("alice_22", "bob-k", "Visitor", "marta", "dev_null", "quietfox", "Pat7", BOT)
_WORDS = (
    "the a an and or but if then so because while after before when where why how what "
    "who which this that these those it its they them their we us our you your he she "
    "his her is are was were be been being have has had do does did will would can could "
    "should may might must not no yes very really just only also even still again more "
    "most less least much many few some any every each all both either neither other "
    "time year day week night morning home house room kitchen garden street city town "
    "car bike train bus phone computer laptop screen keyboard code bug test server "
    "database network cloud model data file folder game team match goal player coach "
    "ball season league cat dog bird fish tree flower seed soil water rain sun wind "
    "bread cheese pasta sauce soup salad pizza coffee tea sugar salt pepper oven pan "
    "recipe dinner lunch breakfast friend family people person thing idea problem "
    "question answer reason story news book movie music song picture photo paint "
    "color red blue green yellow black white big small long short old new good bad "
    "great best worse better easy hard fast slow hot cold warm early late first last "
    "next think know want need like love hate try make take give get go come see look "
    "find tell ask work play read write run walk cook grow buy sell pay help start stop "
    "keep leave bring hold turn show hear feel seem mean put set say call move live"
)
WORDS: tuple[str, ...] = tuple(_WORDS.split())


def _reply_kind(author: str, post_author: str, grandparent: str | None) -> str:
    """``grammar._reply_kind``: op reply, oc (back-and-forth) reply or plain reply."""
    if author == post_author:
        return "soopr"
    if grandparent is not None and author == grandparent:
        return "soocr"
    return "sor"


def _render(header: str, post_author: str, chain: Sequence[tuple[str, list[str]]]) -> str:
    """``grammar.reply_prompt``: the header, the chain's closed comments, BOT's open tag."""
    blocks = []
    for i, (author, text) in enumerate(chain):
        kind = _reply_kind(author, post_author, chain[i - 2][0] if i >= 2 else None)
        blocks.append(f"<|{kind} u/{author}|>{' '.join(text)}<|e{kind[1:]}|>")
    kind = _reply_kind(BOT, post_author, chain[-2][0] if len(chain) >= 2 else None)
    return header + "".join(blocks) + f"<|{kind} u/{BOT}|>"


def make_prompts(count_tokens: Callable[[str], int], n: int, seed: int,
                 lo: int = 30, hi: int = 300) -> list[str]:
    """``n`` reply prompts for BOT of about ``lo``-``hi`` tokens (a uniform target each)."""
    rng = random.Random(seed)

    def words(a: int, b: int) -> list[str]:
        return [rng.choice(WORDS) for _ in range(rng.randint(a, b))]

    prompts = []
    for _ in range(n):
        target = rng.randint(lo, hi)
        post_author = rng.choice(AUTHORS)
        header = (f"<|soss r/{rng.choice(ROOMS)}|><|sot|>{' '.join(words(3, 10))}<|eot|>"
                  f"<|sost|>{' '.join(words(4, 24))}<|eost|>")
        chain: list[tuple[str, list[str]]] = []
        prompt = _render(header, post_author, chain)
        while count_tokens(prompt) < target:
            author = rng.choice(AUTHORS if chain else AUTHORS[:-1])  # BOT answers, not opens
            chain.append((author, words(4, 40)))
            prompt = _render(header, post_author, chain)
        while chain and len(chain[-1][1]) > 1 and count_tokens(prompt) > target + 4:
            chain[-1][1].pop()
            prompt = _render(header, post_author, chain)
        prompts.append(prompt)
    return prompts


# --- options -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    n_layer: int
    n_embd: int
    n_head: int


MEDIUM = Shape(n_layer=24, n_embd=1024, n_head=16)
QUICK = Shape(n_layer=2, n_embd=128, n_head=4)


def default_out() -> Path:
    out = os.environ.get("OUT")
    return Path(out) / "gpu_generation.md" if out else ROOT / "var" / "bench" / "gpu_generation.md"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    p.add_argument("--tokenizer", type=Path, default=None,
                   help="folder with the project's tokenizer files (e.g. var/models/demo/.base); "
                        "default: train a byte-level BPE here")
    p.add_argument("--quick", action="store_true",
                   help="tiny model (2 x 128), 8 requests, 16 new tokens: a smoke run")
    p.add_argument("--requests", type=int, default=None, help="requests for D and E (64)")
    p.add_argument("--b-requests", type=int, default=None,
                   help="requests for B at most (16; 4 with --quick)")
    p.add_argument("--b-max-s", type=float, default=45.0,
                   help="B stops after the request that passes this many seconds")
    p.add_argument("--max-new-tokens", type=int, default=None, help="96 (16 with --quick)")
    p.add_argument("--batch-sizes", default=None, help="D's batch sizes (8,32,64; 2,4,8 quick)")
    p.add_argument("--loads", type=int, default=3, help="timed TextModel.load calls for A")
    p.add_argument("--variants", default="A,B,D,E,F,G", help="which variants to run")
    p.add_argument("--stops", default="worker", choices=("worker", "eos"),
                   help="stop on the worker's tags (default) or on eos only (every row runs "
                        "to max_new_tokens but for a sampled eos: pure decode)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--budget-s", type=float, default=400.0,
                   help="skip the variants not started when this much time has passed")
    p.add_argument("--hard-limit-s", type=float, default=450.0,
                   help="watchdog: write what was measured and exit after this long")
    p.add_argument("--out", type=Path, default=None,
                   help="markdown report ($OUT/gpu_generation.md, else var/bench/...)")
    args = p.parse_args(argv)
    args.shape = QUICK if args.quick else MEDIUM
    if args.requests is None:
        args.requests = 8 if args.quick else 64
    if args.b_requests is None:
        args.b_requests = 4 if args.quick else 16
    args.b_requests = max(1, min(args.b_requests, args.requests))
    if args.max_new_tokens is None:
        args.max_new_tokens = 16 if args.quick else 96
    sizes = args.batch_sizes or ("2,4,8" if args.quick else "8,32,64")
    args.sizes = sorted({int(s) for s in sizes.split(",") if s.strip()}, reverse=True)
    args.stop = STOPS if args.stops == "worker" else ()
    args.variants = {v.strip().upper() for v in args.variants.split(",") if v.strip()}
    if args.out is None:
        args.out = default_out()
    return args


# --- results -------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    what: str
    requests: int = 0
    seconds: float = 0.0
    tokens: int = 0
    calls: int = 0
    early: int = 0
    slots: int = 0
    peak_mib: float | None = None
    warmup_s: float | None = None
    failed: str = ""
    skipped: str = ""
    estimated: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped and self.seconds > 0

    @property
    def req_s(self) -> float:
        return self.requests / self.seconds if self.ok else float("nan")

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds if self.ok else float("nan")

    def take(self, counter: Counter) -> None:
        self.tokens, self.calls = counter.tokens, counter.calls
        self.early, self.slots = counter.early, counter.slots


class Bench:
    """The state of one run: device, timings, results, and the report."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.began = time.perf_counter()
        self.results: dict[str, Result] = {}
        self.order: list[str] = []
        self.header: list[str] = []
        self.lock = threading.Lock()
        self.written = False
        self.current = ""
        """The variant running now (named by the watchdog)."""

    def elapsed(self) -> float:
        return time.perf_counter() - self.began

    def log(self, msg: str) -> None:
        print(f"[{self.elapsed():6.1f} s] {msg}", flush=True)

    def add(self, r: Result) -> Result:
        if r.name not in self.results:
            self.order.append(r.name)
        self.results[r.name] = r
        return r

    def report(self, partial: str = "") -> str:
        out = [*self.header, ""]
        if partial:
            out += [f"**Partial report:** {partial}", ""]
        out += [
            "| variant | what | requests | generate calls | tokens generated | tokens/request "
            "| stopped early | wall s | requests/s | tokens/s | peak GPU MiB | warm-up s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name in self.order:
            r = self.results[name]
            if not r.ok:
                why = f"failed: {r.failed}" if r.failed else f"skipped: {r.skipped or 'no data'}"
                out.append(f"| {r.name} | {r.what} | {why} |  |  |  |  |  |  |  |  |  |")
                continue
            peak = "n/a" if r.peak_mib is None else f"{r.peak_mib:.0f}"
            warm = "" if r.warmup_s is None else f"{r.warmup_s:.2f}"
            per = r.tokens / max(1, r.requests)
            est = " (estimated)" if r.estimated else ""
            out.append(
                f"| {r.name} | {r.what}{est} | {r.requests} | {r.calls} | {r.tokens} | "
                f"{per:.1f} | {r.early}/{r.requests} | {r.seconds:.2f} | {r.req_s:.2f} | "
                f"{r.tok_s:.1f} | {peak} | {warm} |"
            )
        notes = [f"- {name}: {n}" for name in self.order for n in self.results[name].notes]
        if notes:
            out += ["", *notes]
        out += ["", "Ratios (requests/s; tokens/s in brackets):", "", "```", *self.ratios(), "```"]
        return "\n".join(out) + "\n"

    def ratios(self) -> list[str]:
        res = self.results

        def ratio(a: str, b: str) -> str:
            ra, rb = res.get(a), res.get(b)
            if ra is None or rb is None or not ra.ok or not rb.ok:
                return f"{a}/{b} = n/a"
            return (f"{a}/{b} = {ra.req_s / rb.req_s:.2f} "
                    f"(tokens/s {ra.tok_s / rb.tok_s:.2f})")

        sizes = self.args.sizes
        lines = [ratio(f"D{bs}", "B") for bs in sizes]
        if sizes:
            top = f"D{sizes[0]}"
            lines.append(ratio("E", top))
            lines += [ratio(f"{v}{sizes[0]}", top) for v in "FG"]
        lines.append(ratio("A", "B"))

        def ms_per_token(name: str) -> str:
            r = res.get(name)
            if r is None or not r.ok or not r.tokens:
                return f"{name} n/a"
            return f"{name} {1000 * r.seconds / r.tokens:.2f}"

        lines.append("batch 1, ms per token: " + ", ".join(
            ms_per_token(n) for n in ("B", "F1", "G1")) + " (target <= 3; limit ~0.16)")
        if sizes:
            def tok_s(name: str) -> str:
                r = res.get(name)
                return f"{name} {r.tok_s:.0f}" if r is not None and r.ok else f"{name} n/a"

            lines.append(f"batch {sizes[0]}, tokens/s: " + ", ".join(
                tok_s(f"{v}{sizes[0]}") for v in "DFG")
                + " (target >= 12,000 at 64; limit ~78,000)")
        return lines

    def write(self, partial: str = "") -> None:
        with self.lock:
            if self.written:
                return
            self.written = True
            text = self.report(partial)
            print()
            print(text, flush=True)
            try:
                self.args.out.parent.mkdir(parents=True, exist_ok=True)
                self.args.out.write_text(text, encoding="utf-8")
                print(f"written to {self.args.out} after {self.elapsed():.0f} s", flush=True)
            except OSError as exc:
                print(f"could not write {self.args.out}: {exc}", flush=True)


# --- the device ------------------------------------------------------------------------------


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def sync(device: str) -> None:
    import torch

    if is_cuda(device):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    import torch

    if is_cuda(device):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_mib(device: str) -> float | None:
    import torch

    if not is_cuda(device):
        return None
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def free(device: str) -> None:
    import torch

    gc.collect()
    if is_cuda(device):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


# --- building the model -----------------------------------------------------------------------


def load_tokenizer(path: Path | None, corpus: Callable[[], list[str]]) -> tuple[Any, str]:
    """The project's tokenizer from ``path``, else a byte-level BPE trained on ``corpus()``."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    missing = ""
    if path is not None and not path.is_dir():
        print(f"--tokenizer {path} is not a folder: training a byte-level BPE here instead",
              flush=True)
        missing, path = f" because --tokenizer {path} was missing", None
    if path is not None:
        try:
            return AutoTokenizer.from_pretrained(str(path)), f"loaded from {path}"
        except Exception as exc:
            tok_file = path / "tokenizer.json"
            if not tok_file.is_file():
                raise
            print(f"AutoTokenizer failed ({one_line(exc)}); reading {tok_file} directly",
                  flush=True)
            return PreTrainedTokenizerFast(
                tokenizer_file=str(tok_file), bos_token="<|endoftext|>",
                eos_token="<|endoftext|>", unk_token="<|endoftext|>", pad_token="<|pad|>",
                padding_side="left", model_max_length=1024,
            ), f"tokenizer.json of {path}"
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2048, special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    backend.train_from_iterator(corpus(), trainer=trainer)
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in ALL_TAGS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        unk_token="<|endoftext|>", pad_token="<|pad|>", padding_side="left",
        model_max_length=1024,
    )
    return tok, f"byte-level BPE trained here{missing or ' (no --tokenizer)'}"


def build_model_dir(folder: Path, tokenizer: Any, shape: Shape, device: str,
                    seed: int) -> dict[str, Any]:
    """Save ``tokenizer`` and a random-init GPT-2 of ``shape`` into ``folder``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=shape.n_embd,
        n_layer=shape.n_layer, n_head=shape.n_head,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.device(device):  # initialise on the GPU: much faster than 355 M on a CPU
        model = GPT2LMHeadModel(config)
    if is_cuda(device):
        model = model.half()
    model.eval()
    model.save_pretrained(str(folder))
    meta = {"params": model.num_parameters(), "vocab": len(tokenizer),
            "dtype": str(next(model.parameters()).dtype).replace("torch.", "")}
    del model
    free(device)
    return meta


# --- the variants ----------------------------------------------------------------------------


def run_b(bench: Bench, tm: Any, counter: Counter, prompts: Sequence[str],
          params: SamplingParams, warm: SamplingParams, name: str = "B",
          what: str = "loaded once, batch 1: generate([p])") -> Result:
    a, dev = bench.args, tm.device
    r = Result(name, what)
    t0 = time.perf_counter()
    tm.generate([prompts[0]], warm, stop=a.stop, seed=a.seed)
    sync(dev)
    r.warmup_s = time.perf_counter() - t0
    counter.reset()
    reset_peak(dev)
    started = time.perf_counter()
    for i, p in enumerate(prompts[: a.b_requests]):
        tm.generate([p], params, stop=a.stop, seed=a.seed * 1000 + i)
        r.requests += 1
        if time.perf_counter() - started > a.b_max_s:
            r.notes.append(f"stopped after {r.requests} requests (--b-max-s {a.b_max_s:g})")
            break
    sync(dev)
    r.seconds = time.perf_counter() - started
    r.peak_mib = peak_mib(dev)
    r.take(counter)
    return r


def run_d(bench: Bench, tm: Any, counter: Counter, prompts: Sequence[str],
          params: SamplingParams, warm: SamplingParams, bs: int, name: str = "D",
          what: str = "padded batches of {bs}: generate(chunk)") -> Result:
    a, dev = bench.args, tm.device
    r = Result(f"{name}{bs}", what.format(bs=bs))
    t0 = time.perf_counter()
    tm.generate(list(prompts[:bs]), warm, stop=a.stop, seed=a.seed)
    sync(dev)
    r.warmup_s = time.perf_counter() - t0
    counter.reset()
    reset_peak(dev)
    started = time.perf_counter()
    for start in range(0, len(prompts), bs):
        tm.generate(list(prompts[start : start + bs]), params, stop=a.stop,
                    seed=a.seed * 1000 + start)
    sync(dev)
    r.seconds = time.perf_counter() - started
    r.requests = len(prompts)
    r.peak_mib = peak_mib(dev)
    r.take(counter)
    computed = "computed" if counter.ct2 else "with padding"
    r.notes.append(f"decode slots {counter.slots} for {counter.tokens} tokens "
                   f"({counter.tokens / max(1, counter.slots):.0%} useful); prompt tokens "
                   f"{counter.prompt_tokens} real / {counter.prompt_padded} {computed}")
    return r


def run_engine(bench: Bench, name: str, what: str, load: Callable[[Counter], Any],
               prompts: Sequence[str], params: SamplingParams, warm: SamplingParams) -> None:
    """One new engine (F or G): loaded by ``load`` (timed as the warm-up of its batch-1
    variant), then batch 1 (``{name}1``) and every batch size (``{name}{bs}``)."""
    a = bench.args
    counter = Counter()
    model: Any = None
    try:
        t0 = time.perf_counter()
        model = load(counter)
        load_s = time.perf_counter() - t0
        bench.log(f"{name}: loaded in {load_s:.1f} s")
        one = guarded(bench, f"{name}1", f"{what}, batch 1", lambda: run_b(
            bench, model, counter, prompts, params, warm, name=f"{name}1",
            what=f"{what}, batch 1"))
        if one is not None and one.ok:
            one.notes.append(f"load (and for F the graph capture, for G the conversion) "
                             f"{load_s:.1f} s before the warm-up call")
        for bs in a.sizes:
            guarded(bench, f"{name}{bs}", f"{what}, batches of {bs}",
                    partial(run_d, bench, model, counter, prompts, params, warm, bs,
                            name=name, what=f"{what}, batches of {{bs}}"))
    except Exception as exc:  # the load itself
        traceback.print_exc()
        for label in (f"{name}1", *(f"{name}{bs}" for bs in a.sizes)):
            if label not in bench.results:
                bench.add(Result(label, what, failed=f"load: {one_line(exc)}"))
    finally:
        if model is not None:
            model.close()
        model = None
        free(a.device_name)


def run_a(bench: Bench, model_dir: Path, device: str, b: Result | None) -> Result:
    from playhouse.generation.text import TextModel

    a = bench.args
    r = Result("A", "load per request + B's per-request generate", estimated=True)
    t0 = time.perf_counter()
    TextModel.load(str(model_dir), device=device, launch_free=False).close()
    free(device)
    r.warmup_s = time.perf_counter() - t0
    loads = []
    peaks = []
    for _ in range(max(1, a.loads)):
        reset_peak(device)
        t = time.perf_counter()
        tm = TextModel.load(str(model_dir), device=device, launch_free=False)
        sync(device)
        loads.append(time.perf_counter() - t)
        peaks.append(peak_mib(device))
        tm.close()
        del tm
        free(device)
    load_s = statistics.mean(loads)
    r.notes.append(f"TextModel.load: mean {load_s:.2f} s of {len(loads)} "
                   f"({', '.join(f'{x:.2f}' for x in loads)}); warm-up load {r.warmup_s:.2f} s")
    r.peak_mib = None if peaks[0] is None else max(p or 0.0 for p in peaks)
    if b is None or not b.ok:
        r.failed = f"needs B's per-request time (B did not run); load {load_s:.2f} s"
        return r
    r.requests = b.requests
    r.seconds = load_s * b.requests + b.seconds
    r.tokens, r.calls, r.early, r.slots = b.tokens, b.calls, b.early, b.slots
    return r


def run_e(bench: Bench, model_dir: Path, device: str, prompts: Sequence[str],
          params: SamplingParams) -> Result:
    from playhouse.generation.text import TextModel

    a = bench.args
    r = Result("E", "continuous batching: TextModel.load(continuous=True), one call")
    counter = Counter()
    tm = TextModel.load(str(model_dir), device=device, continuous=True, launch_free=False)
    try:
        instrument_continuous(tm, counter, a.max_new_tokens)
        reset_peak(device)
        t0 = time.perf_counter()
        tm.generate(list(prompts), params, stop=a.stop, seed=a.seed)  # builds the manager
        sync(device)
        r.warmup_s = time.perf_counter() - t0
        counter.reset()
        started = time.perf_counter()
        tm.generate(list(prompts), params, stop=a.stop, seed=a.seed + 1)
        sync(device)
        r.seconds = time.perf_counter() - started
        r.requests = len(prompts)
        r.peak_mib = peak_mib(device)
        r.take(counter)
        r.notes.append("warm-up = the same call (builds and sizes the manager, kept alive); "
                       "peak memory covers both and includes the paged KV cache that "
                       "transformers sizes from the free GPU memory (not from the workload); "
                       "repetition_penalty is dropped by transformers' continuous batching")
    finally:
        tm.close()
        del tm
        free(device)
    return r


def guarded(bench: Bench, name: str, what: str, fn: Callable[[], Result]) -> Result | None:
    """Run one variant: skip it past the budget, report a failure instead of raising."""
    if bench.elapsed() > bench.args.budget_s:
        bench.log(f"{name}: skipped (over the {bench.args.budget_s:g} s budget)")
        bench.add(Result(name, what, skipped=f"over the {bench.args.budget_s:g} s budget "
                                             f"at {bench.elapsed():.0f} s"))
        return None
    bench.log(f"{name}: {what} ...")
    bench.current = name
    try:
        r = fn()
    except Exception as exc:
        traceback.print_exc()
        r = Result(name, what, failed=one_line(exc))
    finally:
        bench.current = ""
    bench.add(r)
    if r.ok:
        bench.log(f"{name}: {r.requests} requests in {r.seconds:.2f} s ({r.req_s:.2f} req/s, "
                  f"{r.tok_s:.1f} tok/s, {r.tokens / max(1, r.requests):.1f} tok/request)")
    else:
        bench.log(f"{name}: {r.failed or r.skipped}")
    return r


# --- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    bench = Bench(args)

    def stop_run() -> None:
        running = f" while {bench.current} was running" if bench.current else ""
        bench.write(f"the watchdog stopped the run at {bench.elapsed():.0f} s "
                    f"(--hard-limit-s {args.hard_limit_s:g}){running}; that variant and the "
                    "ones after it are missing")
        os._exit(3)

    watchdog = threading.Timer(args.hard_limit_s, stop_run)
    watchdog.daemon = True
    watchdog.start()

    import logging

    import structlog
    import torch
    import transformers

    from playhouse.generation.text import SamplingParams, TextModel, pick_device

    quiet_logs()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    device = pick_device(args.device)
    if is_cuda(device) and not torch.cuda.is_available():
        print("--device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    if not is_cuda(device):
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    dev_name = torch.cuda.get_device_name() if is_cuda(device) else f"CPU ({os.cpu_count()} cores)"
    bench.log(f"device {device} ({dev_name}), torch {torch.__version__}, "
              f"transformers {transformers.__version__}")

    bench.header = [
        "# GPU generation benchmark", "",
        f"Device: {dev_name} ({device}); torch {torch.__version__}, transformers "
        f"{transformers.__version__}.",
    ]
    tmp = Path(tempfile.mkdtemp(prefix="gpu-generation-"))
    try:
        seed_rng = random.Random(args.seed + 7)
        tokenizer, tok_from = load_tokenizer(
            args.tokenizer,
            lambda: make_prompts(lambda s: len(s) // 4, 400, seed_rng.randrange(10**9)),
        )
        model_dir = tmp / "model"
        t0 = time.perf_counter()
        meta = build_model_dir(model_dir, tokenizer, args.shape, device, args.seed)
        build_s = time.perf_counter() - t0

        def count(s: str) -> int:
            return len(tokenizer.encode(s, add_special_tokens=False))

        prompts = make_prompts(count, args.requests, args.seed)
        lens = sorted(count(p) for p in prompts)
        params = SamplingParams(max_new_tokens=args.max_new_tokens)
        warm = SamplingParams(max_new_tokens=min(16, args.max_new_tokens))
        s = args.shape
        bench.header = [
            "# GPU generation benchmark",
            "",
            f"Device: {dev_name} ({device}); torch {torch.__version__}, transformers "
            f"{transformers.__version__}, Python {sys.version.split()[0]}; run "
            f"{time.strftime('%Y-%m-%d %H:%M')} by `python bench/gpu_generation.py "
            f"{' '.join(sys.argv[1:] if argv is None else argv)}`.",
            f"Model: GPT-2 shape {s.n_layer} layers x {s.n_embd}, {s.n_head} heads, "
            f"{meta['params'] / 1e6:.1f} M parameters, vocab {meta['vocab']} (tokenizer "
            f"{tok_from}), random init, {meta['dtype']}; built and saved in {build_s:.1f} s, "
            "loaded through `TextModel.load`.",
            f"Requests: {len(prompts)} reply prompts in the tag grammar, {lens[0]}-{lens[-1]} "
            f"tokens (median {lens[len(lens) // 2]}, {sum(lens)} in all); sampling "
            f"{params}; stop = "
            + (f"the worker's STOPS ({len(STOPS)} tags, single tokens of this tokenizer) and eos"
               if args.stop else "eos only (--stops eos)")
            + f". B: the first {args.b_requests} requests at most. Warm-ups (not timed): "
            f"B and D one call of their batch size with max_new_tokens {warm.max_new_tokens}; "
            "E the timed call itself once; A one load.",
            "Tokens are counted exactly: per padded row up to its last non-pad token, per "
            "continuous-batching row the returned sequence. 'stopped early' = rows that "
            "ended before max_new_tokens (a closed tag or eos).",
        ]
        bench.log(f"model {meta['params'] / 1e6:.1f} M params built in {build_s:.1f} s; "
                  f"prompts {lens[0]}-{lens[-1]} tokens")

        b: Result | None = None
        if "B" in args.variants or "D" in args.variants:
            counter = Counter()
            tm: TextModel | None = None
            try:
                tm = TextModel.load(str(model_dir), device=device, launch_free=False)
                instrument(tm, counter, args.max_new_tokens)
                loaded = tm
                if "B" in args.variants:
                    b = guarded(bench, "B", "loaded once, batch 1", lambda: run_b(
                        bench, loaded, counter, prompts, params, warm))
                if "D" in args.variants:
                    for bs in args.sizes:
                        guarded(bench, f"D{bs}", f"padded batches of {bs}",
                                partial(run_d, bench, loaded, counter, prompts, params, warm,
                                        bs))
            except Exception as exc:  # the load itself (guarded() catches the variants)
                traceback.print_exc()
                for name in ("B", *(f"D{bs}" for bs in args.sizes)):
                    if name not in bench.results:
                        bench.add(Result(name, "model loaded once",
                                         failed=f"TextModel.load: {one_line(exc)}"))
            finally:
                if tm is not None:
                    tm.close()
                tm = None
                free(device)
        if "A" in args.variants:
            guarded(bench, "A", "load per request (estimated)",
                    lambda: run_a(bench, model_dir, device, b))
        if "E" in args.variants:
            guarded(bench, "E", "continuous batching",
                    lambda: run_e(bench, model_dir, device, prompts, params))
        args.device_name = device
        if "F" in args.variants:
            if not is_cuda(device):
                for label in ("F1", *(f"F{bs}" for bs in args.sizes)):
                    bench.add(Result(label, "launch-free (static cache + CUDA graphs)",
                                     skipped="CUDA only (never selected on a CPU)"))
            else:
                def load_f(counter: Counter) -> Any:
                    tm = TextModel.load(str(model_dir), device=device, launch_free=True)
                    if not tm.launch_free:
                        bench.log("F: the launch-free warm-up failed; F runs eager "
                                  "(see model.launch_free_failed)")
                    return instrument(tm, counter, args.max_new_tokens)

                run_engine(bench, "F", "launch-free: static cache + CUDA graphs", load_f,
                           prompts, params, warm)
        if "G" in args.variants:
            def load_g(counter: Counter) -> Any:
                from playhouse.generation.ct2 import Ct2Model

                model = Ct2Model.load(
                    str(model_dir), cache_dir=tmp / "ct2", device=device.split(":")[0],
                    quantization="float16" if is_cuda(device) else "auto",
                )
                bench.log(f"G: CTranslate2 {model.quantization} on {device}")
                return instrument_ct2(model, counter, args.max_new_tokens)

            run_engine(bench, "G", "CTranslate2", load_g, prompts, params, warm)
        order = ["A", "B", *(f"D{bs}" for bs in sorted(args.sizes)),
                 "F1", *(f"F{bs}" for bs in sorted(args.sizes)),
                 "G1", *(f"G{bs}" for bs in sorted(args.sizes)), "E"]
        bench.order = [n for n in order if n in bench.results]
        bench.header.append("")
        bench.header.append(f"Total run {bench.elapsed():.0f} s.")
        watchdog.cancel()
        bench.write()
    except Exception as exc:  # setup failed: say so in the report too
        traceback.print_exc()
        watchdog.cancel()
        bench.write(f"setup failed: {one_line(exc)}")
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
