"""The offline demo models: built here, on CPU, from nothing but the persona files.

No machine reaches a model hub, so ``make run`` builds its own small models under
``models_dir/demo/<PersonaName>/``:

* text personas get a small GPT-2. A byte-level BPE tokenizer (the grammar's tags as single,
  non-special added tokens) and a shared base model are trained on the synthetic corpus of
  every text persona (:mod:`playhouse.demo.corpus`); each persona then gets a copy of
  the base fine-tuned for a few steps on its own corpus, so it has its own voice;
* image personas get a tiny random-init Stable Diffusion pipeline (it draws noise, fast).

Every folder ends with a manifest, ``playhouse-demo.json`` (seed, steps, config hash, grammar
version, build time, final loss). A model is built in a staging folder, the manifest is
written last (temporary file, then rename) and only then is the folder renamed into place,
so a half-built model is never taken as done. A model whose manifest has the same config
hash (and seed) is cached; :func:`demo_ready` lists those that are not.

Training is deterministic: the time budget is turned into step counts with a fixed
reference speed (:attr:`TextRecipe.steps_per_second`), never with a clock, and training
runs on one thread with seeded generators, so the same seed, budget and cast give the same
weights on every run. The clock only guards a much slower machine: past
``OVERRUN_FACTOR`` times the budget, training stops early (logged ``demo.over_budget``).

Importing this module is cheap: torch, transformers, tokenizers and diffusers are imported
inside the functions that need them (the web process imports playhouse without them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import structlog

from playhouse.constants import STAGING_PREFIX
from playhouse.demo.corpus import CORPUS_VERSION, persona_corpus, union_corpus
from playhouse.demo.tinymodels import (
    IMAGE_SHAPES,
    TextRecipe,
    build_image_pipeline,
    build_text_model,
    build_tokenizer,
)
from playhouse.demo.tinymodels import TrainingClock as _Clock
from playhouse.errors import NotFound
from playhouse.grammar import GRAMMAR_VERSION, REPLY_END_TAGS

if TYPE_CHECKING:
    from playhouse.personas import Cast, Persona

log = structlog.get_logger()

DEMO_VERSION: Final = 1
"""Bump when the build recipe changes in a way the config hash does not see."""
DEMO_DIR: Final = "demo"
BASE_DIR: Final = ".base"
"""The shared base model (a name no persona can have: persona names never start with '.')."""
MANIFEST: Final = "playhouse-demo.json"
LOCK_FILE: Final = ".lock"
OVERRUN_FACTOR: Final = 3.0
"""Training stops early once a build has run this many times its budget."""
SETUP_SHARE: Final = 0.1
"""Share of the budget kept for corpus, tokenizer, saving and image pipelines."""

@dataclass(frozen=True, slots=True)
class Manifest:
    """What ``playhouse-demo.json`` holds."""

    persona: str
    kind: str
    seed: int
    steps: int
    config_hash: str
    grammar_version: int
    built_at: str
    final_loss: float | None
    seconds: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


# --- planning (pure, no torch) -----------------------------------------------------------


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _text_personas(cast: Cast) -> list[Persona]:
    return [p for _, p in sorted(cast.personas.items()) if p.kind == "text"]


def _corpus_inputs(persona: Persona, cast: Cast) -> dict[str, Any]:
    return {
        "name": persona.name,
        "rooms": list(persona.rooms),
        "keywords": list(persona.keywords.positive),
        "others": _others(persona, cast),
    }


def _others(persona: Persona, cast: Cast) -> list[str]:
    return sorted(name for name in cast.personas if name != persona.name)


def persona_seed(seed: int, name: str) -> int:
    """The seed of one persona's build: differs per persona, fixed for a name and seed."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**31


@dataclass(frozen=True, slots=True)
class _Plan:
    base_hash: str
    hashes: dict[str, str]


