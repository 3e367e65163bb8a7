"""Chat completion requests as the service tests' clients send them (imported from the test
folder, which pytest puts on the path)."""

from __future__ import annotations

from contextlib import AbstractContextManager

import httpx


def chat(model: str = "standin-echo", stream: bool = False, content: str = "hi", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream, **extra}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def stream_chat(server, payload: dict, headers: dict[str, str]) -> AbstractContextManager[httpx.Response]:
    """POST /v1/chat/completions to ``server``, its answer read as it comes."""
    return httpx.stream("POST", f"{server.url}/v1/chat/completions", json=payload, headers=headers, timeout=30)
