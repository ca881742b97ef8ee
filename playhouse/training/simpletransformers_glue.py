"""How playhouse drives simpletransformers: the ``LanguageModelingModel`` subclass, the
training blocks it reads, the tags added to the tokenizer and the arguments it is given.

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
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from playhouse.grammar import ALL_TAGS
from playhouse.training.checkpoints import _prune_checkpoints
from playhouse.training.options import TrainOptions

log = structlog.get_logger()


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
                    # An ssi-bot line already ends with <|endoftext|>.
                    if eos is not None and (not encoded or encoded[-1] != eos):
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


def register_tags(tokenizer: Any, tags: Sequence[str] = ALL_TAGS) -> int:
    """Add a grammar's tags (:attr:`~playhouse.grammar.Grammar.token_strings`) as ordinary
    (non-special) tokens; how many were new.

    Special tokens would be stripped wherever text is decoded with ``skip_special_tokens``.
    """
    from tokenizers import AddedToken

    added = (
        tokenizer.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in tags])
        if tags else 0
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return int(added)


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
