"""The reachability check (analysis/reachability/, scripts/check_reachability.py).

Every edge of the shipped synth, and of dev with its model on Cloud Run, is reachable; broken
copies of the synthesized JSON, each with one mistake a reviewer could miss, are caught on the
edge they break, for the reason they break it.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib

import pytest

from analysis.reachability import (
    EnvironmentFacts,
    FirewallRule,
    Packet,
    Verdict,
    evaluate,
    firewall_decides,
    net,
    route_for,
)
from analysis.reachability.edges import Call, Edge, every_edge
from analysis.reachability.evaluate import PROOFS, proof_for
from hybrid.config import load_environment
from iac import ROOT
from services.modelcalls.routing import backends_for
from services.modelcalls.settings import Route
from variants import DEV_ENV, DEV_ON_CLOUD_RUN, synthesize, variant, write_environment

# Each environment's edges, in the checker's order: the topology's calls (hybrid/topology.py),
# then the managed plumbing the checker declares itself.
BASE_EDGES = [
    "browser -> frontend",
    "browser -> gateway",
    "gateway -> orchestrator",
    "orchestrator -> inference",
    "orchestrator -> Cloud SQL",
    "db-bootstrap job -> Cloud SQL",
    "orchestrator -> Vertex AI",
]
PLUMBING = ["browser -> Identity Platform"]
GKE_PLUMBING = ["GKE nodes -> internet (NAT)", "Managed Prometheus -> vLLM metrics"]
ALL_EDGES = BASE_EDGES + PLUMBING + GKE_PLUMBING
CLOUD_RUN_EDGES = BASE_EDGES + PLUMBING  # no cluster, so no NAT or metrics edge
WORKER_EDGES = [  # where [workers] is enabled: prod
    "orchestrator -> Pub/Sub (batch lines)",
    "orchestrator -> GCS (batch files)",
    "worker -> Vertex AI",
    "Pub/Sub -> worker",
    "worker -> GCS (batch files)",
    "worker -> inference",
    "worker -> Cloud SQL",
]
REDIS_EDGE = "gateway -> Memorystore (rate limit)"  # where [redis] is enabled: prod
EDGES_OF = {
    "dev": ALL_EDGES,
    "prod": [*BASE_EDGES[:3], REDIS_EDGE, *BASE_EDGES[3:], *WORKER_EDGES, *PLUMBING, *GKE_PLUMBING],
}
REMOTE_NETWORK = "${data.terraform_remote_state.cross-stack-reference-input-dev-network.outputs.%s}"


def facts_for(env: str) -> EnvironmentFacts:
    return EnvironmentFacts.from_toml(tomllib.loads((ROOT / "environments" / f"{env}.toml").read_text()))


def by_edge(stacks: dict, facts: EnvironmentFacts) -> dict[str, Verdict]:
    return {verdict.edge: verdict for verdict in evaluate(stacks, facts)}


def explain(verdicts) -> str:
    return "\n".join(
        f"{v.edge}: {'OK' if v.ok else 'BLOCKED'}\n"
        + "\n".join(f"  {'ok' if s.ok else 'NO'} {s.text}" for s in v.steps)
        for v in verdicts
    )


def failures(verdict: Verdict) -> list[str]:
    return [step.text for step in verdict.steps if not step.ok]


def only_env(synth_json: dict, env: str = "dev") -> dict:
    return copy.deepcopy({stack: config for stack, config in synth_json.items() if stack.startswith(f"{env}-")})


def service(stacks: dict, role: str, env: str = "dev") -> dict:
    services = stacks[f"{env}-services"]["resource"]["google_cloud_run_v2_service"]
    return next(s for s in services.values() if s["name"] == f"{env}-{role}")


def container_env(config: dict) -> dict[str, dict]:
    return {e["name"]: e for e in config["template"]["containers"][0]["env"]}


def edit_json_env(config: dict, name: str, edit) -> None:
    entry = container_env(config)[name]
    value = json.loads(entry["value"])
    entry["value"] = json.dumps(edit(value), separators=(",", ":"))


# ------------------------------------------------------------------------------------------
# (a) What we ship is reachable


def test_every_edge_of_the_shipped_environments_is_ok(env, synth_json):
    verdicts = evaluate(synth_json, facts_for(env))
    assert [v.edge for v in verdicts] == EDGES_OF[env]
    assert all(v.ok for v in verdicts), explain(verdicts)


def test_facts_agree_with_the_typed_settings(env):
    typed, facts = load_environment(ROOT / "environments" / f"{env}.toml"), facts_for(env)
    inference = typed.inference
    assert (facts.name, facts.placement) == (typed.name, inference.placement)
    assert facts.self_hosted_model == getattr(inference, inference.placement).model
    assert facts.workers is typed.workers.enabled
    assert facts.redis is typed.redis.enabled


def test_the_gateway_cannot_reach_memorystore_without_its_egress_rule(synth_json):
    stacks = only_env(synth_json, "prod")
    rules = stacks["prod-network"]["resource"]["google_compute_firewall"]
    (key,) = [k for k, r in rules.items() if r["name"] == "prod-allow-gateway-egress-redis"]
    del rules[key]
    verdict = by_edge(stacks, facts_for("prod"))[REDIS_EDGE]
    assert not verdict.ok
    assert any("denied by prod-deny-all-egress" in text for text in failures(verdict)), explain([verdict])


def test_a_redis_auth_string_in_plain_text_is_refused(synth_json):
    stacks = only_env(synth_json, "prod")
    entry = container_env(service(stacks, "gateway", "prod"))["REDIS_AUTH"]
    del entry["value_source"]
    entry["value"] = "in-plain-sight"
    verdict = by_edge(stacks, facts_for("prod"))[REDIS_EDGE]
    assert failures(verdict) == ["REDIS_AUTH comes from Secret Manager"]


@pytest.fixture(scope="module")
def cloud_run(tmp_path_factory) -> tuple[dict, EnvironmentFacts]:
    """dev with its model on a Cloud Run GPU (tests/variants.py DEV_ON_CLOUD_RUN), synthesized."""
    stacks = synthesize(DEV_ON_CLOUD_RUN, tmp_path_factory.mktemp("reachability-cloud-run"))
    return stacks, EnvironmentFacts.from_toml(DEV_ON_CLOUD_RUN.model_dump(mode="json"))


def test_every_edge_of_the_cloud_run_placement_is_ok(cloud_run):
    stacks, facts = cloud_run
    assert facts.placement == "cloud_run" and facts.self_hosted_model == "google/gemma-3-4b-it"
    verdicts = evaluate(stacks, facts)
    assert [v.edge for v in verdicts] == CLOUD_RUN_EDGES
    assert all(v.ok for v in verdicts), explain(verdicts)


def test_frontend_behind_iap_is_reachable_by_its_members(tmp_path):
    iap = variant(DEV_ENV, {"services.iap_members": ["group:ai-team@example.com"], "services.frontend.access": "iap"})
    verdicts = by_edge(synthesize(iap, tmp_path), EnvironmentFacts.from_toml(iap.model_dump(mode="json")))
    frontend = verdicts["browser -> frontend"]
    assert frontend.ok, explain([frontend])
    assert [s.text for s in frontend.steps][-2:] == [
        "dev-frontend: IAP admits group:ai-team@example.com",
        "dev-frontend: the IAP service agent holds roles/run.invoker",
    ]
    assert all(v.ok for v in verdicts.values()), explain(verdicts.values())


# ------------------------------------------------------------------------------------------
# (b) Broken synths are caught on the edge they break


def use_connector(stacks: dict, egress: str) -> None:
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


def test_gateway_through_a_connector_with_private_ranges_only_is_blocked(synth_json):
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


def test_gateway_through_a_connector_with_all_traffic_reaches_the_orchestrator(synth_json):
    # The control for the test above: the connector itself is fine when it carries everything.
    stacks = only_env(synth_json)
    use_connector(stacks, "ALL_TRAFFIC")
    verdict = by_edge(stacks, facts_for("dev"))["gateway -> orchestrator"]
    assert verdict.ok, explain([verdict])
    assert any(
        "egress ALL_TRAFFIC sends 199.36.153.8/30 into the VPC through connector dev-connector" in s.text
        for s in verdict.steps
    )


def test_network_policy_admitting_gmp_system_blocks_the_metrics(synth_json):
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


def test_cloud_run_model_without_id_token_is_blocked(cloud_run):
    stacks, facts = copy.deepcopy(cloud_run[0]), cloud_run[1]

    def no_auth(backends):
        backends["self-hosted"]["auth"] = "none"
        return backends

    edit_json_env(service(stacks, "orchestrator"), "BACKENDS", no_auth)
    verdict = by_edge(stacks, facts)["orchestrator -> inference"]
    assert failures(verdict) == ["BACKENDS.self-hosted: auth 'none': no ID token, so Cloud Run answers 403"]


def test_google_star_route_ahead_of_a_self_hosted_gemma_is_blocked(cloud_run):
    stacks, facts = copy.deepcopy(cloud_run[0]), cloud_run[1]
    edit_json_env(service(stacks, "orchestrator"), "ROUTES", lambda routes: list(reversed(routes)))
    assert json.loads(container_env(service(stacks, "orchestrator"))["ROUTES"]["value"])[0]["match"] == "google/*"
    verdict = by_edge(stacks, facts)["orchestrator -> inference"]
    assert failures(verdict) == [
        "ROUTES: google/gemma-3-4b-it takes the first matching route 'google/*' -> ['vertex'],"
        " not the self-hosted backend 'self-hosted'"
    ]


def add_rule(stacks: dict, name: str, **rule) -> None:
    stacks["dev-network"]["resource"]["google_compute_firewall"][name] = {
        "name": name,
        "network": "${google_compute_network.vpc.id}",
        **rule,
    }


@pytest.mark.parametrize("priority", [900, 1000])  # above the allow, and tied with it: deny wins ties
def test_deny_on_postgres_above_the_allow_blocks_the_database(synth_json, priority):
    stacks = only_env(synth_json)
    add_rule(
        stacks,
        "dev-deny-postgres",
        direction="EGRESS",
        priority=priority,
        deny=[{"protocol": "tcp", "ports": ["5432"]}],
        destination_ranges=["10.32.0.0/16"],
    )
    verdicts = by_edge(stacks, facts_for("dev"))
    assert failures(verdicts["orchestrator -> Cloud SQL"]) == [
        f"egress tcp:5432 10.8.0.0/24 [tags dev-run-orchestrator] -> 10.32.0.0/16: denied by dev-deny-postgres (priority {priority})"
    ]
    # The bootstrap job reaches the database the same way.
    assert [edge for edge, v in verdicts.items() if not v.ok] == [
        "orchestrator -> Cloud SQL",
        "db-bootstrap job -> Cloud SQL",
    ]


def test_deny_on_postgres_below_the_allow_changes_nothing(synth_json):
    stacks = only_env(synth_json)
    add_rule(
        stacks,
        "dev-deny-postgres",
        direction="EGRESS",
        priority=2000,
        deny=[{"protocol": "tcp", "ports": ["5432"]}],
        destination_ranges=["10.32.0.0/16"],
    )
    verdicts = evaluate(stacks, facts_for("dev"))
    assert all(v.ok for v in verdicts), explain(verdicts)


def test_unresolvable_reference_is_a_blocked_edge_not_a_crash(synth_json):
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


def firewall_of(stacks: dict, env: str) -> dict[str, dict]:
    return {r["name"]: r for r in stacks[f"{env}-network"]["resource"]["google_compute_firewall"].values()}


def test_worker_reaches_the_models_and_the_database_from_its_pods_range(synth_json):
    verdicts = by_edge(only_env(synth_json, "prod"), facts_for("prod"))
    for edge in (e for e in WORKER_EDGES if not e.startswith("orchestrator")):
        steps = [step.text for step in verdicts[edge].steps]
        assert "the worker's Pods send from 10.24.0.0/16 (prod-workers's workers-pods)" in steps
        assert "the worker's Pods act as serviceAccount:prod-worker (Workload Identity)" in steps
    assert (
        "egress tcp:8000 10.24.0.0/16 -> 10.10.15.250/32: allowed by prod-allow-workers-egress-inference (priority 1000, ahead of prod-deny-all-egress (65534))"
        in [step.text for step in verdicts["worker -> inference"].steps]
    )


@pytest.mark.parametrize(
    "rule_name,edge,expected",
    [
        (
            "prod-allow-workers-egress-postgres",
            "worker -> Cloud SQL",
            "egress tcp:5432 10.24.0.0/16 -> 10.32.0.0/16: denied by prod-deny-all-egress (priority 65534)",
        ),
        (
            "prod-allow-workers-to-inference",
            "worker -> inference",
            "ingress tcp:8000 10.24.0.0/16 -> 10.10.15.250/32: denied by prod-deny-all-ingress (priority 65534)",
        ),
        (
            "prod-allow-workers-egress-inference",
            "worker -> inference",
            "egress tcp:8000 10.24.0.0/16 -> 10.10.15.250/32: denied by prod-deny-all-egress (priority 65534)",
        ),
    ],
)
def test_a_missing_workers_firewall_rule_blocks_its_edge_only(synth_json, rule_name, edge, expected):
    stacks = only_env(synth_json, "prod")
    rules = stacks["prod-network"]["resource"]["google_compute_firewall"]
    (key,) = [k for k, r in rules.items() if r["name"] == rule_name]
    del rules[key]
    verdicts = by_edge(stacks, facts_for("prod"))
    assert failures(verdicts[edge]) == [expected]
    assert [e for e, v in verdicts.items() if not v.ok] == [edge]


def test_model_server_that_admits_only_cloud_run_blocks_the_worker(synth_json):
    stacks = only_env(synth_json, "prod")
    inference = stacks["prod-inference"]["resource"]
    (lb,) = [s for s in inference["kubernetes_service_v1"].values() if s["metadata"]["name"] == "vllm"]
    lb["spec"]["load_balancer_source_ranges"] = ["10.8.0.0/22"]
    (policy,) = inference["kubernetes_network_policy_v1"].values()
    policy["spec"]["ingress"][0]["from"] = [
        peer for peer in policy["spec"]["ingress"][0]["from"] if peer.get("ip_block", {}).get("cidr") != "10.24.0.0/16"
    ]
    verdicts = by_edge(stacks, facts_for("prod"))
    assert failures(verdicts["worker -> inference"]) == [
        "loadBalancerSourceRanges 10.8.0.0/22 include 10.24.0.0/16",
        "no NetworkPolicy selecting the pods admits 10.24.0.0/16 on 8000",
    ]
    assert verdicts["orchestrator -> inference"].ok


def test_worker_without_its_iam_database_user_is_blocked(synth_json):
    stacks = only_env(synth_json, "prod")
    users = stacks["prod-database"]["resource"]["google_sql_user"]
    (key,) = [k for k, u in users.items() if "worker" in u["name"]]
    del users[key]
    verdicts = by_edge(stacks, facts_for("prod"))
    assert failures(verdicts["worker -> Cloud SQL"]) == [
        "IAM database user for serviceAccount:prod-worker (type CLOUD_IAM_SERVICE_ACCOUNT): serviceAccount:prod-orchestrator"
    ]
    assert verdicts["orchestrator -> Cloud SQL"].ok


def resources(stacks: dict, stack: str, kind: str) -> dict[str, dict]:
    return stacks[stack]["resource"][kind]


def drop(stacks: dict, stack: str, kind: str, key: str) -> None:
    del resources(stacks, stack, kind)[key]


def drop_api_target(stacks: dict) -> None:
    (key,) = resources(stacks, "dev-services", "google_apikeys_key").values()
    key["restrictions"]["api_targets"] = [{"service": "securetoken.googleapis.com"}]


def untag_the_job(stacks: dict) -> None:
    rules = resources(stacks, "dev-network", "google_compute_firewall").values()
    (rule,) = [r for r in rules if "dev-run-db-bootstrap" in (r.get("target_tags") or ())]
    rule["target_tags"].remove("dev-run-db-bootstrap")


def workers_subnet_without_private_google_access(stacks: dict) -> None:
    (subnet,) = [
        s
        for s in resources(stacks, "prod-network", "google_compute_subnetwork").values()
        if s["name"] == "prod-workers"
    ]
    subnet["private_ip_google_access"] = False


def no_workers_egress_to_google(stacks: dict) -> None:
    rules = resources(stacks, "prod-network", "google_compute_firewall")
    (key,) = [k for k, r in rules.items() if r["name"] == "prod-allow-workers-egress-google-apis"]
    del rules[key]


WORKERS_TO_GOOGLE = {"Pub/Sub -> worker", "worker -> GCS (batch files)", "worker -> Vertex AI"}
BROKEN = {  # a broken fixture per edge of the batch path and the sign-in: what it blocks
    "api key without identitytoolkit": ("dev", drop_api_target, {"browser -> Identity Platform"}),
    "postgres egress without the job's tag": ("dev", untag_the_job, {"db-bootstrap job -> Cloud SQL"}),
    "no publisher grant": (
        "prod",
        lambda st: drop(st, "prod-workers", "google_pubsub_topic_iam_member", "orchestrator-publishes-lines"),
        {"orchestrator -> Pub/Sub (batch lines)"},
    ),
    "no inputs grant": (
        "prod",
        lambda st: drop(st, "prod-workers", "google_storage_bucket_iam_member", "orchestrator-inputs"),
        {"orchestrator -> GCS (batch files)"},
    ),
    "no subscriber grant": (
        "prod",
        lambda st: drop(st, "prod-workers", "google_pubsub_subscription_iam_member", "worker-pulls-lines"),
        {"Pub/Sub -> worker"},
    ),
    "service agent cannot forward dead letters": (
        "prod",
        lambda st: drop(
            st, "prod-workers", "google_pubsub_topic_iam_member", "batch-queue_agent-publishes-dead-letters_8A3B218F"
        ),
        {"Pub/Sub -> worker"},
    ),
    "no outputs grant": (
        "prod",
        lambda st: drop(st, "prod-workers", "google_storage_bucket_iam_member", "worker-creates-outputs"),
        {"worker -> GCS (batch files)"},
    ),
    "no Vertex AI role for the worker": (
        "prod",
        lambda st: drop(st, "prod-workers", "google_project_iam_member", "worker-vertex-ai"),
        {"worker -> Vertex AI"},
    ),
    # The workers' subnet has no NAT: Private Google Access and the egress rule are their only way out.
    "workers subnet without Private Google Access": (
        "prod",
        workers_subnet_without_private_google_access,
        WORKERS_TO_GOOGLE,
    ),
    "no egress to Google APIs from the workers": ("prod", no_workers_egress_to_google, WORKERS_TO_GOOGLE),
}


@pytest.mark.parametrize("fixture", list(BROKEN))
def test_a_broken_fixture_blocks_its_edges_only(synth_json, fixture):
    env, breaks, blocked = BROKEN[fixture]
    stacks = only_env(synth_json, env)
    breaks(stacks)
    verdicts = by_edge(stacks, facts_for(env))
    assert {edge for edge, v in verdicts.items() if not v.ok} == blocked, explain(verdicts.values())


def test_a_worker_without_google_access_is_told_why(synth_json):
    stacks = only_env(synth_json, "prod")
    workers_subnet_without_private_google_access(stacks)
    verdict = by_edge(stacks, facts_for("prod"))["worker -> Vertex AI"]
    assert failures(verdict) == ["subnet prod-workers (10.12.0.0/22) has Private Google Access"]


def diagram_arrows() -> tuple[set[str], set[tuple[str, str]]]:
    """The node ids and the arrows of the README's mermaid architecture diagram."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```mermaid\n(.*?)```", text, re.S)
    assert block, "README.md has no mermaid diagram"
    label = r"(?:\[[^\]]*\]|\(\([^)]*\)\)|\(\[[^\]]*\]\))?"
    arrow = re.compile(rf"^\s*(\w+){label}\s*(?:--\s*\"[^\"]*\"\s*)?-->\s*(\w+)")
    node = re.compile(r"^\s*(?:subgraph\s+)?(\w+)[\[(]")
    lines = block[1].splitlines()
    arrows = {(m[1], m[2]) for line in lines if (m := arrow.match(line))}
    nodes = {m[1] for line in lines if (m := node.match(line))} | {n for pair in arrows for n in pair}
    return nodes, arrows


