"""A loaded GPT-2-style model that generates batches of continuations. No I/O here.

Prompts are left-padded and generated together with one ``generate()`` call. Generation
stops at the grammar's end tags twice over: by token id when the tokenizer has the tag
as one token (our demo models), and by string (``stop_strings``) because real ssi-bot
models tokenize tags as plain text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from playhouse.errors import Interrupted, ModelUnavailable
from playhouse.generation.continuous import ContinuousBatcher
from playhouse.generation.grouping import partition
from playhouse.generation.interrupt import raise_if_aborted, text_criteria

if TYPE_CHECKING:
    import threading

    from playhouse.personas import Persona

log = structlog.get_logger()


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    repetition_penalty: float = 1.1
    max_new_tokens: int = 96

    @classmethod
    def from_persona(cls, persona: Persona) -> SamplingParams:
        g = persona.generation
        return cls(
            temperature=g.temperature,
            top_k=g.top_k,
            top_p=g.top_p,
            repetition_penalty=g.repetition_penalty,
            max_new_tokens=g.max_new_tokens,
        )


def pick_device(setting: str) -> str:
    import torch

    if setting != "auto":
        return setting
    return "cuda" if torch.cuda.is_available() else "cpu"


STEP_COST_TOKENS: dict[str, float] = {"cpu": 12.0}
"""What one decode step of a batch costs, in prompt tokens of the prefill, per device type.

