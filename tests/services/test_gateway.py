"""The gateway in front of the real orchestrator chain: who gets in, what gets through,
how fast it streams, and that nothing sensitive is logged."""

from __future__ import annotations

import base64
import io
import json
import logging
import time
import uuid
from contextlib import AbstractContextManager
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chats import Body, bearer, stream_chat
from devtools.harness import ServedIssuer, Server, gateway_settings, last_event, wait_for
from servers import LedgerRows
from services.gateway.app import create_app as create_gateway
from services.servicekit import logs

PROMPT = "the secret launch codes are 0000"


def body(model: str = "standin-echo", stream: bool = False, **extra: Any) -> Body:
    return {"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": stream, **extra}


def post(gateway: Server, token: str | None, payload: Body | None = None, **kwargs: Any) -> httpx.Response:
    headers = bearer(token) if token is not None else {}
    headers.update(kwargs.pop("headers", {}))
    return httpx.post(
        f"{gateway.url}/v1/chat/completions", json=payload or body(), headers=headers, timeout=30, **kwargs
    )


def stream_as(
    gateway: Server, issuer: ServedIssuer, model: str, user: str, rid: str
) -> AbstractContextManager[httpx.Response]:
    """A streamed chat by ``user``, traceable in the ledger by ``rid``."""
    return stream_chat(
        gateway, body(model, stream=True), {"authorization": f"Bearer {issuer.token(user)}", "x-request-id": rid}
    )


def finished(ledger_rows: LedgerRows, rid: str, timeout: float = 10.0) -> str | None:
    """The outcome the ledger settles on for ``rid``, once it is past "started"."""
    rows = wait_for(lambda: [r for r in ledger_rows(rid) if r["outcome"] != "started"], timeout=timeout)
    return rows[0]["outcome"] if rows else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hostile_tokens(issuer: ServedIssuer) -> dict[str, dict[str, str]]:
    """name -> request headers carrying that kind of bad credential."""
    now = int(time.time())
    good = issuer.token("mallory")
    head, payload, signature = good.split(".")
    claims = {"iss": issuer.issuer, "aud": issuer.audience, "sub": "mallory", "iat": now, "exp": now + 600}
    public_pem = issuer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    tampered = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered["sub"] = "admin"

    def without(claim: str) -> dict[str, Any]:
        return {k: v for k, v in claims.items() if k != claim}

    def sign(
        c: dict[str, Any],
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = issuer.key,
        alg: str = "RS256",
        kid: str = issuer.kid,
    ) -> str:
        return jwt.encode(c, key, algorithm=alg, headers={"kid": kid})

    return {
        "no header": {},
        "basic scheme": {"authorization": "Basic " + _b64(b"mallory:password")},
        "empty bearer": {"authorization": "Bearer"},
        "alg none": bearer(
            _b64(json.dumps({"alg": "none", "kid": issuer.kid, "typ": "JWT"}).encode())
            + "."
            + _b64(json.dumps(claims).encode())
            + "."
        ),
        "HS256 keyed with the public key": bearer(_hs256(claims, public_pem, issuer.kid)),
        "expired": bearer(sign({**claims, "iat": now - 7200, "exp": now - 3600})),
        "not yet valid": bearer(sign({**claims, "nbf": now + 3600})),
        "wrong issuer": bearer(sign({**claims, "iss": "https://evil.example"})),
        "wrong audience": bearer(sign({**claims, "aud": "someone-else"})),
        "unknown key id": bearer(sign(claims, kid="no-such-key")),
        "other key, same key id": bearer(sign(claims, key=other_key)),
        "EC key, RSA key id": bearer(sign(claims, key=ec_key, alg="ES256")),
        "tampered payload": bearer(f"{head}.{_b64(json.dumps(tampered).encode())}.{signature}"),
        "tampered signature": bearer(f"{head}.{payload}.{signature[:-4]}AAAA"),
        "missing exp": bearer(sign(without("exp"))),
        "missing sub": bearer(sign(without("sub"))),
        "missing iat": bearer(sign(without("iat"))),
        "malformed": bearer("not.a.jwt"),
        "garbage": bearer("%%%%"),
        "oversized": bearer(sign({**claims, "pad": "x" * 20_000})),
    }


