"""SLOs on a custom service with multiwindow burn-rate alerts, the plain alerts, and their channels."""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_google.data_google_project import DataGoogleProject
from cdktf_cdktf_provider_google.monitoring_alert_policy import (
    MonitoringAlertPolicy,
    MonitoringAlertPolicyConditions,
    MonitoringAlertPolicyConditionsConditionPrometheusQueryLanguage,
    MonitoringAlertPolicyConditionsConditionThreshold,
    MonitoringAlertPolicyDocumentation,
)
from cdktf_cdktf_provider_google.monitoring_custom_service import MonitoringCustomService
from cdktf_cdktf_provider_google.monitoring_notification_channel import MonitoringNotificationChannel
from cdktf_cdktf_provider_google.monitoring_slo import (
    MonitoringSlo,
    MonitoringSloRequestBasedSli,
    MonitoringSloRequestBasedSliDistributionCut,
    MonitoringSloRequestBasedSliDistributionCutRange,
    MonitoringSloRequestBasedSliGoodTotalRatio,
)
from cdktf_cdktf_provider_google.pubsub_topic import PubsubTopic
from cdktf_cdktf_provider_google.pubsub_topic_iam_member import PubsubTopicIamMember
from constructs import Construct

from hybrid.alerting import BURN_RATES, objective_keys, prom_alerts
from hybrid.config import Environment
from hybrid.config.slo import NotifySettings

# Our services' metrics as Managed Service for Prometheus stores them: prometheus.googleapis.com/NAME/KIND
# on the prometheus_target resource (cloud.google.com/stackdriver/docs/managed-prometheus/troubleshooting#metric-names).
_PROM = 'resource.type="prometheus_target" metric.type="prometheus.googleapis.com/{name}/{kind}"'


class NotificationChannels(Construct):
    """The channels [slo.notify] names: one per email, and a Pub/Sub topic made here."""

    def __init__(self, scope: Construct, construct_id: str, env: Environment, notify: NotifySettings) -> None:
        super().__init__(scope, construct_id)
        # cloud.google.com/monitoring/support/notification-options#email and #pubsub.
        self.names = [
            MonitoringNotificationChannel(
                self,
                f"email-{i}",
                display_name=f"{env.name} ops {email}",
                type="email",
                labels={"email_address": email},
            ).name
            for i, email in enumerate(notify.emails)
        ]
        if notify.pubsub_topic is not None:
            topic = PubsubTopic(self, "topic", name=notify.pubsub_topic)
            project = DataGoogleProject(self, "project")
            # The monitoring notification service agent publishes (notification-options#pubsub).
            PubsubTopicIamMember(
                self,
                "agent-publishes",
                topic=topic.name,
                role="roles/pubsub.publisher",
                member=f"serviceAccount:service-{project.number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com",
            )
            self.names.append(
                MonitoringNotificationChannel(
                    self, "pubsub", display_name=f"{env.name} ops topic", type="pubsub", labels={"topic": topic.id}
                ).name
            )


@dataclass(frozen=True)
class Objective:
    key: str
    title: str
    goal: float
    sli: MonitoringSloRequestBasedSli


def objectives(env: Environment) -> tuple[Objective, ...]:
    """Request-based SLIs over our services' Prometheus metrics
    (cloud.google.com/stackdriver/docs/solutions/slo-monitoring/api/using-api#slo-request-based)."""
    slo = env.slo
    assert slo is not None
    requests = _PROM.format(name="gateway_requests_total", kind="counter")
    lines = _PROM.format(name="worker_lines_total", kind="counter")
    every = (
        Objective(
            "availability",
            "Gateway availability",
            slo.availability_goal,
            MonitoringSloRequestBasedSli(
                good_total_ratio=MonitoringSloRequestBasedSliGoodTotalRatio(
                    bad_service_filter=f'{requests} metric.labels.status=monitoring.regex.full_match("5..")',
                    total_service_filter=requests,
                )
            ),
        ),
        Objective(
            "ttft",
            f"Orchestrator time to first token under {slo.ttft_p95_seconds}s",
            slo.ttft_goal,
            MonitoringSloRequestBasedSli(
                distribution_cut=MonitoringSloRequestBasedSliDistributionCut(
                    distribution_filter=_PROM.format(name="orchestrator_ttft_seconds", kind="histogram"),
                    range=MonitoringSloRequestBasedSliDistributionCutRange(min=0, max=slo.ttft_p95_seconds),
                )
            ),
        ),
        Objective(
            "batch",
            "Batch lines completed",
            slo.batch_goal,
            MonitoringSloRequestBasedSli(
                good_total_ratio=MonitoringSloRequestBasedSliGoodTotalRatio(
                    good_service_filter=f'{lines} metric.labels.outcome="done"', total_service_filter=lines
                )
            ),
        ),
    )
    return tuple(o for o in every if o.key in objective_keys(env))


