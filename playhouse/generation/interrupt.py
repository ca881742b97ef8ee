"""Stopping a batch part way.

A worker told to stop gives the batch in hand a few seconds to finish, then sets an
``abort`` event. The models look at it between decoding steps (text) or denoising steps
(images) and raise :class:`Interrupted`; the worker hands the messages back to their
queue, and another worker (or this one, restarted) generates them again. Without this a
512x512 picture on a CPU outlives any shutdown grace and the process is killed.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from playhouse.errors import Interrupted


def raise_if_aborted(abort: threading.Event | None) -> None:
    """Raise :class:`Interrupted` when ``abort`` is set."""
    if abort is not None and abort.is_set():
        raise Interrupted("the worker is stopping")


def text_criteria(abort: threading.Event) -> Any:
    """A transformers stopping criterion that raises once ``abort`` is set (a criterion
    returning True would end the rows with partial text, which must never be posted)."""
    return _criteria_class()(abort)


@functools.cache
def _criteria_class() -> type:
    import torch
    from transformers import StoppingCriteria

    class AbortCriteria(StoppingCriteria):  # type: ignore[misc]
        def __init__(self, abort: threading.Event) -> None:
            self.abort = abort

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            raise_if_aborted(self.abort)
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return AbortCriteria


def image_callback(abort: threading.Event) -> Callable[..., dict[str, Any]]:
    """A diffusers ``callback_on_step_end`` that raises once ``abort`` is set."""

    def on_step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        raise_if_aborted(abort)
        return kwargs

    return on_step_end
