"""``playhouse dataset build``: Reddit dumps in, tag-format training text out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from playhouse.config import Settings

if TYPE_CHECKING:
    from playhouse.dataset.build import BuildOptions

HELP = "training text from Reddit dumps"


def arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="dumps (RS_/RC_ .zst, .ndjson, per-subreddit dumps) -> OUT/train.txt, eval.txt",
    )
    build.add_argument("inputs", nargs="+", metavar="INPUT", help="dump files or folders")
    build.add_argument("--subreddit", action="append", required=True, metavar="NAME",
                       help="keep this subreddit (repeat for more)")
    build.add_argument("--out", required=True, metavar="OUT", help="output folder")
    build.add_argument("--since", metavar="YYYY-MM-DD", help="keep records from this day on")
    build.add_argument("--until", metavar="YYYY-MM-DD", help="keep records before this day")
    build.add_argument("--min-score", type=int, metavar="N",
                       help="comments scoring less are context only, never trained on")
    build.add_argument("--exclude-author", action="append", metavar="NAME",
                       help="never train on this author (repeat; default: AutoModerator)")
    build.add_argument("--eval-fraction", type=float, default=0.05,
                       help="share of threads kept for eval.txt (default 0.05)")
    build.add_argument("--max-example-chars", type=int, default=6000,
                       help="longer examples lose their oldest comments (default 6000)")
    build.add_argument("--max-body-chars", type=int, default=2000,
                       help="post bodies are cut to this length (default 2000)")
    from playhouse.grammar import GRAMMARS

    build.add_argument("--grammar", default="playhouse", choices=list(GRAMMARS),
                       help="the lines' format: playhouse (default), ssi-bot (what "
                       "zacc/ssi-bot's dataset script writes) or ssi-bot-2021")
    build.add_argument("--tokenizer", metavar="PATH",
                       help="count tokens with this tokenizer (default: estimate)")
    build.add_argument("--seed", type=int, default=1234)
    build.add_argument("--bucket-mb", type=int, default=16,
                       help="size of the temporary buckets, about the memory used (default 16)")
    build.add_argument("--tmp-dir", metavar="DIR", help="temporary files (default: beside OUT)")
    build.add_argument("--allow-truncated", action="store_true",
                       help="keep the records of a truncated compressed file")
    build.add_argument("--force", action="store_true", help="replace an existing OUT")
    build.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Run the build and print its report; errors propagate as ``DatasetError``."""
    from playhouse.dataset.build import build_dataset
    from playhouse.dataset.stats import report

    options = options_from_args(args)
    stats = build_dataset(options)
    sys.stdout.write(report(stats, options.out))
    return 0


def _date(flag: str, value: str | None) -> int | None:
    from playhouse.dataset import DatasetError
    from playhouse.dataset.records import parse_date

    if value is None:
        return None
    try:
        return parse_date(value)
    except ValueError:
        raise DatasetError(f"{flag} {value!r}: expected a date written YYYY-MM-DD") from None


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    """The build options the ``dataset build`` flags ask for."""
    from playhouse.dataset.build import BuildOptions
    from playhouse.dataset.records import Filters
    from playhouse.dataset.stats import tokenizer_counter

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
