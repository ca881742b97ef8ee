"""What a training run is given (:class:`TrainOptions`), what it gives back
(:class:`TrainReport`), how it fails (:class:`TrainingError`), and the names of the files
it reads from the dataset folder and writes under ``--out``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

# What `dataset build` writes is what training reads: the names are the dataset's.
from playhouse.dataset.build import EVAL_FILE as EVAL_FILE
from playhouse.dataset.build import TRAIN_FILE as TRAIN_FILE
from playhouse.errors import PlayhouseError

CHECKPOINTS: Final = "checkpoints"
MODEL: Final = "model"
PERSONA_FILE: Final = "persona.toml"
TRAINING_MANIFEST: Final = "training.json"


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
    grammar: str | None = None
    """The grammar ``train.txt`` is written in (default: the dataset's ``stats.json``, else
    the grammar its first lines read in)."""
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
