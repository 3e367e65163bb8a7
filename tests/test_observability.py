"""The seam checker (analysis/observability.py) on fixtures: a dashboard, an alert policy and an SLO
whose every metric and label a service emits or Google and vLLM document pass; a misspelt metric
or label fails, naming it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest

from analysis.observability import KNOWN, Reference, Scrape, problems, promql_name, promql_references, references
from services.gateway import metrics as gateway
from services.orchestrator import metrics as orchestrator
from services.worker import metrics as worker_metrics  # noqa: F401 (registers the worker's series)

FIXTURES = Path(__file__).parent / "fixtures" / "monitoring"
ROOT = Path(__file__).resolve().parent.parent


def stack(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((FIXTURES / name).read_text())
    return loaded


@pytest.fixture(scope="module")
def scrape() -> Scrape:
    """What this process's metrics expose once the labelled ones have seen an event (the worker's
    lines are exposed from the start, each outcome at 0)."""
    gateway.REQUESTS.labels("/v1/chat/completions", "200").inc(0)
    orchestrator.TTFT.labels("standin-*", "standin")
    return Scrape.parse(generate_latest(REGISTRY).decode())


def test_the_fixtures_monitoring_names_only_emitted_or_documented_metrics(scrape: Scrape) -> None:
    found = references(stack("monitoring.json"))
    assert {r.metric for r in found} == {
        "orchestrator_ttft_seconds_bucket",
        "gateway_requests_total",
        "worker_lines_total",
        "run_googleapis_com:request_count",
        "run.googleapis.com/request_latencies",
        "vllm:num_requests_waiting",
        "orchestrator_ledger_write_failures_total",
    }
    slo = [r for r in found if r.where == "google_monitoring_slo.gateway_availability"]
    assert {(r.metric, r.kind, r.labels) for r in slo} == {
        ("gateway_requests_total", "counter", frozenset({"status"})),
        ("gateway_requests_total", "counter", frozenset()),
    }
    assert problems(found, scrape) == []


def test_a_misspelt_metric_fails_naming_it_and_where(scrape: Scrape) -> None:
    (problem,) = problems(references(stack("misspelt_metric.json")), scrape)
    assert "google_monitoring_dashboard.platform" in problem and "'orchestrator_ttfb_seconds_bucket'" in problem


def test_a_misspelt_label_fails_naming_it(scrape: Scrape) -> None:
    (problem,) = problems(references(stack("misspelt_label.json")), scrape)
    assert "google_monitoring_slo.gateway_availability" in problem and "'status_code'" in problem


@pytest.mark.parametrize(
    ("query", "wrong"),
    [
        ("rate(run_googleapis_com:request_cont[5m])", "'run_googleapis_com:request_cont'"),
        ("sum by (model) (vllm:num_requests_waiting)", "'model'"),  # vLLM's label is model_name
        ('sum(rate(gateway_requests_total{path="/v1"}[5m]))', "'path'"),  # the label is route
        ("histogram_quantile(0.9, sum by (le) (rate(worker_finalise_seconds_bucket[5m])))", "finalise"),
    ],
)
def test_misspelt_promql_fails(scrape: Scrape, query: str, wrong: str) -> None:
    (problem,) = problems(list(promql_references(query, "test")), scrape)
    assert wrong in problem


def test_a_histogram_is_named_by_its_family_in_a_managed_prometheus_filter(scrape: Scrape) -> None:
    family = Reference("orchestrator_ttft_seconds", frozenset({"model"}), "test", "histogram")
    counter_as_histogram = Reference("gateway_requests_total", frozenset(), "test", "histogram")
    assert problems([family], scrape) == []
    assert problems([counter_as_histogram], scrape) != []


def test_google_metrics_map_to_promql_as_google_documents() -> None:
    # cloud.google.com/monitoring/promql/promql-mapping
    assert promql_name("run.googleapis.com/request_count") == "run_googleapis_com:request_count"
    assert (
        promql_name("kubernetes.io/container/accelerator/duty_cycle")
        == "kubernetes_io:container_accelerator_duty_cycle"
    )
    assert all(known.url.startswith("https://") for known in KNOWN.values())


def test_the_checker_imports_no_cdktf() -> None:
    probe = "import sys, analysis.observability; assert not [m for m in sys.modules if m.startswith('cdktf')]"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_scrape_reads_label_names_whatever_their_values_hold() -> None:
    scrape = Scrape.parse(
        "# TYPE gateway_requests_total counter\n"
        'gateway_requests_total{route="/v1/batches/{batch_id}",status="401"} 2.0\n'
        'odd_total{text="a \\"quoted\\", x=\\"y\\"",kind="k"} 1.0\n'
    )
    assert scrape.samples == {"gateway_requests_total": {"route", "status"}, "odd_total": {"text", "kind"}}
