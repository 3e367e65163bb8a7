"""Value assertions on the synthesized `<env>-network` stacks."""

from __future__ import annotations

import ipaddress

import pytest

from hybrid.config import load_environment
from hybrid.network_constants import HEALTH_CHECK_RANGES, PRIVATE_GOOGLE_APIS_RANGE
from iac import ROOT, Json, Stacks, only, resources
from stacks.network import ANALYTICS_APIS, CONNECTOR_APIS, PLATFORM_APIS, REDIS_APIS, WORKERS_APIS

# Where each environment's Cloud Run services' private traffic comes from: prod's Direct VPC egress
# subnet, dev's connector (docs/network-egress.md).
RUN_CIDR = {"dev": "10.8.0.0/28", "prod": "10.8.0.0/22"}
DEV_CONNECTOR_TAG = "vpc-connector-us-central1-dev-connector"
# Every region's Cloud Run subnet: prod's second region (us-east4) has its own.
RUN_CIDRS = {"dev": (RUN_CIDR["dev"],), "prod": (RUN_CIDR["prod"], "10.8.4.0/22")}


@pytest.fixture
def network(env: str, synth_json: Stacks) -> Json:
    return synth_json[f"{env}-network"]


def firewall(network: Json) -> dict[str, Json]:
    return {rule["name"]: rule for rule in resources(network, "google_compute_firewall").values()}


def subnets(network: Json) -> dict[str, Json]:
    return {s["name"]: s for s in resources(network, "google_compute_subnetwork").values()}


def test_vpc_is_custom_mode(env: str, network: Json) -> None:
    vpc = only(network, "google_compute_network")
    assert vpc["name"] == f"{env}-vpc"
    assert vpc["auto_create_subnetworks"] is False
    assert vpc["routing_mode"] == "REGIONAL"


def test_workloads_subnet_has_pod_and_service_ranges(env: str, network: Json) -> None:
    subnet = subnets(network)[f"{env}-workloads"]
    assert subnet["region"] == "us-central1"
    assert subnet["ip_cidr_range"] == "10.10.0.0/20"
    assert subnet["private_ip_google_access"] is True
    assert {r["range_name"]: r["ip_cidr_range"] for r in subnet["secondary_ip_range"]} == {
        "pods": "10.16.0.0/14",
        "services": "10.20.0.0/20",
    }
    assert subnet["log_config"]["aggregation_interval"] == "INTERVAL_5_SEC"
    assert subnet["network"] == "${google_compute_network.vpc.id}"


def test_prod_cloud_run_subnet_has_private_google_access_and_no_connector(synth_json: Stacks) -> None:
    network = synth_json["prod-network"]
    subnet = subnets(network)["prod-cloud-run"]
    assert subnet["ip_cidr_range"] == RUN_CIDR["prod"]
    assert ipaddress.ip_network(subnet["ip_cidr_range"]).prefixlen <= 26  # Direct VPC egress minimum
    assert subnet["private_ip_google_access"] is True
    assert "secondary_ip_range" not in subnet
    assert resources(network, "google_vpc_access_connector") == {}
    assert not [s for s in subnets(network).values() if s.get("purpose") == "REGIONAL_MANAGED_PROXY"]


def test_dev_connector_in_its_own_28_with_2_to_10_instances(synth_json: Stacks) -> None:
    network = synth_json["dev-network"]
    assert "dev-cloud-run" not in subnets(network)  # no Direct VPC egress subnet in connector mode
    subnet = subnets(network)["dev-connector"]
    assert (subnet["ip_cidr_range"], subnet["private_ip_google_access"]) == ("10.8.0.0/28", True)
    connector = only(network, "google_vpc_access_connector")
    assert connector["name"] == "dev-connector"
    assert connector["subnet"] == {"name": "${google_compute_subnetwork.connector-subnet.name}"}
    assert (connector["min_instances"], connector["max_instances"]) == (2, 10)
    assert "ip_cidr_range" not in connector  # its subnet's range, not one of its own
    assert connector["depends_on"] == ["google_project_service.api-vpcaccess"]


