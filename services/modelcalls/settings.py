"""How a service that calls the model backends is configured: its backends, the routes from
model names to them, the daily quota and the ledger's database. The orchestrator's settings and
the batch worker's extend ModelCallerSettings; environment variables only, validated at start-up."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.servicekit.metrics_address import MetricsAddress


class BackendSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # "openai": any OpenAI-compatible server (vLLM, or a hosted API); "vertex": Vertex AI's
    # OpenAI-compatible endpoint, with the service's Google access token.
    kind: Literal["openai", "vertex"]
    url: str | None = None  # openai: the base URL, ending in /v1
    api_key_env: str | None = None  # openai: the environment variable that holds its key
    # openai: "google-id-token" for a model server on Cloud Run that admits only this service's
    # identity (an ID token whose audience is the server's URL); "none" otherwise.
    auth: Literal["none", "google-id-token"] = "none"
    model: str | None = None  # the name the backend knows the model by, if not the caller's
    project: str | None = None  # vertex
    location: str | None = None  # vertex
    # openai: vLLM's Prometheus endpoint (its base URL without /v1, then /metrics), polled in
    # the background for the saturation the routes' spill thresholds read (services.modelcalls.health).
    metrics_url: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> BackendSettings:
        if self.kind == "openai" and not self.url:
            raise ValueError("an openai backend needs url")
        if self.kind == "vertex" and not (self.project and self.location):
            raise ValueError("a vertex backend needs project and location")
        if self.auth == "google-id-token" and self.kind != "openai":
            raise ValueError("auth 'google-id-token' is for openai backends on Cloud Run")
        return self

    @property
    def audience(self) -> str:
        """A Cloud Run service's ID-token audience: its URL without the /v1 path."""
        return (self.url or "").rstrip("/").removesuffix("/v1")


