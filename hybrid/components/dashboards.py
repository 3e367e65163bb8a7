"""The Cloud Monitoring dashboards, from typed definitions: one overview of the chain, one per tier.

Every chart is a PromQL query (Managed Service for Prometheus reads both our services' metrics and,
through its mapping, Google's own: cloud.google.com/monitoring/promql/promql-mapping), so that
scripts/render_dashboards.py can fill the same charts from a rehearsal's scrape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cdktf_cdktf_provider_google.monitoring_dashboard import MonitoringDashboard
from constructs import Construct

from hybrid.config import Environment

# cloud.google.com/monitoring/api/ref_v3/rest/v1/projects.dashboards#mosaiclayout: a 48-column grid.
_COLUMNS = 48
_WIDTH, _HEIGHT = 24, 16


@dataclass(frozen=True)
class Chart:
    title: str
    # PromQL (cloud.google.com/monitoring/promql), each series one line of the chart.
    query: str


@dataclass(frozen=True)
class Dashboard:
    key: str
    title: str
    charts: tuple[Chart, ...]

    def json(self, env: str) -> dict[str, object]:
        """The dashboard's body (cloud.google.com/monitoring/api/ref_v3/rest/v1/projects.dashboards)."""
        per_row = _COLUMNS // _WIDTH
        tiles = [
            {
                "xPos": (i % per_row) * _WIDTH,
                "yPos": (i // per_row) * _HEIGHT,
                "width": _WIDTH,
                "height": _HEIGHT,
                "widget": {
                    "title": chart.title,
                    "xyChart": {
                        # dashboards#timeseriesquery: prometheusQuery, a PromQL query.
                        "dataSets": [{"timeSeriesQuery": {"prometheusQuery": chart.query}, "plotType": "LINE"}],
                    },
                },
            }
            for i, chart in enumerate(self.charts)
        ]
        return {"displayName": f"{env} {self.title}", "mosaicLayout": {"columns": _COLUMNS, "tiles": tiles}}


def _p95(histogram: str, by: str) -> str:
    return f"histogram_quantile(0.95, sum by (le, {by}) (rate({histogram}_bucket[5m])))"


GATEWAY_REQUESTS = Chart("Gateway requests per second by status", "sum by (status) (rate(gateway_requests_total[5m]))")
GATEWAY_LATENCY = Chart("Gateway p95 latency (s) by route", _p95("gateway_request_duration_seconds", "route"))
TTFT = Chart("Time to first token p95 (s) by model", _p95("orchestrator_ttft_seconds", "model"))
TOKENS = Chart(
    "Tokens per second by model and direction", "sum by (model, direction) (rate(orchestrator_tokens_total[5m]))"
)
WORKER_LINES = Chart("Batch lines per second by outcome", "sum by (outcome) (rate(worker_lines_total[5m]))")
SQL_CPU = Chart(
    "Cloud SQL CPU utilization",
    # cloud.google.com/monitoring/api/metrics_gcp_c#gcp-cloudsql: database/cpu/utilization.
    "max(cloudsql_googleapis_com:database_cpu_utilization)",
)


def dashboards(env: Environment) -> tuple[Dashboard, ...]:
    """The overview and one dashboard per tier; the batch tier's only where [workers] is enabled."""
    edge = Dashboard(
        "edge",
        "Edge and Cloud Run",
        (
            GATEWAY_REQUESTS,
            GATEWAY_LATENCY,
            Chart("Gateway auth failures by reason", "sum by (reason) (rate(gateway_auth_failures_total[5m]))"),
            Chart("Gateway rate-limited by limit", "sum by (limit) (rate(gateway_rate_limited_total[5m]))"),
            Chart(
                "Cloud Run requests by service and response class",
                # cloud.google.com/monitoring/api/metrics_gcp_p_z#gcp-run: request_count.
                "sum by (service_name, response_code_class) (rate(run_googleapis_com:request_count[5m]))",
            ),
            Chart(
                "Orchestrator backend errors by backend and kind",
                "sum by (backend, kind) (rate(orchestrator_backend_errors_total[5m]))",
            ),
        ),
    )
    # docs.vllm.ai/en/stable/usage/metrics/ and docs.vllm.ai/en/latest/design/metrics.html: vLLM's own
    # metrics (V1 engine), prefixed "vllm:", labelled model_name.
    models = Dashboard(
        "models",
        "Models and GPUs",
        (
            TTFT,
            Chart("vLLM time to first token p95 (s)", _p95("vllm:time_to_first_token_seconds", "model_name")),
            Chart("vLLM inter-token latency p95 (s)", _p95("vllm:inter_token_latency_seconds", "model_name")),
            Chart("vLLM queue time p95 (s)", _p95("vllm:request_queue_time_seconds", "model_name")),
            Chart("vLLM KV cache use (fraction)", "max by (model_name) (vllm:kv_cache_usage_perc)"),
            Chart("vLLM requests waiting", "sum by (model_name) (vllm:num_requests_waiting)"),
            TOKENS,
            Chart("Quota refusals by model", "sum by (model) (rate(orchestrator_quota_refusals_total[5m]))"),
        ),
    )
    batch = Dashboard(
        "batch",
        "Batch",
        (
            WORKER_LINES,
            Chart("Worker charge failures per second", "sum(rate(worker_charge_failures_total[5m]))"),
            Chart("Worker lease extensions per second", "sum(rate(worker_lease_extensions_total[5m]))"),
            Chart(
                "Worker finalize p95 (s)",
                "histogram_quantile(0.95, sum by (le) (rate(worker_finalize_seconds_bucket[5m])))",
            ),
            Chart(
                "Oldest unacked batch line (s)",
                # cloud.google.com/monitoring/api/metrics_gcp_p_z#gcp-pubsub: subscription/oldest_unacked_message_age.
                f'max(pubsub_googleapis_com:subscription_oldest_unacked_message_age{{subscription_id="{env.names.batch_subscription}"}})',
            ),
            Chart(
                "Dead letters published per second",
                f'sum(rate(pubsub_googleapis_com:topic_send_request_count{{topic_id="{env.names.dead_letter_topic}"}}[5m]))',
            ),
        ),
    )
    database = Dashboard(
        "database",
        "Database",
        (
            SQL_CPU,
            Chart(
                "Cloud SQL connections",
                # metrics_gcp_c#gcp-cloudsql: database/postgresql/num_backends.
                "sum(cloudsql_googleapis_com:database_postgresql_num_backends)",
            ),
            Chart(
                "Ledger write p95 (s)",
                "histogram_quantile(0.95, sum by (le) (rate(orchestrator_ledger_write_seconds_bucket[5m])))",
            ),
            Chart("Ledger write failures per second", "sum(rate(orchestrator_ledger_write_failures_total[5m]))"),
        ),
    )
    overview = Dashboard(
        "overview",
        "Overview",
        (GATEWAY_REQUESTS, GATEWAY_LATENCY, TTFT, TOKENS, SQL_CPU, *((WORKER_LINES,) if env.workers.enabled else ())),
    )
    return (overview, edge, models, *((batch,) if env.workers.enabled else ()), database)


class Dashboards(Construct):
    """One google_monitoring_dashboard per definition."""

    def __init__(self, scope: Construct, construct_id: str, env: Environment) -> None:
        super().__init__(scope, construct_id)
        self.definitions = dashboards(env)
        for board in self.definitions:
            MonitoringDashboard(self, board.key, dashboard_json=json.dumps(board.json(env.name), sort_keys=True))
