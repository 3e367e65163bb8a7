"""Errors in the OpenAI API's shape (``{"error": {"message", "type", "param", "code"}}``), so
OpenAI clients show them as they would OpenAI's. A route or dependency raises ApiError, which
the handler ``install_error_handlers`` adds answers; Starlette's own 404 and 405 take that shape too."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException


def _error(message: str, kind: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class Answered(Exception):
    """An answer given in place of the route's own (an error, an idempotent replay), raised
    from wherever it is found: a dependency, a route, a helper."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class ApiError(Answered):
    """An error answer, in OpenAI's shape. Where it is recorded before it is given (under an
    idempotency key), its ``response`` is used unraised."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        code: str | None,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        error = _error(message, kind, code, param)
        super().__init__(JSONResponse(status_code=status, content=error, headers=headers))
        self.status, self.code = status, code


def unauthorized() -> ApiError:
    """The 401 of both services: the reason is for their log (never the token); the caller
    learns only that it failed."""
    return ApiError(
        401,
        "missing or invalid credentials",
        "authentication_error",
        "invalid_token",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


async def _answered(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Answered)
    return exc.response


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's unknown route (404) and wrong method (405, with its Allow header), worded as OpenAI's."""
    assert isinstance(exc, HTTPException)
    code = {404: "unknown_url", 405: "method_not_allowed"}.get(exc.status_code)
    message = {
        404: f"Invalid URL ({request.method} {request.url.path})",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(exc.status_code, exc.detail)
    return ApiError(exc.status_code, message, "invalid_request_error", code, dict(exc.headers or {})).response


async def _invalid_request(request: Request, exc: Exception) -> Response:
    return ApiError(400, "invalid request", "invalid_request_error", "invalid_request").response


def install_error_handlers(app: FastAPI) -> None:
    """Answered (ApiError), unknown routes and wrong methods, and FastAPI's own validation (400, as OpenAI's)."""
    app.add_exception_handler(Answered, _answered)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)


def stream_broke_event() -> bytes:
    """The last event of a stream whose source broke after the status was sent: in place of
    [DONE], an error that OpenAI's clients raise rather than take the reply as whole."""
    error = _error("the model stopped answering; the reply is incomplete", "api_error", "upstream_aborted")
    # The blank lines first end an event the break may have cut in half.
    return f"\n\ndata: {json.dumps(error)}\n\n".encode()
