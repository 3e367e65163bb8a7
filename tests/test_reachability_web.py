"""Broken copies of the web tier's synth (analysis/reachability/web.py, cloudrun.py, cluster.py),
each with one mistake a reviewer could miss, are caught on the edge they break, for the reason
they break it."""

from __future__ import annotations

from iac import Stacks
from reachability_helpers import REMOTE_NETWORK, by_edge, explain, facts_for, failures, only_env, service


def use_connector(stacks: Stacks, egress: str) -> None:
    """The gateway sends through a Serverless VPC Access connector on a /28 of its own (with
    Private Google Access), in place of Direct VPC egress: the design before Direct VPC."""
    network = stacks["dev-network"]
    resources = network["resource"]
    resources["google_compute_subnetwork"]["connector-subnet"] = {
        "name": "dev-connector",
        "ip_cidr_range": "10.8.1.0/28",
        "network": "${google_compute_network.vpc.id}",
        "private_ip_google_access": True,
        "region": "us-central1",
    }
    resources["google_vpc_access_connector"] = {
        "connector": {
            "name": "dev-connector",
            "region": "us-central1",
            "subnet": {"name": "${google_compute_subnetwork.connector-subnet.name}"},
        }
    }
    output = "cross-stack-output-google_vpc_access_connectorconnectorid"
    network["output"][output] = {"sensitive": True, "value": "${google_vpc_access_connector.connector.id}"}
    service(stacks, "gateway")["template"]["vpc_access"] = {"connector": REMOTE_NETWORK % output, "egress": egress}


def test_gateway_through_a_connector_with_private_ranges_only_is_blocked(synth_json: Stacks) -> None:
    stacks = only_env(synth_json)
    use_connector(stacks, "PRIVATE_RANGES_ONLY")
    verdicts = by_edge(stacks, facts_for("dev"))
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
    use_connector(stacks, "ALL_TRAFFIC")
    verdict = by_edge(stacks, facts_for("dev"))["gateway -> orchestrator"]
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
