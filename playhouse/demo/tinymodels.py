"""Small models made from scratch on CPU: a byte-level BPE tokenizer, a GPT-2 and its
training loop, and a tiny random-init Stable Diffusion pipeline.

The pieces the offline demo (:mod:`playhouse.demo.build`), the tests and the
benchmarks build their models from. Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from playhouse.grammar import ALL_TAGS

PAD_TOKEN: Final = "<|pad|>"
EOS_TOKEN: Final = "<|endoftext|>"
IMAGE_SHAPES: Final[dict[str, Any]] = {
    # Three UNet levels: cross-attention only at the lowest (a 512x512 picture attends
    # over 16x16 latents, not 64x64).
    "unet_channels": [32, 32, 64],
    # Four VAE levels scale by 8 like Stable Diffusion's, so a persona's 512x512 denoises
    # 64x64 latents; no attention in the VAE's middle block (it would attend over every
    # latent pixel at once).
    "vae_channels": [16, 16, 32, 32],
    "vae_norm_groups": 8,
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
class TrainResult:
    """What one training run did."""

    steps: int
    final_loss: float
    seconds: float


# --- tokenizer and text model ------------------------------------------------------------


def build_tokenizer(
    lines: Sequence[str], out_dir: Path, *, vocab_size: int = 2048,
    tags: Sequence[str] = ALL_TAGS,
) -> Any:
    """Train a byte-level BPE on ``lines`` and save it as a transformers tokenizer.

    ``tags`` (the playhouse grammar's by default) are stripped from the training text and
    then added as ordinary (non-special) tokens, so each is exactly one token that no
    pipeline strips; with ``tags=()`` the tags are text, as in a real ssi-bot model. ``<|pad|>``
    pads (on the left, for batched generation) and ``<|endoftext|>`` is bos, eos and unk.
    BPE training has no randomness, so there is no seed. Returns the tokenizer, which
    ``AutoTokenizer.from_pretrained(out_dir)`` loads back.
    """
    import re

    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    longest_first = sorted(tags, key=len, reverse=True)
    strip = re.compile("|".join(re.escape(tag) for tag in longest_first) or "(?!)")
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
    backend.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in tags])
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


class TrainingClock:
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
    clock: TrainingClock | None = None,
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
    samples = [[*ids[:recipe.block_size - 1], eos] for ids in encoded if ids]
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
        loss.backward()  # type: ignore[no-untyped-call]
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
    clock: TrainingClock | None = None,
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

    A three-level UNet, a four-level VAE that scales by 8 like Stable Diffusion's (see
    :data:`IMAGE_SHAPES`), a two-layer CLIP text encoder of width 32, a locally trained
    CLIP tokenizer, a DDIM scheduler, no safety checker. It draws coloured noise: 64x64 in
    two steps takes a fraction of a second on one CPU core, ImageBot's 512x512 in 25 steps
    a few seconds.
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
    unet_channels = tuple(shapes["unet_channels"])
    vae_channels = tuple(shapes["vae_channels"])
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=unet_channels,
        layers_per_block=shapes["layers_per_block"],
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=shapes["cross_attention_dim"],
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=vae_channels,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(vae_channels),
        latent_channels=4,
        layers_per_block=shapes["layers_per_block"],
        norm_num_groups=shapes["vae_norm_groups"],
        mid_block_add_attention=False,
        sample_size=512,
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