class SlosAndAlerts(Construct):
    """A custom service holding the SLOs; two burn-rate policies per SLO; one policy per plain alert."""

    def __init__(self, scope: Construct, construct_id: str, env: Environment) -> None:
        super().__init__(scope, construct_id)
        slo = env.slo
        assert slo is not None
        channels = NotificationChannels(self, "channels", env, slo.notify).names
        service_id = f"{env.name}-ai-platform"
        service = MonitoringCustomService(
            self, "service", service_id=service_id, display_name=f"{env.name} AI platform"
        )
        self.slos: dict[str, MonitoringSlo] = {}
        for objective in objectives(env):
            made = MonitoringSlo(
                self,
                f"slo-{objective.key}",
                service=service.service_id,
                slo_id=objective.key,
                display_name=objective.title,
                goal=objective.goal,
                rolling_period_days=slo.window_days,
                request_based_sli=objective.sli,
            )
            self.slos[objective.key] = made
            # The SLO's resource name, spelled out rather than read from it: a reference inside the
            # selector's quotes does not survive cdktf's HCL rendering (checkov cannot parse it).
            # depends_on keeps the order a reference would give.
            name = f"projects/{env.project_id}/services/{service_id}/serviceLevelObjectives/{objective.key}"
            for burn in BURN_RATES:
                MonitoringAlertPolicy(
                    self,
                    f"burn-{objective.key}-{burn.severity}",
                    display_name=f"{env.name} {objective.title}: error budget burning ({burn.severity})",
                    # Both windows at once: the long one for significance, the short one so that
                    # the alert resets soon after the burn stops (sre.google/workbook/alerting-on-slos).
                    combiner="AND",
                    conditions=[
                        _burn_condition(name, window, burn.rate) for window in (burn.long_window_s, burn.short_window_s)
                    ],
                    notification_channels=channels,
                    severity="CRITICAL" if burn.severity == "page" else "WARNING",
                    user_labels={"severity": burn.severity},
                    depends_on=[made],
                )
        for alert in prom_alerts(env):
            MonitoringAlertPolicy(
                self,
                f"alert-{alert.key}",
                display_name=f"{env.name} {alert.title}",
                combiner="OR",
                conditions=[
                    MonitoringAlertPolicyConditions(
                        display_name=alert.title,
                        condition_prometheus_query_language=MonitoringAlertPolicyConditionsConditionPrometheusQueryLanguage(
                            query=alert.query, duration=f"{alert.for_seconds}s", evaluation_interval="60s"
                        ),
                    )
                ],
                notification_channels=channels,
                documentation=MonitoringAlertPolicyDocumentation(
                    content="See docs/observability.md, SLOs and alerts.", mime_type="text/markdown"
                ),
            )


def _burn_condition(slo_name: str, window_s: int, rate: float) -> MonitoringAlertPolicyConditions:
    # cloud.google.com/stackdriver/docs/solutions/slo-monitoring/api/create-policy-api: an SLO
    # condition is a threshold on the select_slo_burn_rate selector, with no aggregations.
    return MonitoringAlertPolicyConditions(
        display_name=f"burn rate over {rate}x in {window_s}s",
        condition_threshold=MonitoringAlertPolicyConditionsConditionThreshold(
            filter=f'select_slo_burn_rate("{slo_name}", "{window_s}s")',
            comparison="COMPARISON_GT",
            threshold_value=rate,
            duration="0s",
        ),
    )
