"""Layer `analytics`: the services' usage records, routed from Cloud Logging into BigQuery.

A log sink rather than a scheduled export of the ledger (docs/analytics.md): it needs no
database credentials nor a Cloud SQL federated connection, and records arrive within minutes.
The ledger in Cloud SQL stays the source of truth for quotas and billing.
"""

from __future__ import annotations

from cdktf import TerraformOutput
from constructs import Construct

from hybrid.components.usage_sink import UsageSink, UsageSinkProps
from hybrid.config import Environment
from hybrid.layer import LayerStack
from stacks.network import NetworkStack


class AnalyticsStack(LayerStack):
    def __init__(self, scope: Construct, env: Environment, network: NetworkStack) -> None:
        # After the network layer: the BigQuery and Logging APIs are enabled there.
        super().__init__(scope, env, "analytics", network)
        settings = env.analytics
        self.usage = UsageSink(
            self,
            "usage",
            UsageSinkProps(
                project_id=env.project_id,
                location=env.region,
                dataset_id=settings.dataset_id,
                sink_name=env.names.usage_sink,
                retention_days=settings.retention_days,
            ),
        )
        TerraformOutput(self, "usage_dataset", value=self.usage.dataset.dataset_id)
        TerraformOutput(self, "usage_sink_writer", value=self.usage.sink.writer_identity)
