"""What a dataset build saw and wrote: counters, ``stats.json`` and the terminal report."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

LENGTH_EDGES: Final = (64, 128, 256, 512, 1024, 2048)
"""Upper bounds (exclusive) of the example-length histogram, in tokens; one more bin above."""

TokenCounter = Callable[[str], int]


def estimate_tokens(line: str) -> int:
    """A tokenizer-free estimate: about four UTF-8 bytes per GPT-2 token on English text."""
    return max(1, len(line.encode("utf-8")) // 4)


def tokenizer_counter(path_or_id: str) -> TokenCounter:
    """Count tokens with a saved tokenizer (``from_pretrained``; imports transformers)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path_or_id)

    def count(line: str) -> int:
        return len(tokenizer.encode(line, add_special_tokens=False))

    return count


def bin_label(tokens: int) -> str:
    low = 0
    for edge in LENGTH_EDGES:
        if tokens < edge:
            return f"{low}-{edge - 1}"
        low = edge
    return f"{low}+"


def bin_labels() -> list[str]:
    labels, low = [], 0
    for edge in LENGTH_EDGES:
        labels.append(f"{low}-{edge - 1}")
        low = edge
    return [*labels, f"{low}+"]


@dataclass
class SubredditCounts:
    threads: int = 0
    examples: int = 0


@dataclass
class Stats:
    """Every counter of one build; written as ``stats.json``."""

    grammar: str = "playhouse"
    """The grammar the examples are written in (``playhouse train`` reads it)."""
    inputs: list[str] = field(default_factory=list)
    input_bytes: int = 0
    lines: int = 0
    submissions: int = 0
    """Submissions kept after filtering (before de-duplication)."""
    comments: int = 0
    """Comments kept after filtering (before de-duplication)."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Lines left out, by reason: not_json, bad_record, other_subreddit, out_of_dates,
    deleted, bad_author, bad_title, too_long."""
    duplicates: int = 0
    """Records whose id was seen before (the last one read is kept)."""
    orphans: int = 0
    comments_without_post: int = 0
    shortened: int = 0
    too_long_examples: int = 0
    threads: int = 0
    """Threads that gave at least one example."""
    post_examples: int = 0
    reply_examples: int = 0
    train_examples: int = 0
    eval_examples: int = 0
    tokens: int = 0
    token_counter: str = "estimate (UTF-8 bytes / 4)"
    per_subreddit: dict[str, SubredditCounts] = field(default_factory=dict)
    length_histogram: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(bin_labels(), 0)
    )
    seconds: float = 0.0

    @property
    def examples(self) -> int:
        return self.train_examples + self.eval_examples

    def subreddit(self, name: str) -> SubredditCounts:
        if name not in self.per_subreddit:
            self.per_subreddit[name] = SubredditCounts()
        return self.per_subreddit[name]

    def count_example(self, tokens: int) -> None:
        self.tokens += tokens
        self.length_histogram[bin_label(tokens)] += 1

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["skipped"] = dict(sorted(self.skipped.items()))
        data["examples"] = self.examples
        data["per_subreddit"] = {
            name: asdict(counts) for name, counts in sorted(self.per_subreddit.items())
        }
        return data

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


def report(stats: Stats, out_dir: Path) -> str:
    """The build summary shown in the terminal."""
    lines = [
        f"dataset written to {out_dir} (grammar {stats.grammar})",
        f"  input         {len(stats.inputs)} files, {stats.input_bytes / 1e6:,.1f} MB, "
        f"{stats.lines:,} lines in {stats.seconds:,.1f} s",
        f"  kept          {stats.submissions:,} submissions, {stats.comments:,} comments",
        f"  threads       {stats.threads:,}",
        f"  examples      {stats.examples:,} ({stats.train_examples:,} train, "
        f"{stats.eval_examples:,} eval; {stats.post_examples:,} posts, "
        f"{stats.reply_examples:,} replies)",
        f"  tokens        {stats.tokens:,} ({stats.token_counter})",
        f"  left out      {stats.orphans:,} orphans, {stats.comments_without_post:,} comments "
        f"without their post, {stats.duplicates:,} duplicates, "
        f"{stats.too_long_examples:,} too long",
    ]
    if stats.skipped:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.skipped.items()))
        lines.append(f"  skipped lines {reasons}")
    lines.append("  per subreddit")
    for name, counts in sorted(stats.per_subreddit.items()):
        lines.append(
            f"    r/{name:<24} {counts.threads:>8,} threads {counts.examples:>10,} examples"
        )
    lines.append("  example length (tokens)")
    top = max(stats.length_histogram.values(), default=0) or 1
    for label, count in stats.length_histogram.items():
        bar = "#" * round(30 * count / top)
        lines.append(f"    {label:>9} {count:>10,} {bar}")
    return "\n".join(lines) + "\n"
