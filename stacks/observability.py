"""The observability layer: dashboards, SLOs with burn-rate alerts, plain alerts and their
channels ([slo]; docs/observability.md). The usage records' sink to BigQuery is the analytics layer's.

It reads other layers' resources by name only (ResourceNames): alerts and dashboards on a
subscription or an instance not yet made simply show no data, so the layer needs no outputs.
"""

from __future__ import annotations

from constructs import Construct

from hybrid.components.dashboards import Dashboards
from hybrid.components.slo_alerts import SlosAndAlerts
from hybrid.config import Environment
from hybrid.layer import LayerStack
from stacks.network import NetworkStack


class ObservabilityStack(LayerStack):
    def __init__(self, scope: Construct, env: Environment, network: NetworkStack) -> None:
        # After the network layer, which enables the Monitoring API. (The usage sink to BigQuery is
        # the analytics layer's: stacks/analytics.py.)
        super().__init__(scope, env, "observability", network)
        self.dashboards = Dashboards(self, "dashboards", env)
        self.slos = SlosAndAlerts(self, "slos", env)
