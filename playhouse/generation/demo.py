"""The offline demo models: built here, on CPU, from nothing but the persona files.

No machine reaches a model hub, so ``make run`` builds its own small models under
``models_dir/demo/<PersonaName>/``:

* text personas get a small GPT-2. A byte-level BPE tokenizer (the grammar's tags as single,
  non-special added tokens) and a shared base model are trained on the synthetic corpus of
  every text persona (:mod:`playhouse.generation.corpus`); each persona then gets a copy of
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
import math
import os
import shutil
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import structlog

from playhouse.errors import NotFound, PlayhouseError
from playhouse.generation.corpus import CORPUS_VERSION, persona_corpus, union_corpus
from playhouse.grammar import ALL_TAGS, GRAMMAR_VERSION, REPLY_END_TAGS

if TYPE_CHECKING:
    from playhouse.personas import Cast, Persona

log = structlog.get_logger()

DEMO_VERSION: Final = 1
"""Bump when the build recipe changes in a way the config hash does not see."""
DEMO_DIR: Final = "demo"
BASE_DIR: Final = ".base"
"""The shared base model (a name no persona can have: persona names never start with '.')."""
MANIFEST: Final = "playhouse-demo.json"
STAGING_PREFIX: Final = ".staging-"
LOCK_FILE: Final = ".lock"
PAD_TOKEN: Final = "<|pad|>"
EOS_TOKEN: Final = "<|endoftext|>"
OVERRUN_FACTOR: Final = 3.0
"""Training stops early once a build has run this many times its budget."""
SETUP_SHARE: Final = 0.1
"""Share of the budget kept for corpus, tokenizer, saving and image pipelines."""

IMAGE_SHAPES: Final[dict[str, Any]] = {
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "text_layers": 2,
    "text_heads": 4,
    "text_intermediate": 37,
    "clip_vocab_size": 1000,
    "model_max_length": 77,
    "scheduler": "DDIM",
}

_CLIP_WORDS: Final = (
    "a an the of in on with and photo painting drawing sketch picture portrait landscape "
    "cat dog bird fish tree flower house city street forest mountain river sea sky sun moon "
    "star cloud rain snow night day morning red orange yellow green blue purple black white "
    "small big old new happy sad bright dark cozy bot robot coffee book music food"
)


@dataclass(frozen=True, slots=True)
class TextRecipe:
    """How the demo text models are shaped and trained.

    Every field but the last three goes into the config hash; the step counts are not part
    of it, so a model trained with another budget still counts as built (``force`` rebuilds).
    """

    vocab_size: int = 2048
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 1024
    """GPT-2's context, so every prompt budget a persona file allows fits."""
    block_size: int = 192
    batch_size: int = 16
    lr: float = 2e-3
    tune_lr: float = 1e-3
    warmup_steps: int = 20
    threads_per_persona: int = 400
    base_share: float = 0.6
    """Share of the training steps that go to the shared base; the rest is split evenly."""
    steps_per_second: float = field(default=6.0, metadata={"hashed": False})
    """Reference training speed (one thread of the build machine) that turns seconds into steps."""
    base_steps: int | None = field(default=None, metadata={"hashed": False})
    """Base steps to train, overriding the budget (tests use it)."""
    tune_steps: int | None = field(default=None, metadata={"hashed": False})
    """Fine-tuning steps per persona, overriding the budget."""

    def hashed(self) -> dict[str, Any]:
        """The fields that define the model (not how long it trains)."""
        data = asdict(self)
        for name in ("steps_per_second", "base_steps", "tune_steps"):
            data.pop(name)
        return data


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


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What one training run did."""

    steps: int
    final_loss: float
    seconds: float


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


# --- tokenizer and text model ------------------------------------------------------------


def build_tokenizer(lines: Sequence[str], out_dir: Path, *, vocab_size: int = 2048) -> Any:
    """Train a byte-level BPE on ``lines`` and save it as a transformers tokenizer.

    The grammar's tags are stripped from the training text and then added as ordinary
    (non-special) tokens, so each is exactly one token that no pipeline strips. ``<|pad|>``
    pads (on the left, for batched generation) and ``<|endoftext|>`` is bos, eos and unk.
    BPE training has no randomness, so there is no seed. Returns the tokenizer, which
    ``AutoTokenizer.from_pretrained(out_dir)`` loads back.
    """
    import re

    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tags = sorted(ALL_TAGS, key=len, reverse=True)
    strip = re.compile("|".join(re.escape(tag) for tag in tags))
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator((strip.sub(" ", line) for line in lines), trainer=trainer)
    backend.add_tokens(
        [AddedToken(tag, special=False, normalized=False) for tag in ALL_TAGS]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        model_max_length=TextRecipe().n_positions,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def _new_gpt2(tokenizer: Any, recipe: TextRecipe) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=recipe.n_positions,
        n_embd=recipe.n_embd,
        n_layer=recipe.n_layer,
        n_head=recipe.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


class _Clock:
    """The wall-clock guard: past ``deadline`` training stops early."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.overrun = False

    def expired(self) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.overrun = True
        return self.overrun


