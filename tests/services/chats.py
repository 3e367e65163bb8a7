"""Chat completion requests as the service tests' clients send them (imported from the test
folder, which pytest puts on the path)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import httpx

from devtools.harness import Server

# A JSON request body, as httpx's json= takes it.
Body = dict[str, Any]


def chat(model: str = "standin-echo", stream: bool = False, content: str = "hi", **extra: Any) -> Body:
    return {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream, **extra}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def stream_chat(server: Server, payload: Body, headers: dict[str, str]) -> AbstractContextManager[httpx.Response]:
    """POST /v1/chat/completions to ``server``, its answer read as it comes."""
    return httpx.stream("POST", f"{server.url}/v1/chat/completions", json=payload, headers=headers, timeout=30)
