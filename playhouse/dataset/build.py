"""``playhouse dataset build``: dumps in, ``train.txt``/``eval.txt``/``stats.json`` out.

Three passes over temporary files, so memory stays flat whatever the dump size:

1. **read**: stream every input line, decode, filter and clean it, and append the kept
   record to the bucket its thread hashes to (:mod:`~playhouse.dataset.buckets`);
2. **threads**: load one bucket at a time, de-duplicate by id (the last record read wins),
   rebuild its threads and scatter their examples at random into train or eval buckets (the
   split is by thread, so no thread is in both);
3. **write**: shuffle each scattered bucket in memory and append it to the output file,
   counting tokens and lengths.

Everything is written into a sibling ``.OUT.partial-PID`` folder that becomes ``OUT`` only
when the build succeeded: a failed build (bad input, disk full, Ctrl-C) leaves no output
that looks finished. An existing ``OUT`` is refused unless ``force``.
"""

from __future__ import annotations

import math
import os
import random
import re
import shutil
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import structlog

from playhouse.dataset import DatasetError
from playhouse.dataset.buckets import Buckets, read_bucket, shuffled
from playhouse.dataset.readers import discover, estimated_size, read_lines
from playhouse.dataset.records import (
    BadRecord,
    Filters,
    Reply,
    Skip,
    Submission,
    decode_kept,
    decode_line,
    encode_kept,
)
from playhouse.dataset.stats import Stats, TokenCounter, estimate_tokens
from playhouse.dataset.threads import ThreadCounts, thread_examples
from playhouse.errors import ConfigError
from playhouse.grammar import DEFAULT_GRAMMAR, Grammar
from playhouse.grammar import get as get_grammar

log = structlog.get_logger()

TRAIN_FILE: Final = "train.txt"
EVAL_FILE: Final = "eval.txt"
STATS_FILE: Final = "stats.json"
_MB: Final = 1 << 20
_KEPT_SHARE: Final = 0.3
"""About how much of a raw dump line survives as a compact record (fields dropped)."""
_LOGGED_BAD_LINES: Final = 5
_SUBREDDIT_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SPLIT_SCALE: Final = 1_000_000


@dataclass(frozen=True)
class BuildOptions:
    """Everything ``dataset build`` needs; the CLI fills it from its flags."""

    inputs: Sequence[Path]
    out: Path
    filters: Filters
    eval_fraction: float = 0.05
    """Share of threads (not examples) that go to ``eval.txt``."""
    seed: int = 1234
    max_example_chars: int = 6000
    """Longer examples lose their oldest ancestors."""
    grammar: str = DEFAULT_GRAMMAR
    """The grammar the examples are written in (:data:`playhouse.grammar.GRAMMARS`)."""
    force: bool = False
    """Replace an existing ``out`` folder."""
    allow_truncated: bool = False
    """Keep what a truncated compressed file held instead of stopping."""
    bucket_mb: int = 16
    """Target size of one temporary bucket: about what is held in memory at once."""
    tmp_dir: Path | None = None
    """Where the temporary buckets go (default: inside the partial output folder)."""
    token_counter: TokenCounter | None = None
    """Counts an example's tokens for the stats (default: an estimate)."""
    token_counter_name: str = ""
    progress: bool = True
    """Show progress bars (rate and ETA) on stderr."""


# --- output folder ---------------------------------------------------------------------


def _check_out(options: BuildOptions) -> None:
    out = options.out
    if out.exists() and not options.force:
        raise DatasetError(f"{out} already exists; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} exists and is not a folder")
    if not 0.0 <= options.eval_fraction < 1.0:
        raise DatasetError("the eval fraction must be at least 0 and below 1")
    if not options.filters.subreddits:
        raise DatasetError("name at least one subreddit (--subreddit NAME)")
    _grammar(options)
    for name in sorted(options.filters.subreddits):
        if not _SUBREDDIT_RE.fullmatch(name):
            raise DatasetError(f"not a subreddit name: {name!r}")


def _grammar(options: BuildOptions) -> Grammar:
    try:
        return get_grammar(options.grammar)
    except ConfigError as exc:
        raise DatasetError(f"--grammar: {exc}") from None


