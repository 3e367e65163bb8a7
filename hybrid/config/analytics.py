"""Typed settings for usage analytics: the BigQuery dataset the services' usage records are
routed to by a Cloud Logging sink (docs/analytics.md)."""

from __future__ import annotations

from typing import Annotated

from hybrid.config.validation import Settings, between, matching

# cloud.google.com/bigquery/docs/datasets#dataset-naming: letters, digits and underscores, up to
# 1,024 characters.
DatasetId = Annotated[
    str, matching(r"[A-Za-z0-9_]{1,1024}", "letters, digits and underscores (a BigQuery dataset id), like usage")
]


class AnalyticsSettings(Settings):
    # On by default: the records are few and small (analysis/cost prices them at [traffic]).
    enabled: bool = True
    dataset_id: DatasetId = "usage"
    # How long a day's partition is kept: the dataset's default partition expiration
    # (cloud.google.com/bigquery/docs/managing-partitioned-tables#partition-expiration).
    retention_days: Annotated[int, between(1, 3650)] = 400
    # Bytes BigQuery stores per routed record, for the cost estimate: a usage record's JSON
    # payload plus the LogEntry's fields (resource, labels, timestamps).
    bytes_per_record: Annotated[int, between(100, 100_000)] = 1500
