"""A backend's refusal (a 4xx, answered before any byte was passed on), read for the OpenAI-style
error the caller is given instead of the backend's own page."""

from __future__ import annotations

import json

import aiohttp

ERROR_BODY_LIMIT = 65536  # of a backend's error answer, read to pass its message on


async def answer_head(upstream: aiohttp.ClientResponse) -> bytes:
    """The start of an answer's body, at most ERROR_BODY_LIMIT bytes."""
    raw = b""
    async for chunk in upstream.content.iter_any():
        raw += chunk
        if len(raw) >= ERROR_BODY_LIMIT:
            break
    return raw[:ERROR_BODY_LIMIT]


def backend_error(raw: bytes) -> dict[str, str]:
    """The message, type and code of an OpenAI-style error body, those that are strings."""
    try:
        error = json.loads(raw)["error"]
        return {key: error[key] for key in ("message", "type", "code") if isinstance(error.get(key), str)}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}
