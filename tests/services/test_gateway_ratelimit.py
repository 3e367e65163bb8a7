"""The per-user rate limit shared by every gateway instance through a real Redis (Debian's
redis-server, with AUTH), and what happens while Redis is away: each instance limits alone,
says so once a minute in its log, and counts it on /health. Never no limit at all."""

from __future__ import annotations

import functools
import logging
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.harness import ServedIssuer, Server, free_port, gateway_settings, wait_for
from devtools.image_tree import image_process
from devtools.redis_server import RedisServer
from services.gateway.app import create_app as create_gateway
from services.gateway.settings import GatewaySettings

BURST = 4
ECHO = {"model": "standin-echo", "messages": [{"role": "user", "content": "hi"}]}


def chat(url: str, token: str) -> int:
    answer = httpx.post(
        f"{url}/v1/chat/completions", json=ECHO, headers={"authorization": f"Bearer {token}"}, timeout=30
    )
    return answer.status_code


def health(url: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{url}/health", timeout=10).json()
    return answer


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis this test alone stops and starts."""
    redis = RedisServer(tmp_path)
    redis.start()
    yield redis
    redis.stop()


def limited_settings(issuer: ServedIssuer, upstream: Server, redis: RedisServer, **options: Any) -> GatewaySettings:
    """An in-process gateway sharing its rate limit through ``redis``."""
    options.setdefault("redis_auth", redis.password)
    return gateway_settings(issuer, upstream.url, redis_host="127.0.0.1", redis_port=redis.port, **options)


def test_three_gateway_processes_give_a_user_the_limit_once_not_three_times(
    issuer: ServedIssuer, upstream: Server, redis_server: RedisServer
) -> None:
    """Each an image-shaped process of its own, as three Cloud Run instances are."""
    env = {
        "JWKS_URL": issuer.jwks_url,
        "JWT_ISSUER": issuer.issuer,
        "JWT_AUDIENCE": issuer.audience,
        "ORCHESTRATOR_URL": upstream.url,
        "ORCHESTRATOR_AUTH": "none",
        "RATE_LIMIT_BURST": str(BURST),
        "RATE_LIMIT_PER_MINUTE": "1",  # no refill worth counting while the test runs
        **redis_server.environment,
    }
    with ExitStack() as stack:
        urls = []
        for _ in range(3):
            port = free_port()
            stack.enter_context(
                image_process(
                    "gateway", {**env, "PORT": str(port)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            assert wait_for(functools.partial(_up, url), timeout=30), f"{url} did not start"
        token = issuer.token("shared-limit-user")
        statuses = [chat(urls[n % 3], token) for n in range(3 * BURST)]
        # Per instance, each would have let BURST through: 3 * BURST in all.
        assert statuses.count(200) == BURST, statuses
        assert statuses.count(429) == 2 * BURST
        assert chat(urls[0], issuer.token("another-user")) == 200  # per user
        assert all(health(url)["rate_limit"] == "shared" for url in urls)


def test_with_redis_away_each_instance_limits_alone_says_so_and_shares_again_when_it_is_back(
    issuer: ServedIssuer, upstream: Server, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = limited_settings(
        issuer, upstream, own_redis, rate_limit_burst=BURST, rate_limit_per_minute=1, redis_retry_seconds=0.2
    )
    with Server(create_gateway(settings)) as gateway, caplog.at_level(logging.INFO, "gateway.ratelimit"):
        token = issuer.token("outage-a")
        assert [chat(gateway.url, token) for _ in range(BURST + 1)] == [200] * BURST + [429]
        assert health(gateway.url) == {"status": "ok", "rate_limit": "shared", "rate_limit_fallbacks": 0}

        own_redis.stop()
        token = issuer.token("outage-b")
        # Still limited, by this instance alone: never open.
        assert [chat(gateway.url, token) for _ in range(BURST + 2)] == [200] * BURST + [429] * 2
        assert health(gateway.url) == {
            "status": "ok",
            "rate_limit": "per-instance",
            "rate_limit_fallbacks": BURST + 2,
        }
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once a minute, not per request

        own_redis.start()  # empty, as a restarted Memorystore Basic instance is
        time.sleep(0.3)  # past redis_retry_seconds: the next request asks Redis again
        token = issuer.token("outage-c")
        assert [chat(gateway.url, token) for _ in range(BURST + 1)] == [200] * BURST + [429]
        assert health(gateway.url) == {
            "status": "ok",
            "rate_limit": "shared",
            "rate_limit_fallbacks": BURST + 2,  # none since Redis came back
        }
        assert any("rate limit shared again" in r.getMessage() for r in caplog.records)


def test_a_hung_redis_costs_one_timeout_per_retry_interval_not_one_per_request(
    issuer: ServedIssuer, upstream: Server, own_redis: RedisServer
) -> None:
    settings = limited_settings(
        issuer, upstream, own_redis, rate_limit_burst=50, redis_timeout_seconds=0.5, redis_retry_seconds=30
    )
    with Server(create_gateway(settings)) as gateway:
        token = issuer.token("hung")
        assert chat(gateway.url, token) == 200  # connected, shared
        assert own_redis.process is not None
        own_redis.process.send_signal(signal.SIGSTOP)  # accepts nothing, answers nothing
        started = time.monotonic()
        assert [chat(gateway.url, token) for _ in range(10)] == [200] * 10
        # One request waited the timeout; the other nine did not ask Redis.
        assert time.monotonic() - started < 0.5 + 10 * 0.3
        assert health(gateway.url)["rate_limit_fallbacks"] == 10
        own_redis.process.send_signal(signal.SIGCONT)


def test_a_wrong_auth_string_is_a_fallback_not_an_open_door(
    issuer: ServedIssuer, upstream: Server, redis_server: RedisServer
) -> None:
    settings = limited_settings(
        issuer, upstream, redis_server, redis_auth="not-the-auth-string", rate_limit_burst=2, rate_limit_per_minute=1
    )
    with Server(create_gateway(settings)) as gateway:
        token = issuer.token("wrong-auth")
        assert [chat(gateway.url, token) for _ in range(3)] == [200, 200, 429]
        assert health(gateway.url)["rate_limit"] == "per-instance"


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