def train_text_model(
    model: Any,
    tokenizer: Any,
    lines: Sequence[str],
    *,
    steps: int,
    lr: float,
    seed: int,
    recipe: TextRecipe,
    bar: Any = None,
    clock: _Clock | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``lines`` (one line per sample, eos-terminated).

    AdamW, linear warm-up then cosine decay to a tenth, gradient clipping at 1; batches are
    drawn by a seeded permutation. The final loss is the mean of the last 20 steps.
    """
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    encoded = tokenizer(list(lines), add_special_tokens=False)["input_ids"]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    samples = [ids[: recipe.block_size - 1] + [eos] for ids in encoded if ids]
    if not samples:
        raise ValueError("no training text")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = min(recipe.warmup_steps, max(1, steps // 10))

    def rate(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    order: list[int] = []
    losses: list[float] = []
    started = time.monotonic()
    model.train()
    done = 0
    for _ in range(steps):
        if clock is not None and clock.expired():
            break
        if len(order) < recipe.batch_size:
            order.extend(torch.randperm(len(samples), generator=generator).tolist())
        batch = [samples[i] for i in order[: recipe.batch_size]]
        del order[: recipe.batch_size]
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        labels = input_ids.masked_fill(mask == 0, -100)
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        loss = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        done += 1
        losses.append(float(loss.item()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    model.eval()
    tail = losses[-20:]
    final = sum(tail) / len(tail) if tail else float("nan")
    return TrainResult(steps=done, final_loss=final, seconds=time.monotonic() - started)


def build_text_model(
    lines: Sequence[str],
    tokenizer: Any,
    out_dir: Path,
    *,
    seed: int,
    steps: int,
    recipe: TextRecipe | None = None,
    init_from: Path | None = None,
    lr: float | None = None,
    bar: Any = None,
    clock: _Clock | None = None,
) -> TrainResult:
    """Train a GPT-2 on ``lines`` and save it with ``tokenizer`` into ``out_dir``.

    A fresh model (seeded) unless ``init_from`` names a saved model to fine-tune.
    Saved with ``save_pretrained`` (safetensors); no manifest (the caller writes it).
    """
    import torch
    from transformers import GPT2LMHeadModel

    recipe = recipe or TextRecipe()
    torch.manual_seed(seed)
    if init_from is not None:
        model = GPT2LMHeadModel.from_pretrained(str(init_from))
    else:
        model = _new_gpt2(tokenizer, recipe)
    result = train_text_model(
        model,
        tokenizer,
        lines,
        steps=steps,
        lr=lr if lr is not None else (recipe.tune_lr if init_from else recipe.lr),
        seed=seed,
        recipe=recipe,
        bar=bar,
        clock=clock,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return result


# --- image pipeline ----------------------------------------------------------------------


def _clip_tokenizer() -> Any:
    """A small CLIP tokenizer trained here on a word list (no download)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    start, end = "<|startoftext|>", "<|endoftext|>"
    backend = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token=end))
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=IMAGE_SHAPES["clip_vocab_size"],
        special_tokens=[start, end],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    backend.train_from_iterator([_CLIP_WORDS] * 4, trainer=trainer)
    model = json.loads(backend.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    for char in pre_tokenizers.ByteLevel.alphabet():  # every byte may end a word
        vocab.setdefault(char + "</w>", len(vocab))
    merges = [tuple(pair) for pair in model["merges"]]
    return CLIPTokenizer(
        vocab=vocab, merges=merges, model_max_length=IMAGE_SHAPES["model_max_length"]
    )


def build_image_pipeline(out_dir: Path, *, seed: int) -> Any:
    """A tiny random-init Stable Diffusion pipeline, saved to ``out_dir`` and returned.

    UNet and VAE with ``block_out_channels`` (32, 64), a two-layer CLIP text encoder of
    width 32, a locally trained CLIP tokenizer, a DDIM scheduler, no safety checker. It
    draws coloured noise: 64×64 in two steps takes a fraction of a second on CPU.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    shapes = IMAGE_SHAPES
    tokenizer = _clip_tokenizer()
    channels = tuple(shapes["block_out_channels"])
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=channels,
        layers_per_block=shapes["layers_per_block"],
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=shapes["cross_attention_dim"],
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=channels,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=shapes["cross_attention_dim"],
            intermediate_size=shapes["text_intermediate"],
            num_attention_heads=shapes["text_heads"],
            num_hidden_layers=shapes["text_layers"],
            vocab_size=len(tokenizer),
            max_position_embeddings=shapes["model_max_length"],
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(str(out_dir))
    return pipeline


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
            p for p in selected if force or not _is_current(root / p.name, plan.hashes[p.name], seed)
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


def build_demo_command(
    models_dir: Path, personas_dir: Path, *, seed: int, budget_s: float, force: bool
) -> int:
    """``playhouse models build-demo``: build what is missing; 0 when all is built.

    Invalid persona files are logged and the valid personas still built, but the exit code
    is then 1 (as ``playhouse personas check`` would say). Writes only the progress bar
    and log lines.
    """
    from playhouse.personas import load_cast

    cast = load_cast(personas_dir)
    for error in cast.errors:
        log.error("persona.invalid", file=error.file, field=error.field, reason=error.reason)
    if not cast.personas:
        log.error("demo.no_personas", directory=str(personas_dir))
        return 1
    started = time.monotonic()
    try:
        built = build_demo(models_dir, cast, seed=seed, budget_s=budget_s, force=force)
    except (PlayhouseError, OSError) as exc:
        log.error("demo.failed", error=str(exc))
        return 1
    log.info("demo.ready", personas=len(built), seconds=round(time.monotonic() - started, 1),
             models_dir=str(models_dir / DEMO_DIR))
    return 1 if cast.errors else 0

