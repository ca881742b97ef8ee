"""The models and requests of ``bench/worker.py`` (built once, cached under ``var/bench``).

Three models, all GPT-2-shaped and using the project's byte-level BPE tokenizer:

- the *trained* one (6 layers x 512 by default; a short CPU training run so it learns to close
  its tags): the primary and thread-heavy workloads;
- a *random-init* one of the same shape (it closes a tag only by chance): decode-heavy;
- a random-init *GPT-2 small* (12 x 768, 124 M parameters): the project's 1,028-token
  tokenizer padded with unused filler tokens to GPT-2's 50,257, so that the embedding and
  output layer have GPT-2 small's size (no hub here to fetch GPT-2's own tokenizer from).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playhouse.messages import GenerationRequest
    from playhouse.personas import Cast, Persona

MODEL_VERSION = 1
"""Bump when the way the benchmark model is built changes (invalidates the cache)."""
BOT = "CoopBot"
"""The persona whose sampling parameters the benchmark uses (its model is replaced)."""
NEVER = threading.Event()
"""An abort event no one sets: the bench runs engines outside a worker."""
DEPTHS = (0, 1, 2, 3, 4, 6, 8, 10, 13, 16)
"""Chain depths the primary requests cycle through: prompts from ~25 to ~400 tokens."""
DECODE_DEPTHS = (0, 1, 2)
"""Chain depths of the decode-heavy requests: short prompts (~25-60 tokens)."""
SMALL_DEPTHS = (4, 6, 8, 10)
"""Chain depths of the GPT-2-small requests: prompts of ~100-250 tokens."""
GPT2_SMALL = (12, 768, 12)
"""GPT-2 small's layers, width and heads."""
GPT2_VOCAB = 50257
"""GPT-2's vocabulary size: the GPT-2-small model's embedding and output layer are this big."""


@dataclass(frozen=True)
class Shape:
    n_layer: int
    n_embd: int
    n_head: int
    train_steps: int
    train_s: float
    corpus_threads: int


FULL = Shape(n_layer=6, n_embd=512, n_head=8, train_steps=150, train_s=150.0,
             corpus_threads=300)
QUICK = Shape(n_layer=2, n_embd=128, n_head=4, train_steps=40, train_s=10.0, corpus_threads=60)


# --- the model ---------------------------------------------------------------------------


def corpus(cast: Cast, shape: Shape, seed: int) -> list[str]:
    """Training lines in the tag grammar for every text persona (deterministic)."""
    from playhouse.demo.corpus import persona_corpus, union_corpus

    text = [p for _, p in sorted(cast.personas.items()) if p.kind == "text"]
    corpora = []
    for persona in text:
        others = [p.name for p in text if p.name != persona.name][:4]
        corpora.append(
            persona_corpus(persona.name, persona.rooms, persona.keywords.positive,
                           others=others, n_threads=shape.corpus_threads, seed=seed)
        )
    return union_corpus(corpora, seed=seed)


def model_dir(args: argparse.Namespace) -> Path:
    s = args.shape
    return args.cache / (
        f"gpt2-{s.n_layer}x{s.n_embd}-v{MODEL_VERSION}-seed{args.seed}-steps{s.train_steps}"
    )


