"""The [analytics] table: a log sink of the services' usage records into a day-partitioned
BigQuery dataset, its writer granted on that dataset alone (docs/analytics.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.cost.estimate import estimate
from analysis.cost.prices import load_prices
from analysis.cost.workload import Workload
from hybrid.components.usage_sink import USAGE_FILTER
from iac import only, pointee, resources, run_main
from variants import DEV_ENV, synthesize, toml_text, variant


def test_the_sink_routes_usage_records_into_a_partitioned_dataset_its_writer_may_edit(tmp_path: Path) -> None:
    stacks = synthesize(variant(DEV_ENV, {"analytics": {"dataset_id": "usage_dev", "retention_days": 30}}), tmp_path)
    stack = stacks["dev-analytics"]
    dataset = only(stack, "google_bigquery_dataset")
    assert (dataset["dataset_id"], dataset["location"]) == ("usage_dev", DEV_ENV.region)
    assert dataset["default_partition_expiration_ms"] == 30 * 86_400_000
    sink = only(stack, "google_logging_project_sink")
    assert sink["filter"] == USAGE_FILTER
    assert 'jsonPayload.usage_record=("request" OR "batch_line")' in sink["filter"]
    prefix = f"bigquery.googleapis.com/projects/{DEV_ENV.project_id}/datasets/"
    assert sink["destination"].startswith(prefix)
    assert pointee(stacks, "dev-analytics", sink["destination"].removeprefix(prefix)).kind == "google_bigquery_dataset"
    assert sink["unique_writer_identity"] is True
    assert sink["bigquery_options"] == {"use_partitioned_tables": True}
    grant = only(stack, "google_bigquery_dataset_iam_member")
    assert grant["role"] == "roles/bigquery.dataEditor"
    assert grant["member"] == "${google_logging_project_sink.%s.writer_identity}" % next(
        iter(resources(stack, "google_logging_project_sink"))
    )
    assert pointee(stacks, "dev-analytics", grant["dataset_id"]).kind == "google_bigquery_dataset"
    # Least privilege: no BigQuery role on the whole project, in any layer.
    for other in stacks.values():
        for member in resources(other, "google_project_iam_member").values():
            assert not member["role"].startswith("roles/bigquery."), member
    apis = {s["service"] for s in resources(stacks["dev-network"], "google_project_service").values()}
    assert {"bigquery.googleapis.com", "logging.googleapis.com"} <= apis


def test_analytics_disabled_makes_no_layer_and_enables_no_bigquery(tmp_path: Path) -> None:
    stacks = synthesize(variant(DEV_ENV, {"analytics": {"enabled": False}}), tmp_path)
    assert "dev-analytics" not in stacks
    apis = {s["service"] for s in resources(stacks["dev-network"], "google_project_service").values()}
    assert "bigquery.googleapis.com" not in apis


def test_analytics_mistakes_are_refused(tmp_path: Path) -> None:
    data = DEV_ENV.model_dump(mode="json", exclude_none=True)
    env = tmp_path / "dev.toml"
    env.write_text(toml_text({**data, "analytics": {"dataset_id": "usage-dev"}}))
    result = run_main(tmp_path / "out", "--env", str(env))
    assert result.returncode == 2
    assert f"{env}: analytics.dataset_id = 'usage-dev': must be letters, digits and underscores" in result.stderr
    env.write_text(toml_text({**data, "analytics": {"retention_days": 0}}))
    result = run_main(tmp_path / "out", "--env", str(env))
    assert result.returncode == 2
    assert f"{env}: analytics.retention_days = 0: must be between 1 and 3650" in result.stderr


def test_cost_prices_the_sinks_writes_and_the_storage_the_records_keep() -> None:
    env = variant(DEV_ENV, {"analytics": {"retention_days": 120, "bytes_per_record": 2000}})
    prices = load_prices(env.region)
    est = estimate(env, prices, Workload(requests_per_day=100_000))
    items = {i.price_key: i for i in est.items if i.layer == "analytics"}
    records = 100_000 * prices.hours_per_month / 24
    assert items["storage.bigquery_streaming_insert"].quantity == pytest.approx(records * 2000 / 1e6 / 200)
    assert items["storage.bigquery_streaming_insert"].monthly_usd == pytest.approx(records * 2000 / 1e6 / 200 * 0.01)
    gib_a_day = 100_000 * 2000 / 2**30
    assert items["storage.bigquery_active_logical"].quantity == pytest.approx(gib_a_day * 90)
    assert items["storage.bigquery_long_term_logical"].quantity == pytest.approx(gib_a_day * 30)
    assert all(i.stack == "dev-analytics" for i in items.values())
    # A record under 1 KB is billed as 1 KB when streamed.
    small = variant(DEV_ENV, {"analytics": {"bytes_per_record": 200}})
    (streamed,) = [
        i
        for i in estimate(small, prices, Workload(requests_per_day=100_000)).items
        if i.price_key == "storage.bigquery_streaming_insert"
    ]
    assert streamed.quantity == pytest.approx(records * 1000 / 1e6 / 200)
    off = variant(DEV_ENV, {"analytics": {"enabled": False}})
    assert not [i for i in estimate(off, prices, Workload()).items if i.layer == "analytics"]
