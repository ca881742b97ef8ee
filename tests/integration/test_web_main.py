"""``playhouse web`` for real: a child process on a port, seeded rooms, a clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from playhouse.commands.web import load_secret
from playhouse.config import Settings, WebSettings
from playhouse.emulator import free_port
from playhouse.errors import ConfigError
from tests.integration.web_support import ROOT

pytestmark = pytest.mark.integration


def test_playhouse_web_serves_the_seeded_site(connection_string: str, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PLAYHOUSE_STORAGE": connection_string,
           "PLAYHOUSE_VAR_DIR": str(tmp_path / "var"), "PLAYHOUSE_LOG_FORMAT": "json"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "playhouse", "web", "--port", str(port)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", headers={"accept": "text/html"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "playhouse web did not answer"
                time.sleep(0.2)
        assert page.status_code == 200 and "r/CoopAndPabloPlayHouse" in page.text
        rooms = httpx.get(f"http://127.0.0.1:{port}/api/rooms").json()
        front = next(r for r in rooms if r["name"] == "CoopAndPabloPlayHouse")
        assert front["default_bot"] == "ImageBot"
        assert httpx.get(f"http://127.0.0.1:{port}/static/live.js").status_code == 200
        secret = tmp_path / "var" / "web.secret"
        assert secret.is_file() and secret.stat().st_mode & 0o077 == 0
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) in (0, 130)  # 130: a clean stop on Ctrl-C, as the CLI reports it


def test_secret_key_setting(tmp_path: Path) -> None:
    short = Settings(web=WebSettings(secret_key="too short"), var_dir=str(tmp_path))
    with pytest.raises(ConfigError):
        load_secret(short)
    given = Settings(web=WebSettings(secret_key="k" * 40), var_dir=str(tmp_path))
    assert load_secret(given) == b"k" * 40
    made = Settings(var_dir=str(tmp_path))
    assert load_secret(made) == load_secret(made) and len(load_secret(made)) >= 32
