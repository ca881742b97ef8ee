"""``playhouse run``: the whole playhouse on one machine (the embedded default).

Starts Azurite when no connection string is set (data under ``storage.emulator_dir``,
kept between runs; its connection string in ``storage.emulator_file`` for the other
commands), creates the storage resources, builds the offline demo models when a persona's
model cannot be loaded, then supervises the web app (with the scheduler and the results
consumer), a text worker and an image worker as child processes
(:mod:`playhouse.runner`): a child that dies is restarted with back-off; Ctrl-C stops
them all, workers first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import msgspec
import structlog

from playhouse.config import Settings

log = structlog.get_logger()

HELP = "everything on one machine (Azurite when PLAYHOUSE_STORAGE is unset)"

DEMO_TIME_SCALE = 60.0
"""Persona time runs this much faster under `playhouse run` unless configured."""


def arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no arguments


def main(args: argparse.Namespace, settings: Settings) -> int:
    from playhouse.demo.build import build_demo, demo_ready
    from playhouse.emulator import Azurite
    from playhouse.personas import load_cast_strict
    from playhouse.runner import Child, supervise
    from playhouse.storage import Storage

    cast = load_cast_strict(Path(settings.personas_dir))
    Path(settings.var_dir).mkdir(parents=True, exist_ok=True)
    emulator: Azurite | None = None
    storage_settings = settings.storage
    conn_file = Path(storage_settings.emulator_file)
    if not storage_settings.connection_string:
        emulator = Azurite(Path(storage_settings.emulator_dir))
        emulator.start()
        conn_file.parent.mkdir(parents=True, exist_ok=True)
        conn_file.write_text(emulator.connection_string, encoding="utf-8")
        storage_settings = msgspec.structs.replace(
            storage_settings, connection_string=emulator.connection_string
        )
        log.info("emulator.running", ports=list(emulator.ports),
                 data=storage_settings.emulator_dir)
    try:
        async def prepare() -> None:
            async with Storage.open(storage_settings):
                pass

        asyncio.run(prepare())
        missing = demo_ready(Path(settings.models_dir), cast)
        if missing:
            log.info("demo.building", personas=missing,
                     reason="persona models cannot be loaded offline; building local demo "
                            "models")
            build_demo(Path(settings.models_dir), cast, names=missing)
        env = {**os.environ, "PLAYHOUSE_STORAGE": str(storage_settings.connection_string)}
        if settings.scheduler.time_scale == 1.0:
            # The embedded default is a demo: a persona's day passes in 24 minutes, so
            # the rooms come alive within minutes. Set scheduler.time_scale to change it.
            env["PLAYHOUSE_SCHEDULER_TIME_SCALE"] = str(DEMO_TIME_SCALE)
            log.info("scheduler.demo_time", time_scale=DEMO_TIME_SCALE)
        exe = [sys.executable, "-m", "playhouse"]
        children = [
            Child("web", [*exe, "web"]),
            Child("worker-text", [*exe, "worker", "--kind", "text"]),
            Child("worker-image", [*exe, "worker", "--kind", "image"]),
        ]
        return supervise(children, env, f"http://{settings.web.host}:{settings.web.port}")
    finally:
        if emulator is not None:
            conn_file.unlink(missing_ok=True)
            emulator.stop()
            log.info("emulator.stopped")
