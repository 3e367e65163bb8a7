"""GET /v1/models: the models the routes serve, in OpenAI's list shape. A route that matches a
prefix ("google/*") is listed as that pattern: any model under it is served."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from services.orchestrator.deps import Settings
from services.orchestrator.settings import OrchestratorSettings

router = APIRouter()
STARTED = int(time.time())  # a route's models are as old as the configuration that names them


@router.get("/v1/models")
async def list_models(settings: Settings) -> dict[str, Any]:
    return {"object": "list", "data": model_list(settings)}


def model_list(settings: OrchestratorSettings) -> list[dict[str, Any]]:
    """One model per route; its owner the kind of the route's first backend, and its context
    length when the route knows it."""
    owners = {"vertex": "vertex", "openai": "self-hosted"}
    return [
        {
            "id": route.match,
            "object": "model",
            "created": STARTED,
            "owned_by": owners[settings.backends[route.backends[0]].kind],
            # vLLM's own /v1/models lists each model's max_model_len in this field
            # (docs.vllm.ai/en/latest/serving/openai_compatible_server.html).
            **({"max_model_len": route.max_model_len} if route.max_model_len else {}),
        }
        for route in settings.routes
    ]
