"""The estimate against what the stacks synthesize, pricing pages' worked examples, the
environment's [traffic], model retirement, and the command's outputs (diff, JSON, --prices)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from analysis.cost.coverage import FREE_OR_USAGE, PRICED, accounted_for
from analysis.cost.estimate import estimate
from analysis.cost.lines import SCHEMA_VERSION
from analysis.cost.prices import load_prices, retirement_warning
from analysis.cost.workload import workload_for
from hybrid.config import Environment
from iac import ROOT, Stacks

PRICES = load_prices("us-central1")


def env_at(name: str, **changes: dict[str, Any]) -> Environment:
    raw = tomllib.loads((ROOT / "environments" / f"{name}.toml").read_text())
    for table, values in changes.items():
        raw.setdefault(table, {}).update(values)
    return Environment.model_validate(raw)


def run_cost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", "cost", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_every_synthesized_resource_type_is_priced_or_explained(synth_json: Stacks) -> None:
    types = {t for stack in synth_json.values() for t in stack.get("resource", {})}
    assert "google_redis_instance" in types  # prod's [redis] is on: Memorystore must be covered
    missing = sorted(t for t in types if not accounted_for(t))
    assert not missing, f"no price line and no reason in analysis/cost/coverage.py: {missing}"
    # Every price key the map names is in the table, and no type is in both lists.
    for keys in PRICED.values():
        for key in keys:
            section, _, name = key.partition(".")
            assert name in getattr(PRICES.table, section), key
    assert not set(PRICED) & set(FREE_OR_USAGE)


def test_memorystore_is_priced_by_tier_and_marked_unconfirmed() -> None:
    prod = estimate(env_at("prod"), PRICES)
    redis = next(i for i in prod.items if i.resource.startswith("Memorystore"))
    # 1 GB STANDARD_HA x 730 h x $0.064 (no copy of the pricing page found: marked, not hidden).
    assert redis.stack == "prod-database" and redis.price_key == "redis.standard_m1"
    assert redis.monthly_usd == pytest.approx(46.72)
    assert redis.confirmed is False and redis.source_kind == "none found"
    basic = estimate(env_at("prod", redis={"tier": "BASIC"}), PRICES)
    assert next(i for i in basic.items if i.resource.startswith("Memorystore")).monthly_usd == pytest.approx(35.77)
    assert not any(i.resource.startswith("Memorystore") for i in estimate(env_at("dev"), PRICES).items)


def test_cloud_dns_worked_example() -> None:
    """cloud.google.com/dns/pricing: "5 zones x $0.20" = $1.00 a month; the page states the
    zone price per hour ($0.000273973), which our table holds as the page does."""
    zone = PRICES.price("network.dns_zone")
    assert zone.unit == "managed zone-hour" and zone.confirmed
    assert round(5 * zone.usd * PRICES.hours_per_month, 2) == 1.00
    # And as the estimate bills the one private run.app zone: a month of zone-hours, $0.20.
    line = next(i for i in estimate(env_at("prod"), PRICES).items if i.price_key == "network.dns_zone")
    assert line.quantity == 730 and line.monthly_usd is not None and round(line.monthly_usd, 2) == 0.20


def test_cloud_sql_storage_per_hour_matches_the_monthly_figures() -> None:
    """cloud.google.com/sql/pricing (official copy, 2026-04): SSD $0.000232877 / GiB-hour =
    $0.17 / GiB-month, backups $0.000109589 / GiB-hour = $0.08; HA doubles SSD, not backups."""
    assert round(PRICES.usd("cloud_sql.ssd_storage") * 730, 2) == 0.17
    assert round(PRICES.usd("cloud_sql.backup_storage") * 730, 2) == 0.08
    items = {i.price_key: i for i in estimate(env_at("prod"), PRICES).items if i.stack == "prod-database"}
    assert items["cloud_sql.ssd_storage"].monthly_usd == pytest.approx(100 * 2 * 0.17, abs=0.01)
    assert items["cloud_sql.backup_storage"].monthly_usd == pytest.approx(50 * 0.08, abs=0.01)


def test_each_environment_is_priced_at_its_own_traffic() -> None:
    dev, prod = env_at("dev"), env_at("prod")
    assert workload_for(dev).requests_per_day == 2_000
    assert workload_for(prod).requests_per_day == 50_000
    assert workload_for(dev, {"requests_per_day": 10}).requests_per_day == 10  # the command line wins
    # The default estimate of dev uses dev's traffic, and says so.
    est = estimate(dev, PRICES)
    assert est.assumptions[0].startswith("2,000 chat requests a day")
    # No stack reads [traffic]: it changes the estimate, never what is deployed.
    readers = [p for d in ("stacks", "hybrid/components") for p in (ROOT / d).rglob("*.py")]
    assert not [p for p in readers if re.search(r"\.traffic\b", p.read_text())]


def test_a_retired_or_retiring_model_is_warned_about() -> None:
    flash = PRICES.api("vertex-gemini-2_5-flash")
    # docs.cloud.google.com/gemini-enterprise-agent-platform/models/model-versions: gemini-2.5-flash
    # retires October 16, 2026.
    assert flash.retires == date(2026, 10, 16)
    assert "retired on 2026-10-16" in str(retirement_warning("x", flash, date(2026, 12, 4)))
    assert "retires on 2026-10-16" in str(retirement_warning("x", flash, date(2026, 8, 1)))
    assert retirement_warning("x", flash, date(2026, 1, 1)) is None
    assert retirement_warning("x", PRICES.api("openai-gpt-4o-mini"), date(2030, 1, 1)) is None
    # The default Vertex model is its replacement, which retires "July 21, 2027 or later": no warning.
    assert not any("retire" in w for w in estimate(env_at("prod"), PRICES, today=date(2026, 12, 4)).warnings)
    old = workload_for(env_at("prod"), {"vertex_api": "vertex-gemini-2_5-flash"})
    est = estimate(env_at("prod"), PRICES, old, today=date(2026, 12, 4))
    assert any(w.startswith("vertex-gemini-2_5-flash: the model retired") for w in est.warnings)


def test_json_carries_a_schema_version() -> None:
    result = run_cost("--env", "environments/dev.toml", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema_version"] == SCHEMA_VERSION
    kinds = {i["price_source_kind"] for i in data["items"] if i["monthly_usd"]}
    assert "third party" in kinds and "official copy" in kinds


def test_prices_listing_prints_each_table_once_with_money_as_money() -> None:
    result = run_cost("--prices")  # every environment, one region
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("us-central1.toml: region us-central1") == 1
    assert not re.search(r"\d[eE][-+]?\d", result.stdout), "a figure in scientific notation"
    assert "network.dns_zone" in result.stdout and "$0.000273973 / managed zone-hour" in result.stdout
    # Free tiers are quantities, not money; third-party figures say so.
    free = next(line for line in result.stdout.splitlines() if line.startswith("free_tiers.cloud_run_request_cpu"))
    assert "180,000 vCPU-seconds" in free and "$" not in free.split("https://")[0]
    premium = next(line for line in result.stdout.splitlines() if line.startswith("gke.autopilot_premium_vcpu"))
    assert "NOT confirmed: third party" in premium


def test_cost_diff_between_two_files_is_a_markdown_table(tmp_path: Path) -> None:
    changed = tmp_path / "prod.toml"
    changed.write_text(
        (ROOT / "environments" / "prod.toml").read_text().replace("min_replicas = 2\n", "min_replicas = 3\n")
    )
    result = run_cost("diff", "environments/prod.toml", str(changed))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "$2,917.40 (environments/prod.toml) → $3,736.18" in out and "**+$818.78** (+28.1%)" in out
    assert "| layer | resource | line | before | after | change |" in out
    assert (
        "| inference | vLLM Llama-3.1-8B-Instruct | GPU node g2-standard-12 (1 x nvidia-l4) x 3 replica(s) | $1,460.61 | $2,190.91 | $730.30 |"
        in out
    )
    # Lines that do not change are left out.
    assert "Cloud SQL" not in out
    same = run_cost("diff", "environments/prod.toml", "environments/prod.toml")
    assert "No line of the estimate changes." in same.stdout


def test_cost_diff_between_git_refs() -> None:
    result = run_cost("diff", "HEAD", "HEAD", "--env", "environments/dev.toml")
    assert result.returncode == 0, result.stderr
    assert "### Monthly cost: dev" in result.stdout and "No line of the estimate changes." in result.stdout
    bad = run_cost("diff", "no-such-ref", "HEAD", "--env", "environments/dev.toml")
    assert bad.returncode == 2 and bad.stderr.startswith("no-such-ref:environments/dev.toml")


def test_a_traffic_mistake_is_one_line_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "dev.toml"
    dev = (ROOT / "environments" / "dev.toml").read_text()
    path.write_text(dev.replace("requests_per_day = 2000", "requests_per_day = -1\nrequest = 3"))
    result = run_cost("--env", str(path))
    assert result.returncode == 2
    assert f"{path}: traffic.requests_per_day = -1: must be between 0 and " in result.stderr
    assert (
        f"{path}: traffic.request: unknown key (did you mean 'requests_per_day'?): must be one of requests_per_day,"
        in (result.stderr)
    )
