"""`playhouse run` stops its children together: one slow child does not hold the others'
SIGTERM back, and one that ignores SIGTERM is killed after the grace."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from playhouse.runner import Child, stop_together

# Ignores SIGTERM; exits 0 by itself once the other child has had its SIGTERM.
PATIENT = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1], "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.02)
"""

# Writes a file when it gets SIGTERM, then exits 0.
PROMPT = """
import signal, sys, time
def on_term(*_):
    open(sys.argv[2], "w").close()
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open(sys.argv[1], "w").close()
while True:
    time.sleep(0.02)
"""

# Ignores SIGTERM for good.
DEAF = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1], "w").close()
while True:
    time.sleep(0.02)
"""


def _start(tmp_path: Path, name: str, code: str, *args: str) -> Child:
    ready = tmp_path / f"{name}.ready"
    child = Child(name, [sys.executable, "-c", code, str(ready), *args])
    child.start(dict(os.environ))
    for _ in range(500):
        if ready.exists():
            return child
        time.sleep(0.02)
    raise AssertionError(f"{name} never started")


def test_every_child_gets_sigterm_before_any_is_waited_for(tmp_path: Path) -> None:
    termed = str(tmp_path / "prompt.termed")
    # The patient child comes first: stopped one after the other, it would wait out the
    # whole grace (the prompt child's SIGTERM not sent yet) and be killed.
    patient = _start(tmp_path, "patient", PATIENT, termed)
    prompt = _start(tmp_path, "prompt", PROMPT, termed)
    codes = stop_together([patient, prompt], grace_s=30.0)
    assert codes == {"patient": 0, "prompt": 0}


def test_a_child_deaf_to_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    deaf = _start(tmp_path, "deaf", DEAF)
    assert stop_together([deaf], grace_s=0.5) == {"deaf": -9}
    assert not deaf.alive()


def test_a_child_that_never_ran_or_already_exited_keeps_its_code(tmp_path: Path) -> None:
    never = Child("never", [sys.executable, "-c", "pass"])
    gone = Child("gone", [sys.executable, "-c", "raise SystemExit(3)"])
    gone.start(dict(os.environ))
    assert gone.proc is not None
    gone.proc.wait(30)
    assert stop_together([never, gone], grace_s=1.0) == {"never": None, "gone": 3}
