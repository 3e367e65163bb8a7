"""Each service's Prometheus metrics, served on an address of their own (METRICS_ADDRESS,
"host:port"), never on the service's public port: a caller of the gateway must not read them.

On Cloud Run the address is on 127.0.0.1, where only the Managed Service for Prometheus sidecar,
which shares the instance's network, scrapes it
(cloud.google.com/stackdriver/google-cloud-managed-service-for-prometheus/docs/cloudrun-sidecar);
on GKE a PodMonitoring scrapes the pod's port
(cloud.google.com/stackdriver/google-cloud-managed-service-for-prometheus/docs/managed-collection).

Labels take bounded values only: route templates, configured model and backend names, fixed
kinds. Never a user id, a raw path or a prompt (docs/observability.md, "Metrics").
"""

from __future__ import annotations

from prometheus_client import start_http_server

from services.servicekit.metrics_address import parse_address

OTHER = "other"  # the label value for anything not in its bounded set
# Seconds: from a cached token check (milliseconds) to a long completion (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def serve_metrics(address: str | None) -> None:
    """Serve the process's registry at /metrics on ``address``, in a thread of its own, if given."""
    if address:
        host, port = parse_address(address)
        start_http_server(port, addr=host)
