"""The ``playhouse`` command line: parse, configure logging, then import the heavy parts."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from playhouse.config import Settings
from playhouse.errors import PlayhouseError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="playhouse", description=__doc__)
    p.add_argument("--config", default="playhouse.toml", help="optional settings file")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(
        "run", help="everything on one machine (Azurite when PLAYHOUSE_STORAGE is unset)"
    )
    web = sub.add_parser("web", help="the web app (pages, API, websocket, results consumer)")
    web.add_argument("--host")
    web.add_argument("--port", type=int)
    web.add_argument("--no-scheduler", action="store_true", help="never run the scheduler here")

    worker = sub.add_parser("worker", help="a generation worker")
    worker.add_argument("--kind", choices=("text", "image"), required=True)
    worker.add_argument("--max-models", type=int)
    worker.add_argument("--max-memory", type=int, help="MiB of models kept loaded")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    worker.add_argument("--engine", choices=("auto", "transformers", "ctranslate2"),
                        help="text generation engine (default: worker.engine, auto)")

    sub.add_parser("scheduler", help="the bots' scheduler alone (one leader across instances)")

    personas = sub.add_parser("personas", help="persona files")
    psub = personas.add_subparsers(dest="personas_command", required=True, metavar="ACTION")
    check = psub.add_parser("check", help="validate every persona file and print the cast")
    check.add_argument("directory", nargs="?", help="default: personas/")

    sub.add_parser("config", help="print the effective settings (secrets masked)")
    poison = sub.add_parser("poison", help="what the poison queues hold: list or purge it")
    poison.add_argument("action", nargs="?", choices=("list", "purge"), default="list")
    poison.add_argument("--queue", help="one queue (gen-image or gen-image-poison); default all")
    poison.add_argument("--limit", type=int, default=10,
                        help="entries shown per queue (at most 32, the oldest)")

    models = sub.add_parser("models", help="local models")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    demo = msub.add_parser("build-demo", help="build the offline demo models under var/models")
    demo.add_argument("--seed", type=int, default=1234)
    demo.add_argument("--budget", type=float, default=150.0, help="training seconds in all")
    demo.add_argument("--force", action="store_true")

    dataset = sub.add_parser("dataset", help="training text from Reddit dumps")
    dsub = dataset.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    build = dsub.add_parser(
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

    train = sub.add_parser(
        "train", help="fine-tune a GPT-2 on a built dataset (simpletransformers)"
    )
    train.add_argument("data", metavar="DATA", help="a `dataset build` output folder")
    train.add_argument("--out", required=True, metavar="OUT",
                       help="output folder: OUT/model, OUT/persona.toml, OUT/checkpoints")
    train.add_argument("--name", required=True, help="persona name (u/NAME)")
    train.add_argument("--base", default="gpt2",
                       help="base model folder or hub id (gpt2, gpt2-medium, gpt2-large)")
    train.add_argument("--from-scratch", action="store_true",
                       help="a tiny GPT-2 with its own tokenizer (tests, experiments)")
    train.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4)")
    train.add_argument("--block-size", type=int, default=512, help="tokens per block (512)")
    train.add_argument("--batch-size", type=int, default=4)
    train.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    train.add_argument("--epochs", type=int, default=1)
    train.add_argument("--steps", type=int, default=0, help="stop after N steps (0: epochs)")
    train.add_argument("--eval-every", type=int, default=500,
                       help="evaluate and checkpoint every N steps (default 500)")
    train.add_argument("--patience", type=int, default=3,
                       help="stop after N evaluations without improvement (0: never)")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--room", action="append", metavar="NAME",
                       help="room for the persona draft (repeat; default: the subreddits)")
    train.add_argument("--keep-checkpoints", type=int, default=2)
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.add_argument("--force", action="store_true", help="delete OUT and start over")
    train.add_argument("--no-progress", action="store_true")

    sample = sub.add_parser("sample", help="generate a few threads from a persona's model")
    sample.add_argument("persona", metavar="PERSONA")
    sample.add_argument("--personas", metavar="DIR",
                        help="folder holding the persona file (default: personas/)")
    sample.add_argument("--threads", type=int, default=3)
    sample.add_argument("--replies", type=int, default=3, help="chained replies per thread")
    sample.add_argument("--room", help="default: the persona's first room")
    sample.add_argument("--seed", type=int)
    sample.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.load(os.environ, args.config)
    except PlayhouseError as exc:
        sys.stderr.write(f"playhouse: {exc}\n")
        return 2
    from playhouse import logconfig

    logconfig.configure(settings.log_level, settings.log_format)
    try:
        return _dispatch(args, settings)
    except PlayhouseError as exc:
        sys.stderr.write(f"playhouse: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    command: str = args.command
    if command == "personas":
        from playhouse.personas import check_command

        return check_command(Path(args.directory or settings.personas_dir), sys.stdout)
    if command == "config":
        from playhouse.config import effective

        rows = effective(settings)
        width = max(len(name) for name, _, _ in rows)
        for name, value, doc in rows:
            sys.stdout.write(f"{name:<{width}}  {value:<24}  # {doc}\n")
        return 0
    if command == "poison":
        from playhouse.storage.poison import poison_command

        return poison_command(settings, args.action, queue=args.queue, limit=args.limit,
                              out=sys.stdout)
    if command == "models":
        from playhouse.generation.demo import build_demo_command

        return build_demo_command(
            Path(settings.models_dir),
            Path(settings.personas_dir),
            seed=args.seed,
            budget_s=args.budget,
            force=args.force,
        )
    if command == "dataset":
        from playhouse.dataset.command import build_command

        return build_command(args, sys.stdout)
    if command == "train":
        os.environ.setdefault("WANDB_MODE", "disabled")
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
                progress=not args.no_progress,
            )
        )
        sys.stdout.write(format_report(report))
        return 0
    if command == "sample":
        from playhouse.sampling import SampleOptions, sample

        return sample(
            SampleOptions(
                persona=args.persona,
                personas_dir=Path(args.personas or settings.personas_dir),
                models_dir=Path(settings.models_dir),
                threads=args.threads, replies=args.replies, room=args.room, seed=args.seed,
                device=args.device,
            ),
            sys.stdout,
        )
    if command == "run":
        from playhouse.runner import run_all

        return run_all(settings)
    if command == "worker":
        from playhouse.generation.main import run_worker

        return run_worker(
            settings,
            kind=args.kind,
            max_models=args.max_models,
            max_memory_mb=args.max_memory,
            burst=args.burst,
            engine=args.engine,
        )
    if command == "scheduler":
        from playhouse.scheduling.main import run_scheduler

        return run_scheduler(settings)
    if command == "web":
        from playhouse.web.main import run_web

        return run_web(settings, host=args.host, port=args.port, scheduler=not args.no_scheduler)
    raise AssertionError(command)
