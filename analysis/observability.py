"""The seam between the monitoring resources and what runs: every metric a dashboard, alert policy
or SLO names, and every label it filters or groups by, must be one a running service emitted (a
scrape of its /metrics) or a Google or vLLM metric listed here with its documentation.

Read from the synthesized JSON (no cdktf): google_monitoring_dashboard's dashboard_json,
google_monitoring_alert_policy's conditions and google_monitoring_slo's SLIs. Queries come in
three forms: PromQL (Managed Service for Prometheus: our metrics and vLLM's by their own names,
Google's as ``run_googleapis_com:request_count``), and Monitoring filters naming
``metric.type="run.googleapis.com/request_count"`` or, for Prometheus metrics,
``metric.type="prometheus.googleapis.com/NAME/KIND"``
(cloud.google.com/stackdriver/docs/managed-prometheus/promql and
cloud.google.com/monitoring/promql/promql-mapping).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

GCP_METRICS = "https://cloud.google.com/monitoring/api/metrics_gcp"
VLLM_METRICS = "https://docs.vllm.ai/en/stable/usage/metrics/"


@dataclass(frozen=True)
class Known:
    """A metric no service of ours emits, with its labels as its documentation lists them."""

    url: str
    labels: frozenset[str]


def _known(url: str, *labels: str) -> Known:
    return Known(url, frozenset(labels))


# Google's metrics, by metric type: the labels are the metric's own and its monitored resource's
# (Cloud Run: cloud_run_revision, GKE: k8s_container; cloud.google.com/monitoring/api/resources).
_RUN = ("project_id", "service_name", "revision_name", "location", "configuration_name")
TARGET_LABELS_KSM = ("project_id", "location", "cluster", "namespace")
KNOWN: dict[str, Known] = {
    "run.googleapis.com/request_count": _known(
        GCP_METRICS + "#gcp-run", *_RUN, "response_code", "response_code_class", "route"
    ),
    "run.googleapis.com/request_latencies": _known(
        GCP_METRICS + "#gcp-run", *_RUN, "response_code", "response_code_class", "route"
    ),
    "run.googleapis.com/container/instance_count": _known(GCP_METRICS + "#gcp-run", *_RUN, "state"),
    "run.googleapis.com/container/cpu/utilizations": _known(GCP_METRICS + "#gcp-run", *_RUN),
    "run.googleapis.com/container/memory/utilizations": _known(GCP_METRICS + "#gcp-run", *_RUN),
    "kubernetes.io/container/accelerator/duty_cycle": _known(
        "https://cloud.google.com/monitoring/api/metrics_kubernetes",
        "project_id",
        "location",
        "cluster_name",
        "namespace_name",
        "pod_name",
        "container_name",
        "make",
        "model",
        "accelerator_id",
    ),
    "pubsub.googleapis.com/subscription/num_undelivered_messages": _known(
        GCP_METRICS + "#gcp-pubsub", "project_id", "subscription_id"
    ),
    "pubsub.googleapis.com/subscription/oldest_unacked_message_age": _known(
        GCP_METRICS + "#gcp-pubsub", "project_id", "subscription_id"
    ),
    "cloudsql.googleapis.com/database/cpu/utilization": _known(
        GCP_METRICS + "#gcp-cloudsql", "project_id", "database_id", "region"
    ),
    "cloudsql.googleapis.com/database/postgresql/num_backends": _known(
        GCP_METRICS + "#gcp-cloudsql", "project_id", "database_id", "region", "database"
    ),
    "pubsub.googleapis.com/topic/send_request_count": _known(
        GCP_METRICS + "#gcp-pubsub", "project_id", "topic_id", "response_class", "response_code"
    ),
    # GKE's managed kube state metrics package, on by default on Autopilot from 1.27.4-gke.900
    # (cloud.google.com/kubernetes-engine/docs/how-to/kube-state-metrics), a Prometheus metric.
    "kube_pod_status_phase": _known(
        "https://cloud.google.com/kubernetes-engine/docs/how-to/kube-state-metrics",
        *TARGET_LABELS_KSM,
        "pod",
        "phase",
        "uid",
    ),
    # vLLM's, by name (its OpenAI-compatible server's /metrics), each labelled by model_name.
    **{
        f"vllm:{name}": _known(VLLM_METRICS, "model_name", *extra)
        for name, *extra in (
            ("num_requests_running",),
            ("num_requests_waiting",),
            ("kv_cache_usage_perc",),
            ("gpu_cache_usage_perc",),
            ("prompt_tokens_total",),
            ("generation_tokens_total",),
            ("request_success_total", "finished_reason"),
            ("time_to_first_token_seconds",),
            ("time_per_output_token_seconds",),
            ("inter_token_latency_seconds",),
            ("e2e_request_latency_seconds",),
            ("request_queue_time_seconds",),
        )
    },
}
# What Managed Service for Prometheus adds to every scraped series: the prometheus_target
# resource's labels (cloud.google.com/stackdriver/docs/managed-prometheus/query).
TARGET_LABELS = frozenset({"project_id", "location", "cluster", "namespace", "job", "instance"})
# What PromQL adds to a Google metric's own labels: the resource type it is written against
# (cloud.google.com/monitoring/promql/promql-mapping).
GOOGLE_PROMQL_LABELS = frozenset({"monitored_resource"})
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
    }
)
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
_LABEL_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="(?:[^"\\]|\\.)*"')
_METRIC_TYPE = re.compile(r'metric\.type\s*=\s*"([^"]+)"')
_FILTER_LABEL = re.compile(r"metric\.labels?\.([A-Za-z_][A-Za-z0-9_]*)")
_MANAGED_PROMETHEUS = re.compile(r"prometheus\.googleapis\.com/(.+)/([a-z]+)$")


@dataclass(frozen=True)
class Reference:
    """A metric a monitoring resource names, with the labels it filters or groups it by."""

    metric: str  # as the scrape names its samples (our metrics, vLLM's) or Google's metric type
    labels: frozenset[str]
    where: str  # "google_monitoring_dashboard.NAME", ...
    kind: str = ""  # for prometheus.googleapis.com/NAME/KIND: histogram, counter, gauge, ...


@dataclass
class Scrape:
    """What running services emitted: sample names, each with the label names it carried."""

    samples: dict[str, set[str]] = field(default_factory=dict)
    histograms: set[str] = field(default_factory=set)  # families of TYPE histogram

    @classmethod
    def parse(cls, text: str) -> Scrape:
        """The Prometheus text exposition format (prometheus.io/docs/instrumenting/exposition_formats)."""
        scrape = cls()
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(maxsplit=3)
                if kind.strip() == "histogram":
                    scrape.histograms.add(name)
            elif line and not line.startswith("#"):
                name, _, rest = line.partition("{")
                name = name.split()[0]
                # A label's value may hold braces (a route template): read pairs, not up to "}".
                labels = set(_LABEL_PAIR.findall(rest))
                scrape.samples.setdefault(name, set()).update(labels)
        return scrape


def promql_name(metric_type: str) -> str:
    """A Google metric type's PromQL name: run.googleapis.com/request_count -> run_googleapis_com:request_count
    (cloud.google.com/monitoring/promql/promql-mapping)."""
    domain, _, path = metric_type.partition("/")
    return domain.replace(".", "_") + ":" + path.replace("/", "_").replace(".", "_")


_BY_PROMQL_NAME = {promql_name(metric_type): metric_type for metric_type in KNOWN if "/" in metric_type}


def promql_references(query: str, where: str) -> Iterator[Reference]:
    """The metrics a PromQL query selects, each with its matchers' labels and the labels the query
    groups or matches by (which each of its metrics must then carry)."""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)
    grouped = frozenset(
        label.strip() for _, labels in _GROUPING.findall(unquoted) for label in labels.split(",") if label.strip()
    )
    scrubbed = re.sub(r"\[[^\]]*\]", "", _GROUPING.sub(" ", unquoted))
    for match in _SELECTOR.finditer(scrubbed):
        name, matchers = match.group(1), match.group(2) or ""
        following = scrubbed[match.end() :].lstrip()
        if name.lower() in PROMQL_KEYWORDS or following.startswith("("):
            continue  # a keyword, a function or an aggregation
        yield Reference(name, frozenset(_MATCHER.findall(matchers)) | grouped, where)


def filter_references(monitoring_filter: str, where: str) -> Iterator[Reference]:
    labels = frozenset(_FILTER_LABEL.findall(monitoring_filter))
    for metric_type in _METRIC_TYPE.findall(monitoring_filter):
        if managed := _MANAGED_PROMETHEUS.match(metric_type):
            yield Reference(managed.group(1), labels, where, managed.group(2))
        else:
            yield Reference(metric_type, labels, where)


def _strings(value: Any) -> Iterator[tuple[str, str]]:
    """Every (key, string) in a JSON value, however deep."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if isinstance(inner, str):
                yield key, inner
            else:
                yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


