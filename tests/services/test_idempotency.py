"""Idempotency-Key on chat completions, file uploads and new batches: the same request sent again,
or eight times at once, runs and is billed once (services.orchestrator.idempotency)."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx
import psycopg
import pytest

from batch_helpers import (  # noqa: F401 - fixtures
    batch_gateway,
    batch_orchestrator,
    jsonl,
    new_user,
    queue,
    request_line,
    upload,
)
from devtools.harness import Postgres, ServedIssuer, Server, orchestrator_settings, wait_for
from services.orchestrator.app import create_app as create_orchestrator


def chat(marker: str, model: str = "standin-lag", **extra: object) -> dict[str, Any]:
    """A chat request the stand-in's log can be searched for by ``marker``."""
    return {"model": model, "messages": [{"role": "user", "content": f"hello {marker}"}], **extra}


def model_calls(upstream: Server, marker: str) -> int:
    return sum(1 for r in upstream.app.state.requests if marker in str(r["body"]))


def charges(conninfo: str, user: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(
            "SELECT outcome, prompt_tokens, completion_tokens FROM usage_ledger WHERE user_id = %s", (user,)
        ).fetchall()


def post(url: str, user: str, body: dict[str, Any], key: str | None) -> httpx.Response:
    headers = {"x-user-id": user, **({"idempotency-key": key} if key is not None else {})}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)


