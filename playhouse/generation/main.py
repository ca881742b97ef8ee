"""``playhouse worker``: connect, load the cast, serve one kind of request until SIGTERM."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import structlog

from playhouse.config import Settings

log = structlog.get_logger()


def run_worker(
    settings: Settings,
    *,
    kind: str,
    max_models: int | None = None,
    max_memory_mb: int | None = None,
    burst: bool = False,
    engine: str | None = None,
) -> int:
    worker_settings = settings.worker
    if engine is not None:
        worker_settings = msgspec.structs.replace(worker_settings, engine=engine)
    if max_models is not None:
        worker_settings = msgspec.structs.replace(worker_settings, max_models=max_models)
    if max_memory_mb is not None:
        worker_settings = msgspec.structs.replace(worker_settings, max_memory_mb=max_memory_mb)
    if worker_settings.threads > 0:
        import torch

        torch.set_num_threads(worker_settings.threads)
    return asyncio.run(_main(settings, worker_settings, kind, burst))


async def _main(settings: Settings, ws: object, kind: str, burst: bool) -> int:
    from playhouse.config import WorkerSettings
    from playhouse.generation.engines import make_engine
    from playhouse.generation.heartbeat import Heartbeat
    from playhouse.generation.worker import Worker
    from playhouse.personas import load_cast_strict
    from playhouse.runner import resolve_connection_string
    from playhouse.storage import Storage

    assert isinstance(ws, WorkerSettings)
    cast = load_cast_strict(Path(settings.personas_dir))
    storage = await Storage.connect(
        resolve_connection_string(settings),
        timeout_s=settings.storage.timeout_s,
        namespace=settings.storage.namespace,
    )
    try:
        await storage.ensure()
        engine = make_engine(
            kind,
            Path(settings.models_dir),
            device=ws.device,
            max_models=ws.max_models,
            max_bytes=ws.max_memory_mb << 20,
            continuous_batching=ws.continuous_batching,
            engine=ws.engine,
            quantization=ws.quantization,
            convert_dir=Path(ws.convert_dir) if ws.convert_dir else None,
            threads=ws.threads,
            launch_free=ws.launch_free,
            share_prefixes=ws.share_prefixes,
        )
        worker = Worker(
            queues=storage.queues,
            blobs=storage.blobs,
            cast=cast,
            engine=engine,
            settings=ws,
            burst=burst,
            reporter=Heartbeat(storage.workers, storage.metrics, kind=kind,
                               interval_s=ws.heartbeat_s),
        )
        await worker.async_run()
        engine.close()
    finally:
        await storage.close()
    return 0
