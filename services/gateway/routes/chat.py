"""POST /v1/chat/completions, streaming or not: checked here, answered by the orchestrator."""

from __future__ import annotations

from typing import Annotated

import aiohttp
from fastapi import APIRouter, Depends
from fastapi.responses import Response

from services.gateway.deps import JsonBody
from services.gateway.openapi import read_by_hand
from services.gateway.settings import GatewaySettings
from services.gateway.upstream import Upstream, UpstreamStream, passed_headers
from services.servicekit.chat import ChatCompletionRequest
from services.servicekit.errors import ApiError

router = APIRouter()
Chat = Annotated[ChatCompletionRequest, Depends(JsonBody(ChatCompletionRequest))]


@router.post(
    "/v1/chat/completions",
    responses={400: {}, 401: {}, 413: {}, 429: {}, 502: {}, 503: {}},
    openapi_extra=read_by_hand(ChatCompletionRequest),
)
async def chat_completions(chat: Chat, orchestrator: Upstream) -> Response:
    check_messages(chat, orchestrator.state.settings)
    upstream = await orchestrator.open("POST", "/v1/chat/completions", data=chat.forwarded())
    passed = passed_headers(upstream)
    if chat.stream and upstream.status < 400:
        return UpstreamStream(upstream, passed)
    try:
        content = await upstream.read()
    except (aiohttp.ClientError, TimeoutError):
        raise ApiError(502, "the model service stopped answering", "api_error", "upstream_aborted") from None
    finally:
        upstream.release()
    return Response(content=content, status_code=upstream.status, headers=passed)


def check_messages(chat: ChatCompletionRequest, settings: GatewaySettings) -> None:
    """400 for too many messages, or one too long."""
    if len(chat.messages) > settings.max_messages:
        raise ApiError(400, f"at most {settings.max_messages} messages", "invalid_request_error", "too_many_messages")
    if any(len(m.content) > settings.max_message_chars for m in chat.messages):
        raise ApiError(
            400,
            f"a message is longer than {settings.max_message_chars} characters",
            "invalid_request_error",
            "message_too_long",
        )
