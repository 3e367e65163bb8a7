"""What the gateway's routes depend on: its state, the admitted caller (authenticated, within the
rate limit) and a JSON body read within the size limit. Each raises the ApiError to answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from services.gateway import metrics
from services.gateway.auth import Unauthorized
from services.gateway.batch_input import LineLimits
from services.gateway.ratelimit import LocalRateLimiter, RateLimiter, SharedRateLimiter, retry_after
from services.gateway.settings import GatewaySettings
from services.gateway.uploads import UploadSlots
from services.servicekit import logs
from services.servicekit.chat import field_path
from services.servicekit.errors import ApiError, unauthorized
from services.servicekit.identity import IdTokenSource, NoToken

log = logging.getLogger("gateway")
Body = TypeVar("Body", bound=BaseModel)


@dataclass(frozen=True)
class Gateway:
    """What every request shares (``app.state.gateway``); the HTTP client and the token verifier,
    which live as long as the app runs, are ``app.state.client`` and ``app.state.verifier``."""

    settings: GatewaySettings
    limiter: SharedRateLimiter | LocalRateLimiter
    readers: RateLimiter  # for Reader: this instance's buckets
    identity: IdTokenSource | NoToken
    uploads: UploadSlots
    line_limits: LineLimits

    @property
    def orchestrator(self) -> str:
        return self.settings.orchestrator_url.rstrip("/")


def shared(request: Request) -> Gateway:
    """The gateway's state, for the dependencies below: read from the app, not asked of FastAPI
    as State, which costs a node of its dependency graph (resolved again for every request)."""
    state: Gateway = request.app.state.gateway
    return state


async def gateway(request: Request) -> Gateway:
    """A coroutine: FastAPI runs a plain function in its thread pool, two thread switches a request."""
    return shared(request)


State = Annotated[Gateway, Depends(gateway)]


async def authenticated_user(request: Request) -> str:
    """The authenticated caller's user id; else 401."""
    try:
        caller = await request.app.state.verifier.verify(request.headers.get("authorization"))
    except Unauthorized as err:
        logs.event(log, "unauthorized", logging.WARNING, reason=err.reason)
        metrics.AUTH_FAILURES.labels(metrics.auth_reason(err.reason)).inc()
        raise unauthorized() from None
    return str(caller.user_id)


async def admitted_user(request: Request, user_id: Annotated[str, Depends(authenticated_user)]) -> str:
    """The authenticated caller's user id, within the rate limit; else 401 or 429."""
    return limited(user_id, await shared(request).limiter.take(user_id))


async def admitted_reader(request: Request, user_id: Annotated[str, Depends(authenticated_user)]) -> str:
    """As admitted_user, within the reads' own limit."""
    return limited(user_id, shared(request).readers.take(user_id))


def limited(user_id: str, wait: float) -> str:
    if wait:
        metrics.RATE_LIMITED.labels("requests").inc()  # the limiter's one kind: requests per user
        raise ApiError(
            429,
            "rate limit exceeded; retry later",
            "rate_limit_error",
            "rate_limited",
            headers={"Retry-After": retry_after(wait)},
        )
    return user_id


User = Annotated[str, Depends(admitted_user)]
# For reads of the caller's own state that the chat page makes around every answer (the models,
# the usage today): authenticated, and limited apart from the model calls.
Reader = Annotated[str, Depends(admitted_reader)]


class JsonBody(Generic[Body]):
    """The admitted caller's JSON body, read within the size limit (else 413) and validated as
    ``model`` (else 400). Read by hand, after authentication: a refused caller's body is never read."""

    def __init__(self, model: type[Body]) -> None:
        self.model = model

    async def __call__(self, request: Request, _: User) -> Body:
        body = await read_limited(request, shared(request).settings.max_body_bytes)
        try:
            return self.model.model_validate_json(body)
        except ValidationError as err:
            raise invalid(err.errors()[0]) from None


async def read_limited(request: Request, limit: int, named: int | None = None) -> bytes:
    """The request's body, or 413 once it is over ``limit`` bytes (saying ``named``, if given)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(named or limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(named or limit)
    return bytes(body)


def invalid(error: ErrorDetails) -> ApiError:
    """400 naming the field in ``param``, as OpenAI's errors do."""
    param = field_path(error["loc"]) or None  # None: the body as a whole (not JSON, not an object)
    message = f"invalid {param or 'request body'}: {error['msg']}"
    return ApiError(400, message, "invalid_request_error", "invalid_request", param=param)


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body larger than {limit} bytes", "invalid_request_error", "body_too_large")


def not_found() -> ApiError:
    """For an id that cannot be one: not found, as any other unknown id."""
    return ApiError(404, "no such object", "invalid_request_error", "not_found")
