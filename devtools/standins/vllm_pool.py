"""STAND-IN for a pool of vLLM replicas behind one load balancer (the self-hosted backend): the
OpenAI chat completions protocol, streamed or not, from replicas that each run ``concurrency``
requests at once and queue the rest, with vLLM's /metrics; and a replica that can vanish as a
preempted Spot node does, its streams cut mid-way.

/metrics answers as the load balancer would send the scrape: from one live replica in turn,
``vllm:num_requests_waiting`` its queue and ``vllm:kv_cache_usage_perc`` its running requests'
share of the KV cache (docs.vllm.ai/en/stable/usage/metrics/). ``PoolScript.metrics`` replaces
both with scripted figures; ``PoolScript.fail`` answers every request 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from devtools.standins.openai_upstream import WORDS, DropConnection, chunk_event, usage_event


@dataclass
class PoolScript:
    replicas: int = 2
    concurrency: int = 4  # requests a replica runs at once; the rest wait in its queue
    ttft_seconds: float = 0.05  # from a request's start on a replica to its first token
    tokens: int = 20
    token_seconds: float = 0.01
    kv_per_request: float = 0.2  # the KV cache share a running request holds
    metrics: tuple[float, float] | None = None  # scripted (waiting, KV cache use)
    fail: bool = False
    # How long the load balancer still sends a vanished replica its share of new requests
    # (answered 503 at once), until its health check has seen it go.
    failover_seconds: float = 0.0


@dataclass
class Replica:
    slots: asyncio.Semaphore
    waiting: int = 0
    running: int = 0
    alive: bool = True
    vanished_at: float = 0.0
    # Set when the replica vanishes: its running streams stop at their next token.
    gone: asyncio.Event = field(default_factory=asyncio.Event)


class Pool:
    def __init__(self, script: PoolScript) -> None:
        self.script = script
        self.replicas: list[Replica] = []
        self.turn = itertools.count()
        self.requests: list[dict[str, Any]] = []

    def _ensure(self) -> None:
        # Made on the server's event loop, where the semaphores are used.
        if not self.replicas:
            self.replicas = [Replica(asyncio.Semaphore(self.script.concurrency)) for _ in range(self.script.replicas)]

    def next_replica(self) -> Replica:
        """The replica the load balancer sends the next connection to: the next one it
        believes live."""
        self._ensure()
        now = time.monotonic()
        believed = [r for r in self.replicas if r.alive or now - r.vanished_at < self.script.failover_seconds]
        live = believed or self.replicas
        return live[next(self.turn) % len(live)]

    def vanish(self, index: int = 0) -> None:
        """The replica's node is preempted: its streams break, its queue is lost, and after
        ``failover_seconds`` the load balancer sends it nothing more."""
        self._ensure()
        replica = self.replicas[index]
        replica.alive, replica.vanished_at = False, time.monotonic()
        replica.gone.set()

    @contextlib.asynccontextmanager
    async def running(self, replica: Replica) -> AsyncIterator[None]:
        """A slot of ``replica``, waited for in its queue; a request queued on a replica that
        vanished meanwhile loses its connection."""
        replica.waiting += 1
        try:
            await replica.slots.acquire()
        finally:
            replica.waiting -= 1
        replica.running += 1
        try:
            if replica.gone.is_set():
                raise DropConnection()
            yield
        finally:
            replica.running -= 1
            replica.slots.release()

    def metrics(self) -> str:
        if self.script.metrics is not None:
            waiting, kv_cache = self.script.metrics
        else:
            replica = self.next_replica()
            waiting, kv_cache = replica.waiting, min(1.0, replica.running * self.script.kv_per_request)
        return (
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{engine="0",model_name="standin"}} {float(waiting)}\n'
            "# TYPE vllm:kv_cache_usage_perc gauge\n"
            f'vllm:kv_cache_usage_perc{{engine="0",model_name="standin"}} {float(kv_cache)}\n'
        )


def create_app(script: PoolScript | None = None) -> FastAPI:
    app = FastAPI(title="vLLM pool stand-in")
    pool = app.state.pool = Pool(script or PoolScript())

    # For a test or bench that runs the stand-in in a process of its own.
    @app.post("/standin/vanish/{index}")
    async def vanish(index: int) -> Response:
        pool.vanish(index)
        return Response(status_code=204)

    @app.get("/standin/requests")
    async def requests() -> Response:
        return JSONResponse({"count": len(pool.requests)})

    @app.get("/metrics")
    async def metrics() -> Response:
        return PlainTextResponse(pool.metrics())

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        pool.requests.append(body)
        if pool.script.fail:
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        replica, script = pool.next_replica(), pool.script
        if not replica.alive:
            return JSONResponse({"error": {"message": "upstream connect error"}}, status_code=503)
        words = [WORDS[i % len(WORDS)] for i in range(script.tokens)]
        usage = {"prompt_tokens": 1, "completion_tokens": len(words), "total_tokens": 1 + len(words)}
        if not body.get("stream"):
            try:
                async with pool.running(replica):
                    await asyncio.sleep(script.ttft_seconds + script.token_seconds * len(words))
            except DropConnection:  # reset before its headers: the load balancer's 503
                return JSONResponse({"error": {"message": "upstream connect error"}}, status_code=503)
            return JSONResponse(
                {
                    "id": "chatcmpl-pool",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words)}}],
                    "usage": usage,
                }
            )

        # vLLM answers a stream's status and headers before its engine has taken the request
        # (vllm/entrypoints/openai/chat_completion/serving.py: "we return a success status before
        # we actually start generating text"): the queue is waited out inside the body.
        async def events() -> AsyncIterator[bytes]:
            async with pool.running(replica):
                await asyncio.sleep(script.ttft_seconds)
                for word in words:
                    if replica.gone.is_set():
                        raise DropConnection()
                    yield chunk_event("chatcmpl-pool", body["model"], word)
                    await asyncio.sleep(script.token_seconds)
                if (body.get("stream_options") or {}).get("include_usage"):
                    yield usage_event("chatcmpl-pool", usage)
                yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


class _NotDroppedOnPurpose(logging.Filter):
    """uvicorn's report of an application error, but for the streams a vanished replica drops."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DropConnection))


def main() -> None:
    """``python -m devtools.standins.vllm_pool PORT SCRIPT_JSON``: served in a process of its own."""
    port, script = int(sys.argv[1]), PoolScript(**json.loads(sys.argv[2]))
    config = uvicorn.Config(create_app(script), host="127.0.0.1", port=port, log_level="warning")
    logging.getLogger("uvicorn.error").addFilter(_NotDroppedOnPurpose())  # after Config set logging up
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