def _plan(cast: Cast, recipe: TextRecipe) -> _Plan:
    common = {
        "demo_version": DEMO_VERSION,
        "corpus_version": CORPUS_VERSION,
        "grammar_version": GRAMMAR_VERSION,
    }
    texts = _text_personas(cast)
    base_hash = _digest(
        {**common, "recipe": recipe.hashed(), "corpus": [_corpus_inputs(p, cast) for p in texts]}
    )
    hashes: dict[str, str] = {}
    for name, persona in cast.personas.items():
        if persona.kind == "text":
            hashes[name] = _digest({**common, "base": base_hash, **_corpus_inputs(persona, cast)})
        else:
            hashes[name] = _digest({**common, "image": IMAGE_SHAPES})
    return _Plan(base_hash=base_hash, hashes=hashes)


def read_manifest(directory: Path) -> Manifest | None:
    """The manifest in ``directory``, or ``None`` when absent or unreadable."""
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        return Manifest(**data)
    except (OSError, ValueError, TypeError):
        return None


def _is_current(directory: Path, config_hash: str, seed: int | None) -> bool:
    manifest = read_manifest(directory)
    return (
        manifest is not None
        and manifest.config_hash == config_hash
        and manifest.grammar_version == GRAMMAR_VERSION
        and (seed is None or manifest.seed == seed)
    )


def demo_ready(
    models_dir: Path,
    cast: Cast,
    *,
    seed: int | None = None,
    recipe: TextRecipe | None = None,
) -> list[str]:
    """Names of the personas whose demo model is missing or stale (empty: all ready).

    ``seed=None`` accepts a model built with any seed. Cheap: reads manifests only.
    """
    plan = _plan(cast, recipe or TextRecipe())
    root = models_dir / DEMO_DIR
    return [
        name
        for name in sorted(cast.personas)
        if not _is_current(root / name, plan.hashes[name], seed)
    ]


def _step_plan(budget_s: float, n_text: int, recipe: TextRecipe) -> tuple[int, int]:
    """(base steps, fine-tuning steps per persona) for a budget; no clock involved."""
    total = max(2, int(budget_s * (1.0 - SETUP_SHARE) * recipe.steps_per_second))
    base = recipe.base_steps
    if base is None:
        base = max(1, round(total * recipe.base_share))
    tune = recipe.tune_steps
    if tune is None:
        tune = max(1, (total - round(total * recipe.base_share)) // max(1, n_text))
    return base, tune


# --- files -------------------------------------------------------------------------------


def _write_manifest(directory: Path, manifest: Manifest) -> None:
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(tmp, directory / MANIFEST)


def _staging(root: Path, name: str) -> Path:
    path = root / f"{STAGING_PREFIX}{name}-{os.getpid()}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _publish(staging: Path, final: Path, manifest: Manifest) -> None:
    """Write the manifest last, then move the finished folder into place."""
    _write_manifest(staging, manifest)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)


