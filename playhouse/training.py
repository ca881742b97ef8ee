"""``playhouse train``: fine-tune a GPT-2 on a built dataset and draft its persona file.

simpletransformers verdict (0.70.8 against the pinned transformers 5.24.0, checked here):
it imports (with a UserWarning that ``TextDataset``/``LineByLineTextDataset`` are gone from
transformers 5) and ``LanguageModelingModel`` trains a GPT-2 on CPU, so it is what trains.
Four of its parts are replaced by overrides in :func:`_lm_class`, each for a reason:

* ``load_and_cache_examples``: its ``SimpleDataset`` decodes every block with
  ``skip_special_tokens=True`` and encodes it again, which silently drops any tag registered
  as a special token and can split multi-byte characters at block edges. :class:`TagBlocks`
  tokenizes each example once, ends it with eos and cuts the stream into full blocks. The
  tags are registered as ordinary added tokens all the same (one token each, never stripped).
* ``evaluate``: with ``mlm=False`` and HF datasets off it fails with ``UnboundLocalError:
  local variable 'input_ids'`` (it only sets ``input_ids`` on the HF-datasets path), which
  also breaks evaluation during training and so early stopping. Ours computes the mean loss
  over ``eval.txt`` blocks and its perplexity.
* ``save_model``: also prunes old ``checkpoint-*`` folders (it keeps all of them otherwise;
  a gpt2-large checkpoint with optimizer state is several GB).
* its ``dataset_class`` hook is not used: ``LanguageModelingArgs.save`` cannot serialise it.

Other quirks handled here: ``mlm`` defaults to True; ``max_seq_length`` (default 128) caps
the block size; ``fp16`` defaults to True (CPU training sets it off); ``cache_dir``,
``best_model_dir`` and ``tensorboard_dir`` default to folders under the working directory;
it trains one step more than ``max_steps``. Resuming is its own: a ``checkpoint-N`` folder
passed as the model name restores the optimizer, scheduler and step count.

Layout of ``--out OUT``: ``OUT/checkpoints/`` (the base model, checkpoints, best model,
logs), ``OUT/model/`` (the finished model; it appears only once complete, by renaming a
finished ``model.partial``), ``OUT/persona.toml`` (a draft for ``personas/``).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import structlog

from playhouse.errors import PlayhouseError
from playhouse.grammar import ALL_TAGS, GRAMMAR_VERSION

log = structlog.get_logger()

TRAIN_FILE: Final = "train.txt"
EVAL_FILE: Final = "eval.txt"
CHECKPOINTS: Final = "checkpoints"
MODEL: Final = "model"
PERSONA_FILE: Final = "persona.toml"
MANIFEST: Final = "training.json"
_NOT_PUBLISHED: Final = frozenset(
    {
        "optimizer.pt", "scheduler.pt", "training_args.bin", "model_args.json",
        "eval_results.txt", "training_progress_scores.csv",
    }
)
_ROOM_RE: Final = re.compile(r"[A-Za-z0-9_]{3,32}")
_PERSONA_RE: Final = re.compile(r"[A-Za-z0-9_-]{2,32}")
_TOKENIZER_LINES: Final = 20_000


class TrainingError(PlayhouseError):
    """Training cannot start or its result cannot be written."""


@dataclass(frozen=True)
class ScratchConfig:
    """The GPT-2 that ``--from-scratch`` builds (tests and experiments; tiny by default)."""

    vocab_size: int = 2048
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 2
    n_positions: int = 1024


@dataclass(frozen=True)
class TrainOptions:
    """Everything ``playhouse train`` needs; the CLI fills it from its flags."""

    data: Path
    """A ``dataset build`` output folder (``train.txt``, ``eval.txt``, ``stats.json``)."""
    out: Path
    name: str
    """The persona's name (``u/NAME``)."""
    base: str = "gpt2"
    """Base model: a folder or a hub id (gpt2, gpt2-medium, gpt2-large)."""
    from_scratch: bool = False
    scratch: ScratchConfig = field(default_factory=ScratchConfig)
    learning_rate: float = 1e-4
    block_size: int = 512
    batch_size: int = 4
    gradient_accumulation: int = 1
    epochs: int = 1
    max_steps: int = 0
    """Stop after this many optimizer steps (0: run the epochs)."""
    eval_every: int = 500
    """Evaluate on ``eval.txt`` and save a checkpoint every this many steps."""
    patience: int = 3
    """Stop after this many evaluations without improvement (0: never stop early)."""
    warmup_ratio: float = 0.06
    device: str = "auto"
    seed: int = 42
    resume: bool = False
    force: bool = False
    rooms: tuple[str, ...] = ()
    """Rooms for the persona draft (default: the dataset's subreddits that are valid rooms)."""
    keep_checkpoints: int = 2
    progress: bool = True


