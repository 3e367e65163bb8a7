"""Errors in the OpenAI API's shape, so OpenAI clients show them as they would OpenAI's."""

from __future__ import annotations

from fastapi.responses import JSONResponse


def error_response(status: int, message: str, kind: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"message": message, "type": kind, "code": code}}, headers=headers
    )