def test_dev_internal_lb_has_a_proxy_only_subnet_and_a_reserved_address(synth_json: Stacks) -> None:
    network = synth_json["dev-network"]
    proxies = subnets(network)["dev-lb-proxies"]
    assert (proxies["purpose"], proxies["role"], proxies["ip_cidr_range"]) == (
        "REGIONAL_MANAGED_PROXY",
        "ACTIVE",
        "10.9.0.0/23",
    )
    assert "log_config" not in proxies  # flow logs are not supported on a proxy-only subnet
    addresses = {a["name"]: a for a in resources(network, "google_compute_address").values()}
    address = addresses["dev-internal-lb"]
    assert (address["address"], address["address_type"]) == ("10.10.15.249", "INTERNAL")
    assert address["subnetwork"] == "${google_compute_subnetwork.workloads-subnet.id}"


def test_private_services_access(env: str, network: Json) -> None:
    address = only(network, "google_compute_global_address")
    assert (address["purpose"], address["address_type"]) == ("VPC_PEERING", "INTERNAL")
    assert (address["address"], address["prefix_length"]) == ("10.32.0.0", 16)
    connection = only(network, "google_service_networking_connection")
    assert connection["service"] == "servicenetworking.googleapis.com"
    assert connection["reserved_peering_ranges"] == ["${google_compute_global_address.psa-range.name}"]
    assert connection["network"] == "${google_compute_network.vpc.id}"
    # Cloud SQL keeps its peering addresses for days: destroying the network must not wait on them.
    assert connection["deletion_policy"] == "ABANDON"


def test_private_services_access_adopts_a_connection_left_behind(env: str, network: Json) -> None:
    # An abandoned peering outlives the state: the next deploy's create must update it, not fail.
    connection = only(network, "google_service_networking_connection")
    assert connection["update_on_creation_fail"] is True


def test_cloud_nat_covers_only_the_workloads_subnet(env: str, network: Json) -> None:
    router = only(network, "google_compute_router")
    nat = only(network, "google_compute_router_nat")
    assert nat["router"] == "${google_compute_router.router.name}"
    assert router["network"] == "${google_compute_network.vpc.id}"
    assert nat["source_subnetwork_ip_ranges_to_nat"] == "LIST_OF_SUBNETWORKS"
    assert nat["subnetwork"] == [
        {"name": "${google_compute_subnetwork.workloads-subnet.id}", "source_ip_ranges_to_nat": ["ALL_IP_RANGES"]}
    ]
    assert nat["log_config"] == {"enable": True, "filter": "ERRORS_ONLY"}


def test_firewall_denies_by_default_both_ways(env: str, network: Json) -> None:
    rules = firewall(network)
    for direction, ranges_key in (("ingress", "source_ranges"), ("egress", "destination_ranges")):
        rule = rules[f"{env}-deny-all-{direction}"]
        assert rule["direction"] == direction.upper()
        assert rule["deny"] == [{"protocol": "all"}]
        assert rule[ranges_key] == ["0.0.0.0/0"]
        assert rule["priority"] == 65534
    assert all(rule["log_config"] == {"metadata": "INCLUDE_ALL_METADATA"} for rule in rules.values())