def _remove_leftovers(root: Path) -> None:
    """Staging folders of builds that crashed (their process is gone)."""
    for path in root.glob(STAGING_PREFIX + "*"):
        pid_text = path.name.rsplit("-", 1)[-1]
        if pid_text.isdigit() and _alive(int(pid_text)) and int(pid_text) != os.getpid():
            continue
        shutil.rmtree(path, ignore_errors=True)
        log.info("demo.leftover_removed", path=str(path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One build per models folder at a time; a second waits, then finds the cache."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with (root / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """One thread (determinism) and no progress bars or chatter from the libraries."""
    import diffusers.utils.logging as dlog
    import torch
    import transformers.utils.logging as tlog

    threads = torch.get_num_threads()
    t_bars, d_bars = tlog.is_progress_bar_enabled(), dlog.is_progress_bar_enabled()
    t_level, d_level = tlog.get_verbosity(), dlog.get_verbosity()
    torch.set_num_threads(1)
    tlog.disable_progress_bar()
    dlog.disable_progress_bar()
    tlog.set_verbosity_error()
    dlog.set_verbosity_error()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if t_bars:
            tlog.enable_progress_bar()
        if d_bars:
            dlog.enable_progress_bar()
        tlog.set_verbosity(t_level)
        dlog.set_verbosity(d_level)


# --- the build ---------------------------------------------------------------------------


def _corpus(persona: Persona, cast: Cast, seed: int, recipe: TextRecipe) -> list[str]:
    return persona_corpus(
        persona.name,
        persona.rooms,
        persona.keywords.positive,
        others=_others(persona, cast),
        n_threads=recipe.threads_per_persona,
        seed=seed,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def build_demo(
    models_dir: Path,
    cast: Cast,
    *,
    seed: int = 1234,
    budget_s: float = 150.0,
    names: Sequence[str] | None = None,
    force: bool = False,
    progress: bool = True,
    recipe: TextRecipe | None = None,
) -> dict[str, Path]:
    """Build every missing or stale demo model; returns persona name → model folder.

    ``names`` limits the build to those personas (all by default); the shared base is
    always trained on the whole cast's corpus, so a persona's model does not depend on
    which others are built with it. ``force`` rebuilds even what is cached. ``budget_s``
    sizes the training (see the module docstring); a tqdm bar on stderr shows the steps.
    """
    recipe = recipe or TextRecipe()
    selected = _select(cast, names)
    root = models_dir / DEMO_DIR
    plan = _plan(cast, recipe)
    result = {p.name: root / p.name for p in selected}
    with _locked(root):
        _remove_leftovers(root)
        todo = [
            p
            for p in selected
            if force or not _is_current(root / p.name, plan.hashes[p.name], seed)
        ]
        for persona in selected:
            if persona not in todo:
                log.info("demo.cached", persona=persona.name, path=str(root / persona.name))
        if not todo:
            return result
        _build(root, cast, todo, plan, seed=seed, budget_s=budget_s, force=force,
               progress=progress, recipe=recipe)
    return result


def _select(cast: Cast, names: Sequence[str] | None) -> list[Persona]:
    if names is None:
        return [p for _, p in sorted(cast.personas.items())]
    unknown = [n for n in names if n not in cast.personas]
    if unknown:
        raise NotFound(f"no persona named {', '.join(map(repr, unknown))}")
    return [cast.personas[n] for n in dict.fromkeys(names)]


def _build(
    root: Path,
    cast: Cast,
    todo: list[Persona],
    plan: _Plan,
    *,
    seed: int,
    budget_s: float,
    force: bool,
    progress: bool,
    recipe: TextRecipe,
) -> None:
    from tqdm import tqdm

    texts = [p for p in todo if p.kind == "text"]
    images = [p for p in todo if p.kind != "text"]
    base_dir = root / BASE_DIR
    need_base = bool(texts) and (force or not _is_current(base_dir, plan.base_hash, seed))
    base_steps, tune_steps = _step_plan(budget_s, len(_text_personas(cast)), recipe)
    total = (base_steps if need_base else 0) + tune_steps * len(texts)
    clock = _Clock(time.monotonic() + OVERRUN_FACTOR * budget_s)
    log.info("demo.planned", personas=[p.name for p in todo], base=need_base,
             base_steps=base_steps, tune_steps=tune_steps, budget_s=budget_s)
    with _quiet_libraries(), tqdm(
        total=total,
        desc="demo",
        unit="step",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 5.0,
    ) as bar:
        if texts:
            tokenizer = _ensure_base(root, cast, plan, need_base, seed=seed, steps=base_steps,
                                     recipe=recipe, bar=bar, clock=clock)
            for persona in texts:
                bar.set_description(persona.name)
                _build_text_persona(root, cast, persona, plan, tokenizer, seed=seed,
                                    steps=tune_steps, recipe=recipe, bar=bar, clock=clock)
        for persona in images:
            _build_image_persona(root, persona, plan, seed=seed)
    if clock.overrun:
        log.warning("demo.over_budget", budget_s=budget_s, factor=OVERRUN_FACTOR)


def _ensure_base(
    root: Path,
    cast: Cast,
    plan: _Plan,
    need_base: bool,
    *,
    seed: int,
    steps: int,
    recipe: TextRecipe,
    bar: Any,
    clock: _Clock,
) -> Any:
    """The shared tokenizer, after training the base model if it is missing or stale."""
    from transformers import AutoTokenizer

    base_dir = root / BASE_DIR
    if not need_base:
        return AutoTokenizer.from_pretrained(str(base_dir))
    started = time.monotonic()
    bar.set_description("base")
    corpora = [_corpus(p, cast, seed, recipe) for p in _text_personas(cast)]
    lines = union_corpus(corpora, seed=seed)
    staging = _staging(root, BASE_DIR)
    tokenizer = build_tokenizer(lines, staging, vocab_size=recipe.vocab_size)
    result = build_text_model(lines, tokenizer, staging, seed=seed, steps=steps, recipe=recipe,
                              bar=bar, clock=clock)
    manifest = Manifest(
        persona=BASE_DIR,
        kind="text",
        seed=seed,
        steps=result.steps,
        config_hash=plan.base_hash,
        grammar_version=GRAMMAR_VERSION,
        built_at=_now(),
        final_loss=round(result.final_loss, 4),
        seconds=round(time.monotonic() - started, 2),
    )
    _publish(staging, base_dir, manifest)
    log.info("demo_base.built", steps=result.steps, final_loss=manifest.final_loss,
             lines=len(lines), vocab=len(tokenizer), seconds=manifest.seconds)
    return tokenizer


def _build_text_persona(
    root: Path,
    cast: Cast,
    persona: Persona,
    plan: _Plan,
    tokenizer: Any,
    *,
    seed: int,
    steps: int,
    recipe: TextRecipe,
    bar: Any,
    clock: _Clock,
) -> None:
    started = time.monotonic()
    own_seed = persona_seed(seed, persona.name)
    lines = _corpus(persona, cast, seed, recipe)
    staging = _staging(root, persona.name)
    result = build_text_model(lines, tokenizer, staging, seed=own_seed, steps=steps,
                              recipe=recipe, init_from=root / BASE_DIR, bar=bar, clock=clock)
    manifest = Manifest(
        persona=persona.name,
        kind="text",
        seed=seed,
        steps=result.steps,
        config_hash=plan.hashes[persona.name],
        grammar_version=GRAMMAR_VERSION,
        built_at=_now(),
        final_loss=round(result.final_loss, 4),
        seconds=round(time.monotonic() - started, 2),
    )
    _publish(staging, root / persona.name, manifest)
    log.info("demo.built", persona=persona.name, kind="text", steps=result.steps,
             final_loss=manifest.final_loss, seconds=manifest.seconds,
             path=str(root / persona.name))


def _build_image_persona(root: Path, persona: Persona, plan: _Plan, *, seed: int) -> None:
    started = time.monotonic()
    staging = _staging(root, persona.name)
    build_image_pipeline(staging, seed=persona_seed(seed, persona.name))
    manifest = Manifest(
        persona=persona.name,
        kind="image",
        seed=seed,
        steps=0,
        config_hash=plan.hashes[persona.name],
        grammar_version=GRAMMAR_VERSION,
        built_at=_now(),
        final_loss=None,
        seconds=round(time.monotonic() - started, 2),
    )
    _publish(staging, root / persona.name, manifest)
    log.info("demo.built", persona=persona.name, kind="image", seconds=manifest.seconds,
             path=str(root / persona.name))


def reply_stop_ids(tokenizer: Any) -> list[int]:
    """Token ids that end a reply (each end tag is one token), plus eos."""
    ids = [tokenizer.convert_tokens_to_ids(tag) for tag in REPLY_END_TAGS]
    return [*ids, tokenizer.eos_token_id]
