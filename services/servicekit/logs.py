"""Structured logs on stdout, one JSON object a line, in the shape Cloud Logging parses.

Cloud Logging maps ``severity`` and ``message`` and keeps the rest as jsonPayload
(cloud.google.com/logging/docs/structured-logging). Callers log ids, sizes, codes
and durations; never tokens, prompts or completions.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "logger": record.name,
        }
        if rid := request_id.get():
            entry["request_id"] = rid
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Uvicorn's access log would repeat each request without the request id.
    logging.getLogger("uvicorn.access").disabled = True


def event(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: object) -> None:
    """Log ``message`` with structured ``fields`` (ids, codes, sizes; nothing a user wrote)."""
    logger.log(level, message, extra={"fields": fields})
