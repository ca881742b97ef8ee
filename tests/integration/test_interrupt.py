"""A stopping worker interrupts a long batch and hands it back (real models, Azurite)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import threading
from pathlib import Path

import pytest
from PIL import Image

from playhouse import ids
from playhouse.config import WorkerSettings
from playhouse.constants import QUEUE_IMAGE, RESULT_QUEUES
from playhouse.errors import Interrupted
from playhouse.generation.engines import ImageEngine, make_engine
from playhouse.generation.image import DiffusionParams, ImageModel
from playhouse.generation.text import SamplingParams, TextModel
from playhouse.generation.worker import Worker
from playhouse.grammar import post_prompt
from playhouse.messages import GenerationRequest, PostContext, decode_request, encode
from playhouse.personas import load_cast_strict
from playhouse.storage import Storage

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class _SetAfter(threading.Event):
    """An abort event that reads as set from its ``n``-th look on: the model is stopped
    part way through, at a step that does not depend on timing."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.looks = 0
        self.n = n

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks >= self.n


def test_text_generation_stops_between_decoding_steps(models_dir: Path) -> None:
    model = TextModel.load(str(models_dir / "demo" / "CoopBot"), device="cpu")
    params = SamplingParams(max_new_tokens=40)
    prompts = [post_prompt("Technology")] * 3
    (first,) = model.generate(prompts[:1], params, stop=(), seed=1)
    assert first  # the control: without an abort the model writes
    abort = _SetAfter(5)
    with pytest.raises(Interrupted):
        model.generate(prompts, params, stop=(), seed=1, abort=abort)
    assert abort.looks == 5  # it looked before the first step, then once a step
    with pytest.raises(Interrupted):
        model.generate(prompts, params, stop=(), seed=1, abort=_SetAfter(1))


def test_image_generation_stops_between_denoising_steps(models_dir: Path) -> None:
    model = ImageModel.load(str(models_dir / "demo" / "ImageBot"), device="cpu")
    abort = _SetAfter(3)
    with pytest.raises(Interrupted):
        model.generate(["a cat"], DiffusionParams(steps=50, width=64, height=64), seed=1,
                       abort=abort)
    assert abort.looks == 3


def test_the_demo_picture_runs_at_the_personas_size(models_dir: Path) -> None:
    """The demo pipeline scales by 8 like Stable Diffusion, so ImageBot's shipped 512x512
    denoises 64x64 latents (with a scale of 2 it took minutes a picture on a CPU)."""
    model = ImageModel.load(str(models_dir / "demo" / "ImageBot"), device="cpu")
    assert model.pipe.vae_scale_factor == 8
    cast = load_cast_strict(Path(__file__).resolve().parents[2] / "personas")
    shipped = DiffusionParams.from_persona(cast.personas["ImageBot"])
    (out,) = model.generate(["a cat"], dataclasses.replace(shipped, steps=1), seed=1)
    assert out.png is not None
    with Image.open(io.BytesIO(out.png)) as image:
        assert image.size == (shipped.width, shipped.height) == (512, 512)


async def test_a_stopping_worker_hands_a_long_batch_back(
    storage: Storage, models_dir: Path, persona_dir: Path
) -> None:
    # 150 denoising steps (the most a persona may ask for) at 128x128: the batch would
    # run on for seconds after stop() if the interruption did not work, and write a result.
    toml = (persona_dir / "imagebot.toml").read_text(encoding="utf-8")
    for old, new in (("steps = 25", "steps = 150"), ("width = 512", "width = 128"),
                     ("height = 512", "height = 128")):
        toml = toml.replace(old, new)
    (persona_dir / "imagebot.toml").write_text(toml, encoding="utf-8")
    cast = load_cast_strict(persona_dir)
    request = GenerationRequest(
        request_id=ids.new_id(), kind="image", persona="ImageBot", room="Art",
        queue=QUEUE_IMAGE, thread_id=ids.new_id(),
        post=PostContext(author="alice", title="a red cat"), image_prompt="a red cat",
    )
    await storage.queues.send(QUEUE_IMAGE, encode(request))
    engine = make_engine("image", models_dir, device="cpu", max_models=1, max_bytes=1 << 30)
    assert isinstance(engine, ImageEngine)
    settings = WorkerSettings(visibility_timeout_s=600, poll_min_s=0.01, poll_max_s=0.05,
                              finish_within_s=0.2)
    worker = Worker(queues=storage.queues, blobs=storage.blobs, cast=cast, engine=engine,
                    settings=settings)
    task = asyncio.create_task(worker.main())
    try:
        for _ in range(1200):  # the model is loaded: the batch is in hand
            if engine.loaded_models():
                break
            await asyncio.sleep(0.1)
        assert engine.loaded_models(), "the image model never loaded"
        worker.stop()
        await asyncio.wait_for(task, timeout=120)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert worker.stats.answered == 0 and worker.stats.failed == 0
    for queue in RESULT_QUEUES:
        assert await storage.queues.receive(queue) == []
    # Back at once (the original was hidden for 600 s), as a fresh message: the
    # interruption did not use up one of its deliveries.
    (back,) = await storage.queues.receive(QUEUE_IMAGE, visibility_timeout=5)
    assert back.dequeue_count == 1
    assert decode_request(back.content).request_id == request.request_id
    assert await storage.queues.depth(QUEUE_IMAGE) == 1  # the original is gone