@dataclass(frozen=True)
class TrainReport:
    """What a training run produced."""

    model_dir: Path
    persona_file: Path
    steps: int
    eval_loss: float | None
    perplexity: float | None
    published: str
    """Which weights were published: ``best`` (lowest eval loss) or ``last``."""
    resumed_from: str | None
    seconds: float


# --- data ------------------------------------------------------------------------------


def _tagblocks_class() -> Any:
    import torch
    from torch.utils.data import Dataset

    class TagBlocks(Dataset[Any]):
        """``path``'s examples tokenized once, each ended by eos, cut into full blocks.

        The tail that does not fill a block is dropped, unless the file holds less than
        one block, which is then the only (short) block.
        """

        def __init__(self, tokenizer: Any, path: Path, block_size: int) -> None:
            ids = array("q")
            eos = tokenizer.eos_token_id
            pending: list[str] = []

            def flush() -> None:
                for encoded in tokenizer(pending, add_special_tokens=False)["input_ids"]:
                    ids.extend(encoded)
                    if eos is not None:
                        ids.append(eos)
                pending.clear()

            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    line = line.rstrip("\n")
                    if line.strip():
                        pending.append(line)
                    if len(pending) >= 1000:
                        flush()
            flush()
            count = len(ids) // block_size
            data = torch.tensor(ids, dtype=torch.long) if ids else torch.zeros(0, dtype=torch.long)
            if count:
                self.blocks = data[: count * block_size].view(count, block_size)
            else:
                self.blocks = data[None, :] if len(data) else data.view(0, 0)

        def __len__(self) -> int:
            return int(self.blocks.shape[0])

        def __getitem__(self, index: int) -> Any:
            return self.blocks[index]

    return TagBlocks


def tag_blocks(tokenizer: Any, path: Path, block_size: int) -> Any:
    """The training blocks of ``path`` (a torch ``Dataset`` of 1-D id tensors)."""
    return _tagblocks_class()(tokenizer, path, block_size)


def _read_lines(path: Path, limit: int) -> list[str]:
    lines: list[str] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                lines.append(line.rstrip("\n"))
            if len(lines) >= limit:
                break
    return lines


# --- the model -------------------------------------------------------------------------


def _lm_class() -> Any:
    import torch
    from simpletransformers.language_modeling import LanguageModelingModel
    from torch.nn.utils.rnn import pad_sequence

    class PlayhouseLM(LanguageModelingModel):  # type: ignore[misc]
        keep_checkpoints = 2

        def load_and_cache_examples(
            self, file_path: str, evaluate: bool = False, no_cache: bool = False,
            verbose: bool = True, silent: bool = False,
        ) -> Any:
            return tag_blocks(self.tokenizer, Path(file_path), self.args.block_size)

        def evaluate(
            self, eval_dataset: Any, output_dir: str, prefix: str = "", verbose: bool = True,
            silent: bool = False, **kwargs: Any,
        ) -> dict[str, float]:
            pad = self.tokenizer.pad_token_id or 0
            loader = torch.utils.data.DataLoader(
                eval_dataset, batch_size=self.args.eval_batch_size,
                collate_fn=lambda rows: pad_sequence(rows, batch_first=True, padding_value=pad),
            )
            self.model.eval()
            total, count = 0.0, 0
            with torch.no_grad():
                for batch in loader:
                    batch = batch.to(self.device)
                    total += float(self.model(input_ids=batch, labels=batch).loss) * len(batch)
                    count += len(batch)
            self.model.train()
            loss = total / max(1, count)
            results = {"eval_loss": loss, "perplexity": math.exp(min(loss, 50.0))}
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "eval_results.txt").write_text(
                "".join(f"{k} = {v}\n" for k, v in sorted(results.items())), encoding="utf-8"
            )
            log.info("training.evaluated", eval_loss=round(loss, 4))
            return results

        def save_model(
            self, output_dir: str | None = None, optimizer: Any = None, scheduler: Any = None,
            model: Any = None, results: Any = None,
        ) -> None:
            super().save_model(output_dir, optimizer, scheduler, model, results)
            _prune_checkpoints(Path(self.args.output_dir), self.keep_checkpoints)

    return PlayhouseLM


