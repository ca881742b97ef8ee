"""The transformers engine's launch-free decode on CUDA: a static KV cache, the decode step
captured in CUDA graphs.

At batch 1 a GPT-2 decode step on a GPU is launch overhead: hundreds of small kernels, each
launched from Python (``bench/results/gpu_generation.md``: 21 ms a token where the memory
traffic needs 0.16 ms). transformers removes it when the KV cache is static (fixed shapes)
and the decode step is compiled with ``torch.compile(mode="reduce-overhead")``, which
records it as CUDA graphs and replays them. transformers compiles automatically on CUDA
once ``generation_config.cache_implementation = "static"`` (its ``compile_config`` says
how); the cache is sized once for the model's whole context (``max_cache_len``) and batches
are padded to a few sizes (:data:`CAPTURED_BATCH_SIZES`) so that a handful of graphs serve every
batch. Compiling and capturing happens in a warm-up when the model is loaded; if anything
fails there (no compiler, an unsupported model, a capture error) the model is put back to
eager generation with a ``model.launch_free_failed`` line, and a later failure does the same
and retries the batch eagerly. Selected automatically on CUDA (``worker.launch_free``),
never on a CPU: the tests do not need it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import structlog

from playhouse.errors import Interrupted

log = structlog.get_logger()

CAPTURED_BATCH_SIZES: Final[tuple[int, ...]] = (1, 2, 4, 8, 16, 32, 64)
"""Batch sizes the graphs are captured for; a batch is padded up to the next one."""
WARM_UP_BATCHES: Final[tuple[int, ...]] = (1, 32)
"""Captured when the model loads (the others on their first batch)."""


def wanted(setting: bool, device: str) -> bool:
    """Whether the launch-free path is selected: on CUDA when the setting allows it."""
    return setting and device.startswith("cuda")


def bucket(n: int) -> int:
    """The batch size ``n`` rows are padded to (``n`` itself past the largest bucket)."""
    return next((b for b in CAPTURED_BATCH_SIZES if b >= n), n)


def compile_config(**overrides: Any) -> Any:
    """transformers' CompileConfig for CUDA graphs: reduce-overhead, static shapes."""
    from transformers.generation.configuration_utils import CompileConfig

    return CompileConfig(**{"mode": "reduce-overhead", "fullgraph": False, "dynamic": False,
                            **overrides})


def enable(model: Any, *, max_cache_len: int, config: Any | None = None) -> None:
    """Set ``model`` to generate with a static cache of ``max_cache_len`` and a compiled,
    graph-captured decode step."""
    gc = model.generation_config
    gc.cache_implementation = "static"
    gc.max_cache_len = max_cache_len
    gc.compile_config = config if config is not None else compile_config()
    gc.disable_compile = False


def disable(model: Any) -> None:
    """Back to eager generation with a dynamic cache."""
    gc = model.generation_config
    gc.cache_implementation = None
    gc.compile_config = None
    gc.disable_compile = True
    try:
        import torch

        torch._dynamo.reset()
    except Exception as exc:  # nothing was compiled, or dynamo is unavailable
        log.debug("model.dynamo_reset_failed", error=str(exc))


def prepare(model: Any, *, name: str, max_cache_len: int, warm_up: Callable[[], None],
            config: Any | None = None) -> bool:
    """Enable the launch-free path on ``model`` and warm it up (compile and capture once).

    True when it works; False after falling back to eager generation (logged)."""
    try:
        enable(model, max_cache_len=max_cache_len, config=config)
        warm_up()
    except Interrupted:
        raise
    except Exception as exc:
        disable(model)
        log.warning("model.launch_free_failed", model=name, fallback="eager",
                    error=f"{type(exc).__name__}: {exc}"[:500])
        return False
    log.info("model.launch_free", model=name, max_cache_len=max_cache_len,
             warmed_batches=list(WARM_UP_BATCHES))
    return True
