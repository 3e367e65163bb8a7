"""Errors in the OpenAI API's shape, so OpenAI clients show them as they would OpenAI's."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse


def _error(message: str, kind: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}


def error_response(
    status: int, message: str, kind: str, code: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(status_code=status, content=_error(message, kind, code), headers=headers)


def stream_broke_event() -> bytes:
    """The last event of a stream whose source broke after the status was sent: in place of
    [DONE], an error that OpenAI's clients raise rather than take the reply as whole."""
    error = _error("the model stopped answering; the reply is incomplete", "api_error", "upstream_aborted")
    # The blank lines first end an event the break may have cut in half.
    return f"\n\ndata: {json.dumps(error)}\n\n".encode()
