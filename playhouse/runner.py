"""Supervising child processes: start them, restart the ones that die, stop them together.

What ``playhouse run`` (:mod:`playhouse.commands.run`) uses to keep the web app and the
workers up on one machine. Every child dies with its supervisor: it is started with the
kernel's parent-death signal (SIGTERM), so a supervisor killed with SIGKILL leaves no web
process, worker or emulator behind holding a port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger()

STOP_GRACE_S = 20.0
"""How long a child may take to stop after SIGTERM before it is killed."""

_PR_SET_PDEATHSIG = 1


def dies_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGTERM when its parent dies (Linux;
    None elsewhere). The parent's pid is taken now: a parent that died before the child
    could ask is noticed too."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def arrange() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # gone already, before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return arrange


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
        self.proc = subprocess.Popen(self.argv, env=env, start_new_session=True,
                                     preexec_fn=dies_with_parent())
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


def supervise(children: list[Child], env: dict[str, str], url: str) -> int:
    """Run ``children`` until SIGINT/SIGTERM, restarting any that dies (with back-off),
    then stop the workers together and the web app after them; 0 when all stopped
    cleanly."""
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    for child in children:
        child.start(env)
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
