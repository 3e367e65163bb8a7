"""GET /v1/usage: the caller's own tokens today against the daily quota, through the gateway."""

from __future__ import annotations

import httpx

from devtools.harness import ServedIssuer, Server
from servers import gateway_server


def usage(gateway: Server, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{gateway.url}/v1/usage", headers=headers, timeout=10)


def chat(gateway: Server, token: str) -> None:
    body = {"model": "standin-echo", "messages": [{"role": "user", "content": "count these four words"}]}
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {token}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text


def test_usage_counts_the_callers_own_tokens_only(gateway: Server, issuer: ServedIssuer) -> None:
    mine, theirs = issuer.token("usage-owner"), issuer.token("usage-other")
    before = usage(gateway, mine).json()
    assert before["object"] == "usage"
    assert (before["used_tokens"], before["reserved_tokens"]) == (0, 0)
    assert before["quota_tokens"] == 1_000_000
    chat(gateway, mine)
    # The stand-in reports the prompt's four words and its answer's five.
    assert usage(gateway, mine).json()["used_tokens"] == 9
    # Another user's token sees that user's day, and no parameter reaches anyone else's.
    assert usage(gateway, theirs).json()["used_tokens"] == 0
    other = httpx.get(
        f"{gateway.url}/v1/usage",
        params={"user": "usage-owner", "user_id": "usage-owner"},
        headers={"authorization": f"Bearer {theirs}", "x-user-id": "usage-owner"},
        timeout=10,
    )
    assert other.json()["used_tokens"] == 0


def test_usage_needs_a_token(gateway: Server) -> None:
    refused = usage(gateway, None)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_token"


def test_reads_of_usage_and_models_have_their_own_rate_limit(issuer: ServedIssuer, orchestrator: Server) -> None:
    token = issuer.token("usage-reader")
    headers = {"authorization": f"Bearer {token}"}
    with gateway_server(issuer, orchestrator.url, read_rate_limit_burst=3, read_rate_limit_per_minute=1) as gateway:
        for _ in range(5):  # the model calls' burst, spent: the reads' bucket is another
            chat(gateway, token)
        assert usage(gateway, token).status_code == 200
        assert httpx.get(f"{gateway.url}/v1/models", headers=headers, timeout=10).status_code == 200
        assert usage(gateway, token).status_code == 200
        refused = usage(gateway, token)
        assert (refused.status_code, refused.json()["error"]["code"]) == (429, "rate_limited")
        assert int(refused.headers["retry-after"]) >= 1
