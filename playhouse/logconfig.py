"""structlog set-up: JSON lines when not on a TTY, pretty console output on one.

Called once by the CLI before heavy imports, so import failures are logged too.
Request and job ids are bound with ``structlog.contextvars`` by the code that handles
them and cleared afterwards; every line of that request or job then carries the id.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog

from playhouse.config import mask, redact

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}
_SECRET_KEYS = ("connection_string", "password", "secret", "account_key", "token")


def _mask_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask a field named like a secret whole, and secret parts (``AccountKey=``, a SAS
    ``sig=``, a URL password ...) of any other text, the formatted exception included."""
    for key, value in event.items():
        if not isinstance(value, str):
            continue
        if any(s in key.lower() for s in _SECRET_KEYS):
            event[key] = mask(value) if key != "password" else "***"
        else:
            event[key] = redact(value)
    return event


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library's logging to one format."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, _mask_secrets, renderer]
        if use_json
        else [*shared, _mask_secrets, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _mask_secrets,
                renderer,
            ],
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                *shared,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    for noisy in ("azure", "urllib3", "httpx", "uvicorn.access", "aiohttp.access", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def read_json_log(path: Path) -> list[dict[str, Any]]:
    """The events of a JSON log (``log.format = "json"``), in order; lines that are not
    JSON objects (a child's stray output, a line cut by a crash) are skipped."""
    events: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events
