"""What the generation benchmarks share: ``bench/worker.py`` and ``bench/gpu_generation.py``.

Counting what ``generate()`` really did: :func:`instrument` wraps a loaded
:class:`~playhouse.generation.text.TextModel`'s ``model.generate`` (padded batches),
:func:`instrument_continuous` its continuous batcher and :func:`instrument_ct2` a
CTranslate2 model's ``generate_batch``, adding every call's rows, prompt tokens
and generated tokens to a :class:`Counter`. Generated tokens are counted exactly, not by
re-tokenizing the returned strings: for ``generate()`` each row up to its last non-pad token
(finished rows are right-padded, so a row that stopped early at its end tag counts only what
it wrote, not the padded steps it sat through in a batch); for continuous batching the length
of each returned sequence. :func:`quiet_logs` silences the per-call warnings and log lines.

Imports nothing beyond the standard library and (lazily) torch, so that
``bench/gpu_generation.py`` can run where only torch, transformers, tokenizers and structlog
are installed (no msgspec, no Azure SDK).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playhouse.generation.text import TextModel


@dataclass
class Counter:
    calls: int = 0
    rows: int = 0
    tokens: int = 0
    """Tokens really generated: per row up to its last non-pad token."""
    slots: int = 0
    """rows x new-token width: the decode slots paid for, finished rows included."""
    early: int = 0
    """Rows that stopped before max_new_tokens (closed a tag or sampled eos); counted only
    when the instrumenting call was given ``max_new``."""
    prompt_tokens: int = 0
    prompt_padded: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    continuous: bool = False
    """Counted from continuous batching (no padding, no idle decode slots)."""
    ct2: bool = False
    """Counted from CTranslate2 (``prompt_padded`` is then the prompt tokens computed)."""
    shared_calls: int = 0
    """CTranslate2 calls that computed a shared prefix once for all their rows."""

    def reset(self) -> None:
        self.__init__(continuous=self.continuous, ct2=self.ct2)  # type: ignore[misc]


def quiet_logs() -> None:
    """Silence what generation prints on every call through the standard library: the
    repetition_penalty warning of continuous batching, and log lines below ERROR (the callers
    quiet structlog and transformers' own logging themselves)."""
    warnings.filterwarnings("ignore", message="Passing `repetition_penalty`")
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("ContinuousBatchingLogger").setLevel(logging.ERROR)


def generated_lengths(new: Any, pad: int) -> Any:
    """Tokens each row of ``generate()``'s new part really generated: up to and including its
    last non-pad token. Finished rows are right-padded, so this stops at the end tag; a pad
    token sampled mid-row (a random model can) still counts, as the row went on after it."""
    import torch

    real = new != pad
    width = new.shape[1]
    from_right = real.flip(1).int().argmax(1)
    return torch.where(real.any(1), width - from_right, torch.zeros_like(from_right))


def instrument(model: TextModel, counter: Counter, max_new: int | None = None) -> TextModel:
    """Count the rows, prompt padding and generated tokens of every ``generate()`` call (and,
    given ``max_new``, the rows that stopped before it)."""
    inner = model.model.generate
    pad = model.tokenizer.pad_token_id

    def generate(*a: Any, **kw: Any) -> Any:
        out = inner(*a, **kw)
        ids = kw["input_ids"]
        new = out[:, ids.shape[1]:]
        lengths = generated_lengths(new, pad)
        counter.calls += 1
        counter.rows += int(ids.shape[0])
        counter.batch_sizes.append(int(ids.shape[0]))
        counter.tokens += int(lengths.sum())
        if max_new is not None:
            counter.early += int((lengths < max_new).sum())
        counter.slots += int(new.numel())
        counter.prompt_tokens += int(kw["attention_mask"].sum())
        counter.prompt_padded += int(ids.numel())
        return out

    model.model.generate = generate
    return model


def instrument_continuous(model: TextModel, counter: Counter,
                          max_new: int | None = None) -> TextModel:
    """Count the rows, prompt tokens and generated tokens of every continuous batch (and,
    given ``max_new``, the rows that stopped before it)."""
    batcher = model.continuous
    if batcher is None:
        raise RuntimeError(f"{model.name or 'the model'} does not generate through continuous "
                           "batching (not loaded with continuous=True)")
    inner = batcher.generate
    tokenizer = model.tokenizer
    counter.continuous = True

    def generate(prompts: Sequence[str], params: Any, *, stop_ids: Sequence[int],
                 seed: int | None = None) -> list[list[int]]:
        rows = inner(prompts, params, stop_ids=stop_ids, seed=seed)
        prompt_tokens = sum(len(tokenizer.encode(p, add_special_tokens=False))
                            for p in prompts)
        counter.calls += 1
        counter.rows += len(rows)
        counter.batch_sizes.append(len(rows))
        counter.tokens += sum(len(row) for row in rows)
        if max_new is not None:
            counter.early += sum(len(row) < max_new for row in rows)
        counter.slots += sum(len(row) for row in rows)
        counter.prompt_tokens += prompt_tokens
        counter.prompt_padded += prompt_tokens
        return rows

    batcher.generate = generate  # type: ignore[method-assign]
    return model


def instrument_ct2(model: Any, counter: Counter, max_new: int | None = None) -> Any:
    """Count the rows, prompt tokens and generated tokens of every CTranslate2 call of a
    :class:`~playhouse.generation.ct2.Ct2Model`: ``prompt_tokens`` as the prompts hold them,
    ``prompt_padded`` as computed (a shared prefix once per call), ``slots`` rows x the
    call's longest generation."""
    inner = model.generator.generate_batch
    counter.ct2 = True

    class Counted:
        """The generator, with generate_batch counted (its own attributes are read-only)."""

        def __init__(self, generator: Any) -> None:
            self._generator = generator

        def __getattr__(self, name: str) -> Any:
            return getattr(self._generator, name)

        def generate_batch(self, start_tokens: Sequence[Sequence[str]], **kw: Any) -> Any:
            return generate_batch(start_tokens, **kw)

    def generate_batch(start_tokens: Sequence[Sequence[str]], **kw: Any) -> Any:
        out = inner(start_tokens, **kw)
        static = len(kw.get("static_prompt") or ())
        lengths = [len(r.sequences_ids[0]) for r in out]
        rows = len(start_tokens)
        counter.calls += 1
        counter.rows += rows
        counter.batch_sizes.append(rows)
        counter.tokens += sum(lengths)
        if max_new is not None:
            counter.early += sum(n < max_new for n in lengths)
        counter.slots += rows * max(lengths, default=0)
        own = sum(len(s) for s in start_tokens)
        counter.prompt_tokens += own + static * rows
        counter.prompt_padded += own + static
        counter.shared_calls += bool(static)
        return out

    model.generator = Counted(model.generator)
    return model
