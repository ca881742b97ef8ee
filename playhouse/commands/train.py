"""``playhouse train``: fine-tune a GPT-2 on a built dataset and draft its persona file."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from playhouse.config import Settings

HELP = "fine-tune a GPT-2 on a built dataset (simpletransformers)"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="a `dataset build` output folder")
    parser.add_argument("--out", required=True, metavar="OUT",
                        help="output folder: OUT/model, OUT/persona.toml, OUT/checkpoints")
    parser.add_argument("--name", required=True, help="persona name (u/NAME)")
    parser.add_argument("--base", default="gpt2",
                        help="base model folder or hub id (gpt2, gpt2-medium, gpt2-large)")
    parser.add_argument("--from-scratch", action="store_true",
                        help="a tiny GPT-2 with its own tokenizer (tests, experiments)")
    parser.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4)")
    parser.add_argument("--block-size", type=int, default=512, help="tokens per block (512)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=0, help="stop after N steps (0: epochs)")
    parser.add_argument("--eval-every", type=int, default=500,
                        help="evaluate and checkpoint every N steps (default 500)")
    parser.add_argument("--patience", type=int, default=3,
                        help="stop after N evaluations without improvement (0: never)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--room", action="append", metavar="NAME",
                        help="room for the persona draft (repeat; default: the subreddits)")
    from playhouse.grammar import GRAMMARS

    parser.add_argument("--grammar", choices=list(GRAMMARS),
                        help="the grammar DATA is written in (default: its stats.json, else "
                        "what its lines read as)")
    parser.add_argument("--keep-checkpoints", type=int, default=2)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint")
    parser.add_argument("--force", action="store_true", help="delete OUT and start over")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace, settings: Settings) -> int:
    os.environ.setdefault("WANDB_MODE", "disabled")  # before simpletransformers is imported
    from playhouse.training import TrainOptions, format_report, train

    report = train(
        TrainOptions(
            data=Path(args.data), out=Path(args.out), name=args.name, base=args.base,
            from_scratch=args.from_scratch, learning_rate=args.lr,
            block_size=args.block_size, batch_size=args.batch_size,
            gradient_accumulation=args.grad_accum, epochs=args.epochs,
            max_steps=args.steps, eval_every=args.eval_every, patience=args.patience,
            device=args.device, seed=args.seed, resume=args.resume, force=args.force,
            rooms=tuple(args.room or ()), keep_checkpoints=args.keep_checkpoints,
            grammar=args.grammar, progress=not args.no_progress,
        )
    )
    sys.stdout.write(format_report(report))
    return 0
