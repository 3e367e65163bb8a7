"""The services' usage records, routed by a Cloud Logging sink into a BigQuery dataset.

The services log one JSON object a line on stdout; Cloud Logging keeps the fields as jsonPayload
(cloud.google.com/logging/docs/structured-logging), so a usage record arrives with
``jsonPayload.usage_record``, ``jsonPayload.user_id``, ``jsonPayload.model`` and so on. The sink writes one table per log (``run_googleapis_com_stdout`` for Cloud Run,
``stdout`` for GKE), partitioned by day on the entry's timestamp
(cloud.google.com/logging/docs/export/bigquery#partition-tables).
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_google.bigquery_dataset import BigqueryDataset
from cdktf_cdktf_provider_google.bigquery_dataset_iam_member import BigqueryDatasetIamMember
from cdktf_cdktf_provider_google.logging_project_sink import LoggingProjectSink, LoggingProjectSinkBigqueryOptions
from constructs import Construct

from hybrid.components import roles

# What the orchestrator logs per finished request and the worker per finished batch line, from
# the services' containers only: their field ``usage_record`` names the kind of record.
USAGE_FILTER = (
    'jsonPayload.usage_record=("request" OR "batch_line") AND resource.type=("cloud_run_revision" OR "k8s_container")'
)

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class UsageSinkProps:
    project_id: str
    location: str
    dataset_id: str
    sink_name: str
    retention_days: int


class UsageSink(Construct):
    def __init__(self, scope: Construct, id_: str, props: UsageSinkProps) -> None:
        super().__init__(scope, id_)
        self.dataset = BigqueryDataset(
            self,
            "dataset",
            dataset_id=props.dataset_id,
            location=props.location,
            description="Usage records of the platform's services, routed from Cloud Logging (docs/analytics.md).",
            # Sink tables are partitioned, so a day's partition expires, not the whole table.
            default_partition_expiration_ms=props.retention_days * DAY_MS,
        )
        self.sink = LoggingProjectSink(
            self,
            "sink",
            name=props.sink_name,
            destination=f"bigquery.googleapis.com/projects/{props.project_id}/datasets/{self.dataset.dataset_id}",
            filter=USAGE_FILTER,
            # A service account of the sink's own, granted on this dataset alone below
            # (cloud.google.com/logging/docs/export/configure_export_v2#dest-auth).
            unique_writer_identity=True,
            bigquery_options=LoggingProjectSinkBigqueryOptions(use_partitioned_tables=True),
        )
        self.writer_grant = BigqueryDatasetIamMember(
            self,
            "sink-writer",
            dataset_id=self.dataset.dataset_id,
            role=roles.BIGQUERY_DATA_EDITOR,
            member=self.sink.writer_identity,
        )
