"""Each metric of the gateway and the orchestrator moves when its event happens, with bounded
labels only; /metrics is served on its own address, never on the gateway's public port."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from prometheus_client import REGISTRY, generate_latest

from chats import bearer, chat
from devtools.harness import Postgres, ServedIssuer, Server, free_port, orchestrator_settings, wait_for
from servers import LedgerRows, gateway_server
from services.orchestrator.app import create_app as create_orchestrator
from services.servicekit.metrics import serve_metrics
from services.servicekit.metrics_address import parse_address
from test_gateway import PROMPT, body, finished, post


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def moved(name: str, **labels: str) -> Callable[[], float]:
    """How much ``name`` moved since this was called."""
    before = value(name, **labels)
    return lambda: value(name, **labels) - before


def test_a_chat_counts_its_route_latency_first_token_tokens_and_ledger_writes(
    gateway: Server, issuer: ServedIssuer, ledger_rows: LedgerRows
) -> None:
    route = {"route": "/v1/chat/completions"}
    labels = {"model": "standin-*", "backend": "standin"}
    requests = moved("gateway_requests_total", **route, status="200")
    latency = moved("gateway_request_duration_seconds_count", **route)
    ttft = moved("orchestrator_ttft_seconds_count", **labels)
    duration = moved("orchestrator_request_duration_seconds_count", **labels)
    tokens_in = moved("orchestrator_tokens_total", **labels, direction="in")
    tokens_out = moved("orchestrator_tokens_total", **labels, direction="out")
    writes = moved("orchestrator_ledger_write_seconds_count")
    rid = uuid.uuid4().hex
    answer = post(
        gateway, issuer.token("metrics-user"), body("standin-echo", stream=True), headers={"x-request-id": rid}
    )
    assert answer.status_code == 200
    assert finished(ledger_rows, rid) == "completed"
    (row,) = ledger_rows(rid)
    # The gateway counts a request once its answer has gone: a moment after the client has it.
    assert wait_for(lambda: (requests(), latency(), ttft(), duration()) == (1, 1, 1, 1), timeout=5)
    assert (tokens_in(), tokens_out()) == (row["prompt_tokens"], row["completion_tokens"]) != (0, 0)
    assert wait_for(lambda: writes() >= 2)  # the reservation, then the outcome


def test_a_path_with_an_id_is_counted_under_its_route_template_and_a_refused_token_by_reason(
    gateway: Server,
) -> None:
    batch = moved("gateway_requests_total", route="/v1/batches/{batch_id}", status="401")
    unknown = moved("gateway_requests_total", route="other", status="404")
    missing = moved("gateway_auth_failures_total", reason="no Authorization header")
    malformed = moved("gateway_auth_failures_total", reason="malformed token")
    raw = f"batch_{uuid.uuid4().hex}"
    assert httpx.get(f"{gateway.url}/v1/batches/{raw}").status_code == 401
    assert httpx.get(f"{gateway.url}/v1/batches/{raw}", headers=bearer("not.a.jwt")).status_code == 401
    assert httpx.get(f"{gateway.url}/{raw}").status_code == 404
    assert wait_for(lambda: (batch(), unknown(), missing(), malformed()) == (2, 1, 1, 1), timeout=5)
    assert raw not in generate_latest(REGISTRY).decode()


def test_a_refusal_by_the_rate_limit_is_counted(issuer: ServedIssuer, orchestrator: Server) -> None:
    limited = moved("gateway_rate_limited_total", limit="requests")
    with gateway_server(issuer, orchestrator.url, rate_limit_per_minute=1, rate_limit_burst=1) as gateway:
        token = issuer.token("metrics-limited")
        statuses = [post(gateway, token).status_code for _ in range(2)]
    assert statuses == [200, 429] and limited() == 1


def test_a_backend_that_does_not_answer_is_counted_by_kind_and_the_next_one_serves(orchestrator: Server) -> None:
    unreachable = moved("orchestrator_backend_errors_total", backend="unreachable", kind="unreachable")
    served = moved("orchestrator_ttft_seconds_count", model="fallback-*", backend="standin")
    answer = httpx.post(
        f"{orchestrator.url}/v1/chat/completions", json=chat("fallback-echo"), headers={"x-user-id": "m"}, timeout=30
    )
    assert answer.status_code == 200 and (unreachable(), served()) == (1, 1)


def test_a_ledger_write_that_fails_is_counted_and_refuses_nothing_for_quota(
    postgres_conninfo_closed: str, upstream: Server
) -> None:
    refused = moved("orchestrator_quota_refusals_total", model="standin-*")
    failures = moved("orchestrator_ledger_write_failures_total")
    settings = orchestrator_settings(upstream.url, daily_token_quota=1)
    with Server(create_orchestrator(settings, conninfo=postgres_conninfo_closed)) as down:
        answer = httpx.post(f"{down.url}/v1/chat/completions", json=chat(), headers={"x-user-id": "m"}, timeout=30)
    assert answer.status_code == 503 and failures() == 1 and refused() == 0


def test_a_request_past_the_quota_is_counted(postgres: Postgres, upstream: Server) -> None:
    refused = moved("orchestrator_quota_refusals_total", model="standin-*")
    settings = orchestrator_settings(upstream.url, daily_token_quota=1)
    with Server(create_orchestrator(settings, conninfo=postgres.conninfo)) as tight:
        answer = httpx.post(f"{tight.url}/v1/chat/completions", json=chat(), headers={"x-user-id": "m"}, timeout=30)
    assert answer.status_code == 429 and refused() == 1


@pytest.fixture
def postgres_conninfo_closed() -> str:
    """A database nobody listens for."""
    return f"host=127.0.0.1 port={free_port()} dbname=none user=none connect_timeout=1"


def test_metrics_are_served_on_their_own_address_and_not_on_the_public_port(gateway: Server) -> None:
    assert httpx.get(f"{gateway.url}/metrics").status_code == 404
    port = free_port()
    serve_metrics(f"127.0.0.1:{port}")
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert "gateway_requests_total" in scraped and "orchestrator_ttft_seconds_bucket" in scraped


def test_no_user_id_or_prompt_becomes_a_label(gateway: Server, issuer: ServedIssuer) -> None:
    user = f"user-{uuid.uuid4().hex}"
    assert post(gateway, issuer.token(user)).status_code == 200
    exposed = generate_latest(REGISTRY).decode()
    assert user not in exposed and PROMPT not in exposed


@pytest.mark.parametrize("address", ["9464", "127.0.0.1:", "127.0.0.1:http", ":9464", "127.0.0.1:70000"])
def test_a_bad_metrics_address_is_refused_naming_the_variable(address: str) -> None:
    with pytest.raises(ValueError, match="METRICS_ADDRESS must be host:port"):
        parse_address(address)
