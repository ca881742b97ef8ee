"""Loaded models, least-recently-used first out, under a count and a memory budget."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import structlog

from playhouse.errors import ModelUnavailable

log = structlog.get_logger()


class Loaded(Protocol):
    @property
    def memory_bytes(self) -> int: ...

    def close(self) -> None: ...


M = TypeVar("M", bound=Loaded)


class ModelCache(Generic[M]):
    """Keep up to ``max_models`` models and ``max_bytes`` of weights loaded.

    A model that fails to load is remembered as unavailable for ``retry_after_s`` so a
    burst of requests for it does not reload it once per message.
    """

    def __init__(
        self,
        loader: Callable[[str], M],
        *,
        max_models: int = 4,
        max_bytes: int = 8 << 30,
        retry_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader = loader
        self._models: OrderedDict[str, M] = OrderedDict()
        self._failed: dict[str, tuple[float, str]] = {}
        self.max_models = max(1, max_models)
        self.max_bytes = max_bytes
        self.retry_after_s = retry_after_s
        self._clock = clock
        self.loads = 0

    def __contains__(self, key: str) -> bool:
        return key in self._models

    def __len__(self) -> int:
        return len(self._models)

    @property
    def memory_bytes(self) -> int:
        return sum(m.memory_bytes for m in self._models.values())

    def get(self, key: str) -> M:
        """The model for ``key``, loading it (and evicting others) when needed."""
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        failed = self._failed.get(key)
        if failed and self._clock() - failed[0] < self.retry_after_s:
            raise ModelUnavailable(failed[1])
        try:
            model = self._loader(key)
        except ModelUnavailable as exc:
            self._failed[key] = (self._clock(), str(exc))
            log.warning("model.unavailable", model=key, reason=str(exc))
            raise
        self._failed.pop(key, None)
        self.loads += 1
        self._models[key] = model
        self._evict(keep=key)
        return model

    def _evict(self, keep: str) -> None:
        while len(self._models) > 1 and (
            len(self._models) > self.max_models or self.memory_bytes > self.max_bytes
        ):
            oldest = next(iter(self._models))
            if oldest == keep:
                break
            model = self._models.pop(oldest)
            model.close()
            log.info("model.evicted", model=oldest, loaded=len(self._models))

    def keys(self) -> list[str]:
        """The loaded models' keys, least recently used first."""
        return list(self._models)

    def state(self, key: str) -> tuple[str, str]:
        """``("loaded", "")``, ``("unavailable", reason)`` when its last load failed, or
        ``("idle", "")`` when it was never asked for (or was evicted)."""
        if key in self._models:
            return "loaded", ""
        failed = self._failed.get(key)
        if failed is not None:
            return "unavailable", failed[1]
        return "idle", ""

    def clear(self) -> None:
        for model in self._models.values():
            model.close()
        self._models.clear()
