"""The observability layer ([slo]): dashboards, SLOs, burn-rate and plain alerts, channels, usage sink."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hybrid.alerting import BURN_RATES, condition_count
from hybrid.components.slo_alerts import SlosAndAlerts
from hybrid.config.errors import ConfigError
from hybrid.config.loading import load_environment, parse_environment
from iac import DEV, ROOT, only, resources, synth_in_process

Stacks = dict[str, dict[str, Any]]


def boards(stacks: Stacks, env: str) -> dict[str, Any]:
    found = [
        json.loads(b["dashboard_json"])
        for b in resources(stacks[f"{env}-observability"], "google_monitoring_dashboard").values()
    ]
    return {b["displayName"]: b for b in found}


def test_each_environment_has_an_overview_and_a_dashboard_per_tier(synth_json: Stacks) -> None:
    assert sorted(boards(synth_json, "dev")) == [
        "dev Database",
        "dev Edge and Cloud Run",
        "dev Models and GPUs",
        "dev Overview",
    ]
    # prod has the workers tier: its batch dashboard too.
    assert sorted(boards(synth_json, "prod")) == [
        "prod Batch",
        "prod Database",
        "prod Edge and Cloud Run",
        "prod Models and GPUs",
        "prod Overview",
    ]
    models = boards(synth_json, "prod")["prod Models and GPUs"]
    queries = [
        t["widget"]["xyChart"]["dataSets"][0]["timeSeriesQuery"]["prometheusQuery"]
        for t in models["mosaicLayout"]["tiles"]
    ]
    for vllm in (
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:request_queue_time_seconds_bucket",
        "vllm:kv_cache_usage_perc",
        "vllm:num_requests_waiting",
    ):
        assert any(vllm in q for q in queries), vllm
    # The tiles sit on the 48-column grid without overlapping.
    places = {(t["xPos"], t["yPos"]) for t in models["mosaicLayout"]["tiles"]}
    assert len(places) == len(models["mosaicLayout"]["tiles"]) and all(x + 24 <= 48 for x, _ in places)


def test_slos_take_their_goals_and_window_from_the_slo_table(synth_json: Stacks) -> None:
    slos = {s["slo_id"]: s for s in resources(synth_json["prod-observability"], "google_monitoring_slo").values()}
    assert sorted(slos) == ["availability", "batch", "ttft"]
    assert [slos[k]["goal"] for k in ("availability", "ttft", "batch")] == [0.995, 0.95, 0.99]
    assert {s["rolling_period_days"] for s in slos.values()} == {28}
    cut = slos["ttft"]["request_based_sli"]["distribution_cut"]
    assert cut["range"] == {"min": 0, "max": 2.0}
    assert "prometheus.googleapis.com/orchestrator_ttft_seconds/histogram" in cut["distribution_filter"]
    ratio = slos["availability"]["request_based_sli"]["good_total_ratio"]
    assert 'metric.labels.status=monitoring.regex.full_match("5..")' in ratio["bad_service_filter"]
    # dev has no workers: no batch SLO.
    dev = {s["slo_id"] for s in resources(synth_json["dev-observability"], "google_monitoring_slo").values()}
    assert dev == {"availability", "ttft"}


def test_each_slo_has_a_fast_page_and_a_slow_ticket_multiwindow_alert(synth_json: Stacks) -> None:
    policies = resources(synth_json["prod-observability"], "google_monitoring_alert_policy")
    burns = {k: p for k, p in policies.items() if "burn" in k}
    assert len(burns) == 3 * 2
    page = next(p for k, p in burns.items() if "ttft" in k and "page" in k)
    assert page["combiner"] == "AND" and page["severity"] == "CRITICAL"
    conditions = [c["condition_threshold"] for c in page["conditions"]]
    assert [c["threshold_value"] for c in conditions] == [14.4, 14.4]
    assert [c["filter"].split('", "')[1] for c in conditions] == ['3600s")', '300s")']
    assert all(
        c["filter"].startswith(
            'select_slo_burn_rate("projects/replace-me-prod/services/prod-ai-platform/serviceLevelObjectives/ttft"'
        )
        for c in conditions
    )
    assert page["depends_on"] == [
        f"google_monitoring_slo.{k}"
        for k in resources(synth_json["prod-observability"], "google_monitoring_slo")
        if "ttft" in k
    ]
    ticket = next(p for k, p in burns.items() if "ttft" in k and "ticket" in k)
    assert [c["condition_threshold"]["threshold_value"] for c in ticket["conditions"]] == [6.0, 6.0]
    assert [c["condition_threshold"]["filter"].split('", "')[1] for c in ticket["conditions"]] == [
        '21600s")',
        '1800s")',
    ]
    assert [b.rate for b in BURN_RATES] == [14.4, 6.0]


def test_plain_alerts_and_their_thresholds(synth_json: Stacks) -> None:
    policies = resources(synth_json["prod-observability"], "google_monitoring_alert_policy")
    promql = {
        p["display_name"]: p["conditions"][0]["condition_prometheus_query_language"]
        for p in policies.values()
        if "condition_prometheus_query_language" in p["conditions"][0]
    }
    assert promql["prod GPU Pods pending"]["duration"] == "900s"
    assert 'phase="Pending"' in promql["prod GPU Pods pending"]["query"]
    assert promql["prod Batch lines waiting too long"]["query"].endswith(
        'subscription_oldest_unacked_message_age{subscription_id="prod-batch-workers"}) > 1800'
    )
    assert 'subscription_id="prod-batch-dead-letters"}) > 0' in promql["prod Dead letters present"]["query"]
    assert promql["prod Cloud SQL CPU near its limit"]["query"].endswith("> 0.8")
    assert promql["prod Cloud SQL connections near max_connections"]["query"].endswith("> 80")
    assert (
        promql["prod Ledger writes failing"]["query"] == "sum(rate(orchestrator_ledger_write_failures_total[5m])) > 0"
    )
    # Every condition across the policies is one the cost estimate counts.
    conditions = sum(len(p["conditions"]) for p in policies.values())
    assert conditions == condition_count(load_environment(ROOT / "environments" / "prod.toml"))


def test_channels_come_from_the_notify_table(synth_json: Stacks) -> None:
    stack = synth_json["dev-observability"]
    channel = only(stack, "google_monitoring_notification_channel")
    assert channel["type"] == "email" and channel["labels"] == {"email_address": "ops@example.com"}
    (address,) = resources(stack, "google_monitoring_notification_channel")
    for policy in resources(stack, "google_monitoring_alert_policy").values():
        assert policy["notification_channels"] == [f"${{google_monitoring_notification_channel.{address}.name}}"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[slo]\n", "slo.notify"),
        ("[slo]\n[slo.notify]\nemails = []\n", "must name at least one of emails"),
        ('[slo]\navailability_goal = 0.5\n[slo.notify]\nemails = ["a@b.co"]\n', "availability_goal"),
        ('[slo]\n[slo.notify]\nemails = ["not-an-email"]\n', "an email address"),
    ],
)
def test_slo_table_mistakes_are_refused(table: str, message: str) -> None:
    text = DEV[: DEV.index("\n# The observability layer")] + "\n" + table
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_environment(tomllib.loads(text), Path("dev.toml"))


def test_a_pubsub_topic_channel_is_made_and_the_notification_agent_may_publish_to_it() -> None:
    text = DEV.replace('emails = ["ops@example.com"]', 'pubsub_topic = "dev-alerts"')
    env = parse_environment(tomllib.loads(text), Path("dev.toml"))
    stack = synth_in_process(lambda scope: SlosAndAlerts(scope, "slos", env))
    channel = only(stack, "google_monitoring_notification_channel")
    assert channel["type"] == "pubsub" and channel["labels"]["topic"].endswith(".id}")
    assert only(stack, "google_pubsub_topic")["name"] == "dev-alerts"
    grant = only(stack, "google_pubsub_topic_iam_member")
    assert grant["role"] == "roles/pubsub.publisher"
    assert grant["member"].startswith("serviceAccount:service-${data.google_project.")
    assert grant["member"].endswith("@gcp-sa-monitoring-notification.iam.gserviceaccount.com")
