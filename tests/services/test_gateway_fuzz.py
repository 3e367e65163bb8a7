"""Property-based fuzzing of the gateway's API: whatever an authenticated client sends, no 5xx."""

from __future__ import annotations

import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.harness import ServedIssuer, Server, gateway_settings
from services.gateway.app import create_app as create_gateway

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=20,
)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "system", "assistant", "tool", "", "USER"]),
            "content": st.text(max_size=300),
        },
        optional={"name": st.text(max_size=70), "extra": json_values},
    ),
    max_size=10,
)
# Mostly well-formed requests with fields out of range or of the wrong type, plus arbitrary JSON.
requests_ = st.one_of(
    st.fixed_dictionaries(
        {
            "model": st.sampled_from(["standin-echo", "", "x" * 200, "bad model!", "standin-echo\n"]),
            "messages": messages,
        },
        optional={
            "stream": st.booleans() | json_values,
            "temperature": st.floats(allow_nan=False) | st.text(max_size=5),
            "top_p": st.floats(allow_nan=False),
            "max_tokens": st.integers(),
            "stop": st.lists(st.text(max_size=300), max_size=5) | st.text(max_size=300),
            "n": st.integers(),
            "seed": st.integers(),
            "stream_options": json_values,
            "user": st.text(max_size=300),
        },
    ),
    json_values,
)


def test_fuzzed_requests_never_get_a_5xx_from_the_gateway(issuer: ServedIssuer, upstream: Server) -> None:
    # The gateway straight in front of the stand-in model server: a 5xx here is the gateway's own.
    with Server(
        create_gateway(gateway_settings(issuer, upstream.url, rate_limit_burst=100_000, rate_limit_per_minute=1e9))
    ) as gateway:
        headers = {"authorization": f"Bearer {issuer.token('fuzzer')}", "content-type": "application/json"}
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:

            @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
            @given(payload=requests_)
            def check(payload: object) -> None:
                response = client.post("/v1/chat/completions", content=json.dumps(payload))
                assert response.status_code in (200, 400, 413), response.text

            check()


@given(raw=st.binary(max_size=300))
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_arbitrary_bytes_never_get_a_5xx(gateway: Server, issuer: ServedIssuer, raw: bytes) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=raw,
        timeout=30,
        headers={"authorization": f"Bearer {issuer.token('bytes-fuzzer')}"},
    )
    assert response.status_code in (400, 429), response.text
