"""The orchestrator's configuration: environment variables only, validated at start-up."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from services.modelcalls.settings import ModelCallerSettings
from services.servicekit.endpoints import STORAGE_URL

# Google's ID-token signing keys, as a JWKS (developers.google.com/identity/sign-in/web/backend-auth).
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v3/certs"


class OrchestratorSettings(ModelCallerSettings):
    # A request's longest life once admitted (Cloud Run's request timeout): the backend's answer
    # is cut there. A ledger row started longer ago than this plus stale_margin_seconds belongs
    # to an instance that died, and is finished as abandoned; every instance looks for such rows
    # at start-up and every reconcile_interval_seconds.
    max_request_seconds: float = Field(300, gt=0)
    stale_margin_seconds: float = Field(60, ge=0)
    reconcile_interval_seconds: float = Field(60, gt=0)
    # At shutdown, how long queued outcomes may wait for the database. Cloud Run kills the
    # instance 10 s after SIGTERM; services/orchestrator/__main__.py gives requests 4 s before this.
    shutdown_drain_seconds: float = Field(3, gt=0)
    # While a stream is relayed, the tokens delivered so far are written to its ledger row this
    # often (one UPDATE a stream per interval), so a row an instance killed mid-stream left
    # started is reconciled with what had reached the client.
    usage_checkpoint_seconds: float = Field(5, gt=0)
    # Batch jobs (services.orchestrator.batch): the environment's bucket for input and output
    # files, and the topic of line messages (projects/P/topics/T). Without a bucket the batch
    # routes answer 404 "batches are not enabled".
    batch_bucket: str | None = None
    batch_topic: Annotated[str, StringConstraints(pattern=r"^projects/[^/]+/topics/[^/]+$")] | None = None
    storage_url: str = STORAGE_URL
    # "google-access-token": the service account's token (Cloud Run); "none": a local stand-in.
    storage_auth: Literal["google-access-token", "none"] = "google-access-token"
    # The batch workers' database user (with IAM login, its service account's name without
    # .gserviceaccount.com: cloud.google.com/sql/docs/postgres/iam-logins), granted what it needs
    # of the batch tables and the ledger, which the orchestrator owns.
    batch_worker_database_user: str | None = None
    # Storing a batch's lines (up to the gateway's batch_max_lines in one transaction), and
    # publishing their messages, each take longer than a request's database_timeout_seconds.
    batch_create_timeout_seconds: float = Field(60, gt=0)
    # How long an Idempotency-Key's outcome is replayed (services.orchestrator.idempotency);
    # Stripe keeps keys at least 24 hours.
    idempotency_window_seconds: float = Field(86_400, gt=0)
    # Who may call (services.orchestrator.callers). "google-id-token": a Google-signed ID token
    # (keys from caller_certs_url) whose audience is caller_audience (this service's URL, the
    # audience the gateway mints its token for) and whose email is one of allowed_callers
    # (service-account emails, comma-separated: the stack renders Terraform references into
    # it, which cdktf's HCL output mangles inside JSON). "none": anyone, for local runs only;
    # the orchestrator logs it at start.
    caller_auth: Literal["google-id-token", "none"] = "google-id-token"
    caller_audience: str | None = None
    allowed_callers: str = ""
    caller_certs_url: str = GOOGLE_CERTS_URL

    @model_validator(mode="after")
    def _batches_complete(self) -> OrchestratorSettings:
        if self.batch_bucket and not self.batch_topic:
            raise ValueError("BATCH_BUCKET needs BATCH_TOPIC, where the batches' lines are published")
        return self

    @model_validator(mode="after")
    def _callers_complete(self) -> OrchestratorSettings:
        if self.caller_auth == "google-id-token" and not (self.caller_audience and self.callers):
            raise ValueError(
                "CALLER_AUTH=google-id-token needs CALLER_AUDIENCE (this service's URL) and ALLOWED_CALLERS "
                "(the service accounts that may call it); CALLER_AUTH=none is for local runs only"
            )
        return self

    @property
    def callers(self) -> frozenset[str]:
        return frozenset(email.strip() for email in self.allowed_callers.split(",") if email.strip())
