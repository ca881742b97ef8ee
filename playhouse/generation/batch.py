"""The batch: requests with their prompts, generated together by one model.

A value in the shape of text-generation-inference's batches: built ``from_requests``,
narrowed with ``filter`` (drop the finished, keep the ones to re-sample), joined with
``concatenate``. It knows nothing about queues; ``Item.key`` ties it back to them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from playhouse.grammar import FittedPrompt
from playhouse.messages import GenerationRequest


@dataclass(frozen=True)
class Item:
    """One request in a batch, with the prompt built for it."""

    key: str
    """Opaque id of the request's queue message (the worker's handle)."""
    request: GenerationRequest
    prompt: str
    attempts: int = 0
    errors: tuple[str, ...] = ()
    fit: FittedPrompt | None = None
    """How the prompt was fitted to its token budget (what it left out)."""


@dataclass(frozen=True)
class Batch:
    """Items for one model and one set of sampling parameters."""

    model_key: str
    items: tuple[Item, ...] = field(default_factory=tuple)

    @classmethod
    def from_items(cls, model_key: str, items: Iterable[Item]) -> Batch:
        return cls(model_key, tuple(items))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def prompts(self) -> list[str]:
        return [item.prompt for item in self.items]

    def filter(self, keys: Iterable[str]) -> Batch:
        """The items whose key is in ``keys``, in batch order."""
        wanted = set(keys)
        return replace(self, items=tuple(i for i in self.items if i.key in wanted))

    def tried(self, errors: Sequence[str | None]) -> Batch:
        """Count one attempt on every item; record the error (None = valid) per item."""
        if len(errors) != len(self.items):
            raise ValueError("one error slot per item")
        return replace(
            self,
            items=tuple(
                replace(i, attempts=i.attempts + 1, errors=(*i.errors, e) if e else i.errors)
                for i, e in zip(self.items, errors, strict=True)
            ),
        )

    @staticmethod
    def concatenate(batches: Sequence[Batch]) -> Batch:
        if not batches:
            raise ValueError("nothing to concatenate")
        keys = {b.model_key for b in batches}
        if len(keys) != 1:
            raise ValueError(f"batches of different models: {sorted(keys)}")
        return Batch(batches[0].model_key, tuple(i for b in batches for i in b.items))
