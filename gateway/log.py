"""structlog set-up and the canonical per-request log line.

Every line goes through one pipeline: the gateway's own structlog events and the standard-library records of
uvicorn, watchfiles, httpx and Python warnings are rendered by the same structlog processors, so with
`--log-format json` every line on stderr is one JSON object with `event`, `level` and `timestamp` (records from
other libraries add `logger`, the name they were logged under).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Literal

import msgspec
import structlog

__all__ = ["RequestRecord", "configure_logging"]

LogFormat = Literal["json", "console", "auto"]

# Libraries whose loggers may carry handlers of their own (uvicorn adds some when given a log config):
# they are cleared so that every record reaches the one root handler.
LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "watchfiles", "watchfiles.main", "py.warnings")


def configure_logging(fmt: LogFormat = "auto", level: str = "info") -> None:
    """JSON lines in production, readable output on a terminal. Called once by the CLI, before uvicorn starts."""
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    rendering: list[Any] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if console:
        rendering.append(structlog.dev.ConsoleRenderer())
    else:
        rendering += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(serializer=_json)]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],  # records logged by other libraries
        processors=rendering,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.captureWarnings(True)  # warnings.warn(...) becomes a record of "py.warnings", rendered like the rest
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def _json(obj: Any, **_: Any) -> str:
    return msgspec.json.encode(obj, enc_hook=str).decode()


class RequestRecord:
    """Filled in as a request moves through the gateway; logged once when it ends."""

    __slots__ = ("fields", "method", "path", "request_id", "started", "status")

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
