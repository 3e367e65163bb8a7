"""The gateway against faulty and hostile peers: key sets that arrive in pieces
or compressed, oversized request fields, clients that send slowly or never finish, and
bursts of unknown key ids. Everything runs on loopback, against real servers."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import subprocess
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import jwt
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from chats import Body, bearer, chat, stream_chat
from devtools.harness import ServedIssuer, Server, free_port, wait_for
from devtools.image_tree import image_process
from servers import gateway_server
from services.gateway.auth import MAX_JWKS_BYTES, JwksCache

# How a test's key set server answers a request.
Answer = Callable[[Request], Awaitable[Response]]


@dataclass
class KeySetServer:
    jwks_url: str
    seen: list[dict[str, str]]  # each request's headers


@contextmanager
def key_set_server(answer: Answer) -> Iterator[KeySetServer]:
    """A JWKS endpoint answering with ``answer(request)``; ``.seen`` holds each request's headers."""
    app = FastAPI()
    seen: list[dict[str, str]] = []

    @app.get("/jwks.json")
    async def jwks(request: Request) -> Response:
        seen.append(dict(request.headers))
        return await answer(request)

    with Server(app) as server:
        yield KeySetServer(f"{server.url}/jwks.json", seen)


def gateway_for(issuer: ServedIssuer, orchestrator_url: str, jwks_url: str | None = None, **overrides: Any) -> Server:
    """A gateway of its own (to start with ``with``), optionally reading its keys from another JWKS URL."""
    return gateway_server(issuer, orchestrator_url, jwks_url=jwks_url or issuer.jwks_url, **overrides)


def post(gateway: Server, token: str, payload: Body | None = None) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/chat/completions", json=payload or chat(), headers=bearer(token), timeout=30)


def signed_with_kid(issuer: ServedIssuer, kid: str) -> str:
    """A token signed with the issuer's key but naming key id ``kid``."""
    now = int(time.time())
    claims = {"iss": issuer.issuer, "aud": issuer.audience, "sub": "someone", "iat": now, "exp": now + 600}
    return jwt.encode(claims, issuer.key, algorithm="RS256", headers={"kid": kid})


# 1. A key set whose body arrives in more than one read.


def _in_pieces(document: dict[str, Any], pieces: int, **headers: str) -> StreamingResponse:
    raw = json.dumps(document).encode()
    step = -(-len(raw) // pieces)

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), step):
            yield raw[start : start + step]
            await asyncio.sleep(0.1)  # each piece its own write, and its own read at the gateway

    return StreamingResponse(body(), media_type="application/json", headers=headers)


def test_a_key_set_sent_with_content_length_in_several_writes_is_read_whole(
    issuer: ServedIssuer, upstream: Server
) -> None:
    async def answer(request: Request) -> Response:
        raw = json.dumps(issuer.jwks()).encode()
        return _in_pieces(issuer.jwks(), 3, **{"content-length": str(len(raw))})

    with key_set_server(answer) as jwks, gateway_for(issuer, upstream.url, jwks.jwks_url) as gateway:
        assert post(gateway, issuer.token("split-length")).status_code == 200


def test_a_chunked_key_set_is_read_whole(issuer: ServedIssuer, upstream: Server) -> None:
    async def answer(request: Request) -> Response:
        return _in_pieces(issuer.jwks(), 4)  # no length: chunked

    with key_set_server(answer) as jwks, gateway_for(issuer, upstream.url, jwks.jwks_url) as gateway:
        assert post(gateway, issuer.token("split-chunked")).status_code == 200


def test_an_oversized_key_set_is_a_failed_fetch_and_the_old_keys_stay(issuer: ServedIssuer, upstream: Server) -> None:
    oversized = {"keys": issuer.jwks()["keys"], "padding": "x" * MAX_JWKS_BYTES}
    state = {"document": issuer.jwks()}

    async def answer(request: Request) -> Response:
        return _in_pieces(state["document"], 8)

    with key_set_server(answer) as jwks, gateway_for(issuer, upstream.url, jwks.jwks_url) as gateway:
        assert post(gateway, issuer.token("before-oversize")).status_code == 200
        state["document"] = oversized
        time.sleep(1.1)  # past JWKS_MIN_REFRESH_SECONDS: an unknown key id refetches
        assert post(gateway, signed_with_kid(issuer, "rotated-away")).status_code == 401
        assert len(jwks.seen) == 2, "the oversized key set was not fetched"
        # A token never seen before is checked in full, against the keys kept from the first fetch.
        assert post(gateway, issuer.token("after-oversize")).status_code == 200


# 2. Compression: the gateway relays bytes as they come (no decompression), so it must not
# invite compressed answers, and must label any it gets anyway.


