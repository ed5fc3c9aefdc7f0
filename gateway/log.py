"""structlog set-up and the canonical per-request log line."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Literal

import msgspec
import structlog

__all__ = ["RequestRecord", "configure_logging"]

LogFormat = Literal["json", "console", "auto"]


def configure_logging(fmt: LogFormat = "auto", level: str = "info") -> None:
    """JSON lines in production, readable output on a terminal. Called once by the CLI."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if console:
        renderer: Any = structlog.dev.ConsoleRenderer()
        factory: Any = structlog.PrintLoggerFactory(sys.stderr)
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(serializer=_json)
        factory = structlog.BytesLoggerFactory(sys.stderr.buffer)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _json(obj: Any, **_: Any) -> bytes:
    return msgspec.json.encode(obj, enc_hook=str)


class RequestRecord:
    """Filled in as a request moves through the gateway; logged once when it ends."""

    __slots__ = ("request_id", "method", "path", "status", "started", "fields")

    def __init__(self, request_id: str, method: str, path: str) -> None:
        self.request_id = request_id
        self.method = method
        self.path = path
        self.status = 0
        self.started = time.perf_counter()
        self.fields: dict[str, Any] = {}

    def line(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "duration_ms": round((time.perf_counter() - self.started) * 1000, 2),
            **self.fields,
        }
