"""The training run: check the start, prepare the base model, train with simpletransformers,
publish the model and write the persona draft, and report what came out."""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Final

import structlog

from playhouse.errors import ConfigError, InvalidInput
from playhouse.grammar import GRAMMAR_VERSION, GRAMMARS, Grammar, detect
from playhouse.grammar import get as get_grammar
from playhouse.training.checkpoints import latest_checkpoint
from playhouse.training.options import (
    CHECKPOINTS,
    EVAL_FILE,
    PERSONA_FILE,
    TRAIN_FILE,
    TrainingError,
    TrainOptions,
    TrainReport,
)
from playhouse.training.publish import _description, _publish, persona_draft
from playhouse.training.simpletransformers_glue import _lm_class, _st_args, register_tags

log = structlog.get_logger()

_ROOM_RE: Final = re.compile(r"[A-Za-z0-9_]{3,32}")
_PERSONA_RE: Final = re.compile(r"[A-Za-z0-9_-]{2,32}")
_TOKENIZER_LINES: Final = 20_000
_SNIFFED_LINES: Final = 50


def _check_start(options: TrainOptions) -> None:
    if not _PERSONA_RE.fullmatch(options.name):
        raise TrainingError(f"persona name {options.name!r}: use 2-32 letters, digits, _ or -")
    train = options.data / TRAIN_FILE
    if not train.is_file() or train.stat().st_size == 0:
        raise TrainingError(f"{train}: missing or empty; run `playhouse dataset build` first")
    if options.block_size < 8 or options.batch_size < 1:
        raise TrainingError("block size must be at least 8 and batch size at least 1")
    out = options.out
    if options.force:
        shutil.rmtree(out, ignore_errors=True)
    elif out.exists() and any(out.iterdir()) and not options.resume:
        raise TrainingError(
            f"{out} already exists; pass --resume to continue from its last checkpoint "
            "or --force to start over"
        )


def rooms_for(options: TrainOptions) -> tuple[str, ...]:
    """The draft's rooms: ``options.rooms``, else the dataset's subreddits that are rooms."""
    if options.rooms:
        bad = [room for room in options.rooms if not _ROOM_RE.fullmatch(room)]
        if bad:
            raise TrainingError(f"not a room name: {bad[0]!r} (3-32 letters, digits or _)")
        return tuple(dict.fromkeys(options.rooms))
    stats_file = options.data / "stats.json"
    names: list[str] = []
    if stats_file.is_file():
        names = list(json.loads(stats_file.read_text(encoding="utf-8")).get("per_subreddit", {}))
    rooms = tuple(name for name in names if _ROOM_RE.fullmatch(name))
    if not rooms:
        raise TrainingError("no room for the persona draft: pass --room NAME")
    return rooms


def grammar_for(options: TrainOptions) -> Grammar:
    """The grammar ``train.txt`` is written in: ``options.grammar`` (checked against the
    file's first lines), else the one ``stats.json`` records, else the one those lines read in.
    """
    lines = _read_lines(options.data / TRAIN_FILE, _SNIFFED_LINES)
    stats_file = options.data / "stats.json"
    name = options.grammar
    if name is None and stats_file.is_file():
        name = json.loads(stats_file.read_text(encoding="utf-8")).get("grammar")
    if name is None:
        found = detect(lines)
        if found is None:
            known = ", ".join(GRAMMARS)
            raise TrainingError(f"{options.data / TRAIN_FILE}: its lines are in none of the "
                                f"grammars ({known}); pass --grammar NAME")
        return found
    try:
        grammar = get_grammar(str(name))
        for line in lines:
            grammar.parse_training_line(line)
    except (ConfigError, InvalidInput) as exc:
        raise TrainingError(f"{options.data / TRAIN_FILE} in grammar {name!r}: {exc}") from None
    return grammar


def _read_lines(path: Path, limit: int) -> list[str]:
    lines: list[str] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                lines.append(line.rstrip("\n"))
            if len(lines) >= limit:
                break
    return lines


