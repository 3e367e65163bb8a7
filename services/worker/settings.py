"""The batch worker's configuration (a stand-in with exactly the shared design's fields, so the
stacks can render and check it; the worker's own module replaces it)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.orchestrator.settings import BackendSettings, OrchestratorSettings, Route


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    # The orchestrator's backends, routes and database, under the same names and in the same JSON.
    backends: Annotated[dict[str, BackendSettings], NoDecode]
    routes: Annotated[list[Route], NoDecode]
    database_auth: Literal["iam", "password"] = "password"
    pghost: str | None = None
    pgport: int | None = Field(None, ge=1, le=65535)
    pgdatabase: str | None = None
    pguser: str | None = None
    pgsslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] | None = None
    daily_token_quota: int = Field(1_000_000, ge=1)
    subscription: str
    dead_letter_subscription: str
    dead_letter_topic: str
    topic: str
    batch_bucket: str
    storage_url: str = "https://storage.googleapis.com"
    max_outstanding_messages: int = Field(16, ge=1)
    max_delivery_attempts: int = Field(5, ge=5, le=100)
    claim_seconds: float = Field(660, gt=0)
    sweep_interval_seconds: float = Field(60, gt=0)
    shutdown_seconds: float = Field(25, gt=0)
    log_level: str = "INFO"
    port: int = Field(8080, ge=1, le=65535)

    @field_validator("backends", "routes", mode="before")
    @classmethod
    def _from_json(cls, value: Any) -> Any:
        return OrchestratorSettings._from_json(value)
