"""STAND-IN for a model server (vLLM, Vertex AI's OpenAI-compatible endpoint): it speaks
OpenAI's chat completions protocol, streaming or not, with no model behind it.

The model name picks a behaviour, or, whatever the model's name (a real deployment's model
behind the stand-in), a "[standin:NAME]" directive in the last message:
  standin-echo      a short answer, with usage                 (default)
  standin-slow      200 chunks, 20 ms apart                    (for clients that leave)
  standin-paced     20 chunks, 25 ms apart                     (a model streaming tokens)
  standin-stall     waits 30 s before the first byte           (for first-byte timeouts)
  standin-lag       the short answer, 0.2 s late               (a model at a fixed latency)
  standin-fail      HTTP 503 before the first byte            (for fallback)
  standin-refuse    HTTP 400, an OpenAI error with a code       (a request the model refuses)
  standin-die       two chunks, then the connection drops      (for upstream aborts)
  standin-liar      the short answer, reporting 2**40 prompt tokens (a backend whose usage lies)
  standin-long      200 chunks, 400 ms apart                   (an answer long enough to stop)
  standin-code      Markdown with a fenced code block, 12 characters a chunk, 25 ms apart
  standin-hostile   Markdown carrying script, event handlers and javascript: links, in
                    12-character chunks: what a page must show as text and never run
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

WORDS = ["Hello", " from", " the", " stand-in", "."]
LAG_SECONDS = 0.2
DIRECTIVE = re.compile(r"\[standin:([a-z]+)\]")
CODE = """## Reversing a list

Use `reversed()` or a **slice**:

```python
def backwards(items):
    return items[::-1]  # a copy; the list is left as it was
```

1. Slices copy.
2. `list.reverse()` works *in place*.
"""
# Each line tries one way a page that assigned the model's text as HTML would run it.
HOSTILE = """# Report <script>window.__pwned = "heading"</script>

<script>window.__pwned = "script"</script>
<img src=x onerror="window.__pwned = 'onerror'">
[click for details](javascript:window.__pwned='link') and [a real link](https://example.com/docs)
<a href="javascript:window.__pwned='anchor'">anchor</a> <iframe src="javascript:window.__pwned='frame'"></iframe>
![image](javascript:window.__pwned='image') **bold <b onmouseover="window.__pwned='b'">x</b>**

```html
<script>window.__pwned = "code"</script>
```
"""
TEXTS = {"standin-code": CODE, "standin-hostile": HOSTILE}


def behaviour(body: dict[str, Any]) -> str:
    messages = body.get("messages") or [{}]
    content = messages[-1].get("content") if isinstance(messages[-1], dict) else None
    found = DIRECTIVE.search(content) if isinstance(content, str) else None
    return f"standin-{found[1]}" if found else body.get("model", "standin-echo")


class DropConnection(Exception):
    """Raised mid-stream: uvicorn closes the socket without finishing the response."""


def create_app() -> FastAPI:
    app = FastAPI(title="OpenAI-protocol upstream stand-in")
    app.state.requests = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        app.state.requests.append({"body": body, "headers": dict(request.headers), "at": time.monotonic()})
        model, name = behaviour(body), body.get("model", "standin-echo")
        if model.endswith("standin-fail"):
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        if model.endswith("standin-refuse"):
            error = {"message": "this model's context is too short", "type": "invalid_request_error"}
            return JSONResponse({"error": {**error, "code": "context_length_exceeded"}}, status_code=400)
        if model.endswith("standin-stall"):
            await asyncio.sleep(30)
        if model.endswith("standin-lag"):
            await asyncio.sleep(LAG_SECONDS)
        text = TEXTS.get(model)
        words = (
            [text[i : i + 12] for i in range(0, len(text), 12)]
            if text
            else WORDS * {"standin-slow": 40, "standin-long": 40, "standin-paced": 4}.get(model, 1)
        )
        pauses = {"standin-slow": 0.02, "standin-long": 0.4, "standin-paced": 0.025, "standin-code": 0.025}
        pause = pauses.get(model, 0.005)
        prompt_tokens = sum(len(m.get("content", "").split()) for m in body.get("messages", []))
        if model.endswith("standin-liar"):
            prompt_tokens = 2**40
        if not body.get("stream"):
            return JSONResponse(_completion(name, "".join(words), _usage(prompt_tokens, len(words))))

        async def events() -> AsyncIterator[bytes]:
            for index, word in enumerate(words):
                if model.endswith("standin-die") and index == 2:
                    raise DropConnection()
                yield chunk_event("chatcmpl-standin", name, word)
                await asyncio.sleep(pause)
            if (body.get("stream_options") or {}).get("include_usage"):
                yield usage_event("chatcmpl-standin", _usage(prompt_tokens, len(words)))
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _completion(model: str, content: str, usage: dict[str, int]) -> dict[str, Any]:
    """A whole (not streamed) chat completion."""
    return {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": usage,
    }


def chunk_event(completion_id: str, model: str, word: str) -> bytes:
    """The server-sent event of a streamed chat completion that carries ``word``."""
    chunk = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


def usage_event(completion_id: str, usage: dict[str, Any]) -> bytes:
    """The last event before [DONE] when the request asked for stream_options.include_usage."""
    return f"data: {json.dumps({'id': completion_id, 'choices': [], 'usage': usage})}\n\n".encode()
