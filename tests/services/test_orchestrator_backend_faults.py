"""Model backends that misbehave: compressed answers they were not asked for,
usage figures no ledger can take, and errors to streaming requests. A stand-in of their own
here, beside the ordinary one: the model name picks the misbehaviour."""

from __future__ import annotations

import gzip
import json
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from devtools.harness import Postgres, Server, last_event, wait_for
from devtools.standins.openai_upstream import chunk_event, usage_event
from records import fields
from servers import LedgerRows, Row, one, served
from services.orchestrator.app import create_app as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings

MAX_TOKENS = 10_000_000  # the most the ledger records for one figure


def odd_backend() -> FastAPI:
    """OpenAI's protocol with a twist, by model name:
    gzip-*     gzip-compressed answers, whatever Accept-Encoding says
    brotli     a Brotli-compressed answer (no decoder installed)
    usage-*    the usage figures in ``USAGES[model]``
    reject-400 HTTP 400 with OpenAI's error body; reject-404 HTTP 404 with an HTML page;
    reject-401 HTTP 401 (the orchestrator's credentials refused)
    """
    app = FastAPI()
    app.state.requests = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        app.state.requests.append({"body": body, "headers": dict(request.headers)})
        model = body["model"]
        if model == "reject-400":
            return JSONResponse(
                {
                    "error": {
                        "message": "max_tokens is too large",
                        "type": "invalid_request_error",
                        "param": "max_tokens",
                        "code": None,
                    }
                },
                status_code=400,
            )
        if model == "brotli":
            return Response(b"\x1b\x03\x00\xf8", media_type="application/json", headers={"content-encoding": "br"})
        if model == "reject-401":
            return JSONResponse(
                {"error": {"message": "invalid token", "type": "authentication_error"}}, status_code=401
            )
        if model == "reject-404":
            return Response("<html><body>Not Found</body></html>", status_code=404, media_type="text/html")
        usage = USAGES.get(model, {"prompt_tokens": 3, "completion_tokens": 5})
        if not body.get("stream"):
            answer = json.dumps(
                {
                    "id": "chatcmpl-odd",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "Hello there."},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            ).encode()
            if model.startswith("gzip-"):
                return Response(
                    gzip.compress(answer), media_type="application/json", headers={"content-encoding": "gzip"}
                )
            return Response(answer, media_type="application/json")

        def events() -> Iterator[bytes]:
            for word in ("Hello", " there", "."):
                yield chunk_event("chatcmpl-odd", model, word)
            yield usage_event("chatcmpl-odd", usage)
            yield b"data: [DONE]\n\n"

        if not model.startswith("gzip-"):
            return StreamingResponse(events(), media_type="text/event-stream")

        def compressed() -> Iterator[bytes]:
            gzipper = zlib.compressobj(wbits=31)  # gzip framing, flushed after every event
            for event in events():
                yield gzipper.compress(event) + gzipper.flush(zlib.Z_SYNC_FLUSH)
            yield gzipper.flush()

        return StreamingResponse(compressed(), media_type="text/event-stream", headers={"content-encoding": "gzip"})

    return app


USAGES: dict[str, dict[str, Any]] = {
    "usage-huge": {"prompt_tokens": 2**40, "completion_tokens": 5},
    "usage-negative": {"prompt_tokens": -1_000_000, "completion_tokens": -5},
    "usage-text": {"prompt_tokens": "lots", "completion_tokens": 5},
}


@pytest.fixture(scope="module")
def odd() -> Iterator[Server]:
    yield from served(odd_backend())


@pytest.fixture(scope="module")
def orchestrator_of_odd(postgres: Postgres, odd: Server) -> Iterator[Server]:
    settings = OrchestratorSettings.model_validate(
        {
            "backends": {"odd": {"kind": "openai", "url": f"{odd.url}/v1"}},
            "routes": [{"match": "*", "backends": ["odd"]}],
            "first_byte_timeout_seconds": 2,
            "database_timeout_seconds": 2,
            "caller_auth": "none",
        }
    )
    yield from served(create_orchestrator(settings, conninfo=postgres.conninfo))


def ask(server: Server, model: str, stream: bool, user: str | None = None) -> tuple[httpx.Response, str]:
    """One request, of a user of its own unless ``user`` is given (an impossible usage uses up a quota)."""
    rid = uuid.uuid4().hex
    user = user or f"odd-{rid[:8]}"
    body = {"model": model, "messages": [{"role": "user", "content": "say hello"}], "stream": stream}
    response = httpx.post(
        f"{server.url}/v1/chat/completions", json=body, headers={"x-user-id": user, "x-request-id": rid}, timeout=30
    )
    return response, rid


def settled(ledger_rows: LedgerRows, rid: str, timeout: float = 10) -> Row:
    rows = wait_for(lambda: [r for r in ledger_rows(rid) if r["outcome"] != "started"], timeout=timeout)
    assert len(rows) == 1, ledger_rows(rid)
    return rows[0]


def stream_text(body: str) -> str:
    return "".join(
        choice["delta"].get("content", "")
        for line in body.splitlines()
        if line.startswith("data: {")
        for choice in json.loads(line[6:]).get("choices", [])
    )


