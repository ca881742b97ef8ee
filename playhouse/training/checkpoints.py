"""The ``checkpoint-N`` folders simpletransformers saves under ``OUT/checkpoints/``: finding
the latest resumable one and pruning old ones (each can be several GB)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path


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