def _checkpoint_step(path: Path) -> int | None:
    match = re.fullmatch(r"checkpoint-(\d+)(?:-epoch-\d+)?", path.name)
    return int(match.group(1)) if match else None


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The resumable checkpoint with the highest step (optimizer state saved), if any."""
    found = [
        (step, path)
        for path in checkpoints.glob("checkpoint-*")
        if (step := _checkpoint_step(path)) is not None and (path / "optimizer.pt").is_file()
    ]
    return max(found)[1] if found else None


def _prune_checkpoints(checkpoints: Path, keep: int) -> None:
    found = sorted(
        (step, path)
        for path in checkpoints.glob("checkpoint-*")
        if (step := _checkpoint_step(path)) is not None
    )
    for _, path in found[: max(0, len(found) - max(1, keep))]:
        shutil.rmtree(path, ignore_errors=True)


def register_tags(tokenizer: Any) -> int:
    """Add the grammar's tags as ordinary (non-special) tokens; how many were new.

    Special tokens would be stripped wherever text is decoded with ``skip_special_tokens``.
    """
    from tokenizers import AddedToken

    added = tokenizer.add_tokens(
        [AddedToken(tag, special=False, normalized=False) for tag in ALL_TAGS]
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return int(added)


def _prepare_base(options: TrainOptions, base_dir: Path) -> None:
    """Write the model training starts from (tags registered, embeddings resized)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

    if options.from_scratch:
        from playhouse.generation.tinymodels import build_tokenizer

        lines = _read_lines(options.data / TRAIN_FILE, _TOKENIZER_LINES)
        tokenizer = build_tokenizer(lines, base_dir, vocab_size=options.scratch.vocab_size)
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
        added = register_tags(tokenizer)
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


def _st_args(
    options: TrainOptions, checkpoints: Path, has_eval: bool, cuda: bool
) -> dict[str, Any]:
    evaluate = has_eval and options.eval_every > 0
    return {
        "mlm": False,
        "block_size": options.block_size,
        "max_seq_length": options.block_size,
        "learning_rate": options.learning_rate,
        "train_batch_size": options.batch_size,
        "eval_batch_size": options.batch_size,
        "gradient_accumulation_steps": options.gradient_accumulation,
        "num_train_epochs": options.epochs,
        "max_steps": options.max_steps if options.max_steps > 0 else -1,
        "warmup_ratio": options.warmup_ratio,
        "manual_seed": options.seed,
        "fp16": cuda,
        "output_dir": str(checkpoints),
        "best_model_dir": str(checkpoints / "best_model"),
        "cache_dir": str(checkpoints / "cache"),
        "tensorboard_dir": str(checkpoints / "runs"),
        "overwrite_output_dir": True,
        "reprocess_input_data": True,
        "no_cache": True,
        "use_multiprocessing": False,
        "use_multiprocessing_for_evaluation": False,
        "dataset_type": "simple",
        "save_steps": options.eval_every if options.eval_every > 0 else -1,
        "save_model_every_epoch": False,
        "save_eval_checkpoints": False,
        "save_optimizer_and_scheduler": True,
        "evaluate_during_training": evaluate,
        "evaluate_during_training_steps": options.eval_every,
        "evaluate_during_training_verbose": False,
        "evaluate_during_training_silent": True,
        "use_early_stopping": evaluate and options.patience > 0,
        "early_stopping_patience": options.patience,
        "early_stopping_metric": "eval_loss",
        "early_stopping_metric_minimize": True,
        "early_stopping_delta": 0.0,
        "early_stopping_consider_epochs": False,
        "wandb_project": None,
        "silent": not options.progress,
        "logging_steps": 50,
    }