def _asks_for_gzip(request: Request) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "")


def test_a_key_set_server_that_compresses_when_asked_is_read(issuer: ServedIssuer, upstream: Server) -> None:
    async def answer(request: Request) -> Response:
        raw = json.dumps(issuer.jwks()).encode()
        if _asks_for_gzip(request):
            return Response(gzip.compress(raw), media_type="application/json", headers={"content-encoding": "gzip"})
        return Response(raw, media_type="application/json")

    with key_set_server(answer) as jwks, gateway_for(issuer, upstream.url, jwks.jwks_url) as gateway:
        assert post(gateway, issuer.token("gzip-keys")).status_code == 200
    assert jwks.seen[0]["accept-encoding"] == "identity"


@contextmanager
def compressing_orchestrator(always: bool) -> Iterator[Server]:
    """An orchestrator stand-in that gzips its answers when asked to, or ``always``."""
    app = FastAPI()
    app.state.requests = []

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Response:
        body = await request.json()
        app.state.requests.append(dict(request.headers))
        compress = always or _asks_for_gzip(request)
        encoding = {"content-encoding": "gzip"} if compress else {}
        if not body.get("stream"):
            raw = json.dumps({"choices": [{"message": {"role": "assistant", "content": "plain words"}}]}).encode()
            return Response(gzip.compress(raw) if compress else raw, media_type="application/json", headers=encoding)

        async def events() -> AsyncIterator[bytes]:
            packer = zlib.compressobj(wbits=31)  # gzip, flushed per event so each arrives on its own
            for word in ("plain", " words", "[DONE]"):
                event = f"data: {word}\n\n".encode()
                yield packer.compress(event) + packer.flush(zlib.Z_SYNC_FLUSH) if compress else event
                await asyncio.sleep(0.05)
            if compress:
                yield packer.flush()

        return StreamingResponse(events(), media_type="text/event-stream", headers=encoding)

    with Server(app) as server:
        yield server


def test_the_gateway_asks_the_orchestrator_for_uncompressed_answers(issuer: ServedIssuer) -> None:
    with compressing_orchestrator(always=False) as orchestrator, gateway_for(issuer, orchestrator.url) as gateway:
        answer = post(gateway, issuer.token("identity-plain"))
        with stream_chat(gateway, chat(stream=True), bearer(issuer.token("identity-stream"))) as streamed:
            events = streamed.read()
    assert answer.json()["choices"][0]["message"]["content"] == "plain words"
    assert events == b"data: plain\n\ndata:  words\n\ndata: [DONE]\n\n"
    assert [seen["accept-encoding"] for seen in orchestrator.app.state.requests] == ["identity", "identity"]


def test_a_compressed_answer_is_relayed_unchanged_and_labelled(issuer: ServedIssuer) -> None:
    # An orchestrator that compresses although asked not to: its bytes pass through as they
    # are, with their Content-Encoding, and the client decodes them.
    with compressing_orchestrator(always=True) as orchestrator, gateway_for(issuer, orchestrator.url) as gateway:
        answer = post(gateway, issuer.token("gzip-plain"))
        with stream_chat(gateway, chat(stream=True), bearer(issuer.token("gzip-stream"))) as streamed:
            raw = b"".join(streamed.iter_raw())
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.json()["choices"][0]["message"]["content"] == "plain words"
    assert streamed.headers["content-encoding"] == "gzip"
    assert zlib.decompress(raw, wbits=31) == b"data: plain\n\ndata:  words\n\ndata: [DONE]\n\n"


# 3. Every list and string field is bounded, as OpenAI's API bounds it; an error names the field.