@pytest.mark.parametrize("stream", [False, True])
def test_backends_are_asked_for_identity_and_a_gzip_answer_is_decoded(
    orchestrator_of_odd: Server, odd: Server, ledger_rows: LedgerRows, stream: bool
) -> None:
    response, rid = ask(orchestrator_of_odd, "gzip-echo", stream)
    assert response.status_code == 200
    assert "content-encoding" not in response.headers  # decoded here, as the bytes below show
    if stream:
        assert stream_text(response.text) == "Hello there."
        assert response.text.rstrip().endswith("data: [DONE]")
    else:
        assert response.json()["choices"][0]["message"]["content"] == "Hello there."
    row = settled(ledger_rows, rid)
    assert (row["outcome"], row["prompt_tokens"], row["completion_tokens"]) == ("completed", 3, 5)
    assert odd.app.state.requests[-1]["headers"].get("accept-encoding") == "identity"


def user_total(postgres: Postgres, user: str) -> int:
    with psycopg.connect(postgres.conninfo) as conn:
        (total,) = one(
            conn.execute(
                "SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM usage_ledger "
                "WHERE user_id = %s AND outcome <> 'started'",
                (user,),
            )
        )
    return int(total)


@pytest.mark.parametrize("stream", [False, True])
def test_usage_beyond_the_requests_bound_is_charged_the_bound_as_usage_invalid(
    orchestrator_of_odd: Server, ledger_rows: LedgerRows, stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A backend reporting 2**40 prompt tokens for a few words: the answer is the user's, the
    charge is at most what the request could have used (its characters, then the default
    completion bound), the row usage_invalid and the fault the backend's, so the user's day is not spent."""
    user = f"liar-{uuid.uuid4().hex[:8]}"
    response, huge = ask(orchestrator_of_odd, "usage-huge", stream, user=user)
    assert response.status_code == 200
    row = settled(ledger_rows, huge)
    body = {"model": "usage-huge", "messages": [{"role": "user", "content": "say hello"}], "stream": stream}
    assert (row["outcome"], row["prompt_tokens"], row["completion_tokens"]) == (
        "usage_invalid",
        len(json.dumps(body)),
        5,
    )
    (fault,) = [r for r in caplog.records if r.getMessage() == "backend reported usage beyond the request's bound"]
    assert fault.levelname == "ERROR" and fields(fault)["backend"] == "odd"
    response, later = ask(orchestrator_of_odd, "plain", stream, user=user)
    assert response.status_code == 200
    assert settled(ledger_rows, later)["outcome"] == "completed"


@pytest.mark.parametrize("stream", [False, True])
def test_negative_usage_never_lowers_a_users_total(
    orchestrator_of_odd: Server, postgres: Postgres, ledger_rows: LedgerRows, stream: bool
) -> None:
    user = f"negative-{uuid.uuid4().hex[:8]}"
    _, first = ask(orchestrator_of_odd, "plain", stream, user=user)
    settled(ledger_rows, first)
    before = user_total(postgres, user)
    response, rid = ask(orchestrator_of_odd, "usage-negative", stream, user=user)
    assert response.status_code == 200
    row = settled(ledger_rows, rid)
    assert (row["outcome"], row["prompt_tokens"], row["completion_tokens"]) == ("completed", 0, 0)
    assert user_total(postgres, user) == before == 8


@pytest.mark.parametrize(
    ("model", "code"),
    [
        pytest.param("brotli", "backends_unavailable", id="an encoding that cannot be decoded"),
        pytest.param("usage-text", "invalid_upstream_usage", id="usage that is not a number"),
    ],
)
def test_an_answer_that_cannot_be_read_is_a_502_and_a_failed_row(
    orchestrator_of_odd: Server, ledger_rows: LedgerRows, model: str, code: str
) -> None:
    response, rid = ask(orchestrator_of_odd, model, stream=False)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == code
    assert settled(ledger_rows, rid)["outcome"] == "failed"


def test_a_stream_whose_usage_is_not_a_number_ends_in_an_error_and_a_failed_row(
    orchestrator_of_odd: Server, ledger_rows: LedgerRows
) -> None:
    response, rid = ask(orchestrator_of_odd, "usage-text", stream=True)
    assert response.status_code == 200  # sent with the first byte, before the usage came
    assert "[DONE]" not in response.text
    assert last_event(response.content)["error"]["type"] == "api_error"
    row = settled(ledger_rows, rid)
    assert (row["outcome"], row["completion_tokens"]) == ("failed", 3)  # one a content chunk


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("model", "status", "message"),
    [
        # A backend's own OpenAI-style error: its message is passed on.
        pytest.param("reject-400", 400, "max_tokens is too large", id="a clean JSON 400"),
        # A backend's HTML error page is not: the caller gets an OpenAI-style error of the same status.
        pytest.param("reject-404", 404, "the model backend refused the request (HTTP 404)", id="a 404 page"),
    ],
)
def test_a_backend_refusing_a_request_is_passed_on_as_an_openai_style_error_and_a_failed_row(
    orchestrator_of_odd: Server, ledger_rows: LedgerRows, stream: bool, model: str, status: int, message: str
) -> None:
    response, rid = ask(orchestrator_of_odd, model, stream)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": "upstream_refused"}
    }
    row = settled(ledger_rows, rid)
    assert (row["outcome"], row["backend"], row["prompt_tokens"], row["completion_tokens"]) == ("failed", "odd", 0, 0)


def test_a_backend_refusing_the_orchestrators_credentials_is_a_502_not_the_callers_401(
    orchestrator_of_odd: Server, ledger_rows: LedgerRows
) -> None:
    response, rid = ask(orchestrator_of_odd, "reject-401", stream=True)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "backend_auth_failed"
    assert settled(ledger_rows, rid)["outcome"] == "failed"
