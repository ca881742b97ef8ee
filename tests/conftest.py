"""Shared fixtures: one Azurite for the session, a fresh storage namespace per test.

Torch runs on one thread and nothing reaches a model hub (set before any test imports
torch or transformers): the machine is shared and offline.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("WANDB_MODE", "disabled")

import itertools
import shutil
import socket as sockets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from playhouse.emulator import Azurite, free_port
from playhouse.storage import Storage

ROOT = Path(__file__).resolve().parent.parent
_namespaces = itertools.count(1)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """A real Azurite on free ports, data in a temporary folder, stopped at the end."""
    emulator = Azurite(tmp_path_factory.mktemp("azurite"), root=ROOT)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def connection_string(azurite: Azurite) -> str:
    return azurite.connection_string


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo models for the shipped cast (tokenizer, tiny GPT-2s, tiny diffusion pipeline),
    trained for a short budget: enough to close tags most of the time, not to be witty."""
    from playhouse.demo.build import build_demo
    from playhouse.personas import load_cast_strict

    folder = tmp_path_factory.mktemp("models")
    build_demo(folder, load_cast_strict(ROOT / "personas"), seed=7, budget_s=20, progress=False)
    return folder


@pytest_asyncio.fixture
async def storage(connection_string: str) -> AsyncIterator[Storage]:
    """Storage under a namespace no other test uses, with every resource created."""
    ns = f"t{os.getpid() % 10000}n{next(_namespaces)}"
    store = await Storage.connect(connection_string, namespace=ns)
    await store.ensure()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server (Debian's) on a free port, for the fan-out tests."""
    exe = shutil.which("redis-server")
    assert exe, "redis-server is not installed (make install-system)"
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with sockets.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
