"""Broken copies of the web tier's synth (analysis/reachability/web.py, cloudrun.py, cluster.py),
each with one mistake a reviewer could miss, are caught on the edge they break, for the reason
they break it."""

from __future__ import annotations

from dataclasses import replace

from iac import Stacks
from reachability_helpers import by_edge, container_env, explain, facts_for, failures, only_env, service


def dials_run_app(stacks: Stacks, egress: str = "PRIVATE_RANGES_ONLY") -> None:
    """dev's gateway dials the orchestrator's run.app URL through its connector, as the design
    card first had it, with ``egress``."""
    services = stacks["dev-services"]["resource"]["google_cloud_run_v2_service"]
    key = next(k for k, s in services.items() if s["name"] == "dev-orchestrator")
    gateway = service(stacks, "gateway")
    container_env(gateway)["ORCHESTRATOR_URL"]["value"] = "${google_cloud_run_v2_service.%s.uri}" % key
    gateway["template"]["vpc_access"]["egress"] = egress


# The run.app edge, as Direct VPC egress's environments have it, checked on dev's connector.
AS_DIRECT = replace(facts_for("dev"), egress="direct")
THROUGH_LB = "gateway -> orchestrator (internal load balancer)"


def test_gateway_through_a_connector_with_private_ranges_only_is_blocked(synth_json: Stacks) -> None:
    stacks = only_env(synth_json)
    dials_run_app(stacks)
    verdicts = by_edge(stacks, AS_DIRECT)
    verdict = verdicts["gateway -> orchestrator"]
    assert not verdict.ok
    assert failures(verdict)[0] == (
        "dev-gateway: egress PRIVATE_RANGES_ONLY with connector dev-connector carries RFC 1918 and 100.64.0.0/10:"
        " it does not send 199.36.153.8/30 into the VPC"
    )
    assert "internal ingress refuses" in failures(verdict)[1]
    assert [edge for edge, v in verdicts.items() if not v.ok] == ["gateway -> orchestrator"]


def test_gateway_through_a_connector_with_all_traffic_reaches_the_orchestrator(synth_json: Stacks) -> None:
    # The control for the test above: the connector itself is fine when it carries everything.
    stacks = only_env(synth_json)
    dials_run_app(stacks, "ALL_TRAFFIC")
    verdict = by_edge(stacks, AS_DIRECT)["gateway -> orchestrator"]
    assert verdict.ok, explain([verdict])
    assert any(
        "egress ALL_TRAFFIC sends 199.36.153.8/30 into the VPC through connector dev-connector" in s.text
        for s in verdict.steps
    )


def test_network_policy_admitting_gmp_system_blocks_the_metrics(synth_json: Stacks) -> None:
    # gmp-system is the Standard clusters' namespace; on Autopilot the collectors run in gke-gmp-system.
    stacks = only_env(synth_json)
    policy = next(iter(stacks["dev-inference"]["resource"]["kubernetes_network_policy_v1"].values()))
    for peer in policy["spec"]["ingress"][0]["from"]:
        if "namespace_selector" in peer:
            peer["namespace_selector"]["match_labels"]["kubernetes.io/metadata.name"] = "gmp-system"
    verdicts = by_edge(stacks, facts_for("dev"))
    verdict = verdicts["Managed Prometheus -> vLLM metrics"]
    assert failures(verdict) == [
        "collectors in gke-gmp-system: no NetworkPolicy selecting the pods admits"
        " namespace {'kubernetes.io/metadata.name': 'gke-gmp-system'} on 8000"
    ]
    assert verdicts["orchestrator -> inference"].ok  # the Cloud Run subnet's ipBlock still admits the orchestrator


def test_unresolvable_reference_is_a_blocked_edge_not_a_crash(synth_json: Stacks) -> None:
    stacks = only_env(synth_json)
    # The output the orchestrator's PGHOST reads through remote state (whatever cdktf named it).
    host = next(
        e["value"] for e in service(stacks, "orchestrator")["template"]["containers"][0]["env"] if e["name"] == "PGHOST"
    )
    prefix = "${data.terraform_remote_state.cross-stack-reference-input-dev-database.outputs."
    assert host.startswith(prefix) and host.endswith("}")
    del stacks["dev-database"]["output"][host.removeprefix(prefix).removesuffix("}")]
    verdict = by_edge(stacks, facts_for("dev"))["orchestrator -> Cloud SQL"]
    assert not verdict.ok
    assert failures(verdict)[0].startswith("cannot evaluate: dev-database has no output")


def test_connector_mode_never_calls_run_app_directly(synth_json: Stacks) -> None:
    # The rule of connector mode: the gateway that dials run.app is refused before anything else.
    stacks = only_env(synth_json)
    dials_run_app(stacks)
    verdicts = by_edge(stacks, facts_for("dev"))
    (failure,) = failures(verdicts[THROUGH_LB])
    assert failure.startswith("dev-gateway: google_cloud_run_v2_service.orchestrator_service_")
    assert failure.endswith(".uri (dev-services): connector mode never calls run.app directly")
    assert [edge for edge, v in verdicts.items() if not v.ok] == [THROUGH_LB]


def test_the_internal_load_balancer_needs_its_proxy_only_subnet(synth_json: Stacks) -> None:
    stacks = only_env(synth_json)
    del stacks["dev-network"]["resource"]["google_compute_subnetwork"]["proxy-only-subnet"]
    assert failures(by_edge(stacks, facts_for("dev"))[THROUGH_LB]) == [
        "an active proxy-only subnet in us-central1: none"
    ]


def test_the_internal_load_balancer_must_serve_the_orchestrator(synth_json: Stacks) -> None:
    stacks = only_env(synth_json)
    services = stacks["dev-services"]["resource"]
    frontend = next(k for k, s in services["google_cloud_run_v2_service"].items() if s["name"] == "dev-frontend")
    (neg,) = services["google_compute_region_network_endpoint_group"].values()
    neg["cloud_run"]["service"] = "${google_cloud_run_v2_service.%s.name}" % frontend
    assert failures(by_edge(stacks, facts_for("dev"))[THROUGH_LB]) == [
        "no serverless NEG of backend service dev-internal-lb is dev-orchestrator"
    ]


def test_the_connectors_egress_rule_to_the_load_balancer_is_needed(synth_json: Stacks) -> None:
    stacks = only_env(synth_json)
    rules = stacks["dev-network"]["resource"]["google_compute_firewall"]
    (key,) = [k for k, r in rules.items() if r["name"] == "dev-allow-gateway-egress-orchestrator-lb"]
    del rules[key]
    (failure,) = failures(by_edge(stacks, facts_for("dev"))[THROUGH_LB])
    assert failure.startswith("egress tcp:80 10.8.0.0/28 [tags vpc-connector, vpc-connector-us-central1-dev-connector]")
    assert failure.endswith("denied by dev-deny-all-egress (priority 65534)")
