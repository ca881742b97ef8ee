"""``playhouse worker --kind text|image``: serve one kind of generation request.

Composes the worker's parts — storage, the cast, the engine for its kind, the heartbeat —
and runs it until SIGTERM. The exit code is the worker's: 0 after a clean stop, non-zero
after a fatal device error (so its supervisor restarts it).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import msgspec

from playhouse.config import Settings, WorkerSettings

HELP = "a generation worker"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=("text", "image"), required=True)
    parser.add_argument("--max-models", type=int)
    parser.add_argument("--max-memory", type=int, help="MiB of models kept loaded")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--engine", choices=("auto", "transformers", "ctranslate2"),
                        help="text generation engine (default: worker.engine, auto)")


def main(args: argparse.Namespace, settings: Settings) -> int:
    worker = settings.worker
    if args.engine is not None:
        worker = msgspec.structs.replace(worker, engine=args.engine)
    if args.max_models is not None:
        worker = msgspec.structs.replace(worker, max_models=args.max_models)
    if args.max_memory is not None:
        worker = msgspec.structs.replace(worker, max_memory_mb=args.max_memory)
    if worker.threads > 0:
        import torch

        torch.set_num_threads(worker.threads)
    return asyncio.run(serve_worker(settings, worker, args.kind, burst=args.burst))


async def serve_worker(settings: Settings, ws: WorkerSettings, kind: str, *,
                       burst: bool) -> int:
    from playhouse.generation.engines import make_engine
    from playhouse.generation.heartbeat import Heartbeat
    from playhouse.generation.worker import Worker
    from playhouse.personas import load_cast_strict
    from playhouse.storage import Storage

    cast = load_cast_strict(Path(settings.personas_dir))
    async with Storage.open(settings.storage) as storage:
        engine = make_engine(
            kind, Path(settings.models_dir), device=ws.device, max_models=ws.max_models,
            max_bytes=ws.max_memory_mb << 20, continuous_batching=ws.continuous_batching,
            engine=ws.engine, quantization=ws.quantization,
            convert_dir=Path(ws.convert_dir) if ws.convert_dir else None, threads=ws.threads,
            launch_free=ws.launch_free, share_prefixes=ws.share_prefixes,
        )
        worker = Worker(
            queues=storage.queues, blobs=storage.blobs, cast=cast, engine=engine, settings=ws,
            burst=burst,
            reporter=Heartbeat(storage.workers, storage.metrics, kind=kind,
                               interval_s=ws.heartbeat_s),
            progress=storage.progress,
        )
        try:
            return await worker.async_run()
        finally:
            engine.close()
