"""``playhouse dataset build``: turn the parsed flags into :class:`BuildOptions` and report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from playhouse.dataset import DatasetError
from playhouse.dataset.build import BuildOptions, build_dataset
from playhouse.dataset.records import Filters, parse_date
from playhouse.dataset.stats import report, tokenizer_counter


def _date(flag: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_date(value)
    except ValueError:
        raise DatasetError(f"{flag} {value!r}: expected a date written YYYY-MM-DD") from None


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    """The build options the ``dataset build`` flags ask for."""
    filters = Filters.create(
        list(args.subreddit),
        excluded_authors=args.exclude_author,
        since=_date("--since", args.since),
        until=_date("--until", args.until),
        min_score=args.min_score,
        max_body_chars=args.max_body_chars,
    )
    counter = tokenizer_counter(args.tokenizer) if args.tokenizer else None
    return BuildOptions(
        inputs=[Path(p) for p in args.inputs],
        out=Path(args.out),
        filters=filters,
        eval_fraction=args.eval_fraction,
        seed=args.seed,
        max_example_chars=args.max_example_chars,
        grammar=args.grammar,
        force=args.force,
        allow_truncated=args.allow_truncated,
        bucket_mb=args.bucket_mb,
        tmp_dir=Path(args.tmp_dir) if args.tmp_dir else None,
        token_counter=counter,
        token_counter_name=args.tokenizer or "",
        progress=not args.no_progress,
    )


def build_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run the build and print its report; errors propagate as :class:`DatasetError`."""
    options = options_from_args(args)
    stats = build_dataset(options)
    out.write(report(stats, options.out))
    return 0