# --- output folder, publishing and the persona draft -----------------------------------


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


def _copy_file(source: Path, target: Path) -> None:
    """Copy one file (a seam: tests swap it to simulate a full disk)."""
    shutil.copyfile(source, target)


def _publish(source: Path, out: Path, manifest: dict[str, Any]) -> Path:
    """Copy the model in ``source`` to ``out/model`` atomically (all or nothing)."""
    final = out / MODEL
    partial = out / f"{MODEL}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        for path in sorted(source.iterdir()):
            if path.is_file() and path.name not in _NOT_PUBLISHED:
                _copy_file(path, partial / path.name)
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise TrainingError(
            f"writing the model to {final} failed: {exc}; no model was published "
            f"(the checkpoints in {out / CHECKPOINTS} are kept: fix it and pass --resume)"
        ) from exc
    if final.exists():
        old = out / f"{MODEL}.old"
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        partial.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        partial.rename(final)
    return final


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def persona_draft(
    name: str, model_dir: Path, rooms: Sequence[str], *, description: str, n_positions: int
) -> str:
    """The text of a persona file for a freshly trained model (``personas check`` passes it)."""
    new_tokens = 96
    prompt = max(16, min(400, n_positions - new_tokens))
    room_list = ", ".join(_toml_string(room) for room in rooms)
    return (
        f"# Draft persona written by `playhouse train`. Try it with `playhouse sample {name} "
        f"--personas {model_dir.parent}`,\n"
        "# then edit the rooms, activity and look, and copy this file into personas/.\n\n"
        f"name = {_toml_string(name)}\n"
        f"display_name = {_toml_string(name)}\n"
        'kind = "text"\n'
        f"model = {_toml_string(str(model_dir.resolve()))}\n"
        f"grammar_version = {GRAMMAR_VERSION}\n"
        f"rooms = [{room_list}]\n"
        f"description = {_toml_string(description)}\n\n"
        "[activity]\n"
        "posts_per_day = 4\n"
        "active_hours = [0, 24]\n\n"
        "[generation]\n"
        "temperature = 0.8\n"
        "top_k = 40\n"
        "top_p = 0.95\n"
        "repetition_penalty = 1.1\n"
        f"max_new_tokens = {new_tokens}\n"
        f"max_prompt_tokens = {prompt}\n"
    )


def _description(options: TrainOptions) -> str:
    stats_file = options.data / "stats.json"
    source = "its dataset"
    if stats_file.is_file():
        stats = json.loads(stats_file.read_text(encoding="utf-8"))
        subs = ", ".join(f"r/{name}" for name in stats.get("per_subreddit", {}))
        source = f"{subs or 'its dataset'} ({stats.get('examples', 0):,} examples)"
    base = "a tiny GPT-2 from scratch" if options.from_scratch else options.base
    return f"Fine-tuned from {base} on {source}."


# --- the run ---------------------------------------------------------------------------


def train(options: TrainOptions) -> TrainReport:
    """Train, publish ``OUT/model`` and write ``OUT/persona.toml``; raises TrainingError."""
    started = time.monotonic()
    _check_start(options)
    rooms = rooms_for(options)
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
            _prepare_base(options, start_from)
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
        "grammar_version": GRAMMAR_VERSION,
    }
    model_dir = _publish(best_dir if use_best else checkpoints, options.out, manifest)
    n_positions = int(json.loads((model_dir / "config.json").read_text()).get("n_positions", 1024))
    persona_file = options.out / PERSONA_FILE
    persona_file.write_text(
        persona_draft(options.name, model_dir, rooms, description=_description(options),
                      n_positions=n_positions),
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
