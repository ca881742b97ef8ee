"""The local emulator: Azurite from node_modules on free ports, data kept across restarts in
the same folder, a clean stop, and clear errors when Node.js or Azurite is missing.

Each test runs its own Azurite (the session one from conftest must not be stopped)."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from playhouse.constants import AZURITE_ACCOUNT, QUEUE_INTERACTIVE, TABLE_ROOMS
from playhouse.emulator import Azurite, EmulatorError, free_port
from playhouse.storage import Storage

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "emu"


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def queue_status(host: str, port: int) -> int:
    """HTTP status of an (unauthenticated) list-queues call: any answer proves it serves."""
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", f"/{AZURITE_ACCOUNT}?comp=list")
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Azurite]:
    """An Azurite under ``tmp_path/data``, stopped after the test whatever happens."""
    azurite = Azurite(tmp_path / "data", root=ROOT)
    try:
        yield azurite
    finally:
        azurite.stop()


async def write_rows(conn: str) -> None:
    async with await Storage.connect(conn, namespace=NAMESPACE) as store:
        await store.ensure()
        await store.queues.send(QUEUE_INTERACTIVE, b'{"hello": "queue"}')
        await store.tables.upsert(
            TABLE_ROOMS,
            {"PartitionKey": "room", "RowKey": "lounge", "description": "kept"},
            "room",
        )


async def read_rows(conn: str) -> tuple[list[bytes], str | None]:
    async with await Storage.connect(conn, namespace=NAMESPACE) as store:
        messages = await store.queues.peek(QUEUE_INTERACTIVE)
        entity = await store.tables.get(TABLE_ROOMS, "room", "lounge", "room")
        return messages, None if entity is None else str(entity["description"])


def test_starts_on_free_ports_and_answers(emulator: Azurite) -> None:
    emulator.start()
    assert emulator.running
    blob, queue, table = emulator.ports
    assert len({blob, queue, table}) == 3
    for port in emulator.ports:
        assert listening(emulator.host, port)
        assert f":{port}/{AZURITE_ACCOUNT}" in emulator.connection_string
    assert queue_status(emulator.host, queue) < 500
    assert (emulator.data_dir / "azurite.log").exists()


def test_ports_are_unknown_before_start(tmp_path: Path) -> None:
    with pytest.raises(EmulatorError, match="start"):
        _ = Azurite(tmp_path, root=ROOT).ports


def test_start_twice_keeps_one_process(emulator: Azurite) -> None:
    emulator.start()
    ports = emulator.ports
    emulator.start()
    assert emulator.ports == ports
    assert emulator.running


def test_stop_leaves_nothing_listening(emulator: Azurite) -> None:
    emulator.start()
    ports = emulator.ports
    emulator.stop()
    assert not emulator.running
    for port in ports:
        assert not listening(emulator.host, port)
    emulator.stop()  # a second stop is a no-op


def test_context_manager_starts_and_stops(tmp_path: Path) -> None:
    with Azurite(tmp_path / "data", root=ROOT) as azurite:
        ports = azurite.ports
        assert listening(azurite.host, ports[1])
    assert not azurite.running
    assert not any(listening(azurite.host, port) for port in ports)


async def test_data_survives_a_restart_on_the_same_ports(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Azurite(data, root=ROOT)
    try:
        first.start()
        ports = first.ports
        await write_rows(first.connection_string)
    finally:
        first.stop()

    second = Azurite(data, root=ROOT, ports=ports)
    try:
        second.start()
        messages, description = await read_rows(second.connection_string)
    finally:
        second.stop()
    assert messages == [b'{"hello": "queue"}']
    assert description == "kept"


async def test_data_survives_a_restart_on_new_ports(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Azurite(data, root=ROOT) as first:
        await write_rows(first.connection_string)
        old_ports = first.ports

    second = Azurite(data, root=ROOT)
    try:
        second.start()
        assert second.ports != old_ports
        messages, description = await read_rows(second.connection_string)
    finally:
        second.stop()
    assert messages == [b'{"hello": "queue"}']
    assert description == "kept"


async def test_a_new_folder_starts_empty(tmp_path: Path) -> None:
    with Azurite(tmp_path / "one", root=ROOT) as first:
        await write_rows(first.connection_string)
    with Azurite(tmp_path / "two", root=ROOT) as second:
        async with await Storage.connect(second.connection_string, namespace=NAMESPACE) as store:
            await store.ensure()
            assert await store.queues.peek(QUEUE_INTERACTIVE) == []


def test_missing_node_says_what_to_install(tmp_path: Path) -> None:
    azurite = Azurite(tmp_path / "data", root=ROOT, node="/nonexistent/node")
    with pytest.raises(EmulatorError) as info:
        azurite.start()
    message = str(info.value)
    assert "node" in message.lower()
    assert "Node.js" in message
    assert "make install" in message
    assert not azurite.running


def test_missing_node_modules_says_to_run_npm_ci(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    azurite = Azurite(tmp_path / "data", root=empty)
    with pytest.raises(EmulatorError) as info:
        azurite.start()
    message = str(info.value)
    assert "npm ci" in message
    assert str(empty) in message  # where it looked
    assert not azurite.running


def test_a_busy_port_is_a_clear_error_and_leaves_no_process(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        free = (free_port(), free_port())
        azurite = Azurite(tmp_path / "data", root=ROOT, ports=(free[0], taken, free[1]))
        with pytest.raises(EmulatorError) as info:
            azurite.start(timeout=20)
        assert "log tail" in str(info.value)
        assert not azurite.running
    for port in free:
        assert not listening("127.0.0.1", port)
