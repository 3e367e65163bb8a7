"""The alerts' definitions, apart from any construct: the layer builds them (hybrid/components/slo_alerts.py)
and the cost estimate counts their conditions (analysis/cost/layers.py)."""

from __future__ import annotations

from dataclasses import dataclass

from hybrid.config import Environment


@dataclass(frozen=True)
class BurnRate:
    """One multiwindow burn-rate alert: both windows over the rate (sre.google/workbook/alerting-on-slos)."""

    severity: str
    long_window_s: int
    short_window_s: int
    rate: float


# The SRE workbook's recommended pair: 2% of a 30-day budget in an hour pages, 5% in six hours tickets.
BURN_RATES = (BurnRate("page", 3600, 300, 14.4), BurnRate("ticket", 21600, 1800, 6.0))


@dataclass(frozen=True)
class PromAlert:
    key: str
    title: str
    # A PromQL expression that returns series only while the alert should fire
    # (cloud.google.com/monitoring/promql/create-promql-alerts-console and the API's conditionPrometheusQueryLanguage).
    query: str
    for_seconds: int


def prom_alerts(env: Environment) -> tuple[PromAlert, ...]:
    slo = env.slo
    assert slo is not None
    names = env.names
    # cloud.google.com/monitoring/api/metrics_gcp_c#gcp-cloudsql, through the PromQL mapping
    # (cloud.google.com/monitoring/promql/promql-mapping): database_id is "project:instance".
    sql = f'database_id="{env.project_id}:{names.sql_instance}"'
    alerts = [
        PromAlert(
            "sql-cpu",
            "Cloud SQL CPU near its limit",
            f"max(cloudsql_googleapis_com:database_cpu_utilization{{{sql}}}) > {slo.sql_cpu_percent / 100}",
            300,
        ),
        PromAlert(
            "sql-connections",
            "Cloud SQL connections near max_connections",
            f"sum(cloudsql_googleapis_com:database_postgresql_num_backends{{{sql}}})"
            f" > {slo.sql_max_connections * slo.sql_connections_percent // 100}",
            300,
        ),
        PromAlert(
            "ledger-writes",
            "Ledger writes failing",
            "sum(rate(orchestrator_ledger_write_failures_total[5m])) > 0",
            300,
        ),
    ]
    if env.inference.placement == "gke":
        # kube-state-metrics' kube_pod_status_phase, from GKE's managed package
        # (cloud.google.com/kubernetes-engine/docs/how-to/kube-state-metrics).
        alerts.append(
            PromAlert(
                "gpu-pods-pending",
                "GPU Pods pending",
                'sum(kube_pod_status_phase{namespace="inference",phase="Pending"}) > 0',
                slo.pending_gpu_minutes * 60,
            )
        )
    if env.workers.enabled:
        # cloud.google.com/monitoring/api/metrics_gcp_p_z#gcp-pubsub.
        alerts += [
            PromAlert(
                "oldest-unacked",
                "Batch lines waiting too long",
                "max(pubsub_googleapis_com:subscription_oldest_unacked_message_age"
                f'{{subscription_id="{names.batch_subscription}"}}) > {slo.oldest_unacked_seconds}',
                300,
            ),
            PromAlert(
                "dead-letters",
                "Dead letters present",
                "max(pubsub_googleapis_com:subscription_num_undelivered_messages"
                f'{{subscription_id="{names.dead_letter_subscription}"}}) > 0',
                60,
            ),
        ]
    return tuple(alerts)


def objective_keys(env: Environment) -> tuple[str, ...]:
    """The SLOs the layer makes: the batch tier's only where [workers] is enabled."""
    return ("availability", "ttft", *(("batch",) if env.workers.enabled else ()))


def condition_count(env: Environment) -> int:
    """Conditions across every policy: two windows per burn rate per SLO, one per plain alert."""
    return len(objective_keys(env)) * len(BURN_RATES) * 2 + len(prom_alerts(env))
