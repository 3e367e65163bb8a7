"""Log records as the service tests read them (imported from the test folder)."""

from __future__ import annotations

import logging
from typing import Any


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields ``services.servicekit.logs.event`` put on ``record`` (its ``extra``)."""
    given: dict[str, Any] = record.__dict__["fields"]
    return given
