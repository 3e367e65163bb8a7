"""The services' usage records, routed by a log sink into a BigQuery dataset, partitioned by day.

A sink rather than a scheduled export of the ledger: it needs no job, no credentials to the
database and no schedule, the records arrive within minutes, and it carries what the ledger does
not hold (time to first token, batch lines' states). cloud.google.com/logging/docs/export/bigquery.
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.bigquery_dataset import BigqueryDataset
from cdktf_cdktf_provider_google.bigquery_dataset_iam_member import BigqueryDatasetIamMember
from cdktf_cdktf_provider_google.logging_project_sink import LoggingProjectSink, LoggingProjectSinkBigqueryOptions
from constructs import Construct

from hybrid.config import Environment

# The structured records the services log for each request and each batch line
# (services/servicekit/logs.py; docs/observability.md, Usage queries).
USAGE_MESSAGES = ("usage", "batch line")


def sink_filter() -> str:
    """Only the usage records, from Cloud Run (the orchestrator) and GKE (the workers); Logging
    query language: cloud.google.com/logging/docs/view/logging-query-language. One project is one
    environment, so no environment label is needed."""
    messages = " OR ".join(f'"{m}"' for m in USAGE_MESSAGES)
    return f'jsonPayload.message=({messages}) AND resource.type=("cloud_run_revision" OR "k8s_container")'


class UsageSink(Construct):
    """A dataset, the sink into it, and the sink's writer identity granted on the dataset only."""

    def __init__(self, scope: Construct, construct_id: str, env: Environment) -> None:
        super().__init__(scope, construct_id)
        self.dataset = BigqueryDataset(
            self,
            "dataset",
            # cloud.google.com/bigquery/docs/datasets#dataset-naming: letters, digits and underscores.
            dataset_id=f"{env.name.replace('-', '_')}_usage",
            location=env.region,
            description="The services' usage records, from the usage log sink (docs/observability.md)",
            delete_contents_on_destroy=False,
        )
        self.sink = LoggingProjectSink(
            self,
            "sink",
            name=env.names.usage_sink,
            destination=f"bigquery.googleapis.com/projects/{env.project_id}/datasets/{self.dataset.dataset_id}",
            filter=sink_filter(),
            # export/bigquery#partitioned-tables: one table per log, partitioned by the entry's day,
            # rather than a table per day.
            bigquery_options=LoggingProjectSinkBigqueryOptions(use_partitioned_tables=True),
            unique_writer_identity=True,
        )
        # The sink writes as its own identity, which must be granted on the destination
        # (cloud.google.com/logging/docs/export/configure_export_v2#dest-auth): on this dataset only.
        self.grant = BigqueryDatasetIamMember(
            self,
            "sink-writes",
            dataset_id=self.dataset.dataset_id,
            role="roles/bigquery.dataEditor",
            member=self.sink.writer_identity,
        )
