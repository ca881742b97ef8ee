"""What the benchmarks that drive a running site share: child processes, a logged-in
websocket, percentiles, the demo models.

Used by ``bench/latency.py`` and ``bench/polling.py``: both start Azurite, the real web app
(``playhouse web``) and a real worker as child processes and talk to the web app as a
browser does.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection

from playhouse.logconfig import read_json_log
from playhouse.personas import Cast
from playhouse.web.protocol import decode_server

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def events(self) -> list[dict[str, Any]]:
        return read_json_log(self.log)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def spawn(name: str, argv: list[str], env: dict[str, str], folder: Path,
          cwd: Path = ROOT) -> Child:
    """``playhouse ARGV`` as a child process logging to ``folder/NAME.log``."""
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([PYTHON, "-m", "playhouse", "--config", "/dev/null", *argv],
                                cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Child(name, proc, log)


def ensure_models(models: Path, cast: Cast) -> None:
    from playhouse.demo.build import build_demo, demo_ready

    missing = demo_ready(models, cast)
    if missing:
        print(f"building demo models for {', '.join(missing)} under {models} ...", flush=True)
        build_demo(models, cast, names=missing, progress=False)


class Socket:
    """A logged-in websocket that records when each event arrived."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[tuple[float, Any]] = []

    async def send(self, message: dict[str, Any]) -> float:
        sent = time.perf_counter()
        await self.ws.send(msgspec.json.encode(message).decode())
        return sent

    async def wait(self, tag: str, match: Any = lambda e: True, within: float = 120.0,
                   ) -> tuple[float, Any]:
        deadline = time.perf_counter() + within
        while True:
            for item in self.events:
                if _tag(item[1]) == tag and match(item[1]):
                    self.events.remove(item)
                    return item
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"no {tag} event within {within} s")
            with contextlib.suppress(TimeoutError):
                frame = await asyncio.wait_for(self.ws.recv(), remaining)
                self.events.append((time.perf_counter(), decode_server(frame)))
            # Drop what nothing waits for (room activity, presence): the list stays small.
            self.events = [e for e in self.events
                           if _tag(e[1]) not in _NOISE or _tag(e[1]) == tag][-500:]


_NOISE = ("thread", "presence", "comment", "history", "subscribed", "pong")


def _tag(event: Any) -> str:
    return str(type(event).__struct_config__.tag)


async def register(client: httpx.AsyncClient, name: str) -> None:
    page = await client.get("/register")
    match = _CSRF.search(page.text)
    assert match, "no CSRF token on /register"
    answer = await client.post("/register", data={
        "username": name, "password": PASSWORD, "password2": PASSWORD,
        "_csrf_token": match.group(1)})
    assert answer.status_code in (302, 303), answer.text[:300]


async def wait_up(base: str, web: Child, within: float = 90.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base) as client:
        while True:
            if web.proc.poll() is not None:
                raise SystemExit(f"the web app exited: see {web.log}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/api/rooms")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise SystemExit(f"the web app did not answer within {within} s")
            await asyncio.sleep(0.3)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