@pytest.mark.parametrize(
    "extra,param",
    [
        pytest.param({"stop": ["x"] * 10_000}, "stop", id="10,000 stop strings"),
        pytest.param({"stop": ["a", "b", "c", "d", "e"]}, "stop", id="5 stop strings"),
        pytest.param({"stop": []}, "stop", id="empty stop list"),
        pytest.param({"stop": "x" * 257}, "stop", id="long stop string"),
        pytest.param({"stop": ["a", "b", "x" * 257]}, "stop[2]", id="long string in the stop list"),
        pytest.param({"stop": 5}, "stop", id="stop not text"),
        pytest.param({"user": "u" * 257}, "user", id="long user"),
        pytest.param({"model": "m" * 129}, "model", id="long model"),
        pytest.param(
            {"messages": [{"role": "user", "content": "hi", "name": "n" * 65}]},
            "messages[0].name",
            id="long message name",
        ),
        pytest.param({"temperature": 2.5}, "temperature", id="temperature"),
        pytest.param({"top_p": 1.5}, "top_p", id="top_p"),
        pytest.param({"presence_penalty": -3}, "presence_penalty", id="presence_penalty"),
        pytest.param({"frequency_penalty": 3}, "frequency_penalty", id="frequency_penalty"),
        pytest.param({"n": 2}, "n", id="n"),
        pytest.param({"max_tokens": 0}, "max_tokens", id="max_tokens"),
        # Not accepted at all: refused rather than passed on unbounded.
        pytest.param({"logit_bias": {str(i): 1 for i in range(1000)}}, "logit_bias", id="logit_bias"),
        pytest.param({"tools": [{"type": "function", "function": {"name": "f"}}] * 200}, "tools", id="tools"),
    ],
)
def test_out_of_bounds_fields_get_400_naming_the_field_and_are_not_forwarded(
    gateway: Server, issuer: ServedIssuer, upstream: Server, extra: dict[str, Any], param: str
) -> None:
    before = len(upstream.app.state.requests)
    response = post(gateway, issuer.token(f"bounds-{param}-{time.monotonic_ns()}"), chat(**extra))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_request"
    assert param in error["message"]
    assert len(upstream.app.state.requests) == before


def test_fields_at_their_bounds_are_accepted(gateway: Server, issuer: ServedIssuer) -> None:
    at_bounds = chat(
        stop=["a", "b", "c", "x" * 256],
        user="u" * 256,
        temperature=2,
        top_p=1,
        presence_penalty=-2,
        frequency_penalty=2,
        n=1,
    )
    assert post(gateway, issuer.token("at-bounds"), at_bounds).status_code == 200
    assert post(gateway, issuer.token("one-stop"), chat(stop="x" * 256)).status_code == 200


# 4. Slow clients: a request's head and body have deadlines.


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def _read_until_closed(sock: socket.socket, within: float) -> tuple[bytes, bool]:
    """What the server sends until it closes the connection (True), or until ``within`` s pass (False)."""
    received, deadline = b"", time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return received, True
        if not piece:
            return received, True
        received += piece
    return received, False


def _head(token: str | None, **headers: str) -> bytes:
    lines = ["POST /v1/chat/completions HTTP/1.1", "Host: gateway", "Content-Type: application/json"]
    lines += [f"Authorization: Bearer {token}"] if token else []
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(received: bytes) -> int:
    return int(received.split(b" ", 2)[1])


def _json_body(received: bytes) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(received.split(b"\r\n\r\n", 1)[1])
    return body


SLOW_BODY: dict[str, Any] = {"body_idle_timeout_seconds": 1, "body_timeout_seconds": 2}


def test_a_chunked_upload_that_stops_gets_408_and_the_connection_closes(issuer: ServedIssuer, upstream: Server) -> None:
    with gateway_for(issuer, upstream.url, **SLOW_BODY) as gateway, _connect(gateway.url) as sock:
        started = time.monotonic()
        sock.sendall(_head(issuer.token("stalled-chunks"), Transfer_Encoding="chunked") + b'5\r\n{"mod\r\n')
        received, closed = _read_until_closed(sock, within=8)
    assert closed, "the connection stayed open"
    assert time.monotonic() - started < 4
    assert _status(received) == 408
    assert b"connection: close" in received.lower()
    assert _json_body(received)["error"]["code"] == "request_timeout"


def test_a_body_sent_a_byte_at_a_time_gets_408_at_the_deadline(issuer: ServedIssuer, upstream: Server) -> None:
    payload = json.dumps(chat()).encode()
    with gateway_for(issuer, upstream.url, **SLOW_BODY) as gateway, _connect(gateway.url) as sock:
        started = time.monotonic()
        sock.sendall(_head(issuer.token("byte-a-time"), Content_Length=str(len(payload))))

        def dribble() -> None:  # a byte every 0.3 s: never idle for the idle timeout
            try:
                for byte in payload:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.3)
            except OSError:
                pass  # the gateway closed the connection

        threading.Thread(target=dribble, daemon=True).start()
        received, closed = _read_until_closed(sock, within=8)
    assert closed, "the connection stayed open"
    assert 1.5 < time.monotonic() - started < 4
    assert _status(received) == 408


def test_an_answer_given_before_the_body_arrived_closes_the_connection(issuer: ServedIssuer, upstream: Server) -> None:
    # No token: 401 without reading the body. The rest of the body must not hold the connection.
    with gateway_for(issuer, upstream.url, **SLOW_BODY) as gateway, _connect(gateway.url) as sock:
        sock.sendall(_head(None, Content_Length="1000") + b'{"model": ')
        received, closed = _read_until_closed(sock, within=5)
    assert _status(received) == 401
    assert closed, "the connection stayed open for the rest of the body"


