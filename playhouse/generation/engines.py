"""Engines: a registry from persona kind to what generates for it.

An engine owns its model cache and turns (key, request) pairs of one persona into
Outcomes. It is synchronous and does no I/O; the worker runs it in an executor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import msgspec
import structlog

from playhouse.constants import (
    QUEUE_BACKGROUND,
    QUEUE_IMAGE,
    QUEUE_INTERACTIVE,
    TITLE_MAX_CHARS,
)
from playhouse.errors import ModelUnavailable
from playhouse.explain import Attempt, Trace
from playhouse.generation.backends import EngineChoice, check_engine, load_text_model
from playhouse.generation.batch import Batch
from playhouse.generation.cache import ModelCache
from playhouse.generation.completion import Outcome, complete, make_items
from playhouse.messages import GenerationRequest

if TYPE_CHECKING:
    import threading

    from playhouse.generation.backends import TextBackend
    from playhouse.generation.image import ImageModel
    from playhouse.personas import Persona

log = structlog.get_logger()

Entry = tuple[str, GenerationRequest]


class Engine(Protocol):
    kind: str
    queues: tuple[str, ...]
    """Queues this engine serves, drained in this order (interactive first)."""

    def run(
        self,
        persona: Persona,
        entries: Sequence[Entry],
        seed: int | None,
        abort: threading.Event,
    ) -> list[Outcome]:
        """One Outcome per entry; raises :class:`~playhouse.errors.Interrupted` once
        ``abort`` is set (the worker then hands the entries back to their queue)."""
        ...

    def close(self) -> None: ...


def _fail_all(entries: Sequence[Entry], reason: str) -> list[Outcome]:
    return [Outcome(key, req, False, error=reason, attempts=1,
                    trace=Trace(chain=len(req.chain), error=reason)) for key, req in entries]


class TextEngine:
    """Text personas: each model loaded by the library ``choice`` selects
    (:mod:`playhouse.generation.backends`: CTranslate2 or transformers)."""

    kind: str = "text"
    queues: tuple[str, ...] = (QUEUE_INTERACTIVE, QUEUE_BACKGROUND)

    def __init__(
        self,
        resolve: Callable[[Persona], str],
        *,
        device: str = "auto",
        max_models: int = 4,
        max_bytes: int = 8 << 30,
        loader: Callable[[str], TextBackend] | None = None,
        continuous: bool = False,
        choice: EngineChoice | None = None,
    ) -> None:
        self._resolve = resolve
        self.choice = choice or EngineChoice(engine="transformers", device=device,
                                             continuous=continuous)
        self.models: ModelCache[TextBackend] = ModelCache(
            loader or self._load, max_models=max_models, max_bytes=max_bytes
        )

    def _load(self, path: str) -> TextBackend:
        return load_text_model(path, self.choice)

    def run(
        self,
        persona: Persona,
        entries: Sequence[Entry],
        seed: int | None,
        abort: threading.Event,
    ) -> list[Outcome]:
        try:
            model = self.models.get(self._resolve(persona))
        except ModelUnavailable as exc:
            return _fail_all(entries, f"model unavailable: {exc}")
        items, failed = make_items(entries, persona, model)
        outcomes = complete(
            model, Batch.from_items(persona.name, items), persona, seed=seed, abort=abort
        )
        return [*outcomes, *failed]

    def model_state(self, persona: Persona) -> tuple[str, str]:
        """The state of ``persona``'s model here (see :meth:`ModelCache.state`)."""
        return self.models.state(self._resolve(persona))

    def loaded_models(self) -> list[str]:
        return self.models.keys()

    def close(self) -> None:
        self.models.clear()