def test_the_checker_follows_every_arrow_of_the_readmes_diagram():
    nodes, arrows = diagram_arrows()
    assert ("orchestrator", "pubsub") in arrows and ("worker", "vertex") in arrows  # the parse works
    # The load balancer's way to vLLM is inside the GKE box: each "-> inference" edge proves it.
    drawn = arrows - {("ilb", "vllm")}
    edges = every_edge()
    assert {e.source for e in edges} | {e.destination for e in edges} <= nodes, "an edge the diagram does not draw"
    checked = {(e.source, e.destination) for e in edges}
    assert checked == drawn


def test_every_declared_edge_has_a_proof():
    # Each shipped edge has a proof of its own; none is left to a generic one.
    assert sorted(e.name for e in every_edge()) == sorted(PROOFS)


def test_a_new_services_calls_are_proven_like_the_shipped_ones():
    # A call the topology gains (tests/test_topology.py adds a reranker) is checked as the
    # gateway's call to the orchestrator is, or the orchestrator's to Cloud SQL; another kind
    # of call is reported as unproven, never passed.
    run_app = proof_for(
        Edge(
            "orchestrator -> reranker", "orchestrator", "reranker", Call("orchestrator", "reranker", "https", "run.app")
        )
    )
    database = proof_for(
        Edge("reranker -> Cloud SQL", "reranker", "sql", Call("reranker", "postgres", "postgres", "psa"))
    )
    other = proof_for(Edge("reranker -> x", "reranker", "x", Call("reranker", "x", "https", "google_api")))
    assert run_app.__qualname__.startswith("cloud_run_call") and database.__qualname__.startswith(
        "cloud_run_to_database"
    )
    verdict = other(None, facts_for("dev"))  # type: ignore[arg-type]
    assert verdict.ok is False and "no proof" in verdict.steps[0].text


