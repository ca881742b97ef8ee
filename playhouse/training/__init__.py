"""``playhouse train``: fine-tune a GPT-2 on a built dataset and draft its persona file.

Layout of ``--out OUT``: ``OUT/checkpoints/`` (the base model, checkpoints, best model,
logs), ``OUT/model/`` (the finished model; it appears only once complete, by renaming a
finished ``model.partial``), ``OUT/persona.toml`` (a draft for ``personas/``).

Modules: :mod:`~playhouse.training.options` (what a run is given and gives back, the file
names), :mod:`~playhouse.training.run` (the run itself), :mod:`~playhouse.training.\
simpletransformers_glue` (the simpletransformers subclass and its arguments, and why its
parts are overridden), :mod:`~playhouse.training.checkpoints` (finding and pruning
checkpoints), :mod:`~playhouse.training.publish` (publishing the model, the persona draft).
"""

from __future__ import annotations

from playhouse.training.checkpoints import latest_checkpoint
from playhouse.training.options import (
    CHECKPOINTS,
    EVAL_FILE,
    MODEL,
    PERSONA_FILE,
    TRAIN_FILE,
    TRAINING_MANIFEST,
    ScratchConfig,
    TrainingError,
    TrainOptions,
    TrainReport,
)
from playhouse.training.publish import persona_draft
from playhouse.training.run import format_report, rooms_for, train
from playhouse.training.simpletransformers_glue import register_tags, tag_blocks

__all__ = [
    "CHECKPOINTS",
    "EVAL_FILE",
    "MODEL",
    "PERSONA_FILE",
    "TRAINING_MANIFEST",
    "TRAIN_FILE",
    "ScratchConfig",
    "TrainOptions",
    "TrainReport",
    "TrainingError",
    "format_report",
    "latest_checkpoint",
    "persona_draft",
    "register_tags",
    "rooms_for",
    "tag_blocks",
    "train",
]