@contextmanager
def _partial_folder(out: Path, force: bool) -> Iterator[Path]:
    """A fresh folder beside ``out`` that replaces ``out`` when the block succeeds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        yield work
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if out.exists() and force:
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    work.rename(out)


def _progress(options: BuildOptions, **kwargs: Any) -> Any:
    from tqdm import tqdm

    return tqdm(disable=not options.progress, dynamic_ncols=True, **kwargs)


def _bucket_count(total_bytes: int, bucket_mb: int) -> int:
    wanted = math.ceil(total_bytes * _KEPT_SHARE / (bucket_mb * _MB))
    return max(1, min(128, wanted))


# --- pass 1: read ----------------------------------------------------------------------


def _read_inputs(
    files: Sequence[Path], options: BuildOptions, partitions: Buckets, stats: Stats
) -> None:
    total = sum(path.stat().st_size for path in files)
    stats.input_bytes = total
    bad_logged = 0
    with _progress(options, total=total, unit="B", unit_scale=True, desc="read") as bar:
        for path in files:
            stats.inputs.append(str(path))
            lines_before = stats.lines
            for number, line in enumerate(
                read_lines(path, progress=bar.update, allow_truncated=options.allow_truncated),
                start=1,
            ):
                stats.lines += 1
                try:
                    kept = options.filters.judge(decode_line(line))
                except Skip as skip:
                    stats.skipped[skip.reason] += 1
                    continue
                except BadRecord as bad:
                    stats.skipped[bad.kind] += 1
                    if bad_logged < _LOGGED_BAD_LINES:
                        bad_logged += 1
                        log.warning("dump.bad_line", path=str(path), line=number,
                                    kind=bad.kind, detail=bad.detail[:200])
                    continue
                if isinstance(kept, Submission):
                    stats.submissions += 1
                    partitions.add_keyed(kept.id, encode_kept(kept))
                else:
                    stats.comments += 1
                    partitions.add_keyed(kept.thread, encode_kept(kept))
            log.info("dump.read", path=str(path), lines=stats.lines - lines_before)
    partitions.close()


def _nothing_found(stats: Stats, filters: Filters) -> DatasetError:
    wanted = ", ".join(f"r/{s}" for s in sorted(filters.subreddits))
    if stats.lines == 0:
        return DatasetError("the inputs hold no lines at all")
    if stats.submissions == 0 and stats.comments == 0:
        unreadable = stats.skipped["not_json"] + stats.skipped["bad_record"]
        if unreadable == stats.lines:
            return DatasetError(f"none of the {stats.lines:,} lines is a Reddit record")
        return DatasetError(
            f"no record from {wanted} in the inputs ({stats.lines:,} lines read, "
            f"{stats.skipped['other_subreddit']:,} from other subreddits, "
            f"{stats.skipped['out_of_dates']:,} outside the dates)"
        )
    return DatasetError(
        f"no submission from {wanted} in the inputs ({stats.comments:,} comments): "
        "threads need their posts, so add the submission dumps (RS_*, *_submissions)"
    )


# --- pass 2: threads -------------------------------------------------------------------


def _is_eval(thread_id: str, options: BuildOptions) -> bool:
    digest = zlib.crc32(f"{options.seed}:{thread_id}".encode())
    return digest % _SPLIT_SCALE < options.eval_fraction * _SPLIT_SCALE


def _load_partition(path: Path, stats: Stats) -> tuple[dict[str, Submission], dict[str, Reply]]:
    posts: dict[str, Submission] = {}
    replies: dict[str, Reply] = {}
    for line in read_bucket(path):
        record = decode_kept(line)
        table: dict[str, Any] = posts if isinstance(record, Submission) else replies
        if record.id in table:
            stats.duplicates += 1
        table[record.id] = record
    return posts, replies


def _build_threads(
    partitions: Buckets,
    options: BuildOptions,
    train: Buckets,
    evals: Buckets,
    rng: random.Random,
    stats: Stats,
) -> None:
    grammar = _grammar(options)
    with _progress(options, total=len(partitions), unit="bucket", desc="threads") as bar:
        for path in partitions.paths:
            posts, replies = _load_partition(path, stats)
            by_thread: dict[str, list[Reply]] = defaultdict(list)
            for reply in replies.values():
                by_thread[reply.thread].append(reply)
            del replies
            for thread_id in sorted(by_thread.keys() - posts.keys()):
                stats.comments_without_post += len(by_thread[thread_id])
            for post in sorted(posts.values(), key=lambda p: (p.created, p.id)):
                target = evals if _is_eval(post.id, options) else train
                counts = ThreadCounts()
                examples = 0
                for example in thread_examples(
                    post, by_thread.get(post.id, []), max_chars=options.max_example_chars,
                    counts=counts, grammar=grammar,
                ):
                    target.add(rng.randrange(len(target)), example.encode("utf-8"))
                    examples += 1
                stats.orphans += counts.orphans
                stats.shortened += counts.shortened
                stats.too_long_examples += counts.too_long
                stats.post_examples += counts.post_examples
                stats.reply_examples += counts.reply_examples
                if examples:
                    stats.threads += 1
                    sub = stats.subreddit(post.subreddit)
                    sub.threads += 1
                    sub.examples += examples
            path.unlink()
            bar.update(1)
    train.close()
    evals.close()


# --- pass 3: write ---------------------------------------------------------------------


def _write_split(
    buckets: Buckets,
    out: BinaryIO,
    rng: random.Random,
    options: BuildOptions,
    stats: Stats,
    count: Callable[[str], int],
    desc: str,
) -> int:
    written = 0
    with _progress(options, total=sum(buckets.lines), unit="ex", desc=desc) as bar:
        for path in buckets.paths:
            for line in shuffled(path, rng, max_bytes=options.bucket_mb * _MB):
                out.write(line + b"\n")
                stats.count_example(count(line.decode("utf-8")))
                written += 1
                bar.update(1)
    return written


def open_output(path: Path) -> BinaryIO:
    """Open an output file for writing (a seam: tests swap it to simulate a full disk)."""
    return path.open("wb")


# --- the build -------------------------------------------------------------------------


def build_dataset(options: BuildOptions) -> Stats:
    """Run the three passes and return the stats; raises :class:`DatasetError`."""
    _check_out(options)
    files = discover(options.inputs)
    started = time.monotonic()
    stats = Stats(grammar=options.grammar)
    if options.token_counter is not None:
        stats.token_counter = options.token_counter_name or "tokenizer"
    count = options.token_counter or estimate_tokens
    rng = random.Random(options.seed)
    estimate = sum(estimated_size(path) for path in files)
    try:
        with _partial_folder(options.out, options.force) as work:
            tmp = (options.tmp_dir or work) / f"tmp-{os.getpid()}"
            tmp.mkdir(parents=True, exist_ok=True)
            try:
                count_buckets = _bucket_count(estimate, options.bucket_mb)
                partitions = Buckets(tmp, "records", count_buckets)
                try:
                    _read_inputs(files, options, partitions, stats)
                except BaseException:
                    partitions.discard()
                    raise
                if stats.submissions == 0:
                    raise _nothing_found(stats, options.filters)
                train = Buckets(tmp, "train", count_buckets)
                evals = Buckets(tmp, "eval", max(1, count_buckets // 8))
                _build_threads(partitions, options, train, evals, rng, stats)
                with open_output(work / TRAIN_FILE) as fh:
                    stats.train_examples = _write_split(
                        train, fh, rng, options, stats, count, "train.txt"
                    )
                with open_output(work / EVAL_FILE) as fh:
                    stats.eval_examples = _write_split(
                        evals, fh, rng, options, stats, count, "eval.txt"
                    )
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            if stats.examples == 0:
                raise DatasetError(
                    f"no example could be made from {stats.submissions:,} submissions and "
                    f"{stats.comments:,} comments (see the filters: min score, authors)"
                )
            stats.seconds = round(time.monotonic() - started, 3)
            stats.write(work / STATS_FILE)
    except OSError as exc:
        raise DatasetError(
            f"writing the dataset failed: {exc}; nothing was written to {options.out}"
        ) from exc
    log.info("dataset.built", out=str(options.out), threads=stats.threads,
             examples=stats.examples, tokens=stats.tokens, seconds=stats.seconds)
    return stats