# ------------------------------------------------------------------------------------------
# The shared pieces


def rule(name: str, priority: int, action: str, **fields) -> FirewallRule:
    return FirewallRule(name, fields.pop("direction", "EGRESS"), priority, action, (("tcp", ("5432",)),), **fields)


def test_firewall_lower_priority_number_decides_first():
    packet = Packet("EGRESS", net("10.8.0.0/24"), net("10.32.0.0/16"), 5432)
    allow, deny = rule("allow", 1000, "allow"), rule("deny", 1001, "deny")
    assert firewall_decides([deny, allow], packet)[0] is True
    assert firewall_decides([rule("allow", 1001, "allow"), rule("deny", 1000, "deny")], packet)[0] is False


def test_firewall_deny_wins_a_tie():
    packet = Packet("EGRESS", net("10.8.0.0/24"), net("10.32.0.0/16"), 5432)
    allowed, why = firewall_decides([rule("allow", 1000, "allow"), rule("deny", 1000, "deny")], packet)
    assert (allowed, why.endswith("denied by deny (priority 1000)")) == (False, True)


def test_firewall_allow_must_cover_every_address_and_deny_any():
    packet = Packet("EGRESS", net("10.8.0.0/24"), net("10.32.0.0/16"), 5432)
    half = rule("allow-half", 1000, "allow", destination_ranges=(net("10.32.0.0/17"),))
    assert firewall_decides([half], packet)[0] is True  # the implied allow-all egress decides
    deny_half = rule("deny-half", 900, "deny", destination_ranges=(net("10.32.128.0/17"),))
    assert firewall_decides([half, deny_half], packet)[0] is False