On a CPU a decode step streams the weights (about 7 ms for a 20 M-parameter GPT-2 on this
project's machine) and a prompt token costs about 0.6 ms of compute, so one more sub-batch of
48 steps is worth about 600 padded prompt tokens. On a GPU padding is nearly free next to a
step, so batches are split only when the padding is enormous."""
DEFAULT_STEP_COST_TOKENS = 2000.0


def split_by_length(lengths: Sequence[int], *, step_cost: float) -> list[list[int]]:
    """Indices of ``lengths`` in sub-batches of similar length (shortest first).

    Minimises the padded prompt tokens (rows x longest prompt, summed over sub-batches) plus
    ``step_cost`` per sub-batch: exact, by :func:`~playhouse.generation.grouping.partition`
    over the sorted lengths.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [
        order[i:j]
        for i, j in partition(
            len(order), lambda i, j: (j - i) * lengths[order[j - 1]] + step_cost
        )
    ]


class TextModel:
    """A causal LM and its tokenizer, loaded once and used for many batches."""

    def __init__(
        self, model: Any, tokenizer: Any, *, name: str, device: str, continuous: bool = False
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.device = device
        self.continuous: ContinuousBatcher | None = (
            ContinuousBatcher(model, tokenizer) if continuous else None
        )
        """Set when this model generates through transformers' continuous batching."""
        self._single_token_cache: dict[str, int | None] = {}
        self._stop_criteria_cache: dict[tuple[str, ...], Any] = {}
        self.launch_free = False
        """Set while the decode step runs as CUDA graphs (:mod:`playhouse.generation.graphs`)."""

    @classmethod
    def load(
        cls,
        path_or_id: str,
        *,
        device: str = "auto",
        name: str = "",
        continuous: bool = False,
        launch_free: bool = True,
    ) -> TextModel:
        """``from_pretrained`` a model directory or hub id; ModelUnavailable on failure.

        ``continuous`` generates through transformers' continuous batching
        (:mod:`playhouse.generation.continuous`) instead of padded ``generate()`` calls.
        ``launch_free`` lets a model on CUDA decode through CUDA graphs
        (:mod:`playhouse.generation.graphs`; never on a CPU), warmed up here."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dev = pick_device(device)
        local = Path(path_or_id)
        if (path_or_id.startswith((".", "/")) or local.exists()) and not local.is_dir():
            raise ModelUnavailable(f"model path does not exist: {path_or_id}")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path_or_id, padding_side="left")
            dtype = torch.float16 if dev.startswith("cuda") else torch.float32
            model = AutoModelForCausalLM.from_pretrained(path_or_id, dtype=dtype)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelUnavailable(f"cannot load model {path_or_id!r}: {exc}") from exc
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        model.to(dev)
        model.eval()
        if model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
        log.info("model.loaded", model=path_or_id, device=dev, params=model.num_parameters(),
                 continuous=continuous)
        loaded = cls(model, tokenizer, name=name or path_or_id, device=dev, continuous=continuous)
        from playhouse.generation import graphs

        if graphs.wanted(launch_free, dev) and not continuous:
            loaded.enable_launch_free()
        return loaded

    def enable_launch_free(self, config: Any | None = None) -> bool:
        """Decode through a static cache and CUDA graphs, warmed up now (one short prompt at
        each of :data:`~playhouse.generation.graphs.WARM_UP_BATCHES`); back to eager with a
        log line when that fails. ``config`` overrides the CompileConfig. True when on."""
        from playhouse.generation import graphs

        def warm_up() -> None:
            warm = SamplingParams(max_new_tokens=4)
            for size in graphs.WARM_UP_BATCHES:
                self._generate_call([self.tokenizer.eos_token or "a"] * size, warm, stop=())

        try:
            self.launch_free = graphs.prepare(
                self.model, name=self.name, max_cache_len=self.context_size,
                warm_up=warm_up, config=config,
            )
        finally:
            if not self.launch_free:
                graphs.disable(self.model)
        return self.launch_free

    @property
    def engine_name(self) -> str:
        """What generates ("why this reply?" names it)."""
        return "transformers, continuous batching" if self.continuous else "transformers"

    @property
    def context_size(self) -> int:
        config = self.model.config
        n: int = getattr(config, "n_positions", None) or getattr(
            config, "max_position_embeddings", None
        ) or 1024
        return int(n)

    @property
    def memory_bytes(self) -> int:
        """Parameters and buffers as loaded (in their dtype, on their device)."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return int(sum(t.numel() * t.element_size() for t in tensors))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def single_token_id(self, tag: str) -> int | None:
        """The id of ``tag`` when the tokenizer holds it as one token, else None."""
        if tag not in self._single_token_cache:
            ids = self.tokenizer.encode(tag, add_special_tokens=False)
            self._single_token_cache[tag] = ids[0] if len(ids) == 1 else None
        return self._single_token_cache[tag]

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        *,
        stop: Sequence[str],
        seed: int | None = None,
        abort: threading.Event | None = None,
    ) -> list[str]:
        """Sample one continuation per prompt, in padded batches of similar prompt length.

        Left padding makes every row pay for the batch's longest prompt, and on a CPU the
        prompt pass is compute-bound, so prompts of very different lengths are split into
        sub-batches (:func:`split_by_length`) when the padding saved outweighs one more run
        of decode steps. Results come back in the order of ``prompts``. Once ``abort`` is
        set, the next decoding step raises :class:`~playhouse.errors.Interrupted`.
        """
        import torch

        if not prompts:
            return []
        raise_if_aborted(abort)
        if self.continuous is not None:
            rows = self.continuous.generate(
                prompts, params, stop_ids=self._stop_ids(stop), seed=seed
            )
            return [self._decode(row) for row in rows]
        if seed is not None:
            torch.manual_seed(seed)
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        lengths = [len(ids) for ids in encoded]
        step_cost = params.max_new_tokens * STEP_COST_TOKENS.get(
            self.device.split(":")[0], DEFAULT_STEP_COST_TOKENS
        )
        out: list[str] = [""] * len(prompts)
        for group in split_by_length(lengths, step_cost=step_cost):
            texts = self._generate_padded(
                [prompts[i] for i in group], params, stop=stop, abort=abort
            )
            for i, text in zip(group, texts, strict=True):
                out[i] = text
        return out

    def _generate_padded(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        *,
        stop: Sequence[str],
        abort: threading.Event | None = None,
    ) -> list[str]:
        """One left-padded ``generate()`` call for ``prompts``.

        On the launch-free path the batch is padded with copies of its first prompt up to a
        captured size (:func:`~playhouse.generation.graphs.bucket`), and a failure there puts
        the model back to eager generation (logged) and runs the batch again eagerly."""
        if not self.launch_free:
            return self._generate_call(prompts, params, stop=stop, abort=abort)
        from playhouse.generation import graphs

        rows = list(prompts) + [prompts[0]] * (graphs.bucket(len(prompts)) - len(prompts))
        try:
            return self._generate_call(rows, params, stop=stop, abort=abort)[: len(prompts)]
        except Interrupted:
            raise
        except Exception as exc:
            self.launch_free = False
            graphs.disable(self.model)
            log.warning("model.launch_free_failed", model=self.name, fallback="eager",
                        rows=len(rows), error=f"{type(exc).__name__}: {exc}"[:500])
            return self._generate_call(prompts, params, stop=stop, abort=abort)

    def _generate_call(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        *,
        stop: Sequence[str],
        abort: threading.Event | None = None,
    ) -> list[str]:
        import torch

        enc = self.tokenizer(
            list(prompts), return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        eos = self._stop_ids(stop)
        criteria = self._stop_criteria(stop)
        if abort is not None:
            from transformers import StoppingCriteriaList

            criteria = StoppingCriteriaList([*(criteria or []), text_criteria(abort)])
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                do_sample=True,
                temperature=params.temperature,
                top_k=params.top_k,
                top_p=params.top_p,
                repetition_penalty=params.repetition_penalty,
                max_new_tokens=params.max_new_tokens,
                eos_token_id=eos or None,
                pad_token_id=self.tokenizer.pad_token_id,
                stopping_criteria=criteria,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        return [self._decode(row) for row in new]

    def _stop_ids(self, stop: Sequence[str]) -> list[int]:
        """Token ids that end a generation: the stop strings that are single tokens, and eos."""
        ids = [i for i in (self.single_token_id(s) for s in stop) if i is not None]
        if self.tokenizer.eos_token_id is not None:
            ids.append(int(self.tokenizer.eos_token_id))
        return ids

    def _stop_criteria(self, stop: Sequence[str]) -> Any:
        """``stop_strings`` as a criteria list built once per stop set.

        ``generate(stop_strings=...)`` rebuilds a StopStringCriteria on every call, which
        reads, sorts and hashes the whole vocabulary (about 0.2 s for GPT-2's 50 k tokens on
        this project's CPU): that is paid once per model here instead.
        """
        from transformers import StoppingCriteriaList, StopStringCriteria

        key = tuple(stop)
        if not key:
            return None
        criteria = self._stop_criteria_cache.get(key)
        if criteria is None:
            criteria = StoppingCriteriaList([StopStringCriteria(self.tokenizer, list(key))])
            self._stop_criteria_cache[key] = criteria
        return criteria

    def _decode(self, ids: Any) -> str:
        text: str = self.tokenizer.decode(ids, skip_special_tokens=True)
        return text

    def close(self) -> None:
        self._stop_criteria_cache.clear()
        if self.continuous is not None:
            self.continuous.close()
            self.continuous = None
        self.model = None
        self.tokenizer = None
