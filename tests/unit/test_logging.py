"""Logging: one JSON object per line off a TTY, bound ids on every line, secrets masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from playhouse import logconfig

ACCOUNT_KEY = "bG9nZ2VkLWFjY291bnQta2V5LXRoYXQtbXVzdC1ub3QtbGVhaw=="
CONN = (
    "DefaultEndpointsProtocol=https;AccountName=acct;"
    f"AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net"
)
SAS_SIGNATURE = "c2lnbmF0dXJlLXRoYXQtbXVzdC1ub3QtbGVhaw%3D%3D"
PASSWORD = "correct-horse-battery-staple"


class Pipe(io.StringIO):
    """A stream that is not a terminal (what a container or a pipe gives the process)."""

    def isatty(self) -> bool:
        return False


@pytest.fixture
def stream() -> Iterator[Pipe]:
    """Configure logging into a fresh stream; put structlog and the root logger back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = Pipe()
    logconfig.configure("debug", "auto", stream=out)
    try:
        yield out
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


def lines(out: Pipe) -> list[dict[str, Any]]:
    text = out.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_one_json_object_per_line(stream: Pipe) -> None:
    log = structlog.get_logger()
    log.info("reply.posted", persona="CoopBot", thread="t1")
    log.warning("batch.generated", size=3)
    first, second = lines(stream)
    assert first["event"] == "reply.posted"
    assert first["level"] == "info"
    assert first["persona"] == "CoopBot"
    assert second["event"] == "batch.generated"
    assert second["level"] == "warning"
    assert second["size"] == 3
    for line in (first, second):
        stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
        assert stamp.utcoffset() is not None
        assert stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_multi_line_text_stays_on_one_line(stream: Pipe) -> None:
    structlog.get_logger().info("comment.rejected", text="first\nsecond\nthird")
    (line,) = lines(stream)
    assert line["text"] == "first\nsecond\nthird"


def test_level_filters_lower_levels() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = Pipe()
    logconfig.configure("warning", "json", stream=out)
    try:
        log = structlog.get_logger()
        log.info("quiet.event")
        log.error("loud.event")
        assert [line["event"] for line in lines(out)] == ["loud.event"]
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


def test_bound_request_id_appears_on_every_line_until_cleared(stream: Pipe) -> None:
    log = structlog.get_logger()
    structlog.contextvars.bind_contextvars(request_id="req-123")
    log.info("job.started")
    log.info("job.finished", elapsed_ms=5)
    structlog.contextvars.clear_contextvars()
    log.info("poll.idle")
    started, finished, idle = lines(stream)
    assert started["request_id"] == "req-123"
    assert finished["request_id"] == "req-123"
    assert "request_id" not in idle


def test_standard_library_records_are_json_too(stream: Pipe) -> None:
    structlog.contextvars.bind_contextvars(request_id="req-456")
    logging.getLogger("playhouse.test").warning("plain %s record", "stdlib")
    (line,) = lines(stream)
    assert line["event"] == "plain stdlib record"
    assert line["level"] == "warning"
    assert line["request_id"] == "req-456"
    assert "timestamp" in line


def test_connection_string_in_a_field_is_masked(stream: Pipe) -> None:
    structlog.get_logger().info("storage.connecting", connection_string=CONN, target=CONN)
    (line,) = lines(stream)
    text = stream.getvalue()
    assert ACCOUNT_KEY not in text
    assert "AccountKey=***" in line["connection_string"]
    assert "AccountName=acct" in line["target"]


def test_connection_string_inside_a_message_is_masked(stream: Pipe) -> None:
    structlog.get_logger().error(f"cannot parse {CONN}")
    logging.getLogger("azure.core").error("request with %s failed", CONN)
    assert ACCOUNT_KEY not in stream.getvalue()
    assert len(lines(stream)) == 2


def test_sas_signature_in_a_field_is_masked(stream: Pipe) -> None:
    url = f"https://acct.blob.core.windows.net/images/a.png?sv=2022-11-02&sig={SAS_SIGNATURE}"
    structlog.get_logger().info("image.link", url=url)
    assert SAS_SIGNATURE not in stream.getvalue()


@pytest.mark.parametrize("key", ["password", "new_password", "secret_key", "token"])
def test_secret_fields_are_masked(stream: Pipe, key: str) -> None:
    structlog.get_logger().info("user.login", user="alice", **{key: PASSWORD})
    (line,) = lines(stream)
    assert PASSWORD not in stream.getvalue()
    assert "***" in line[key]
    assert line["user"] == "alice"


def test_secret_in_an_exception_is_masked(stream: Pipe) -> None:
    log = structlog.get_logger()
    try:
        raise ValueError(f"bad connection string {CONN}")
    except ValueError:
        log.exception("storage.failed")
    (line,) = lines(stream)
    assert "ValueError" in line["exception"]
    assert ACCOUNT_KEY not in stream.getvalue()


def test_secret_in_a_standard_library_exception_is_masked(stream: Pipe) -> None:
    try:
        raise RuntimeError(f"password={PASSWORD}")
    except RuntimeError:
        logging.getLogger("aiohttp").exception("client error")
    (line,) = lines(stream)
    assert "RuntimeError" in line["exception"]
    assert PASSWORD not in stream.getvalue()


def test_a_json_log_reads_back_as_events_skipping_other_lines(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text(
        '{"event": "a", "n": 1}\n'
        "Loading weights: 100%\n"  # a child's stray output
        '["not", "an", "event"]\n'
        '{"event": "b"}\n'
        '{"event": "cut by a cra',  # the last line of a killed process
        encoding="utf-8",
    )
    assert logconfig.read_json_log(log) == [{"event": "a", "n": 1}, {"event": "b"}]
