"""Small GPT-2s that speak ssi-bot's formats, built the way the demo models are.

The demo corpus's threads (:func:`playhouse.demo.corpus.persona_corpus`, written in the
playhouse grammar and read back) are rewritten as training lines of an ssi-bot grammar by
that grammar's own writer; a plain byte-level BPE is trained on them with no tag as an added
token (so ``<|sor|>`` is several tokens, as in a real ssi-bot model), then a GPT-2 of the demo
recipe from scratch, seeded, on one thread. About 40 seconds on this project's CPU.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Final

from playhouse import grammar
from playhouse.demo.corpus import persona_corpus
from playhouse.demo.tinymodels import TextRecipe, build_text_model, build_tokenizer

SPEAKERS: Final = ("CoopBot", "Spez", "ByteBot", "PabloBot")
ROOMS: Final = ("Technology", "CatsAndDogs")
THREADS_PER_SPEAKER: Final = 300
STEPS: Final = 500
"""Enough for every seed tried (1-4) to close >= 30 of 36 replies at the first attempt."""


def ssi_lines(variant: grammar.Grammar, *, seed: int) -> list[str]:
    """The training lines: the demo corpus's threads written in ``variant``, shuffled."""
    lines: list[str] = []
    for speaker in SPEAKERS:
        for line in persona_corpus(speaker, ROOMS, ("coffee", "music", "books"),
                                   others=SPEAKERS, n_threads=THREADS_PER_SPEAKER, seed=seed):
            thread = grammar.parse_training_line(line)
            lines.append(variant.training_line(thread.post, thread.comments))
    random.Random(seed).shuffle(lines)
    return lines


def build_ssi_model(variant: grammar.Grammar, out: Path, *, seed: int = 3) -> Path:
    """Train a small GPT-2 on ``variant``'s lines into ``out`` and return ``out``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        lines = ssi_lines(variant, seed=seed)
        tokenizer = build_tokenizer(lines, out, vocab_size=2048, tags=())
        build_text_model(lines, tokenizer, out, seed=seed, steps=STEPS,
                         recipe=TextRecipe(block_size=192))
    finally:
        torch.set_num_threads(threads)
    return out
