"""Typed settings for the observability layer: the SLOs, the alert thresholds and where alerts go."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from hybrid.config.budget import Email
from hybrid.config.validation import Settings, between, invalid, matching

# cloud.google.com/pubsub/docs/reference/rest/v1/projects.topics: a topic's id.
TopicId = Annotated[
    str,
    matching(r"(?!goog)[A-Za-z][-A-Za-z0-9_.~+%]{2,254}", "a Pub/Sub topic id: 3-255 letters, digits or -_.~+%"),
]
# cloud.google.com/monitoring/api/ref_v3/rest/v3/services.serviceLevelObjectives: a goal is a
# fraction, at most 0.9999; below 0.9 the SRE workbook's burn rates (14.4x, 6x) exceed the budget itself.
Goal = Annotated[float, Field(ge=0.9, le=0.9999)]


class NotifySettings(Settings):
    """Where alerts go: email addresses, and/or a Pub/Sub topic (made by this layer)."""

    emails: list[Email] = Field(default_factory=list)
    pubsub_topic: TopicId | None = None

    @model_validator(mode="after")
    def _somewhere(self) -> NotifySettings:
        if not self.emails and self.pubsub_topic is None:
            raise invalid("slo.notify", 'must name at least one of emails = [...] or pubsub_topic = "..."')
        return self


class SloSettings(Settings):
    """The SLOs (goals over a rolling window) and the thresholds of the plain alerts."""

    # The gateway's requests that answer without a 5xx.
    availability_goal: Goal = 0.995
    # The orchestrator's requests whose time to first token is under the threshold.
    ttft_p95_seconds: Annotated[float, Field(gt=0, le=60)] = 2.0
    ttft_goal: Goal = 0.95
    # A rolling window in days (cloud.google.com/monitoring/api/ref_v3/rest/v3/services.serviceLevelObjectives:
    # rollingPeriod between 1 and 30 days).
    window_days: Annotated[int, between(1, 30)] = 28
    # Batch lines finished ("done") out of those finished at all, within the batch window.
    batch_goal: Goal = 0.99
    batch_window_hours: Annotated[int, between(1, 72)] = 24
    pending_gpu_minutes: Annotated[int, between(1, 240)] = 15
    oldest_unacked_seconds: Annotated[int, between(60, 604_800)] = 1800
    sql_cpu_percent: Annotated[int, between(10, 100)] = 80
    sql_connections_percent: Annotated[int, between(10, 100)] = 80
    # The instance's max_connections, which the percentage is of: Cloud SQL sets it by the
    # instance's memory, 100 for 3.75-6 GB (cloud.google.com/sql/docs/postgres/flags#postgres-m).
    sql_max_connections: Annotated[int, between(14, 262_143)] = 100
    notify: NotifySettings