def _hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """Algorithm confusion: an HMAC token keyed with the RSA public key (PyJWT refuses to make one)."""
    import hashlib
    import hmac

    signing_input = (
        _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()) + "." + _b64(json.dumps(claims).encode())
    )
    return signing_input + "." + _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def test_hostile_token_matrix_all_get_401(gateway: Server, issuer: ServedIssuer) -> None:
    tokens = hostile_tokens(issuer)
    assert len(tokens) >= 12
    for name, headers in tokens.items():
        response = httpx.post(f"{gateway.url}/v1/chat/completions", json=body(), headers=headers, timeout=30)
        assert response.status_code == 401, name
        assert response.json()["error"]["code"] == "invalid_token", name
        assert response.headers["www-authenticate"].startswith("Bearer"), name


def test_a_good_token_gets_an_answer(gateway: Server, issuer: ServedIssuer) -> None:
    response = post(gateway, issuer.token("alice"))
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the stand-in."
    assert len(response.headers["x-request-id"]) == 32


def test_user_and_request_id_reach_the_orchestrator(
    gateway: Server, issuer: ServedIssuer, upstream: Server, ledger_rows: LedgerRows
) -> None:
    rid = uuid.uuid4().hex
    assert post(gateway, issuer.token("carol"), headers={"x-request-id": rid}).status_code == 200
    row = wait_for(lambda: [r for r in ledger_rows(rid) if r["outcome"] == "completed"])
    assert row[0]["user_id"] == "carol"