class ImageEngine:
    kind: str = "image"
    queues: tuple[str, ...] = (QUEUE_IMAGE,)

    def __init__(
        self,
        resolve: Callable[[Persona], str],
        *,
        device: str = "auto",
        max_models: int = 1,
        max_bytes: int = 16 << 30,
    ) -> None:
        self._resolve = resolve
        self._device = device
        self.models: ModelCache[ImageModel] = ModelCache(
            self._load, max_models=max_models, max_bytes=max_bytes
        )

    def _load(self, path: str) -> ImageModel:
        from playhouse.generation.image import ImageModel

        return ImageModel.load(path, device=self._device)

    def run(
        self,
        persona: Persona,
        entries: Sequence[Entry],
        seed: int | None,
        abort: threading.Event,
    ) -> list[Outcome]:
        from playhouse.generation.image import DiffusionParams

        try:
            model = self.models.get(self._resolve(persona))
        except ModelUnavailable as exc:
            return _fail_all(entries, f"model unavailable: {exc}")
        prompts = [_image_prompt(req) for _, req in entries]
        params = DiffusionParams.from_persona(persona)
        outputs = model.generate(prompts, params, seed=seed, abort=abort)
        sampling = tuple(dataclasses.asdict(params).items())
        outcomes: list[Outcome] = []
        for (key, req), prompt, out in zip(entries, prompts, outputs, strict=True):
            verdict = Attempt(number=1, seed=seed, accepted=out.png is not None,
                              reason="" if out.png is not None else "safety_checker")
            trace = Trace(prompt=prompt, params=sampling, seed=seed, attempts=(verdict,),
                          engine="diffusers", device=model.device, batch=len(entries))
            if out.png is None:
                outcomes.append(
                    Outcome(key, req, False, error="image withheld by the safety checker",
                            attempts=1)
                )
            elif req.kind == "post":  # a thread of its own: titled with what it painted
                outcomes.append(Outcome(key, req, True,
                                        title=(req.caption or prompt)[:TITLE_MAX_CHARS],
                                        png=out.png, attempts=1))
            else:  # the prompt is someone's words: the caption says whose
                outcomes.append(Outcome(key, req, True, text=req.caption or prompt,
                                        png=out.png, attempts=1))
            if outcomes[-1].error:
                trace = msgspec.structs.replace(trace, error=outcomes[-1].error)
            outcomes[-1] = dataclasses.replace(outcomes[-1], trace=trace)
        return outcomes

    def model_state(self, persona: Persona) -> tuple[str, str]:
        """The state of ``persona``'s model here (see :meth:`ModelCache.state`)."""
        return self.models.state(self._resolve(persona))

    def loaded_models(self) -> list[str]:
        return self.models.keys()

    def close(self) -> None:
        self.models.clear()


def _image_prompt(request: GenerationRequest) -> str:
    if request.image_prompt.strip():
        return request.image_prompt.strip()[:500]
    if request.post is not None:
        return request.post.title[:500]
    return request.room


CONVERT_DIR = "ctranslate2"
"""Where CTranslate2 conversions are kept by default: this folder under the models folder."""


def make_engine(
    kind: str,
    models_dir: Path,
    *,
    device: str,
    max_models: int,
    max_bytes: int,
    continuous_batching: bool = False,
    engine: str = "auto",
    quantization: str = "auto",
    convert_dir: Path | None = None,
    threads: int = 0,
    launch_free: bool = True,
    share_prefixes: bool = True,
) -> Engine:
    """The engine registered for ``kind``; a text engine loads its models with ``engine``
    (``auto``, ``transformers`` or ``ctranslate2``, see :mod:`playhouse.generation.backends`),
    CTranslate2 conversions kept in ``convert_dir`` (default ``models_dir/ctranslate2``).
    Raises ConfigError when ``engine`` cannot work here."""
    from playhouse.personas import resolve_model

    def resolve(persona: Persona) -> str:
        return resolve_model(persona, models_dir)

    def text() -> Engine:
        choice = EngineChoice(
            engine=engine, device=device, quantization=quantization,
            cache_dir=convert_dir or models_dir / CONVERT_DIR, threads=threads,
            continuous=continuous_batching, launch_free=launch_free,
            share_prefixes=share_prefixes,
        )
        check_engine(choice)
        return TextEngine(resolve, max_models=max_models, max_bytes=max_bytes, choice=choice)

    registry: dict[str, Callable[[], Engine]] = {
        "text": text,
        "image": lambda: ImageEngine(resolve, device=device, max_bytes=max_bytes),
    }
    if kind not in registry:
        raise ValueError(f"unknown worker kind {kind!r}; known: {sorted(registry)}")
    return registry[kind]()