MONITORING_RESOURCES = ("google_monitoring_dashboard", "google_monitoring_alert_policy", "google_monitoring_slo")


def references(stack: dict[str, Any]) -> list[Reference]:
    """Every metric the monitoring resources of a synthesized stack (cdk.tf.json) name."""
    found: list[Reference] = []
    for kind in MONITORING_RESOURCES:
        for name, resource in stack.get("resource", {}).get(kind, {}).items():
            where = f"{kind}.{name}"
            body = dict(resource)
            if isinstance(body.get("dashboard_json"), str):
                body["dashboard_json"] = json.loads(body["dashboard_json"])
            for key, text in _strings(body):
                if "filter" in key.lower() and "metric.type" in text:
                    found += filter_references(text, where)
                elif key in ("query", "prometheusQuery", "prometheus_query"):
                    found += promql_references(text, where)
    return found


def problems(found: list[Reference], scrape: Scrape) -> list[str]:
    """Each reference neither emitted nor known, and each label its metric does not carry."""
    return [problem for reference in found if (problem := _problem(reference, scrape))]


def _problem(reference: Reference, scrape: Scrape) -> str | None:
    metric, where = reference.metric, reference.where
    # A histogram's series are its name and a suffix; a name may end so itself (request_count).
    names = (metric, _base(metric))
    known = next((KNOWN[n] for name in names if (n := _BY_PROMQL_NAME.get(name, name)) in KNOWN), None)
    if known is not None:
        carried = known.labels | {"le"} if metric.endswith("_bucket") else known.labels
        carried |= TARGET_LABELS if metric.startswith("vllm:") else GOOGLE_PROMQL_LABELS
    else:
        emitted = _emitted(reference, scrape)
        if emitted is None:
            return (
                f"{where}: metric {metric!r} is neither emitted by a running service nor a known Google or vLLM metric"
            )
        carried = frozenset(emitted) | TARGET_LABELS
    unknown = sorted(reference.labels - carried - {"__name__"})
    return f"{where}: {metric!r} has no label {', '.join(map(repr, unknown))}" if unknown else None


def _emitted(reference: Reference, scrape: Scrape) -> set[str] | None:
    """The labels a scraped metric carried; None if no service emitted it."""
    if reference.kind == "histogram":  # prometheus.googleapis.com/NAME/histogram: NAME is the family
        if reference.metric not in scrape.histograms:
            return None
        return scrape.samples.get(reference.metric + "_bucket", set()) - {"le"}
    return scrape.samples.get(reference.metric)


def _base(metric: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if metric.endswith(suffix):
            return metric.removesuffix(suffix)
    return metric
