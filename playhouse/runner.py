"""``playhouse run``: the whole playhouse on one machine.

Starts Azurite when no connection string is set (data under ``var/azurite``, kept
between runs), creates the storage resources, builds the offline demo models when a
persona's model cannot be loaded, then supervises the web app (with the scheduler and
the results consumer), a text worker and an image worker as child processes: a child
that dies is restarted with back-off; Ctrl-C stops them all, workers first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from playhouse.config import Settings
from playhouse.errors import PlayhouseError

if TYPE_CHECKING:
    from playhouse.personas import Cast

log = structlog.get_logger()

DEMO_TIME_SCALE = 60.0
"""Persona time runs this much faster under `playhouse run` unless configured."""

STOP_GRACE_S = 20.0
"""How long a child may take to stop after SIGTERM before it is killed."""

CONNECTION_FILE = "storage.conn"
"""Under var/: the emulator's connection string while `playhouse run` is up."""


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    backoff_s: float = 1.0
    history: list[int] = field(default_factory=list)

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(self.argv, env=env, start_new_session=True)
        self.started_at = time.monotonic()
        log.info("process.started", name=self.name, pid=self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        """SIGTERM its process group, if it still runs."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)

    def reap(self, deadline: float, grace_s: float) -> int | None:
        """Wait for it until ``deadline`` (monotonic), then SIGKILL; the exit code (None
        when it never ran). A child that exited by itself keeps its own code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            try:
                self.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("process.kill", name=self.name, pid=self.proc.pid, grace_s=grace_s)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            log.info("process.stopped", name=self.name, code=self.proc.returncode)
        return self.proc.returncode



def stop_together(
    children: Sequence[Child], grace_s: float = STOP_GRACE_S
) -> dict[str, int | None]:
    """Stop ``children`` at once: all get SIGTERM, then share one ``grace_s`` before
    SIGKILL (one after the other, a slow child would delay the next one's signal)."""
    for child in children:
        child.terminate()
    deadline = time.monotonic() + grace_s
    return {child.name: child.reap(deadline, grace_s) for child in children}


def local_connection_string(settings: Settings) -> str | None:
    """The connection string of a running `playhouse run` emulator, if any."""
    path = Path(settings.var_dir) / CONNECTION_FILE
    if path.is_file():
        return path.read_text(encoding="utf-8").strip() or None
    return None


def resolve_connection_string(settings: Settings) -> str:
    """PLAYHOUSE_STORAGE, else the local emulator's; a clear error when neither."""
    conn = settings.storage.connection_string or local_connection_string(settings)
    if not conn:
        raise PlayhouseError(
            "no storage: set PLAYHOUSE_STORAGE to an Azure Storage connection string, "
            "or start `playhouse run` (it runs the local emulator)"
        )
    return conn


def run_all(settings: Settings) -> int:
    from playhouse.emulator import Azurite
    from playhouse.personas import load_cast_strict

    cast = load_cast_strict(Path(settings.personas_dir))
    var = Path(settings.var_dir)
    var.mkdir(parents=True, exist_ok=True)
    emulator: Azurite | None = None
    conn = settings.storage.connection_string
    conn_file = var / CONNECTION_FILE
    if not conn:
        emulator = Azurite(Path(settings.storage.emulator_dir))
        emulator.start()
        conn = emulator.connection_string
        conn_file.write_text(conn, encoding="utf-8")
        log.info("emulator.running", ports=list(emulator.ports),
                 data=settings.storage.emulator_dir)
    try:
        asyncio.run(_prepare_storage(conn, settings))
        _ensure_demo_models(settings, cast)
        env = {**os.environ, "PLAYHOUSE_STORAGE": conn}
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
        return _supervise(children, env, settings)
    finally:
        if emulator is not None:
            conn_file.unlink(missing_ok=True)
            emulator.stop()
            log.info("emulator.stopped")


async def _prepare_storage(conn: str, settings: Settings) -> None:
    from playhouse.storage import Storage

    storage = await Storage.connect(
        conn, timeout_s=settings.storage.timeout_s, namespace=settings.storage.namespace
    )
    try:
        await storage.ensure()
    finally:
        await storage.close()


def _ensure_demo_models(settings: Settings, cast: Cast) -> None:
    from playhouse.generation.demo import build_demo, demo_ready

    models_dir = Path(settings.models_dir)
    missing = demo_ready(models_dir, cast)
    if not missing:
        return
    log.info("demo.building", personas=missing,
             reason="persona models cannot be loaded offline; building local demo models")
    build_demo(models_dir, cast, names=missing)


def _supervise(children: list[Child], env: dict[str, str], settings: Settings) -> int:
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    for child in children:
        child.start(env)
    url = f"http://{settings.web.host}:{settings.web.port}"
    log.info("playhouse.running", url=url, processes=[c.name for c in children])
    sys.stderr.write(f"\n  playhouse is running at {url}  (Ctrl-C stops it)\n\n")
    try:
        while not stopping:
            time.sleep(0.5)
            for child in children:
                if stopping or child.alive() or child.proc is None:
                    continue
                code = child.proc.returncode
                uptime = time.monotonic() - child.started_at
                child.backoff_s = 1.0 if uptime > 60 else min(child.backoff_s * 2, 30.0)
                log.warning("process.exited", name=child.name, code=code,
                            restart_in=child.backoff_s)
                time.sleep(child.backoff_s)
                if stopping:
                    break
                child.restarts += 1
                child.start(env)
    finally:
        # Workers first (the results they write while stopping still reach the web
        # app's consumer), then the web app.
        codes = stop_together([c for c in children if c.name != "web"])
        codes |= stop_together([c for c in children if c.name == "web"])
    unclean = {name: code for name, code in codes.items() if code not in (0, None)}
    if unclean:
        log.warning("playhouse.stopped", clean=False, codes=unclean)
        return 1
    log.info("playhouse.stopped", clean=True)
    return 0