async def at_once(url: str, user: str, body: dict[str, Any], key: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        headers = {"x-user-id": user, "idempotency-key": key}
        return await asyncio.gather(
            *(client.post(f"{url}/v1/chat/completions", json=body, headers=headers) for _ in range(count))
        )


def new_key() -> str:
    return f"key-{secrets.token_hex(8)}"


def test_eight_identical_requests_at_once_run_and_are_billed_once(
    orchestrator: Server, upstream: Server, postgres: Postgres
) -> None:
    user, marker, key = new_user(), secrets.token_hex(6), new_key()
    # standin-lag answers 0.2 s late: the eight overlap the first.
    responses = asyncio.run(at_once(orchestrator.url, user, chat(marker), key, 8))

    ran = [r for r in responses if r.status_code == 200 and "idempotent-replayed" not in r.headers]
    others = [r for r in responses if r not in ran]
    assert len(ran) == 1, [(r.status_code, r.text) for r in responses]
    assert len(others) == 7
    for other in others:
        if other.status_code == 409:
            assert other.json()["error"]["code"] == "idempotency_key_in_use"
            assert other.headers["retry-after"] == "1"
        else:  # the first had finished: its answer, replayed
            assert (other.status_code, other.headers["idempotent-replayed"]) == (200, "true")
            assert other.content == ran[0].content
    assert model_calls(upstream, marker) == 1
    assert wait_for(lambda: charges(postgres.conninfo, user) == [("completed", 2, 5)])

    # Once it has finished, the same request again is its answer, byte for byte, not a new run.
    again = post(orchestrator.url, user, chat(marker), key)
    assert (again.status_code, again.headers["idempotent-replayed"]) == (200, "true")
    assert again.content == ran[0].content
    assert again.headers["content-type"] == "application/json"
    assert model_calls(upstream, marker) == 1
    assert len(charges(postgres.conninfo, user)) == 1


def test_without_a_key_each_request_runs(orchestrator: Server, upstream: Server) -> None:
    user, marker = new_user(), secrets.token_hex(6)
    for _ in range(2):
        assert post(orchestrator.url, user, chat(marker, "standin-echo"), None).status_code == 200
    assert model_calls(upstream, marker) == 2


def test_a_key_is_the_users_own(orchestrator: Server, upstream: Server) -> None:
    marker, key = secrets.token_hex(6), new_key()
    for user in (new_user(), new_user()):
        response = post(orchestrator.url, user, chat(marker, "standin-echo"), key)
        assert response.status_code == 200 and "idempotent-replayed" not in response.headers
    assert model_calls(upstream, marker) == 2


def test_the_same_key_with_another_request_is_422(orchestrator: Server, upstream: Server) -> None:
    user, key = new_user(), new_key()
    assert post(orchestrator.url, user, chat("first", "standin-echo"), key).status_code == 200
    marker = secrets.token_hex(6)
    reused = post(orchestrator.url, user, chat(marker, "standin-echo"), key)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert "different request" in reused.json()["error"]["message"]
    assert model_calls(upstream, marker) == 0


@pytest.mark.parametrize("key", [b"", b"a" * 256, b"has space", "caf\u00e9".encode("latin-1"), b"tab\there"])
def test_a_malformed_key_is_400_and_nothing_runs(orchestrator: Server, upstream: Server, key: bytes) -> None:
    marker = secrets.token_hex(6)
    headers = {b"x-user-id": new_user().encode(), b"idempotency-key": key}
    response = httpx.post(f"{orchestrator.url}/v1/chat/completions", json=chat(marker, "standin-echo"), headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert "255 printable ASCII" in response.json()["error"]["message"]
    assert model_calls(upstream, marker) == 0


def test_a_streamed_completion_is_replayed_as_recorded(
    orchestrator: Server, upstream: Server, postgres: Postgres
) -> None:
    user, marker, key = new_user(), secrets.token_hex(6), new_key()
    body = chat(marker, "standin-echo", stream=True, stream_options={"include_usage": True})
    first = post(orchestrator.url, user, body, key)
    assert first.status_code == 200 and first.content.endswith(b"data: [DONE]\n\n")

    def replayed() -> httpx.Response | None:
        again = post(orchestrator.url, user, body, key)
        return again if again.status_code == 200 else None  # 409 until the stream's end is recorded

    again = wait_for(replayed)
    assert again is not None
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"].startswith("text/event-stream")
    assert again.content == first.content
    assert model_calls(upstream, marker) == 1
    assert len(charges(postgres.conninfo, user)) == 1


def test_a_request_nothing_could_serve_frees_its_key_for_the_retry(
    orchestrator: Server, upstream: Server, postgres: Postgres
) -> None:
    user, marker, key = new_user(), secrets.token_hex(6), new_key()
    # standin-fail: the only backend answers 503, so no backend answered (502) and nothing was billed.
    for _ in range(2):
        response = post(orchestrator.url, user, chat(marker, "standin-fail"), key)
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "backends_unavailable"
    assert model_calls(upstream, marker) == 2


def test_a_model_refusal_is_kept_and_replayed(orchestrator: Server, upstream: Server) -> None:
    user, marker, key = new_user(), secrets.token_hex(6), new_key()
    first = post(orchestrator.url, user, chat(marker, "standin-refuse"), key)
    again = post(orchestrator.url, user, chat(marker, "standin-refuse"), key)
    assert first.status_code == again.status_code == 400
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert model_calls(upstream, marker) == 1


def test_a_key_is_free_again_after_the_window(postgres: Postgres, upstream: Server) -> None:
    settings = orchestrator_settings(upstream.url, idempotency_window_seconds=1)
    with Server(create_orchestrator(settings, conninfo=postgres.conninfo)) as server:
        user, marker, key = new_user(), secrets.token_hex(6), new_key()
        assert post(server.url, user, chat(marker, "standin-echo"), key).status_code == 200
        inside = post(server.url, user, chat(marker, "standin-echo"), key)
        assert inside.headers.get("idempotent-replayed") == "true"
        time.sleep(1.2)
        after = post(server.url, user, chat(marker, "standin-echo"), key)
        assert after.status_code == 200 and "idempotent-replayed" not in after.headers
        assert model_calls(upstream, marker) == 2
        assert len(charges(postgres.conninfo, user)) == 2
        # ... and the new run holds the key for a window of its own.
        assert post(server.url, user, chat(marker, "standin-echo"), key).headers.get("idempotent-replayed") == "true"


def test_the_gateway_passes_the_key_and_the_replay_mark_through(
    gateway: Server, issuer: ServedIssuer, upstream: Server
) -> None:
    marker, key = secrets.token_hex(6), new_key()
    headers = {"authorization": f"Bearer {issuer.token(new_user())}", "idempotency-key": key}
    url = f"{gateway.url}/v1/chat/completions"
    first = httpx.post(url, json=chat(marker, "standin-echo"), headers=headers, timeout=30)
    again = httpx.post(url, json=chat(marker, "standin-echo"), headers=headers, timeout=30)
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    assert model_calls(upstream, marker) == 1
    bad = httpx.post(url, json=chat(marker, "standin-echo"), headers={**headers, "idempotency-key": "a b"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_idempotency_key"


def test_an_upload_and_a_batch_with_a_key_are_made_once(
    batch_gateway: Server, issuer: ServedIssuer, postgres: Postgres
) -> None:
    user = new_user()
    token = issuer.token(user)
    data = jsonl(request_line("a"), request_line("b"))
    key = new_key()

    def upload_with_key() -> httpx.Response:
        return httpx.post(
            f"{batch_gateway.url}/v1/files",
            headers={"authorization": f"Bearer {token}", "idempotency-key": key},
            files={"file": ("in.jsonl", data, "application/jsonl")},
            data={"purpose": "batch"},
            timeout=30,
        )

    first, again = upload_with_key(), upload_with_key()
    assert first.status_code == again.status_code == 200, first.text
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    with psycopg.connect(postgres.conninfo) as conn:
        files = conn.execute("SELECT count(*) FROM batch_files WHERE user_id = %s", (user,)).fetchone()
    assert files == (1,)

    batch_key = new_key()
    request = {"input_file_id": first.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    headers = {"authorization": f"Bearer {token}", "idempotency-key": batch_key}
    created = [httpx.post(f"{batch_gateway.url}/v1/batches", json=request, headers=headers, timeout=30) for _ in "ab"]
    assert [r.status_code for r in created] == [200, 200]
    assert created[1].json()["id"] == created[0].json()["id"]
    with psycopg.connect(postgres.conninfo) as conn:
        batches = conn.execute("SELECT count(*) FROM batches WHERE user_id = %s", (user,)).fetchone()
    assert batches == (1,)
    # The same key with another request: 422, not the batch.
    reused = httpx.post(
        f"{batch_gateway.url}/v1/batches", json={**request, "metadata": {"a": "b"}}, headers=headers, timeout=30
    )
    assert reused.status_code == 422


def test_a_key_whose_first_request_died_with_its_instance_runs_again_once_stale(
    orchestrator: Server, upstream: Server, postgres: Postgres
) -> None:
    user, marker, key = new_user(), secrets.token_hex(6), new_key()
    body = chat(marker, "standin-echo")
    assert post(orchestrator.url, user, body, key).status_code == 200
    # As an instance killed mid-request leaves it: claimed, no outcome; within its time, 409.
    with psycopg.connect(postgres.conninfo, autocommit=True) as conn:
        conn.execute(
            "UPDATE idempotency_keys SET status = NULL, body = NULL WHERE user_id = %s AND key = %s", (user, key)
        )
        assert refused_in_flight(post(orchestrator.url, user, body, key))
        conn.execute(
            "UPDATE idempotency_keys SET stale_at = now() - interval '1 second' WHERE user_id = %s AND key = %s",
            (user, key),
        )
    retried = post(orchestrator.url, user, body, key)
    assert retried.status_code == 200 and "idempotent-replayed" not in retried.headers
    assert model_calls(upstream, marker) == 2


def refused_in_flight(response: httpx.Response) -> bool:
    return response.status_code == 409 and response.json()["error"]["code"] == "idempotency_key_in_use"
