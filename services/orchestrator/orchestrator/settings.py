"""The orchestrator's configuration: environment variables only, validated at start-up."""

from __future__ import annotations

import json
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class BackendSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # "openai": any OpenAI-compatible server (vLLM, or a hosted API); "vertex": Vertex AI's
    # OpenAI-compatible endpoint, with the service's Google access token.
    kind: Literal["openai", "vertex"]
    url: str | None = None  # openai: the base URL, ending in /v1
    api_key_env: str | None = None  # openai: the environment variable that holds its key
    model: str | None = None  # the name the backend knows the model by, if not the caller's
    project: str | None = None  # vertex
    location: str | None = None  # vertex

    @model_validator(mode="after")
    def _complete(self) -> BackendSettings:
        if self.kind == "openai" and not self.url:
            raise ValueError("an openai backend needs url")
        if self.kind == "vertex" and not (self.project and self.location):
            raise ValueError("a vertex backend needs project and location")
        return self


class Route(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    match: str  # a model name, or a prefix ending in "*"
    backends: list[str] = Field(min_length=1)  # tried in order until one answers


class OrchestratorSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    backends: dict[str, BackendSettings]
    routes: list[Route]
    daily_token_quota: int = Field(1_000_000, ge=1)
    connect_timeout_seconds: float = Field(5, gt=0)
    first_byte_timeout_seconds: float = Field(120, gt=0)
    # "iam": log in as the service account with an access token (Cloud SQL IAM authentication);
    # "password": PGPASSWORD, for local runs.
    database_auth: Literal["iam", "password"] = "password"
    database_pool_size: int = Field(10, ge=1)
    database_timeout_seconds: float = Field(3, gt=0)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _routes_known(self) -> OrchestratorSettings:
        unknown = {b for route in self.routes for b in route.backends} - set(self.backends)
        if unknown:
            raise ValueError(f"routes name unknown backends: {sorted(unknown)}")
        return self

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> OrchestratorSettings:
        """BACKENDS and ROUTES as JSON, or derived from INFERENCE_URL and VERTEX_PROJECT/LOCATION
        (the variables the services stack sets): google/* models to Vertex AI, the rest to vLLM."""
        env = os.environ if environ is None else environ
        backends = json.loads(env["BACKENDS"]) if "BACKENDS" in env else {}
        routes = json.loads(env["ROUTES"]) if "ROUTES" in env else []
        if not backends:
            if "VERTEX_PROJECT" in env:
                backends["vertex"] = {
                    "kind": "vertex", "project": env["VERTEX_PROJECT"], "location": env.get("VERTEX_LOCATION", "us-central1")
                }
                routes.append({"match": "google/*", "backends": ["vertex"]})
            if "INFERENCE_URL" in env:
                backends["vllm"] = {"kind": "openai", "url": env["INFERENCE_URL"]}
                routes.append({"match": "*", "backends": ["vllm"]})
        values = {
            "backends": backends,
            "routes": routes,
            **{key.lower(): value for key, value in env.items()
               if key.lower() in cls.model_fields and key not in ("BACKENDS", "ROUTES")},
        }
        return cls.model_validate(values)