def test_firewall_targets_by_tag_and_ingress_defaults_to_deny():
    tagged = rule("allow-tagged", 1000, "allow", target_tags=frozenset({"dev-cloud-run"}))
    deny_all = rule("deny-all", 65534, "deny")
    untagged = Packet("EGRESS", net("10.8.0.0/24"), net("10.32.0.0/16"), 5432)
    assert firewall_decides([tagged, deny_all], untagged)[0] is False
    tagged_packet = Packet(
        "EGRESS", net("10.8.0.0/24"), net("10.32.0.0/16"), 5432, target_tags=frozenset({"dev-cloud-run"})
    )
    assert firewall_decides([tagged, deny_all], tagged_packet)[0] is True
    ingress = Packet("INGRESS", net("10.8.0.0/24"), net("10.10.15.250/32"), 5432)
    assert firewall_decides([], ingress) == (False, f"{ingress}: denied by implied-deny-ingress (priority 65535)")


@pytest.mark.parametrize(
    "model", ["google/gemma-3-4b-it", "google/gemini-2.5-flash", "mistralai/Mistral-7B-Instruct-v0.3", "x"]
)
@pytest.mark.parametrize(
    "routes",
    [
        [{"match": "google/gemma-3-4b-it", "backends": ["self-hosted"]}, {"match": "google/*", "backends": ["vertex"]}],
        [{"match": "google/*", "backends": ["vertex"]}, {"match": "google/gemma-3-4b-it", "backends": ["self-hosted"]}],
        [{"match": "*", "backends": ["self-hosted"]}],
    ],
)
def test_route_matching_is_the_orchestrators(model, routes):
    found = route_for(model, routes)
    assert (found["backends"] if found else []) == backends_for(model, [Route(**r) for r in routes])