def test_streams_through_without_buffering(gateway: Server, issuer: ServedIssuer) -> None:
    started = time.perf_counter()
    arrivals = []
    with stream_chat(
        gateway, body("standin-slow", stream=True), {"authorization": f"Bearer {issuer.token('dave')}"}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for _ in response.iter_raw():
            arrivals.append(time.perf_counter() - started)
    total = arrivals[-1]
    assert total > 3  # 200 chunks, 20 ms apart
    assert arrivals[0] < total / 4, "the first words arrived only with the last"
    assert len(arrivals) > 20


def test_client_leaving_cancels_the_upstream_call(
    gateway: Server, issuer: ServedIssuer, ledger_rows: LedgerRows
) -> None:
    rid = uuid.uuid4().hex
    with stream_as(gateway, issuer, "standin-slow", "erin", rid) as response:
        for chunk in response.iter_raw():
            if b"Hello" in chunk:
                break
    assert finished(ledger_rows, rid, timeout=15) == "client_aborted"


def test_a_model_dying_mid_stream_ends_the_stream_with_an_error(
    gateway: Server, issuer: ServedIssuer, ledger_rows: LedgerRows
) -> None:
    rid = uuid.uuid4().hex
    with stream_as(gateway, issuer, "standin-die", "fay", rid) as response:
        received = response.read()
    assert response.status_code == 200 and b"Hello" in received
    assert last_event(received)["error"]["code"] == "upstream_aborted"
    assert finished(ledger_rows, rid) == "upstream_aborted"


def test_the_orchestrator_dying_mid_stream_ends_the_stream_with_an_error(
    issuer: ServedIssuer, upstream: Server
) -> None:
    # The stand-in in the orchestrator's place: its connection drops after two chunks.
    with (
        Server(create_gateway(gateway_settings(issuer, upstream.url))) as direct,
        stream_chat(
            direct, body("standin-die", stream=True), {"authorization": f"Bearer {issuer.token('gus')}"}
        ) as response,
    ):
        received = response.read()
    assert response.status_code == 200 and b"Hello" in received
    assert last_event(received)["error"]["code"] == "upstream_aborted"


@pytest.mark.parametrize(
    "payload,status,code",
    [
        (b"{not json", 400, "invalid_request"),
        ({"model": "standin-echo"}, 400, "invalid_request"),
        ({"model": "standin-echo", "messages": []}, 400, "invalid_request"),
        ({"model": "standin-echo", "messages": [{"role": "wizard", "content": "x"}]}, 400, "invalid_request"),
        ({**body(), "temperature": 7}, 400, "invalid_request"),
        ({**body(), "unknown_field": 1}, 400, "invalid_request"),
        ({"model": "standin-echo", "messages": [{"role": "user", "content": "x"}] * 9}, 400, "too_many_messages"),
        ({"model": "standin-echo", "messages": [{"role": "user", "content": "x" * 2001}]}, 400, "message_too_long"),
        ({"model": "standin-echo", "messages": [{"role": "user", "content": "x" * 70_000}]}, 413, "body_too_large"),
    ],
    ids=[
        "bad json",
        "no messages",
        "empty messages",
        "bad role",
        "temperature",
        "unknown field",
        "too many messages",
        "message too long",
        "body too large",
    ],
)
def test_bad_requests_get_clear_4xx(
    gateway: Server, issuer: ServedIssuer, payload: object, status: int, code: str
) -> None:
    token = issuer.token(f"validation-{uuid.uuid4().hex[:6]}")
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=content,
        timeout=30,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    assert response.status_code == status
    assert openai_error(response)["code"] == code


def openai_error(response: httpx.Response) -> dict[str, Any]:
    """The error of an answer in OpenAI's shape, and nothing else in the body."""
    assert response.headers["content-type"] == "application/json"
    assert list(response.json()) == ["error"]
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


def test_a_bad_request_names_its_field_in_param(gateway: Server, issuer: ServedIssuer) -> None:
    response = post(gateway, issuer.token("param-checker"), {**body(), "temperature": 7})
    assert response.status_code == 400
    assert openai_error(response)["param"] == "temperature"


def test_an_unknown_route_is_an_openai_404(gateway: Server) -> None:
    response = httpx.get(f"{gateway.url}/v1/no-such-thing", timeout=10)
    assert response.status_code == 404
    error = openai_error(response)
    assert (error["type"], error["code"]) == ("invalid_request_error", "unknown_url")
    assert error["message"] == "Invalid URL (GET /v1/no-such-thing)"


def test_a_wrong_method_is_an_openai_405_with_allow(gateway: Server) -> None:
    response = httpx.get(f"{gateway.url}/v1/chat/completions", timeout=10)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    error = openai_error(response)
    assert (error["type"], error["code"]) == ("invalid_request_error", "method_not_allowed")


def test_an_invalid_query_is_an_openai_400(gateway: Server, issuer: ServedIssuer) -> None:
    headers = {"authorization": f"Bearer {issuer.token('query-checker')}"}
    response = httpx.get(f"{gateway.url}/v1/batches", params={"limit": 0}, headers=headers, timeout=10)
    assert response.status_code == 400
    assert openai_error(response)["code"] == "invalid_request"


def test_rate_limit_per_user_with_retry_after(gateway: Server, issuer: ServedIssuer) -> None:
    token = issuer.token("frank")
    statuses = [post(gateway, token).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    limited = post(gateway, token)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 2
    assert post(gateway, issuer.token("grace")).status_code == 200  # another user is not affected


def test_openapi_document_describes_the_api(gateway: Server) -> None:
    document = httpx.get(f"{gateway.url}/openapi.json", timeout=10).json()
    operation = document["paths"]["/v1/chat/completions"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletionRequest"
    }
    schema = document["components"]["schemas"]["ChatCompletionRequest"]
    assert {"model", "messages"} <= set(schema["required"])
    assert "Message" in document["components"]["schemas"]
    health = httpx.get(f"{gateway.url}/health", timeout=10).json()
    assert health == {"status": "ok", "rate_limit": "per-instance", "rate_limit_fallbacks": 0}  # no Redis here


def test_logs_are_json_with_request_ids_and_without_tokens_or_prompts(
    issuer: ServedIssuer, orchestrator: Server
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        with Server(create_gateway(gateway_settings(issuer, orchestrator.url))) as gateway:
            token = issuer.token("heidi")
            post(gateway, token, headers={"x-request-id": "logcheck1"})
            post(gateway, "forged." + token)
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(e["message"] == "request" and e.get("request_id") == "logcheck1" and e["status"] == 200 for e in lines)
    assert any(e["message"] == "unauthorized" and e["severity"] == "WARNING" for e in lines)
    text = stream.getvalue()
    assert token not in text and token.split(".")[1] not in text
    assert PROMPT not in text and "Hello from the stand-in" not in text
