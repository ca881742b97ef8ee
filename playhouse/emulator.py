"""The local Azure Storage emulator (Azurite), started as a child process.

``playhouse run`` without a connection string, and the test suite, use :class:`Azurite`:
it picks free ports, runs ``node_modules/.bin/azurite`` in disk mode under a data
folder (so history survives restarts), waits until the blob, queue and table endpoints
answer, and stops the whole process group on :meth:`Azurite.stop`.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import structlog

from playhouse.constants import AZURITE_ACCOUNT, AZURITE_KEY
from playhouse.errors import PlayhouseError
from playhouse.runner import dies_with_parent

log = structlog.get_logger()

AZURITE_BIN = Path("node_modules") / ".bin" / "azurite"
LOG_NAME = "azurite.log"
KEEP_ALIVE_S = 60
"""Azurite's HTTP keep-alive, above aiohttp's 15 s pool idle time so that a pooled
connection is never closed by the server just as the client reuses it."""
_STOP_GRACE_S = 5.0
_LOG_TAIL_LINES = 15


class EmulatorError(PlayhouseError):
    """Azurite cannot be found, started or reached; the message says what to do."""


def connection_string_for(host: str, blob: int, queue: int, table: int) -> str:
    """The connection string for Azurite's development account on explicit ports."""
    base = f"http://{host}:{{port}}/{AZURITE_ACCOUNT}"
    return (
        "DefaultEndpointsProtocol=http;"
        f"AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={base.format(port=blob)};"
        f"QueueEndpoint={base.format(port=queue)};"
        f"TableEndpoint={base.format(port=table)};"
    )


def find_root(start: Path | None = None) -> Path | None:
    """The nearest folder holding ``node_modules/.bin/azurite``, above ``start``
    (default: the working directory, then this package's folder)."""
    starts = [start] if start is not None else [Path.cwd(), Path(__file__).resolve().parent]
    for origin in starts:
        for folder in (origin, *origin.parents):
            if (folder / AZURITE_BIN).exists():
                return folder
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _answers_http(host: str, port: int) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", f"/{AZURITE_ACCOUNT}?comp=list")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class Azurite:
    """One Azurite process serving blob, queue and table on three ports."""

    def __init__(
        self,
        data_dir: Path,
        *,
        root: Path | None = None,
        host: str = "127.0.0.1",
        ports: tuple[int, int, int] | None = None,
        node: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.root = root
        self.host = host
        self._ports = ports
        self._node = node
        self._proc: subprocess.Popen[bytes] | None = None

    # -- public API ------------------------------------------------------------------

    @property
    def ports(self) -> tuple[int, int, int]:
        """(blob, queue, table) ports; known once started or when given."""
        if self._ports is None:
            raise EmulatorError("Azurite has no ports yet: call start() first")
        return self._ports

    @property
    def connection_string(self) -> str:
        blob, queue, table = self.ports
        return connection_string_for(self.host, blob, queue, table)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    def start(self, timeout: float = 20) -> None:
        """Spawn Azurite and return once every endpoint answers."""
        if self.running:
            return
        node, script = self._locate()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._ports is None:
            self._ports = self._pick_ports()
        blob, queue, table = self._ports
        cmd = [
            node,
            str(script),
            "--location", str(self.data_dir),
            "--blobHost", self.host, "--blobPort", str(blob),
            "--queueHost", self.host, "--queuePort", str(queue),
            "--tableHost", self.host, "--tablePort", str(table),
            "--blobKeepAliveTimeout", str(KEEP_ALIVE_S),
            "--queueKeepAliveTimeout", str(KEEP_ALIVE_S),
            "--tableKeepAliveTimeout", str(KEEP_ALIVE_S),
            "--disableTelemetry", "--skipApiVersionCheck", "--silent",
        ]  # fmt: skip
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                preexec_fn=dies_with_parent(),  # never outlives whoever started it
            )
        log.info("azurite.starting", pid=self._proc.pid, ports=self._ports, dir=str(self.data_dir))
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        log.info("azurite.started", pid=self._proc.pid, ports=self._ports)

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL it after a grace period."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                log.warning("azurite.kill", pid=proc.pid, grace_s=_STOP_GRACE_S)
                self._signal(proc, signal.SIGKILL)
                proc.wait()
        else:
            # The leader is gone; make sure nothing it spawned still holds the ports.
            self._signal(proc, signal.SIGKILL)
        log.info("azurite.stopped", pid=proc.pid, code=proc.returncode)

    def __enter__(self) -> Azurite:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------

    def _locate(self) -> tuple[str, Path]:
        node = self._node or shutil.which("node")
        if node is None or not Path(node).exists():
            raise EmulatorError("node not found: install Node.js 20+ and run `make install`")
        root = self.root if self.root is not None else find_root()
        script = None if root is None else root.resolve() / AZURITE_BIN
        if script is None or not script.exists():
            where = f" (looked in {root / AZURITE_BIN})" if root is not None else ""
            raise EmulatorError(f"Azurite not installed: run `npm ci` (make install){where}")
        return node, script

    def _pick_ports(self) -> tuple[int, int, int]:
        ports: list[int] = []
        while len(ports) < 3:
            port = free_port(self.host)
            if port not in ports:
                ports.append(port)
        return ports[0], ports[1], ports[2]

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        pending = list(self.ports)
        while True:
            code = self._proc.poll()
            if code is not None:
                raise EmulatorError(
                    f"Azurite exited early with code {code}; log tail:\n{self._log_tail()}"
                )
            pending = [p for p in pending if not _accepts(self.host, p)]
            if not pending and _answers_http(self.host, self.ports[1]):
                return
            if time.monotonic() > deadline:
                raise EmulatorError(
                    f"Azurite did not answer on {self.host} ports {self.ports} within "
                    f"{timeout:g} s; log tail:\n{self._log_tail()}"
                )
            time.sleep(0.1)

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(empty log)"

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
