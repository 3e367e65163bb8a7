"""Saturation-aware routing (services.modelcalls.health): the circuit breaker opens and
recovers, spill happens at the threshold and not below it, a backend that vanishes mid-stream
is charged only what it delivered, and batch lines yield to interactive requests. Against the
vLLM pool stand-in (devtools/standins/vllm_pool.py) and a spill target of the same kind."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import pytest

from devtools.harness import Postgres, Server, last_event, wait_for
from devtools.standins.vllm_pool import PoolScript
from devtools.standins.vllm_pool import create_app as create_pool
from servers import LedgerRows, Row, served
from services.modelcalls.backends import Backend
from services.modelcalls.health import Router, Wait
from services.modelcalls.settings import ModelCallerSettings
from services.orchestrator.app import create_app as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings

SPILL_MODEL = "google/gemini-standin"
THRESHOLD = 4  # requests waiting


@pytest.fixture
def pool() -> Iterator[Server]:
    yield from served(create_pool(PoolScript(replicas=1)))


@pytest.fixture
def spill() -> Iterator[Server]:
    yield from served(create_pool(PoolScript(replicas=1, concurrency=100)))


def routing(pool: Server, spill: Server, **overrides: Any) -> dict[str, Any]:
    return {
        "backends": {
            "pool": {"kind": "openai", "url": f"{pool.url}/v1", "metrics_url": f"{pool.url}/metrics"},
            "spill": {"kind": "openai", "url": f"{spill.url}/v1"},
        },
        "routes": [
            {
                "match": "llama",
                "backends": ["pool"],
                "spill_to": "spill",
                "spill_model": SPILL_MODEL,
                "spill_waiting": THRESHOLD,
            }
        ],
        "metrics_poll_seconds": 0.05,
        "first_byte_timeout_seconds": 5,
        "database_timeout_seconds": 2,
        **overrides,
    }


def orchestrator(postgres: Postgres, settings: dict[str, Any]) -> Iterator[Server]:
    configured = OrchestratorSettings.model_validate({**settings, "caller_auth": "none"})
    yield from served(create_orchestrator(configured, conninfo=postgres.conninfo))


def ask(server: Server, stream: bool = False, model: str = "llama") -> tuple[httpx.Response, str]:
    rid = uuid.uuid4().hex
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        json=body,
        headers={"x-user-id": f"routing-{rid[:8]}", "x-request-id": rid},
        timeout=30,
    )
    return response, rid


def settled(ledger_rows: LedgerRows, request_id: str) -> Row:
    rows = wait_for(lambda: [r for r in ledger_rows(request_id) if r["outcome"] != "started"])
    assert len(rows) == 1, rows
    return rows[0]


def test_breaker_opens_after_failures_and_recovers_through_one_trial(postgres: Postgres, pool: Server) -> None:
    """No spill target here: what the circuit does is seen in the requests the pool receives."""
    settings = routing(pool, pool, breaker_failures=2, breaker_cooldown_seconds=0.5)
    settings["routes"][0] = {"match": "llama", "backends": ["pool"]}
    script, received = pool.app.state.pool.script, pool.app.state.pool.requests
    script.fail = True
    for server in orchestrator(postgres, settings):
        assert [ask(server)[0].status_code for _ in range(2)] == [502, 502]
        assert len(received) == 2
        # Open: the next request is refused without reaching the pool.
        assert ask(server)[0].status_code == 502
        assert len(received) == 2
        script.fail = False
        time.sleep(0.6)  # the cooldown: half-open, one trial goes, and its success closes the circuit
        assert ask(server)[0].status_code == 200
        assert [ask(server)[0].status_code for _ in range(3)] == [200] * 3
        assert len(received) == 6


def test_spill_happens_at_the_threshold_and_not_below(
    postgres: Postgres, pool: Server, spill: Server, ledger_rows: LedgerRows
) -> None:
    script = pool.app.state.pool.script
    for server in orchestrator(postgres, routing(pool, spill)):
        script.metrics = (THRESHOLD - 1, 0.5)
        time.sleep(0.3)  # a few polls
        response, rid = ask(server)
        assert response.status_code == 200
        assert settled(ledger_rows, rid)["backend"] == "pool"
        assert spill.app.state.pool.requests == []

        script.metrics = (THRESHOLD, 0.5)
        time.sleep(0.3)
        response, rid = ask(server)
        assert response.status_code == 200
        row = settled(ledger_rows, rid)
        # The row names the backend and the model that served, and charges that model's usage.
        assert (row["backend"], row["model"]) == (f"spill:{SPILL_MODEL}", "llama")
        assert (row["prompt_tokens"], row["completion_tokens"]) == (1, 20)
        assert [body["model"] for body in spill.app.state.pool.requests] == [SPILL_MODEL]
        assert len(pool.app.state.pool.requests) == 1  # not sent to the pool as well

        script.metrics = (0, 0.95)  # the KV cache full is saturation too
        time.sleep(0.3)
        response, rid = ask(server)
        assert settled(ledger_rows, rid)["backend"] == f"spill:{SPILL_MODEL}"


def test_backend_vanishing_mid_stream_is_charged_what_it_delivered_and_not_retried(
    postgres: Postgres, pool: Server, spill: Server, ledger_rows: LedgerRows
) -> None:
    stand_in = pool.app.state.pool
    stand_in.script.tokens, stand_in.script.token_seconds = 40, 0.05
    for server in orchestrator(postgres, routing(pool, spill, breaker_failures=1)):
        rid = uuid.uuid4().hex
        body = {"model": "llama", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        headers = {"x-user-id": f"routing-{rid[:8]}", "x-request-id": rid}
        received = b""
        with httpx.stream(
            "POST", f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=30
        ) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                received += chunk
                if received.count(b"chat.completion.chunk") >= 3 and not stand_in.replicas[0].gone.is_set():
                    stand_in.vanish(0)
        delivered = received.count(b"chat.completion.chunk")
        assert 3 <= delivered < 40
        assert last_event(received)["error"]["code"] == "upstream_aborted"
        row = settled(ledger_rows, rid)
        assert (row["outcome"], row["backend"], row["completion_tokens"]) == ("upstream_aborted", "pool", delivered)
        # Never sent twice for one answer: the spill target saw nothing of it.
        assert spill.app.state.pool.requests == []
        # The break opened the pool's circuit: the next request spills without trying the pool.
        response, next_rid = ask(server, stream=True)
        assert response.status_code == 200 and last_event(response.content) == "[DONE]"
        assert settled(ledger_rows, next_rid)["backend"] == f"spill:{SPILL_MODEL}"
        assert len(stand_in.requests) == 1


def test_stream_queued_past_its_first_byte_deadline_spills_and_leaves_the_queue(
    postgres: Postgres, pool: Server, spill: Server, ledger_rows: LedgerRows
) -> None:
    """vLLM answers a stream's headers before its engine takes the request: a request queued
    there has not begun until its first bytes, and until then it may still go to the spill
    target. Its place in the pool's queue is given up (the connection closed), so the pool
    never answers it as well."""
    stand_in = pool.app.state.pool
    stand_in.script.concurrency, stand_in.script.tokens, stand_in.script.token_seconds = 1, 40, 0.05
    stand_in.script.metrics = (0, 0.1)  # never read as saturated: only the deadline moves it
    for server in orchestrator(postgres, routing(pool, spill, spill_first_byte_seconds=0.5)):
        with httpx.stream(
            "POST",
            f"{server.url}/v1/chat/completions",
            json={"model": "llama", "messages": [{"role": "user", "content": "hi"}], "stream": True},
            headers={"x-user-id": "routing-holder"},
            timeout=30,
        ) as holding:  # takes the pool's one slot for two seconds
            held = holding.iter_bytes()  # kept: a dropped iterator closes the stream
            next(held)
            started = time.monotonic()
            response, rid = ask(server, stream=True)
            waited = time.monotonic() - started
            assert response.status_code == 200 and last_event(response.content) == "[DONE]"
            assert settled(ledger_rows, rid)["backend"] == f"spill:{SPILL_MODEL}"
            assert 0.5 <= waited < 1.5, waited
            assert wait_for(lambda: stand_in.replicas[0].waiting == 0, timeout=2), "it stayed in the pool's queue"
            assert stand_in.replicas[0].running == 1  # the holder's, still streaming
        assert len(stand_in.requests) == 2 and len(spill.app.state.pool.requests) == 1


async def polled(router: Router, pool: Server) -> None:
    async with aiohttp.ClientSession() as client:
        router.start(client)
        try:
            await asyncio.sleep(0.3)
        finally:
            await router.stop()


def test_batch_yields_to_interactive_traffic(pool: Server, spill: Server) -> None:
    """Between the batch band's threshold (THRESHOLD x batch_share) and the interactive one,
    interactive requests still go to the pool while batch lines wait; past both, interactive
    requests spill and batch lines still wait, unless the route lets them spill."""
    settings = ModelCallerSettings.model_validate(routing(pool, spill))
    backends = {name: Backend(name, b) for name, b in settings.backends.items()}
    route = settings.routes[0]
    script = pool.app.state.pool.script

    def plan(band: str, waiting: float, batch_spill: bool = False, spill_to: str | None = "spill") -> list[str] | float:
        script.metrics = (waiting, 0.1)
        router = Router(settings, backends)
        asyncio.run(polled(router, pool))
        try:
            chosen = route.model_copy(update={"batch_spill": batch_spill, "spill_to": spill_to})
            return [a.label for a in router.attempts(chosen, band)]  # type: ignore[arg-type]
        except Wait as wait:
            return wait.retry_after

    below_batch = THRESHOLD * route.batch_share - 1
    assert plan("interactive", below_batch) == ["pool", f"spill:{SPILL_MODEL}"]
    assert plan("batch", below_batch) == ["pool"]
    between = THRESHOLD * route.batch_share
    assert plan("interactive", between) == ["pool", f"spill:{SPILL_MODEL}"]
    assert isinstance(plan("batch", between), float)
    assert plan("interactive", THRESHOLD) == [f"spill:{SPILL_MODEL}"]
    assert isinstance(plan("batch", THRESHOLD), float)
    assert plan("batch", THRESHOLD, batch_spill=True) == [f"spill:{SPILL_MODEL}"]
    # With nowhere to spill, an interactive request still queues on the pool; a batch line waits.
    assert plan("interactive", THRESHOLD, spill_to=None) == ["pool"]
    assert isinstance(plan("batch", THRESHOLD, spill_to=None), float)