def test_firewall_allows_exactly_the_diagram(env: str, network: Json) -> None:
    rules = firewall(network)
    # Direct VPC egress tags each service; a connector's instances carry the connector's one tag.
    direct = env == "prod"
    orchestrator, job = (f"{env}-run-orchestrator", f"{env}-run-db-bootstrap") if direct else (DEV_CONNECTOR_TAG,) * 2
    workloads = ["10.10.0.0/20", "10.16.0.0/14"]
    allows = {
        name: (
            rule["direction"],
            tuple(rule.get("source_ranges", ())),
            tuple(rule.get("destination_ranges", ())),
            tuple(rule.get("target_tags", ())),
            tuple((a["protocol"], tuple(a.get("ports", ()))) for a in rule["allow"]),
        )
        for name, rule in rules.items()
        if "allow" in rule
    }
    assert allows == {
        f"{env}-allow-cloud-run-to-inference": (
            "INGRESS",
            RUN_CIDRS[env],
            tuple(workloads),
            (),
            (("tcp", ("8000",)),),
        ),
        f"{env}-allow-health-checks-to-inference": (
            "INGRESS",
            HEALTH_CHECK_RANGES,
            tuple(workloads),
            (),
            (("tcp", ("8000",)),),
        ),
        f"{env}-allow-orchestrator-egress-inference": (
            "EGRESS",
            (),
            tuple(workloads),
            (orchestrator,),
            (("tcp", ("8000",)),),
        ),
        f"{env}-allow-orchestrator-egress-postgres": (
            "EGRESS",
            (),
            ("10.32.0.0/16",),
            tuple(dict.fromkeys((orchestrator, job))),
            (("tcp", ("5432",)),),
        ),
        f"{env}-allow-egress-google-apis": ("EGRESS", (), (PRIVATE_GOOGLE_APIS_RANGE,), (), (("tcp", ("443",)),)),
        f"{env}-allow-workloads-internal": (
            "EGRESS",
            tuple(workloads),
            (*workloads, "10.20.0.0/20"),
            (),
            (("all", ()),),
        ),
        f"{env}-allow-workloads-egress-https": ("EGRESS", tuple(workloads), ("0.0.0.0/0",), (), (("tcp", ("443",)),)),
        **(WORKERS_FLOWS if env == "prod" else {}),
        # dev's connector mode: the gateway to the orchestrator's internal load balancer, on HTTP.
        **(
            {}
            if direct
            else {
                "dev-allow-gateway-egress-orchestrator-lb": (
                    "EGRESS",
                    (),
                    ("10.10.15.249/32",),
                    (DEV_CONNECTOR_TAG,),
                    (("tcp", ("80",)),),
                )
            }
        ),
        # [redis] in prod: the gateway to Memorystore's TLS port on the Private Services Access range.
        **(
            {
                "prod-allow-gateway-egress-redis": (
                    "EGRESS",
                    (),
                    ("10.32.0.0/16",),
                    ("prod-run-gateway",),
                    (("tcp", ("6378",)),),
                )
            }
            if env == "prod"
            else {}
        ),
    }
    assert all(rules[name]["priority"] == 1000 for name in allows)


# prod's batch workers: their Pods (10.24.0.0/16) call the model servers and Cloud SQL; their nodes
# (10.12.0.0/22) and Pods talk among themselves and reach Google APIs over HTTPS, nothing else.
WORKER_PODS, WORKER_NODES = "10.24.0.0/16", "10.12.0.0/22"
WORKERS_FLOWS = {
    "prod-allow-workers-to-inference": (
        "INGRESS",
        (WORKER_PODS,),
        ("10.10.0.0/20", "10.16.0.0/14"),
        (),
        (("tcp", ("8000",)),),
    ),
    "prod-allow-workers-egress-inference": (
        "EGRESS",
        (WORKER_PODS,),
        ("10.10.0.0/20", "10.16.0.0/14"),
        (),
        (("tcp", ("8000",)),),
    ),
    "prod-allow-workers-egress-postgres": ("EGRESS", (WORKER_PODS,), ("10.32.0.0/16",), (), (("tcp", ("5432",)),)),
    "prod-allow-workers-internal": (
        "EGRESS",
        (WORKER_NODES, WORKER_PODS),
        (WORKER_NODES, WORKER_PODS, "10.21.0.0/20"),
        (),
        (("all", ()),),
    ),
    "prod-allow-workers-egress-google-apis": (
        "EGRESS",
        (WORKER_NODES, WORKER_PODS),
        ("0.0.0.0/0",),
        (),
        (("tcp", ("443",)),),
    ),
}


