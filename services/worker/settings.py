"""The batch worker's configuration: environment variables only, validated at start-up.

The database, backends, routes and quota fields are the orchestrator's too (ModelCallerSettings),
under the same names, so the stacks render the worker the same values."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from services.modelcalls.settings import ModelCallerSettings
from services.servicekit.endpoints import STORAGE_URL


class WorkerSettings(ModelCallerSettings):
    # Full resource names: projects/P/subscriptions/S and projects/P/topics/T.
    subscription: str  # the batch lines
    dead_letter_subscription: str  # on dead_letter_topic: lines Pub/Sub gave up on
    # Where Pub/Sub moves a line after max_delivery_attempts (the subscription's dead-letter
    # policy); named in the log line of each line failed for it.
    dead_letter_topic: str
    topic: str  # the batch lines, republished by the sweeper for a batch its publisher left validating
    batch_bucket: str
    storage_url: str = STORAGE_URL
    # As the orchestrator's: "google-access-token", the service account's access token on each
    # Cloud Storage request; "none", for a stand-in or emulator at storage_url (tests, local runs).
    storage_auth: Literal["google-access-token", "none"] = "google-access-token"
    # Flow control: lines this worker holds at once, in flight or waiting for it.
    max_outstanding_messages: int = Field(16, ge=1, le=1000)
    # The longest one lease extension of a message this worker holds: a worker that dies hands
    # its messages back after at most this long. Google's client libraries extend a lease by
    # 10 s to 600 s at a time, and hold a stream's messages 60 s by default
    # (cloud.google.com/pubsub/docs/lease-management).
    lease_extension_seconds: int = Field(60, ge=10, le=600)
    # The subscription's dead-letter policy; Pub/Sub allows 5 to 100
    # (cloud.google.com/pubsub/docs/handling-failures#dead_letter_topic).
    max_delivery_attempts: int = Field(5, ge=5, le=100)
    # A line's claim: longer than any one call (max_request_seconds), so a live worker's line is
    # never taken from it; a dead worker's lines are taken over once it runs out. The default is
    # the subscription's ack deadline (600 s) plus a minute.
    claim_seconds: float = Field(660, gt=0)
    # One backend call's longest life; Cloud Run's default request timeout is the same 300 s
    # (cloud.google.com/run/docs/configuring/request-timeout).
    max_request_seconds: float = Field(300, gt=0)
    sweep_interval_seconds: float = Field(60, gt=0)
    # After SIGTERM, how long lines in flight may take before they are handed back; Kubernetes
    # kills the pod 30 s after SIGTERM by default (kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination).
    shutdown_seconds: float = Field(25, gt=0)
    port: int = Field(8080, ge=1, le=65535)  # the health endpoint, for Kubernetes' probes

    @model_validator(mode="after")
    def _claim_outlives_a_call(self) -> WorkerSettings:
        if self.claim_seconds <= self.max_request_seconds:
            raise ValueError(
                f"claim_seconds ({self.claim_seconds}) must exceed max_request_seconds ({self.max_request_seconds})"
            )
        return self
