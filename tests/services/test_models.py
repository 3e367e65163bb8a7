"""GET /v1/models: the orchestrator's routes, listed through the gateway in OpenAI's shape."""

from __future__ import annotations

import httpx
import openai

from devtools.harness import ServedIssuer, Server, orchestrator_settings
from services.orchestrator.routes.models import model_list


def test_an_openai_client_lists_the_routes_models(gateway: Server, issuer: ServedIssuer) -> None:
    api = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=issuer.token("model-lister"), max_retries=0)
    listed = api.models.list()
    assert [(m.id, m.object, m.owned_by) for m in listed.data] == [
        ("fallback-*", "model", "self-hosted"),
        ("standin-*", "model", "self-hosted"),
    ]
    assert all(isinstance(m.created, int) and m.created > 0 for m in listed.data)


def test_the_list_is_in_openais_shape_and_needs_a_token(gateway: Server, issuer: ServedIssuer) -> None:
    headers = {"authorization": f"Bearer {issuer.token('model-shape')}"}
    answer = httpx.get(f"{gateway.url}/v1/models", headers=headers, timeout=10).json()
    assert answer["object"] == "list"
    assert all(set(model) == {"id", "object", "created", "owned_by"} for model in answer["data"])
    refused = httpx.get(f"{gateway.url}/v1/models", timeout=10)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_token"


def test_a_route_to_vertex_is_owned_by_vertex(upstream: Server) -> None:
    settings = orchestrator_settings(
        upstream.url,
        backends={
            "vllm": {"kind": "openai", "url": f"{upstream.url}/v1"},
            "vertex": {"kind": "vertex", "project": "p", "location": "europe-west1"},
        },
        routes=[
            {"match": "gemma-3-4b-it", "backends": ["vllm"], "max_model_len": 8192},
            {"match": "google/*", "backends": ["vertex"]},
        ],
    )
    assert [(m["id"], m["owned_by"], m.get("max_model_len")) for m in model_list(settings)] == [
        ("gemma-3-4b-it", "self-hosted", 8192),
        ("google/*", "vertex", None),
    ]
