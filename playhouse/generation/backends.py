"""Which library generates a text model's tokens: transformers or CTranslate2.

``worker.engine`` chooses: ``transformers`` always loads the model with transformers
(:class:`~playhouse.generation.text.TextModel`); ``ctranslate2`` always serves it through
CTranslate2 (:class:`~playhouse.generation.ct2.Ct2Model`; a model it cannot convert is then
unavailable); ``auto`` (the default) takes CTranslate2 when it is installed, can run on the
device and the model converts and passes the quality gate, and transformers otherwise. Every
load logs ``engine.selected`` with the engine and the reason. Everything above (prompts,
batches, parsing, re-sampling) is the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol

import structlog

from playhouse.errors import ConfigError
from playhouse.generation.completion import Generates

log = structlog.get_logger()

EngineName = Literal["auto", "transformers", "ctranslate2"]
ENGINES: Final[tuple[str, ...]] = ("auto", "transformers", "ctranslate2")


class TextBackend(Generates, Protocol):
    """A loaded text model as the engine and its model cache use it."""

    name: str

    @property
    def memory_bytes(self) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class EngineChoice:
    """How text models are loaded (from ``worker.*`` settings)."""

    engine: str = "auto"
    device: str = "auto"
    quantization: str = "auto"
    cache_dir: Path = Path("var/ct2")
    """Where CTranslate2 conversions are kept."""
    threads: int = 0
    continuous: bool = False
    launch_free: bool = True
    """On CUDA, the transformers engine runs the decode step as CUDA graphs."""
    share_prefixes: bool = True

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"worker.engine must be one of {', '.join(ENGINES)}, "
                              f"not {self.engine!r}")


def check_engine(choice: EngineChoice) -> None:
    """Raise ConfigError at startup when ``engine = "ctranslate2"`` cannot work here."""
    from playhouse.generation import ct2

    if choice.engine == "ctranslate2" and not ct2.installed():
        raise ConfigError(
            "worker.engine is ctranslate2 but the ctranslate2 package is not installed "
            "(pip install 'bot-playhouse[worker]')"
        )


def _device(choice: EngineChoice) -> str:
    from playhouse.generation.text import pick_device

    return pick_device(choice.device)


def _why_not_ctranslate2(choice: EngineChoice, path: str, device: str) -> str | None:
    """Why CTranslate2 cannot serve ``path`` here (None: it may, if the model converts)."""
    from playhouse.generation import ct2

    if choice.continuous:
        return "worker.continuous_batching is on (a transformers feature)"
    if not ct2.installed():
        return "the ctranslate2 package is not installed"
    if device.startswith("cuda") and not ct2.cuda_available():
        return "CTranslate2 finds no CUDA device (its CUDA libraries are missing)"
    if not device.startswith(("cpu", "cuda")):
        return f"CTranslate2 does not run on {device}"
    if not Path(path).is_dir():
        return f"not a local model folder: {path}"
    return None


def load_text_model(path: str, choice: EngineChoice, *, name: str = "") -> TextBackend:
    """Load ``path`` with the engine ``choice`` selects; ModelUnavailable when it cannot."""
    from playhouse.errors import ModelUnavailable
    from playhouse.generation.text import TextModel

    device = _device(choice)
    if choice.engine != "transformers":
        reason = _why_not_ctranslate2(choice, path, device)
        if reason is None:
            from playhouse.generation.convert import CannotConvert
            from playhouse.generation.ct2 import Ct2Model

            try:
                model = Ct2Model.load(
                    path, cache_dir=choice.cache_dir, device=device.split(":")[0],
                    quantization=choice.quantization, threads=choice.threads, name=name,
                    share_prefixes=choice.share_prefixes,
                )
            except CannotConvert as exc:
                if choice.engine == "ctranslate2":
                    raise
                reason = str(exc)
            else:
                log.info("engine.selected", model=path, engine="ctranslate2",
                         quantization=model.quantization, device=device,
                         reason=f"{choice.engine}: installed and the model converts")
                return model
        if choice.engine == "ctranslate2":
            raise ModelUnavailable(f"worker.engine is ctranslate2 but {reason}")
        log.info("engine.selected", model=path, engine="transformers", device=device,
                 reason=f"auto: {reason}")
    else:
        log.info("engine.selected", model=path, engine="transformers", device=device,
                 reason="worker.engine is transformers")
    return TextModel.load(path, device=choice.device, name=name, continuous=choice.continuous,
                          launch_free=choice.launch_free)