# ------------------------------------------------------------------------------------------
# (c) The command line


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scripts.check_reachability", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_passes_on_the_shipped_environments():
    result = run_cli()
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    # One line per edge, a header and a summary per environment: no reasons unless --verbose.
    assert [line.split("  ")[0] for line in lines if line.startswith(("dev  ", "prod  "))] == ["dev"] * len(
        EDGES_OF["dev"]
    ) + ["prod"] * len(EDGES_OF["prod"])
    assert "dev  gateway -> orchestrator" in result.stdout and "prod  Pub/Sub -> worker" in result.stdout
    assert "dev: 10 of 10 edges OK" in lines and "prod: 18 of 18 edges OK" in lines
    assert len([line for line in lines if line]) == 2 * 2 + 10 + 18
    assert "BLOCKED" not in result.stdout


def test_cli_fails_with_a_readable_table_on_a_broken_synth_dir(synth_dir, tmp_path):
    broken = tmp_path / "synth"
    shutil.copytree(synth_dir, broken)
    path = broken / "stacks" / "dev-inference" / "cdk.tf.json"
    stack = json.loads(path.read_text())
    policy = next(iter(stack["resource"]["kubernetes_network_policy_v1"].values()))
    policy["spec"]["ingress"][0]["from"][-1]["namespace_selector"]["match_labels"]["kubernetes.io/metadata.name"] = (
        "gmp-system"
    )
    path.write_text(json.dumps(stack))

    result = run_cli("--synth-dir", str(broken))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert "dev  Managed Prometheus -> vLLM metrics  BLOCKED" in lines, result.stdout
    # The blocked edge shows what blocks it, and no other reason.
    reasons = [line.strip() for line in lines if line.startswith("    ")]
    assert reasons and all(reason.startswith("NO  ") for reason in reasons), result.stdout
    assert "dev: 9 of 10 edges OK; BLOCKED: Managed Prometheus -> vLLM metrics" in lines
    assert "prod: 18 of 18 edges OK" in lines

    verbose = run_cli("--synth-dir", str(broken), "--env", str(ROOT / "environments" / "dev.toml"), "--verbose")
    assert "    ok  a GKE cluster" in verbose.stdout.splitlines()