def build_model(path: Path, lines: Sequence[str], shape: Shape, seed: int) -> dict[str, Any]:
    """Tokenizer + GPT-2 trained for a few steps (bounded by ``shape.train_s``), saved."""
    import torch
    import torch.nn.functional as F
    from transformers import GPT2Config, GPT2LMHeadModel

    from playhouse.demo.build import build_tokenizer

    started = time.perf_counter()
    staging = path.with_name(path.name + f".staging-{os.getpid()}")
    tokenizer = build_tokenizer(lines, staging)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=shape.n_embd,
        n_layer=shape.n_layer, n_head=shape.n_head,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    samples = [[*ids[:127], eos] for ids in
               tokenizer(list(lines), add_special_tokens=False)["input_ids"] if ids]
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    warmup = max(1, shape.train_steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * max(0.1, 1 - s / shape.train_steps),
    )
    model.train()
    losses: list[float] = []
    steps = 0
    while steps < shape.train_steps and time.perf_counter() - started < shape.train_s:
        batch = rng.sample(samples, 8)
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        labels = input_ids.masked_fill(mask == 0, -100)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                               labels[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        steps += 1
    model.eval()
    model.save_pretrained(str(staging))
    tail = losses[-10:]
    meta = {
        "layers": shape.n_layer, "width": shape.n_embd, "heads": shape.n_head,
        "params": model.num_parameters(), "vocab": len(tokenizer), "steps": steps,
        "final_loss": round(sum(tail) / len(tail), 3) if tail else None,
        "build_s": round(time.perf_counter() - started, 1),
    }
    (staging / "bench-model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if path.exists():
        import shutil

        shutil.rmtree(path)
    staging.rename(path)
    return meta


def random_model_dir(args: argparse.Namespace) -> Path:
    s = args.shape
    return args.cache / f"gpt2-{s.n_layer}x{s.n_embd}-v{MODEL_VERSION}-seed{args.seed}-random"


def build_random_model(path: Path, tokenizer_from: Path, shape: Shape,
                       seed: int) -> dict[str, Any]:
    """The trained model's tokenizer and a random-init GPT-2 of the same shape, saved."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    started = time.perf_counter()
    staging = path.with_name(path.name + f".staging-{os.getpid()}")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_from))
    tokenizer.save_pretrained(str(staging))
    torch.manual_seed(seed + 1)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=shape.n_embd,
        n_layer=shape.n_layer, n_head=shape.n_head,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.eval()
    model.save_pretrained(str(staging))
    meta = {
        "layers": shape.n_layer, "width": shape.n_embd, "heads": shape.n_head,
        "params": model.num_parameters(), "vocab": len(tokenizer), "steps": 0,
        "final_loss": None, "random_init": True,
        "build_s": round(time.perf_counter() - started, 1),
    }
    (staging / "bench-model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if path.exists():
        import shutil

        shutil.rmtree(path)
    staging.rename(path)
    return meta


def ensure_random_model(args: argparse.Namespace, trained: Path,
                        rebuild: bool) -> tuple[Path, dict[str, Any]]:
    path = random_model_dir(args)
    meta_file = path / "bench-model.json"
    if meta_file.is_file() and not rebuild:
        return path, {**json.loads(meta_file.read_text(encoding="utf-8")), "cached": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the random-init model under {path} (once; cached) ...", flush=True)
    return path, {**build_random_model(path, trained, args.shape, args.seed), "cached": False}


def ensure_model(args: argparse.Namespace, lines: Sequence[str]) -> tuple[Path, dict[str, Any]]:
    path = model_dir(args)
    meta_file = path / "bench-model.json"
    if meta_file.is_file() and not args.rebuild:
        return path, {**json.loads(meta_file.read_text(encoding="utf-8")), "cached": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the benchmark model under {path} (once; cached) ...", flush=True)
    return path, {**build_model(path, lines, args.shape, args.seed), "cached": False}


# --- the requests ------------------------------------------------------------------------


def make_requests(
    lines: Sequence[str], persona: Persona, n: int, seed: int,
    depths: Sequence[int] = DEPTHS,
) -> list[GenerationRequest]:
    """``n`` reply requests for ``persona``: corpus threads whose chains are stretched to
    the ``depths`` (:data:`DEPTHS`: mixed prompt lengths), each with its own seed."""
    import msgspec

    from playhouse import grammar
    from playhouse.asking import reply_request
    from playhouse.constants import QUEUE_INTERACTIVE
    from playhouse.storage.models import Comment, Thread

    rng = random.Random(seed)
    parsed = [grammar.parse_training_line(line) for line in lines[:400]]
    pool = [c for t in parsed for c in t.comments]
    requests = []
    now = time.time()
    for i in range(n):
        src = parsed[rng.randrange(len(parsed))]
        post = src.post
        depth = depths[i % len(depths)]
        comments = list(src.comments[:-1])  # the persona's own last comment is the answer
        while len(comments) < depth:
            comments.append(pool[rng.randrange(len(pool))])
        comments = comments[:depth]
        thread = Thread(
            thread_id=f"t{i:04d}", room=post.room, title=post.title, body=post.body,
            url=post.url, author=post.author or "Visitor", is_bot=False, persona=None,
            created_at=now, last_activity=now,
        )
        chain = [
            Comment(comment_id=f"c{i:04d}-{j:02d}", thread_id=thread.thread_id, room=post.room,
                    parent_id=None, author=c.author, is_bot=False, persona=None, text=c.text,
                    created_at=now)
            for j, c in enumerate(comments)
        ]
        request = reply_request(
            persona=persona, thread=thread, chain=chain,
            parent_id=chain[-1].comment_id if chain else None,
            queue=QUEUE_INTERACTIVE, request_id=f"bench-{i:04d}",
        )
        requests.append(msgspec.structs.replace(request, seed=seed * 1000 + i))
    return requests


def small_model_dir(args: argparse.Namespace) -> Path:
    layers, width, _ = args.small_shape
    return args.cache / f"gpt2small-{layers}x{width}-v{MODEL_VERSION}-seed{args.seed}-random"


def build_small_model(path: Path, tokenizer_from: Path, shape: tuple[int, int, int],
                      seed: int) -> dict[str, Any]:
    """The trained model's tokenizer padded with filler tokens to :data:`GPT2_VOCAB`, and a
    random-init GPT-2 of ``shape`` (layers, width, heads) on it, saved."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    started = time.perf_counter()
    staging = path.with_name(path.name + f".staging-{os.getpid()}")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_from))
    filler = GPT2_VOCAB - len(tokenizer)
    tokenizer.add_tokens([f"[unused{i}]" for i in range(filler)])
    tokenizer.save_pretrained(str(staging))
    torch.manual_seed(seed + 2)
    layers, width, heads = shape
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=width, n_layer=layers,
        n_head=heads, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.eval()
    model.save_pretrained(str(staging))
    meta = {
        "layers": layers, "width": width, "heads": heads, "params": model.num_parameters(),
        "vocab": len(tokenizer), "filler_tokens": filler, "steps": 0, "final_loss": None,
        "random_init": True, "build_s": round(time.perf_counter() - started, 1),
    }
    (staging / "bench-model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if path.exists():
        import shutil

        shutil.rmtree(path)
    staging.rename(path)
    return meta


def ensure_small_model(args: argparse.Namespace, trained: Path,
                       rebuild: bool) -> tuple[Path, dict[str, Any]]:
    path = small_model_dir(args)
    meta_file = path / "bench-model.json"
    if meta_file.is_file() and not rebuild:
        return path, {**json.loads(meta_file.read_text(encoding="utf-8")), "cached": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the GPT-2-small model under {path} (once; cached) ...", flush=True)
    meta = build_small_model(path, trained, args.small_shape, args.seed)
    return path, {**meta, "cached": False}


def make_thread_requests(
    lines: Sequence[str], persona: Persona, threads: int, per_thread: int, seed: int,
    *, body_comments: int = 8,
) -> list[GenerationRequest]:
    """Thread-heavy requests: ``threads`` threads, ``per_thread`` replies by ``persona`` in
    each, as a scheduler round produces them (one bot answering several comments of a busy
    thread): most answer a top-level comment (the post and that comment above them), the
    others a reply to one (two comments). A post's body is ``body_comments`` corpus comments
    joined (6: a short post of ~60 tokens; 24: a long one of ~250), the part every prompt
    of the thread shares. One seed per request."""
    import msgspec

    from playhouse import grammar
    from playhouse.asking import reply_request
    from playhouse.constants import QUEUE_INTERACTIVE
    from playhouse.storage.models import Comment, Thread

    rng = random.Random(seed + 7)
    parsed = [grammar.parse_training_line(line) for line in lines[:400]]
    pool = [c for t in parsed for c in t.comments]
    now = time.time()
    requests = []
    for t in range(threads):
        src = parsed[rng.randrange(len(parsed))].post
        body = " ".join(pool[rng.randrange(len(pool))].text for _ in range(body_comments))
        thread = Thread(
            thread_id=f"th{t:03d}", room=src.room, title=src.title, body=body, url=None,
            author=src.author or "Visitor", is_bot=False, persona=None, created_at=now,
            last_activity=now,
        )
        for k in range(per_thread):
            depth = 2 if k % 4 == 3 else 1
            picked = [pool[rng.randrange(len(pool))] for _ in range(depth)]
            chain = [
                Comment(comment_id=f"th{t:03d}-{k:02d}-{j}", thread_id=thread.thread_id,
                        room=src.room, parent_id=None, author=c.author, is_bot=False,
                        persona=None, text=c.text, created_at=now)
                for j, c in enumerate(picked)
            ]
            request = reply_request(
                persona=persona, thread=thread, chain=chain, parent_id=chain[-1].comment_id,
                queue=QUEUE_INTERACTIVE, request_id=f"thread-{t:03d}-{k:02d}",
            )
            requests.append(msgspec.structs.replace(request, seed=seed * 1000 + t * 50 + k))
    rng.shuffle(requests)  # they arrive interleaved, not thread by thread
    return requests
