"""Publishing a trained model to ``OUT/model`` (all or nothing) and writing the persona
draft ``OUT/persona.toml`` that points at it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from playhouse.grammar import PLAYHOUSE, Grammar
from playhouse.training.options import (
    CHECKPOINTS,
    MODEL,
    TRAINING_MANIFEST,
    TrainingError,
    TrainOptions,
)

_NOT_PUBLISHED: Final = frozenset(
    {
        "optimizer.pt", "scheduler.pt", "training_args.bin", "model_args.json",
        "eval_results.txt", "training_progress_scores.csv",
    }
)


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
        (partial / TRAINING_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n",
                                                 encoding="utf-8")
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
    name: str,
    model_dir: Path,
    rooms: Sequence[str],
    *,
    description: str,
    n_positions: int,
    grammar: Grammar = PLAYHOUSE,
) -> str:
    """The text of a persona file for a freshly trained model (``personas check`` passes it).

    It records the grammar the model was trained in; its sampling settings are that
    grammar's defaults, written out so they can be edited."""
    prompt = max(16, min(400, n_positions - 96))
    sampling: dict[str, object] = {
        "temperature": 0.8, "top_k": 40, "top_p": 0.95, "repetition_penalty": 1.1,
        "max_new_tokens": 96, "max_prompt_tokens": prompt,
    }
    sampling.update(grammar.generation_defaults({"max_prompt_tokens": prompt}))
    room_list = ", ".join(_toml_string(room) for room in rooms)
    return (
        f"# Draft persona written by `playhouse train`. Try it with `playhouse sample {name} "
        f"--personas {model_dir.parent}`,\n"
        "# then edit the rooms, activity and look, and copy this file into personas/.\n\n"
        f"name = {_toml_string(name)}\n"
        f"display_name = {_toml_string(name)}\n"
        'kind = "text"\n'
        f"model = {_toml_string(str(model_dir.resolve()))}\n"
        f"grammar = {_toml_string(grammar.name)}\n"
        f"rooms = [{room_list}]\n"
        f"description = {_toml_string(description)}\n\n"
        "[activity]\n"
        "posts_per_day = 4\n"
        "active_hours = [0, 24]\n\n"
        "[generation]\n"
        + "".join(f"{key} = {value}\n" for key, value in sampling.items())
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