def test_cli_reports_what_it_cannot_check_without_a_traceback(tmp_path):
    missing = run_cli("--synth-dir", str(tmp_path / "nowhere"))
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr.startswith("check_reachability: ") and "Traceback" not in missing.stderr

    (tmp_path / "stacks" / "dev-network").mkdir(parents=True)
    (tmp_path / "stacks" / "dev-network" / "cdk.tf.json").write_text("{not json")
    corrupt = run_cli("--synth-dir", str(tmp_path), "--env", str(ROOT / "environments" / "dev.toml"))
    assert corrupt.returncode == 2 and "not readable JSON" in corrupt.stderr and "Traceback" not in corrupt.stderr


def test_cli_checks_one_environment_file(tmp_path):
    config = write_environment(DEV_ON_CLOUD_RUN, tmp_path / "dev-cloud-run.toml")
    result = run_cli("--env", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dev: inference on cloud_run, self-hosted model google/gemma-3-4b-it" in result.stdout
    assert "dev: 8 of 8 edges OK" in result.stdout


def test_the_analysis_tools_import_no_cdktf():
    # The checker, the cost tool and the advice read config and synthesized JSON only, so they
    # must run without loading cdktf, jsii or a provider package (issue 21).
    probe = textwrap.dedent(
        """
        import pkgutil, sys
        from importlib.abc import MetaPathFinder
        class NoCdktf(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in {"cdktf", "constructs", "jsii"} or name.startswith("cdktf_"):
                    raise ModuleNotFoundError(f"{name} imported by an analysis tool", name=name)
                return None
        sys.meta_path.insert(0, NoCdktf())
        import analysis
        for module in pkgutil.walk_packages(analysis.__path__, "analysis."):
            __import__(module.name)
        import scripts.check_reachability
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
