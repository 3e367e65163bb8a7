"""The gateway's configuration: environment variables only, validated at start-up."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.servicekit.metrics_address import MetricsAddress

CLOUD_RUN_MAX_REQUEST_BYTES = 32 * 1024 * 1024
# The warning an instance logs while it limits alone because Redis did not answer
# (services.gateway.ratelimit); the stacks' log-based metric counts it, so it is named once, here,
# where the synth can import it.
FALLBACK_MESSAGE = "rate limit per instance: Redis did not answer"


class GatewaySettings(BaseSettings):
    # GatewaySettings() reads each field from the environment variable of its name in upper case.
    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    # Google Identity Platform / Firebase: https://www.googleapis.com/service_accounts/v1/jwk/
    # securetoken@system.gserviceaccount.com, issuer https://securetoken.google.com/<project>,
    # audience <project>. Local runs: the development issuer's JWKS.
    jwks_url: str
    jwt_issuer: str
    jwt_audience: str
    jwks_cache_seconds: int = Field(3600, ge=60)
    jwks_min_refresh_seconds: int = Field(30, ge=1)  # unknown key ids refetch at most this often
    clock_leeway_seconds: int = Field(30, ge=0, le=300)
    orchestrator_url: str
    # "google-id-token": an ID token for orchestrator_url from the metadata server (Cloud Run);
    # "none": no token, for local runs.
    orchestrator_auth: Literal["google-id-token", "none"] = "google-id-token"
    # The ID token's audience, where it is not orchestrator_url: the orchestrator's deterministic
    # run.app URL, the one URL of its own the orchestrator can be told (services.orchestrator.callers).
    orchestrator_audience: str | None = None
    upstream_connect_timeout_seconds: float = Field(5, gt=0)
    upstream_read_timeout_seconds: float = Field(300, gt=0)  # Cloud Run's request timeout
    rate_limit_per_minute: float = Field(60, gt=0)
    rate_limit_burst: int = Field(20, ge=1)
    # Reads of the caller's own state (GET /v1/models, /v1/usage: the chat page makes them at
    # sign-in and after each answer) have a bucket of their own, per instance: each is one
    # small query, and they must not spend the model calls' bucket.
    read_rate_limit_per_minute: float = Field(120, gt=0)
    read_rate_limit_burst: int = Field(30, ge=1)
    # The per-user limit's buckets, shared by every instance in Memorystore for Redis, reached
    # over the gateway's private egress (services.gateway.ratelimit). redis_auth: the instance's
    # AUTH string (a Secret Manager reference on Cloud Run); redis_server_ca: its server CA (PEM),
    # which makes the connection TLS and verifies the server. A request waits at most
    # redis_timeout_seconds for Redis, then is limited by this instance alone (and the next ones
    # too, for redis_retry_seconds). No host: every
    # instance limits alone (local runs).
    redis_host: str = ""
    redis_port: int = Field(6379, ge=1, le=65535)
    redis_auth: str | None = None
    redis_server_ca: str | None = None
    redis_timeout_seconds: float = Field(0.1, gt=0)
    # After Redis failed to answer, how long each instance limits alone before it asks Redis again.
    redis_retry_seconds: float = Field(1, gt=0)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_messages: int = Field(256, ge=1)
    max_message_chars: int = Field(100_000, ge=1)
    max_token_bytes: int = Field(8192, ge=512)
    # Slow clients hold a connection each. A request's head must arrive within
    # header_timeout_seconds (services.gateway.protocol, the image's --http); its body with no pause
    # longer than body_idle_timeout_seconds and within body_timeout_seconds of the head
    # (1 MiB in 20 s is 50 KB/s), or the answer is 408 and the connection is closed.
    header_timeout_seconds: float = Field(10, gt=0)
    body_idle_timeout_seconds: float = Field(10, gt=0)
    body_timeout_seconds: float = Field(20, gt=0)
    # Batch input files (POST /v1/files). OpenAI's own bounds are 200 MB and 50,000 requests
    # (platform.openai.com/docs/guides/batch); Cloud Run passes an HTTP/1 request of at most
    # 32 MiB (cloud.google.com/run/quotas, "Maximum HTTP/1 request size"), to the gateway and
    # again from it to the orchestrator, so a file is at most that less its multipart envelope.
    # An upload in progress holds its file in memory twice at most (read, then parsed): at most
    # batch_concurrent_uploads at once per instance, the next ones 503 with Retry-After; and at
    # most batch_concurrent_uploads_per_user of one user's, the next ones 429, so that one user
    # cannot hold every slot. An upload's body has body_timeout_seconds, and a second more for
    # every batch_upload_min_bytes_per_second bytes that arrived, up to
    # batch_upload_timeout_seconds (30 MiB in 300 s is 105 KB/s): a client that trickles its
    # file fails 408 within body_timeout_seconds of falling below the rate, and gives back its slot.
    batch_max_file_bytes: int = Field(31_457_280, ge=1024, le=CLOUD_RUN_MAX_REQUEST_BYTES - 65_536)
    batch_max_lines: int = Field(50_000, ge=1)
    batch_concurrent_uploads: int = Field(8, ge=1)
    batch_concurrent_uploads_per_user: int = Field(2, ge=1)
    batch_upload_min_bytes_per_second: int = Field(100_000, ge=1)
    batch_upload_timeout_seconds: float = Field(300, gt=0)
    # Origins whose pages may call the API from a browser (the frontend), comma-separated.
    allowed_origins: str = ""
    log_level: str = "INFO"
    metrics_address: MetricsAddress = None  # services/servicekit/metrics.py
