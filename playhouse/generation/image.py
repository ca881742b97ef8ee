"""A Stable Diffusion pipeline, loaded once, that turns prompts into PNG bytes. No I/O.

The safety checker stays on whenever the model ships one: an image it flags is not
published; the request fails visibly with the reason instead.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from playhouse.errors import ModelUnavailable
from playhouse.generation.interrupt import image_callback, raise_if_aborted
from playhouse.generation.text import pick_device

if TYPE_CHECKING:
    import threading

    from playhouse.personas import Persona

log = structlog.get_logger()


@dataclass(frozen=True)
class DiffusionParams:
    steps: int = 25
    guidance: float = 7.5
    width: int = 512
    height: int = 512
    negative_prompt: str = ""

    @classmethod
    def from_persona(cls, persona: Persona) -> DiffusionParams:
        p = persona.image
        if p is None:
            return cls()
        return cls(p.steps, p.guidance, p.width, p.height, p.negative_prompt)


@dataclass(frozen=True)
class ImageOutput:
    png: bytes | None
    """None when the safety checker withheld the image."""
    flagged: bool = False


class ImageModel:
    def __init__(self, pipe: Any, *, name: str, device: str) -> None:
        self.pipe = pipe
        self.name = name
        self.device = device

    @classmethod
    def load(cls, path_or_id: str, *, device: str = "auto", name: str = "") -> ImageModel:
        import torch
        from diffusers import AutoPipelineForText2Image

        dev = pick_device(device)
        local = Path(path_or_id)
        if (path_or_id.startswith((".", "/")) or local.exists()) and not local.is_dir():
            raise ModelUnavailable(f"model path does not exist: {path_or_id}")
        dtype = torch.float16 if dev.startswith("cuda") else torch.float32
        try:
            # The safety checker loads with the model when the model has one: never
            # pass safety_checker=None here.
            pipe = AutoPipelineForText2Image.from_pretrained(path_or_id, torch_dtype=dtype)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelUnavailable(f"cannot load image model {path_or_id!r}: {exc}") from exc
        pipe.to(dev)
        pipe.set_progress_bar_config(disable=True)
        has_checker = getattr(pipe, "safety_checker", None) is not None
        log.info("model.loaded", model=path_or_id, device=dev, kind="image",
                 safety_checker=has_checker)
        return cls(pipe, name=name or path_or_id, device=dev)

    @property
    def has_safety_checker(self) -> bool:
        return getattr(self.pipe, "safety_checker", None) is not None

    @property
    def memory_bytes(self) -> int:
        total = 0
        for part in ("unet", "vae", "text_encoder", "safety_checker"):
            module = getattr(self.pipe, part, None)
            if module is not None:
                total += sum(p.numel() * p.element_size() for p in module.parameters())
        return total

    def generate(
        self,
        prompts: Sequence[str],
        params: DiffusionParams,
        *,
        seed: int | None = None,
        abort: threading.Event | None = None,
    ) -> list[ImageOutput]:
        """One image per prompt. Once ``abort`` is set, the next denoising step raises
        :class:`~playhouse.errors.Interrupted`."""
        import torch

        if not prompts:
            return []
        raise_if_aborted(abort)
        generator = None
        if seed is not None:
            generator = torch.Generator(device="cpu").manual_seed(seed)
        with torch.inference_mode():
            result = self.pipe(
                prompt=list(prompts),
                negative_prompt=[params.negative_prompt] * len(prompts)
                if params.negative_prompt
                else None,
                num_inference_steps=params.steps,
                guidance_scale=params.guidance,
                width=params.width,
                height=params.height,
                generator=generator,
                callback_on_step_end=None if abort is None else image_callback(abort),
            )
        flags = getattr(result, "nsfw_content_detected", None) or [False] * len(prompts)
        outputs: list[ImageOutput] = []
        for image, flagged in zip(result.images, flags, strict=True):
            if flagged:
                outputs.append(ImageOutput(None, flagged=True))
                continue
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            outputs.append(ImageOutput(buf.getvalue()))
        return outputs

    def close(self) -> None:
        self.pipe = None
