"""transformers' continuous batching for one loaded model: the alternative to padded generate().

With continuous batching, finished sequences leave the running batch at once and waiting
ones take their place, so a short reply never waits for a long one. transformers runs it
behind ``model.generate_batch``; the manager it builds costs seconds to set up (about 18 s
for a tiny GPT-2 on this project's CPU), so one manager is kept per model and rebuilt only
when the sampling parameters change. It stops on token ids only: real ssi-bot models spell
tags as several tokens, so their replies run to ``max_new_tokens`` and the grammar cuts them
at the first ``<|`` (the padded path also stops on strings). transformers 5.24's continuous
batching also drops ``repetition_penalty`` (it logs "isn't supported by CB"), so a persona's
penalty does not apply on this path. Which path wins is measured by ``bench/worker.py``
(on this project's CPU the padded path does); the worker uses this one only when
``worker.continuous_batching`` is on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from playhouse.generation.text import SamplingParams

log = structlog.get_logger()


class ContinuousBatcher:
    """Generates batches through one persistent continuous-batching manager."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self._config_key: tuple[Any, ...] | None = None

    def _config(self, params: SamplingParams, stop_ids: Sequence[int]) -> Any:
        from transformers import GenerationConfig

        key = (params, tuple(stop_ids))
        if key != self._config_key:
            if self._config_key is not None:
                self.close()  # a manager is built for one generation config
            if params.repetition_penalty != 1.0:
                log.info("continuous.no_repetition_penalty", value=params.repetition_penalty,
                         reason="not supported by transformers' continuous batching")
        self._config_key = key
        return GenerationConfig(
            do_sample=True,
            temperature=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            repetition_penalty=params.repetition_penalty,
            max_new_tokens=params.max_new_tokens,
            eos_token_id=list(stop_ids) or None,
            pad_token_id=self.tokenizer.pad_token_id,
        )

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        *,
        stop_ids: Sequence[int],
        seed: int | None = None,
    ) -> list[list[int]]:
        """The generated token ids for each prompt, in prompt order."""
        import torch

        if not prompts:
            return []
        if seed is not None:
            torch.manual_seed(seed)
        inputs = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        config = self._config(params, stop_ids)
        outputs = self.model.generate_batch(
            inputs=inputs,
            generation_config=config,
            progress_bar=False,
            persistent_manager=True,
            warmup=False,
        )
        # Request ids are "req_<n>", numbered in the order the inputs were added.
        ordered = sorted(outputs.values(), key=lambda o: int(str(o.request_id).rsplit("_", 1)[1]))
        if len(ordered) != len(prompts):
            raise RuntimeError(
                f"continuous batching returned {len(ordered)} outputs for {len(prompts)} prompts"
            )
        results: list[list[int]] = []
        for output in ordered:
            if output.error:
                log.warning("continuous.request_failed", error=str(output.error))
            results.append(list(output.generated_tokens))
        return results

    def close(self) -> None:
        destroy = getattr(self.model, "destroy_cached_continuous_batching_manager", None)
        if destroy is not None:
            destroy()
        self._config_key = None