def test_a_complete_request_keeps_its_connection(issuer: ServedIssuer, upstream: Server) -> None:
    payload = json.dumps(chat()).encode()
    with gateway_for(issuer, upstream.url, **SLOW_BODY) as gateway, httpx.Client(base_url=gateway.url) as client:
        for _ in range(2):
            response = client.post(
                "/v1/chat/completions",
                content=payload,
                timeout=10,
                headers={**bearer(issuer.token("keeps-alive")), "content-type": "application/json"},
            )
            assert response.status_code == 200 and "connection" not in response.headers
        assert client.get("/health").headers.get("connection") is None


@contextmanager
def gateway_as_the_image_runs_it(issuer: ServedIssuer, orchestrator_url: str, **environment: str) -> Iterator[str]:
    """The gateway in a process of its own, started as its image starts it (devtools/image_tree.py)."""
    port = free_port()
    env = {
        "PORT": str(port),
        "JWKS_URL": issuer.jwks_url,
        "JWT_ISSUER": issuer.issuer,
        "JWT_AUDIENCE": issuer.audience,
        "ORCHESTRATOR_URL": orchestrator_url,
        "ORCHESTRATOR_AUTH": "none",
        **environment,
    }
    with image_process("gateway", env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        url = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: _healthy(url), timeout=30), "the gateway did not start"
        yield url


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_request_heads_have_a_deadline_in_the_image(issuer: ServedIssuer, upstream: Server) -> None:
    with gateway_as_the_image_runs_it(issuer, upstream.url, HEADER_TIMEOUT_SECONDS="1") as url:
        # A connection that sends nothing.
        with _connect(url) as silent:
            started = time.monotonic()
            assert _read_until_closed(silent, within=6) == (b"", True)
            assert time.monotonic() - started < 3

        # A head sent a byte at a time.
        with _connect(url) as slow:
            head = _head(issuer.token("slow-head"), Content_Length="2")
            started = time.monotonic()
            try:
                for byte in head:
                    slow.sendall(bytes([byte]))
                    time.sleep(0.1)
            except OSError:
                pass  # closed on us, as it should be
            assert _read_until_closed(slow, within=6)[1]
            assert time.monotonic() - started < 3

        # The head of a second request on a kept-alive connection has the same deadline.
        with _connect(url) as kept:
            kept.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
            time.sleep(0.3)
            assert b" 200 " in kept.recv(65536)
            kept.sendall(b"GET /heal")
            started = time.monotonic()
            assert _read_until_closed(kept, within=6) == (b"", True)
            assert time.monotonic() - started < 3

        # A prompt client is not affected.
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200


# 5. A burst of unknown key ids waits for one key set fetch, not for one each.


def test_concurrent_unknown_key_ids_share_one_key_set_fetch(issuer: ServedIssuer, upstream: Server) -> None:
    async def slow(request: Request) -> Response:
        await asyncio.sleep(2)
        return Response(json.dumps(issuer.jwks()), media_type="application/json")

    async def burst(gateway: Server) -> list[int]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            answers = await asyncio.gather(
                *(
                    client.post(
                        "/v1/chat/completions", json=chat(), headers=bearer(signed_with_kid(issuer, f"unknown-{i}"))
                    )
                    for i in range(5)
                )
            )
        return [answer.status_code for answer in answers]

    with (
        key_set_server(slow) as jwks,
        gateway_for(issuer, upstream.url, jwks.jwks_url, jwks_min_refresh_seconds=1) as gateway,
    ):
        started = time.monotonic()
        statuses = asyncio.run(burst(gateway))
        elapsed = time.monotonic() - started
    assert statuses == [401] * 5
    assert len(jwks.seen) == 1
    assert elapsed < 3.5, f"{elapsed:.1f} s: the requests queued behind each other's fetches"


def test_a_failed_refresh_keeps_the_keys_for_those_who_have_them(issuer: ServedIssuer) -> None:
    # With a TTL of 0 every call refetches, as the first call after an hour would.
    answers = iter([Response(json.dumps(issuer.jwks()), media_type="application/json"), Response(status_code=503)])

    async def flaky(request: Request) -> Response:
        return next(answers)

    async def twice(url: str) -> list[Any]:
        async with aiohttp.ClientSession() as client:
            cache = JwksCache(url, client, ttl=0, min_refresh=0)
            return [(await cache.key(issuer.kid))["kid"] for _ in range(2)]

    with key_set_server(flaky) as jwks:
        assert asyncio.run(twice(jwks.jwks_url)) == [issuer.kid, issuer.kid]
    assert len(jwks.seen) == 2