def test_workers_subnet_only_where_workers_are_enabled(env: str, network: Json) -> None:
    subnets = {s["name"]: s for s in resources(network, "google_compute_subnetwork").values()}
    if env == "dev":
        assert "dev-workers" not in subnets
        return
    workers = subnets["prod-workers"]
    assert workers["ip_cidr_range"] == WORKER_NODES
    # Its only way out: Private Google Access (no NAT covers it: test_cloud_nat_covers_only_the_workloads_subnet).
    assert workers["private_ip_google_access"] is True
    assert workers["secondary_ip_range"] == [
        {"range_name": "workers-pods", "ip_cidr_range": WORKER_PODS},
        {"range_name": "workers-services", "ip_cidr_range": "10.21.0.0/20"},
    ]


def test_required_apis_are_enabled_and_kept_on_destroy(env: str, network: Json) -> None:
    services = resources(network, "google_project_service").values()
    workers = WORKERS_APIS + REDIS_APIS if env == "prod" else ()  # [workers] and [redis] are on in prod only
    connector = CONNECTOR_APIS if env == "dev" else ()  # dev's connector mode
    # [analytics] is on by default: the usage dataset's BigQuery API.
    expected = PLATFORM_APIS + workers + connector + ANALYTICS_APIS
    assert sorted(s["service"] for s in services) == sorted(expected)
    assert all(s["disable_on_destroy"] is False for s in services)
    for api in ("compute", "servicenetworking", "sqladmin", "run", "container", "apikeys", "identitytoolkit"):
        assert f"{api}.googleapis.com" in PLATFORM_APIS


def test_apis_the_clusters_iam_and_queue_need_are_enabled(env: str, network: Json) -> None:
    """Binary Authorization for the clusters' policy, Resource Manager for project IAM, IAM
    credentials for Workload Identity, Cloud Build for make up's images; Pub/Sub where the batch
    queue is."""
    enabled = {s["service"] for s in resources(network, "google_project_service").values()}
    needed = {"binaryauthorization", "cloudresourcemanager", "iamcredentials", "cloudbuild"} | (
        {"pubsub"} if env == "prod" else set()
    )
    assert {f"{api}.googleapis.com" for api in needed} <= enabled
    assert ("pubsub.googleapis.com" in enabled) is (env == "prod")


def test_run_app_resolves_to_private_google_apis_inside_the_vpc(env: str, network: Json) -> None:
    zone = only(network, "google_dns_managed_zone")
    assert (zone["name"], zone["dns_name"], zone["visibility"]) == (f"{env}-run-app", "run.app.", "private")
    assert zone["private_visibility_config"] == {"networks": [{"network_url": "${google_compute_network.vpc.id}"}]}
    records = {r["name"]: r for r in resources(network, "google_dns_record_set").values()}
    assert set(records) == {"run.app.", "*.run.app."}
    for record in records.values():
        assert record["type"] == "A"
        assert record["managed_zone"] == "${google_dns_managed_zone.run-app-zone.name}"
        assert record["rrdatas"] == ["199.36.153.8", "199.36.153.9", "199.36.153.10", "199.36.153.11"]
        assert all(
            ipaddress.ip_address(ip) in ipaddress.ip_network(PRIVATE_GOOGLE_APIS_RANGE) for ip in record["rrdatas"]
        )


def test_every_registered_firewall_rule_is_made_where_its_tables_are_enabled(env: str, network: Json) -> None:
    """names.py registers the names from the topology's flows: none is left over, none is missing."""
    environment = load_environment(ROOT / "environments" / f"{env}.toml")
    made = set(firewall(network))
    registered = set(environment.names.firewall_rule.values())
    if environment.network.egress == "direct":  # the rule to the internal load balancer is connector mode's
        registered.discard(environment.names.firewall_rule["allow-gateway-egress-orchestrator-lb"])
    if environment.workers.enabled and environment.redis.enabled:
        assert made == registered
    else:
        assert made < registered and not any("workers" in name or "redis" in name for name in made)
