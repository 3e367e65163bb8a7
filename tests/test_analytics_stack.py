"""The [analytics] table: a log sink of the services' usage records into a day-partitioned
BigQuery dataset, its writer granted on that dataset alone (docs/analytics.md)."""

from __future__ import annotations

from pathlib import Path

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
