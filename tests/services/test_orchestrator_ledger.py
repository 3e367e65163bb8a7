"""The orchestrator against a real PostgreSQL and the stand-in model server: routing,
fallback before the first byte, and exactly one ledger row per request with its outcome."""

from __future__ import annotations

import json
import uuid
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from devtools.harness import Server, last_event, wait_for
from servers import LedgerRows, Row

USER = {"x-user-id": "ledger-user"}


def chat_body(model: str, stream: bool, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "say hello please"}], "stream": stream, **extra}


def ask(
    server: Server, model: str, stream: bool, request_id: str | None = None, **extra: Any
) -> tuple[httpx.Response, str]:
    request_id = request_id or uuid.uuid4().hex
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        json=chat_body(model, stream, **extra),
        headers={**USER, "x-request-id": request_id},
        timeout=30,
    )
    return response, request_id


def streamed(server: Server, model: str, request_id: str) -> AbstractContextManager[httpx.Response]:
    """A streamed chat, its answer read as it comes."""
    return httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        json=chat_body(model, stream=True),
        headers={**USER, "x-request-id": request_id},
        timeout=30,
    )


def settled(ledger_rows: LedgerRows, request_id: str) -> Row:
    """The request's single ledger row once its outcome is written."""
    rows = wait_for(lambda: [r for r in ledger_rows(request_id) if r["outcome"] != "started"])
    assert len(rows) == 1, rows
    assert len(ledger_rows(request_id)) == 1
    return rows[0]


def sse_text(body: str) -> str:
    parts = []
    for line in body.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:])["choices"]:
                parts.append(choice["delta"].get("content", ""))
    return "".join(parts)


def test_streamed_completion_is_recorded_with_its_usage(orchestrator: Server, ledger_rows: LedgerRows) -> None:
    response, rid = ask(orchestrator, "standin-echo", stream=True)
    assert response.status_code == 200
    assert sse_text(response.text) == "Hello from the stand-in."
    assert response.text.rstrip().endswith("data: [DONE]")
    row = settled(ledger_rows, rid)
    assert (row["outcome"], row["backend"], row["model"], row["user_id"]) == (
        "completed",
        "standin",
        "standin-echo",
        "ledger-user",
    )
    assert (row["prompt_tokens"], row["completion_tokens"]) == (3, 5)
    assert row["finished_at"] >= row["started_at"]


def test_plain_completion_is_recorded(orchestrator: Server, ledger_rows: LedgerRows) -> None:
    response, rid = ask(orchestrator, "standin-echo", stream=False)
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the stand-in."
    row = settled(ledger_rows, rid)
    assert (row["outcome"], row["prompt_tokens"], row["completion_tokens"]) == ("completed", 3, 5)


def test_falls_back_to_the_next_backend_before_the_first_byte(orchestrator: Server, ledger_rows: LedgerRows) -> None:
    response, rid = ask(orchestrator, "fallback-standin-echo", stream=True)
    assert response.status_code == 200 and sse_text(response.text) == "Hello from the stand-in."
    assert settled(ledger_rows, rid)["backend"] == "standin"


@pytest.mark.parametrize("model", ["standin-fail", "standin-stall"])
def test_no_backend_answers(orchestrator: Server, ledger_rows: LedgerRows, model: str) -> None:
    response, rid = ask(orchestrator, model, stream=True)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "backends_unavailable"
    assert settled(ledger_rows, rid)["outcome"] == "failed"


def test_upstream_dying_mid_stream_is_recorded_as_upstream_aborted(
    orchestrator: Server, ledger_rows: LedgerRows
) -> None:
    rid = uuid.uuid4().hex
    with streamed(orchestrator, "standin-die", rid) as response:
        received = response.read()
    assert b"Hello" in received and b"[DONE]" not in received
    # The status went out with the first byte: the stream says so in its last event instead.
    assert last_event(received)["error"]["code"] == "upstream_aborted"
    row = settled(ledger_rows, rid)
    assert (row["outcome"], row["completion_tokens"]) == ("upstream_aborted", 2)


def test_client_going_away_is_recorded_as_client_aborted(
    orchestrator: Server, ledger_rows: LedgerRows, upstream: Server
) -> None:
    rid = uuid.uuid4().hex
    with streamed(orchestrator, "standin-slow", rid) as response:
        for chunk in response.iter_raw():
            if b"Hello" in chunk:
                break  # leave after the first words
    row = settled(ledger_rows, rid)
    assert row["outcome"] == "client_aborted"
    assert 0 < row["completion_tokens"] < 200


def test_unknown_model_and_missing_user(orchestrator: Server) -> None:
    response, _ = ask(orchestrator, "nobody-serves-this", stream=False)
    assert response.status_code == 404
    response = httpx.post(
        f"{orchestrator.url}/v1/chat/completions", json={"model": "standin-echo", "messages": []}, timeout=10
    )
    assert response.status_code == 400
