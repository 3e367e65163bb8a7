"""Who may use the batch routes and what they check before forwarding: tokens, another user's
files and batches, the routes without a bucket, and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from batch_helpers import (  # noqa: F401 - fixtures
    NUL,
    Query,
    batch_gateway,
    batch_orchestrator,
    client,
    db,
    jsonl,
    new_user,
    queue,
    request_line,
)
from devtools.harness import ServedIssuer, Server


def test_the_batch_routes_need_a_valid_token(batch_gateway: Server) -> None:
    bad = {"authorization": "Bearer nonsense"}
    for method, path in [
        ("POST", "/v1/files"),
        ("GET", "/v1/files"),
        ("GET", "/v1/files/file-000000000000000000000000"),
        ("DELETE", "/v1/files/file-000000000000000000000000"),
        ("GET", "/v1/files/file-000000000000000000000000/content"),
        ("POST", "/v1/batches"),
        ("GET", "/v1/batches"),
        ("GET", "/v1/batches/batch_000000000000000000000000"),
        ("POST", "/v1/batches/batch_000000000000000000000000/cancel"),
    ]:
        assert httpx.request(method, f"{batch_gateway.url}{path}", headers=bad).status_code == 401, path


def test_a_batch_request_is_checked_before_it_is_forwarded(batch_gateway: Server, issuer: ServedIssuer) -> None:
    api = client(batch_gateway, issuer, new_user())
    uploaded = api.files.create(file=("q.jsonl", jsonl(request_line("a"))), purpose="batch")
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"endpoint": "/v1/embeddings"}, "endpoint"),
        ({"completion_window": "1h"}, "completion_window"),
        ({"metadata": {f"k{n}": "v" for n in range(17)}}, "metadata"),
        ({"input_file_id": "../../admin"}, "input_file_id"),
    ]
    for wrong, param in refusals:
        with pytest.raises(openai.BadRequestError) as refused:
            api.batches.create(
                **{
                    "input_file_id": uploaded.id,
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                    **wrong,
                }
            )
        assert refused.value.param == param


def test_one_user_cannot_see_use_or_cancel_another_users_file_or_batch(
    batch_gateway: Server, issuer: ServedIssuer, db: Query
) -> None:
    alice, bob = client(batch_gateway, issuer, new_user()), client(batch_gateway, issuer, new_user())
    uploaded = alice.files.create(file=("mine.jsonl", jsonl(request_line("a"))), purpose="batch")
    batch = alice.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    attempts: list[Callable[[], object]] = [
        lambda: bob.files.retrieve(uploaded.id),
        lambda: bob.files.content(uploaded.id),
        lambda: bob.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"),
        lambda: bob.batches.retrieve(batch.id),
        lambda: bob.batches.cancel(batch.id),
        lambda: bob.files.retrieve("file-" + "0" * 24),  # the same answer as for an unknown id
        lambda: bob.batches.retrieve("not-an-id"),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert list(bob.batches.list()) == []
    assert alice.batches.retrieve(batch.id).status == "in_progress"  # bob's cancel did nothing
    assert {r["status"] for r in db("SELECT status FROM batch_lines WHERE batch_id = %s", batch.id)} == {"queued"}


def test_without_a_bucket_the_batch_routes_say_batches_are_not_enabled(gateway: Server, issuer: ServedIssuer) -> None:
    api = client(gateway, issuer, new_user())
    with pytest.raises(openai.NotFoundError) as absent:
        api.files.create(file=("q.jsonl", jsonl(request_line("a"))), purpose="batch")
    assert absent.value.body == {
        "message": "batches are not enabled",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }
    with pytest.raises(openai.NotFoundError):
        api.batches.retrieve("batch_" + "0" * 24)


def test_the_openapi_document_describes_the_batch_routes(batch_gateway: Server) -> None:
    document = httpx.get(f"{batch_gateway.url}/openapi.json").json()
    assert {"/v1/files", "/v1/files/{file_id}/content", "/v1/batches", "/v1/batches/{batch_id}/cancel"} <= set(
        document["paths"]
    )
    assert "BatchCreateRequest" in document["components"]["schemas"]


def test_a_token_whose_subject_holds_a_nul_character_is_refused_on_every_route(
    batch_gateway: Server, issuer: ServedIssuer
) -> None:
    """The subject is the user id the ledger and the batch tables store as text, and the
    orchestrator is sent in a header."""
    for subject in (f"user{NUL}", "user\nx-other: 1"):
        auth = {"authorization": f"Bearer {issuer.token(subject)}"}
        chat = httpx.post(f"{batch_gateway.url}/v1/chat/completions", headers=auth, json=request_line("a")["body"])
        listing = httpx.get(f"{batch_gateway.url}/v1/batches", headers=auth)
        assert (chat.status_code, listing.status_code) == (401, 401), (chat.text, listing.text)