class Route(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    match: str  # a model name, or a prefix ending in "*"
    backends: list[str] = Field(min_length=1)  # tried in order until one answers
    # The longest sequence (prompt and answer, in tokens) the route's model takes, when one is
    # known: listed by GET /v1/models, where the chat page bounds the conversation it sends by it.
    max_model_len: int | None = Field(None, ge=1)
    # Where the route's requests go when its backends are all unavailable (circuit open) or
    # saturated: a backend, asked for spill_model instead of the caller's model. Saturated: a
    # backend's vllm:num_requests_waiting reached spill_waiting, or its vllm:kv_cache_usage_perc
    # spill_kv_cache (docs/routing.md says how to choose them).
    spill_to: str | None = None
    spill_model: str | None = None
    spill_waiting: int = Field(8, ge=1)
    spill_kv_cache: float = Field(0.95, gt=0, le=1)
    # Batch lines see the thresholds times batch_share, so they back off before interactive
    # requests spill; and they wait for room rather than spill, unless batch_spill.
    batch_share: float = Field(0.5, gt=0, le=1)
    batch_spill: bool = False

    @model_validator(mode="after")
    def _spill_complete(self) -> Route:
        if self.spill_model and not self.spill_to:
            raise ValueError(f"route {self.match!r}: spill_model needs spill_to, the backend that serves it")
        return self


class ModelCallerSettings(BaseSettings):
    """What a service that calls the model backends and charges the usage ledger is configured
    with: the orchestrator, and the batch worker (services/worker/settings.py) under the same
    names, so the stacks render both from the same values."""

    # A settings model reads each field from the environment variable of its name in upper
    # case; BACKENDS and ROUTES reach _from_json as the strings they are (NoDecode), not decoded first.
    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    backends: Annotated[dict[str, BackendSettings], NoDecode]
    routes: Annotated[list[Route], NoDecode]
    daily_token_quota: int = Field(1_000_000, ge=1)
    # Completion tokens a request (or batch line) without max_tokens / max_completion_tokens
    # reserves against the daily quota while it runs (its prompt's estimate is added).
    quota_default_completion_tokens: int = Field(1024, ge=1)
    # The most completion tokens a request without max_tokens / max_completion_tokens can be
    # charged (usage.usage_bound): the longest answer any served model writes. A backend that
    # reports more is at fault; the row is charged the bound and recorded usage_invalid.
    usage_bound_completion_tokens: int = Field(131_072, ge=1)
    connect_timeout_seconds: float = Field(5, gt=0)
    first_byte_timeout_seconds: float = Field(120, gt=0)
    # How routes choose among their backends (services.modelcalls.health): "fixed", in order;
    # "health", skipping backends whose circuit is open; "saturation", skipping saturated ones
    # too, and spilling. The first two are for comparison (make bench-routing) and as a way back.
    routing_policy: Literal["fixed", "health", "saturation"] = "saturation"
    # A backend's circuit opens after breaker_failures errors, timeouts, 429s or 5xx within
    # breaker_window_seconds; after breaker_cooldown_seconds one trial request may close it.
    breaker_failures: int = Field(5, ge=1)
    breaker_window_seconds: float = Field(30, gt=0)
    breaker_cooldown_seconds: float = Field(15, gt=0)
    # How often each backend with a metrics_url is polled; a reading older than three polls is
    # not trusted (the backend counts as unsaturated, and its circuit alone decides).
    metrics_poll_seconds: float = Field(1, gt=0)
    # The first-byte wait on a backend when a spill target is left to try: the rest of the
    # client's patience is the spill target's (first_byte_timeout_seconds otherwise).
    spill_first_byte_seconds: float = Field(15, gt=0)
    # "iam": log in as the service account with an access token (Cloud SQL IAM authentication);
    # "password": PGPASSWORD, for local runs.
    database_auth: Literal["iam", "password"] = "password"
    # Where the ledger lives, in libpq's terms (its PG* variables work too when these are unset).
    # With IAM login they are required: Cloud SQL's private IP, the database, the IAM user, TLS.
    pghost: str | None = None
    pgport: int | None = Field(None, ge=1, le=65535)
    pgdatabase: str | None = None
    pguser: str | None = None
    pgsslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] | None = None
    # The database server's CA certificate (PEM): the Cloud SQL instance's server CA, which
    # verify-ca checks the server's certificate against (its sslrootcert: database.server_ca_file).
    database_server_ca: str | None = None
    database_pool_size: int = Field(10, ge=1)
    database_timeout_seconds: float = Field(3, gt=0)
    log_level: str = "INFO"
    metrics_address: MetricsAddress = None  # services/servicekit/metrics.py

    @model_validator(mode="after")
    def _routes_known(self) -> ModelCallerSettings:
        unknown = {b for route in self.routes for b in route.backends} - set(self.backends)
        if unknown:
            raise ValueError(f"routes name unknown backends: {sorted(unknown)}")
        for route in self.routes:
            if route.spill_to is not None and route.spill_to not in self.backends:
                raise ValueError(
                    f"route {route.match!r}: spill_to names unknown backend {route.spill_to!r}; "
                    f"known: {sorted(self.backends)}"
                )
        return self

    @model_validator(mode="after")
    def _iam_login_complete(self) -> ModelCallerSettings:
        # Cloud SQL accepts IAM logins over TLS only (cloud.google.com/sql/docs/postgres/iam-logins),
        # and the access token sent as the password goes only to a server whose certificate the
        # instance's CA issued: sslmode require would send it to whoever answers
        # (postgresql.org/docs/current/libpq-ssl.html#LIBPQ-SSL-PROTECTION).
        if self.database_auth == "iam":
            missing = [
                name.upper()
                for name in ("pghost", "pgdatabase", "pguser", "database_server_ca")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(f"DATABASE_AUTH=iam needs {', '.join(missing)}")
            if self.pgsslmode not in ("verify-ca", "verify-full"):
                raise ValueError("DATABASE_AUTH=iam needs PGSSLMODE verify-ca or verify-full")
        return self

    def conninfo(self) -> str:
        """The libpq connection string of the settings given; libpq's environment fills the rest."""
        from psycopg.conninfo import make_conninfo

        given = {
            "host": self.pghost,
            "port": self.pgport,
            "dbname": self.pgdatabase,
            "user": self.pguser,
            "sslmode": self.pgsslmode,
        }
        return make_conninfo("", **{key: value for key, value in given.items() if value is not None})

    @field_validator("backends", "routes", mode="before")
    @classmethod
    def _from_json(cls, value: Any) -> Any:
        # In the environment, BACKENDS and ROUTES are JSON (the services stack renders them).
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as err:
                raise ValueError(f"must be JSON ({err})") from None
        return value
