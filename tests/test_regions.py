"""A second region for the stateless tier ([edge] regions) and the database's cross-region replica:
the settings' checks, and what prod (us-central1 + us-east4) synthesizes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hybrid.config.errors import ConfigError
from hybrid.config.loading import parse_environment, read_toml
from iac import ROOT, Json, Stacks, resources

PROD = read_toml(ROOT / "environments" / "prod.toml")
HAND_BUILT = ("frontend", "gateway", "orchestrator")


def problems(edit: Any) -> list[str]:
    raw = copy.deepcopy(PROD)
    edit(raw)
    with pytest.raises(ConfigError) as err:
        parse_environment(raw)
    return err.value.lines


def test_prod_runs_in_two_regions_with_a_replica_in_the_second() -> None:
    env = parse_environment(PROD)
    assert env.service_regions == ("us-central1", "us-east4")
    assert env.database.replica_region == "us-east4"
    assert [str(c) for c in env.network.cloud_run_cidrs(env.service_regions)] == ["10.8.0.0/22", "10.8.4.0/22"]


def test_a_region_without_its_subnet_is_refused() -> None:
    assert problems(lambda raw: raw["network"].pop("region_run_cidrs")) == [
        "network.region_run_cidrs.us-east4: must be set: edge.regions lists us-east4, whose Cloud Run "
        "services need a Direct VPC egress subnet of their own there (a /26 or larger)"
    ]


def test_a_subnet_for_a_region_not_listed_is_refused() -> None:
    def edit(raw: Json) -> None:
        raw["network"]["region_run_cidrs"]["us-west1"] = "10.8.8.0/22"

    (line,) = problems(edit)
    assert line.startswith("network.region_run_cidrs.us-west1 = ") or line.startswith(
        "network.region_run_cidrs.us-west1: must name a region of edge.regions"
    ), line


def test_region_subnets_must_not_overlap_the_others_and_fit_every_instance() -> None:
    def edit(raw: Json) -> None:
        raw["network"]["region_run_cidrs"]["us-east4"] = "10.8.2.0/24"

    key = "network.region_run_cidrs.us-east4 = '10.8.2.0/24'"
    assert problems(edit) == [
        f"{key}: must not overlap network.run_cidr (10.8.0.0/22); every range must be distinct",
        f"{key}: must have 800 usable addresses, two per instance of the gateway's and orchestrator's "
        "max_instances, twice over for a rollout's old and new revisions; it has 252",
    ]


def test_region_subnets_must_be_big_enough() -> None:
    def edit(raw: Json) -> None:
        raw["network"]["region_run_cidrs"]["us-east4"] = "10.8.4.0/28"

    lines = problems(edit)
    assert any("must be a /26 or larger for Cloud Run's Direct VPC egress" in line for line in lines), lines


def test_a_further_region_must_be_a_cloud_run_region() -> None:
    def edit(raw: Json) -> None:
        raw["edge"]["regions"] = ["us-east9"]

    assert any(
        line.startswith("edge.regions.0 = 'us-east9': must be a region Cloud Run runs in") for line in problems(edit)
    )


def test_the_replica_must_be_in_another_region() -> None:
    def edit(raw: Json) -> None:
        raw["database"]["replica_region"] = "us-central1"

    assert problems(edit) == [
        "database.replica_region = 'us-central1': must differ from region (us-central1): "
        "a cross-region replica survives its region's outage"
    ]


def _run_services(synth_json: Stacks) -> list[Json]:
    return list(resources(synth_json["prod-services"], "google_cloud_run_v2_service").values())


def test_each_region_runs_the_stateless_tier_under_the_same_names(synth_json: Stacks) -> None:
    where = {(s["name"], s["location"]) for s in _run_services(synth_json)}
    for role in HAND_BUILT:
        assert {(f"prod-{role}", "us-central1"), (f"prod-{role}", "us-east4")} <= where
    # The primary's addresses are the ones first deployed; the second region's are suffixed.
    keys = resources(synth_json["prod-services"], "google_cloud_run_v2_service")
    assert {k.rsplit("_", 2)[0] for k in keys} >= {*HAND_BUILT, *(f"{r}-us-east4" for r in HAND_BUILT)}


def test_each_region_egresses_from_its_own_subnet(synth_json: Stacks) -> None:
    subnets = {s["name"]: s for s in resources(synth_json["prod-network"], "google_compute_subnetwork").values()}
    east = subnets["prod-cloud-run-us-east4"]
    assert (east["region"], east["ip_cidr_range"], east["private_ip_google_access"]) == (
        "us-east4",
        "10.8.4.0/22",
        True,
    )
    for service in _run_services(synth_json):
        interfaces = (service["template"].get("vpc_access") or {}).get("network_interfaces") or []
        for interface in interfaces:
            suffix = "cloud_run_subnet_id" if service["location"] == "us-central1" else "run_subnet_ids"
            assert suffix in interface["subnetwork"] or "cloud-run-subnet" in interface["subnetwork"], interface
            if service["location"] == "us-east4":
                assert "us-east4" in interface["subnetwork"], interface


def test_each_gateway_calls_its_own_regions_orchestrator(synth_json: Stacks) -> None:
    for service in _run_services(synth_json):
        if service["name"] != "prod-gateway":
            continue
        env = {e["name"]: e.get("value", "") for e in service["template"]["containers"][0]["env"]}
        assert f".{service['location']}.run.app" in env["ORCHESTRATOR_AUDIENCE"], env["ORCHESTRATOR_AUDIENCE"]


def test_the_second_regions_services_repeat_no_project_grant(synth_json: Stacks) -> None:
    """The runtime roles are granted once per account: a second binding of the same role and member
    would remove it for both regions when one is destroyed."""
    grants = resources(synth_json["prod-services"], "google_project_iam_member")
    assert not [key for key in grants if "us-east4" in key]
    invokers = resources(synth_json["prod-services"], "google_cloud_run_v2_service_iam_member")
    assert {k.split("_")[0] for k in invokers if "us-east4" in k} == {f"{r}-us-east4" for r in HAND_BUILT}


def test_the_replica_replicates_the_primary_in_us_east4(synth_json: Stacks) -> None:
    instances = resources(synth_json["prod-database"], "google_sql_database_instance")
    (replica,) = [i for i in instances.values() if "master_instance_name" in i]
    assert (replica["name"], replica["region"]) == ("prod-postgres-us-east4", "us-east4")


def test_cost_prices_each_regions_services_on_its_share_of_the_traffic() -> None:
    from analysis.cost.estimate import estimate
    from analysis.cost.prices import load_prices

    env = parse_environment(PROD)
    items = [i for i in estimate(env, load_prices("us-central1")).items if i.stack == "prod-services"]
    resources_ = {i.resource for i in items}
    for role in HAND_BUILT:
        assert {f"Cloud Run prod-{role}", f"Cloud Run prod-{role} (us-east4)"} <= resources_
    # The two regions share the traffic: each region's orchestrator costs the same.
    cost = {r: sum(i.monthly_usd or 0 for i in items if i.resource == r) for r in resources_}
    assert cost["Cloud Run prod-orchestrator"] == pytest.approx(cost["Cloud Run prod-orchestrator (us-east4)"])