def _prepare_base(options: TrainOptions, base_dir: Path, grammar: Grammar) -> None:
    """Write the model training starts from (the grammar's tags registered as tokens,
    embeddings resized; an ssi-bot grammar's tags stay text, as ssi-bot trains)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

    if options.from_scratch:
        from playhouse.demo.tinymodels import build_tokenizer

        lines = _read_lines(options.data / TRAIN_FILE, _TOKENIZER_LINES)
        tokenizer = build_tokenizer(lines, base_dir, vocab_size=options.scratch.vocab_size,
                                    tags=grammar.token_strings)
        cfg = options.scratch
        config = GPT2Config(
            vocab_size=len(tokenizer), n_positions=cfg.n_positions, n_embd=cfg.n_embd,
            n_layer=cfg.n_layer, n_head=cfg.n_head, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
        import torch

        torch.manual_seed(options.seed)
        model = GPT2LMHeadModel(config)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(options.base)
            model = AutoModelForCausalLM.from_pretrained(options.base)
        except (OSError, ValueError) as exc:
            raise TrainingError(f"cannot load the base model {options.base!r}: {exc}") from exc
        added = register_tags(tokenizer, grammar.token_strings)
        if added or model.get_input_embeddings().num_embeddings < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
        if model.config.model_type != "gpt2":
            raise TrainingError(f"{options.base}: a {model.config.model_type} model; "
                                "playhouse trains GPT-2 models")
    base_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(base_dir))
    tokenizer.save_pretrained(str(base_dir))


def _device(setting: str) -> bool:
    import torch

    if setting == "cpu":
        return False
    if setting == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda: no CUDA device is available")
    return setting == "cuda" or torch.cuda.is_available()


def train(options: TrainOptions) -> TrainReport:
    """Train, publish ``OUT/model`` and write ``OUT/persona.toml``; raises TrainingError."""
    started = time.monotonic()
    _check_start(options)
    rooms = rooms_for(options)
    grammar = grammar_for(options)
    checkpoints = options.out / CHECKPOINTS
    resumed: Path | None = None
    if options.resume and checkpoints.is_dir():
        resumed = latest_checkpoint(checkpoints)
    if options.resume and resumed is None:
        raise TrainingError(f"nothing to resume in {checkpoints}: no checkpoint saved yet")
    cuda = _device(options.device)
    eval_file = options.data / EVAL_FILE
    has_eval = eval_file.is_file() and eval_file.stat().st_size > 0
    if not has_eval:
        log.warning("training.no_eval", path=str(eval_file))
    try:
        start_from = resumed
        if start_from is None:
            start_from = checkpoints / "base"
            _prepare_base(options, start_from, grammar)
        (checkpoints / "cache").mkdir(parents=True, exist_ok=True)
        if not options.progress:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        lm_class = _lm_class()
        lm_class.keep_checkpoints = options.keep_checkpoints
        log.info("training.started", start_from=str(start_from), cuda=cuda,
                 resumed=resumed is not None)
        lm = lm_class(
            "gpt2",
            str(start_from),
            args={**_st_args(options, checkpoints, has_eval, cuda),
                  "tokenizer_name": str(start_from)},
            use_cuda=cuda,
        )
        steps, details = lm.train_model(
            str(options.data / TRAIN_FILE), eval_file=str(eval_file) if has_eval else None
        )
        final_loss: float | None = None
        if has_eval:
            final_loss = float(lm.eval_model(str(eval_file), verbose=False, silent=True)[
                "eval_loss"])
        best_loss: float | None = None
        if isinstance(details, dict) and details.get("eval_loss"):
            best_loss = min(float(x) for x in details["eval_loss"])
    except OSError as exc:
        raise TrainingError(f"training failed writing to {checkpoints}: {exc}") from exc
    best_dir = checkpoints / "best_model"
    use_best = (
        best_loss is not None and final_loss is not None and best_loss < final_loss
        and (best_dir / "config.json").is_file()
    )
    eval_loss = best_loss if use_best else final_loss
    manifest = {
        "status": "done",
        "persona": options.name,
        "steps": int(steps),
        "eval_loss": eval_loss,
        "published": "best" if use_best else "last",
        "base": "scratch" if options.from_scratch else options.base,
        "data": str(options.data.resolve()),
        "options": {k: v for k, v in asdict(options).items()
                    if k not in {"data", "out", "scratch"}},
        "grammar": grammar.name,
        **({"grammar_version": GRAMMAR_VERSION} if grammar.name == "playhouse" else {}),
    }
    model_dir = _publish(best_dir if use_best else checkpoints, options.out, manifest)
    n_positions = int(json.loads((model_dir / "config.json").read_text()).get("n_positions", 1024))
    persona_file = options.out / PERSONA_FILE
    persona_file.write_text(
        persona_draft(options.name, model_dir, rooms, description=_description(options),
                      n_positions=n_positions, grammar=grammar),
        encoding="utf-8",
    )
    report = TrainReport(
        model_dir=model_dir,
        persona_file=persona_file,
        steps=int(steps),
        eval_loss=eval_loss,
        perplexity=math.exp(min(eval_loss, 50.0)) if eval_loss is not None else None,
        published="best" if use_best else "last",
        resumed_from=resumed.name if resumed else None,
        seconds=round(time.monotonic() - started, 2),
    )
    log.info("training.finished", model=str(model_dir), steps=report.steps,
             eval_loss=eval_loss, published=report.published, seconds=report.seconds)
    return report


def format_report(report: TrainReport) -> str:
    """What ``playhouse train`` prints at the end."""
    loss = "n/a" if report.eval_loss is None else f"{report.eval_loss:.4f}"
    ppl = "n/a" if report.perplexity is None else f"{report.perplexity:,.1f}"
    resumed = f" (resumed from {report.resumed_from})" if report.resumed_from else ""
    return (
        f"model    {report.model_dir} ({report.published} weights){resumed}\n"
        f"persona  {report.persona_file}\n"
        f"steps    {report.steps}, eval loss {loss}, perplexity {ppl}, "
        f"{report.seconds:,.1f} s\n"
    )
