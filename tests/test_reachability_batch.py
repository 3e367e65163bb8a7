"""Broken copies of the batch path's synth (the workers, Pub/Sub, Cloud Storage, Vertex AI) and the
sign-in, each caught on the edges it breaks and those only."""

from __future__ import annotations

import pytest

from iac import Stacks
from reachability_helpers import WORKER_EDGES, by_edge, explain, facts_for, failures, only_env, resources


def test_worker_reaches_the_models_and_the_database_from_its_pods_range(synth_json: Stacks) -> None:
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
def test_a_missing_workers_firewall_rule_blocks_its_edge_only(
    synth_json: Stacks, rule_name: str, edge: str, expected: str
) -> None:
    stacks = only_env(synth_json, "prod")
    rules = stacks["prod-network"]["resource"]["google_compute_firewall"]
    (key,) = [k for k, r in rules.items() if r["name"] == rule_name]
    del rules[key]
    verdicts = by_edge(stacks, facts_for("prod"))
    assert failures(verdicts[edge]) == [expected]
    assert [e for e, v in verdicts.items() if not v.ok] == [edge]


def test_model_server_that_admits_only_cloud_run_blocks_the_worker(synth_json: Stacks) -> None:
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


def test_worker_without_its_iam_database_user_is_blocked(synth_json: Stacks) -> None:
    stacks = only_env(synth_json, "prod")
    users = stacks["prod-database"]["resource"]["google_sql_user"]
    (key,) = [k for k, u in users.items() if "worker" in u["name"]]
    del users[key]
    verdicts = by_edge(stacks, facts_for("prod"))
    assert failures(verdicts["worker -> Cloud SQL"]) == [
        "IAM database user for serviceAccount:prod-worker (type CLOUD_IAM_SERVICE_ACCOUNT): serviceAccount:prod-orchestrator"
    ]
    assert verdicts["orchestrator -> Cloud SQL"].ok


def drop(stacks: Stacks, stack: str, kind: str, key: str) -> None:
    del resources(stacks, stack, kind)[key]


def drop_api_target(stacks: Stacks) -> None:
    (key,) = resources(stacks, "dev-services", "google_apikeys_key").values()
    key["restrictions"]["api_targets"] = [{"service": "securetoken.googleapis.com"}]


def untag_the_job(stacks: Stacks) -> None:
    # prod's: Direct VPC egress tags each service (dev's connector tags them all alike).
    rules = resources(stacks, "prod-network", "google_compute_firewall").values()
    (rule,) = [r for r in rules if "prod-run-db-bootstrap" in (r.get("target_tags") or ())]
    rule["target_tags"].remove("prod-run-db-bootstrap")


def workers_subnet_without_private_google_access(stacks: Stacks) -> None:
    (subnet,) = [
        s
        for s in resources(stacks, "prod-network", "google_compute_subnetwork").values()
        if s["name"] == "prod-workers"
    ]
    subnet["private_ip_google_access"] = False


def no_workers_egress_to_google(stacks: Stacks) -> None:
    rules = resources(stacks, "prod-network", "google_compute_firewall")
    (key,) = [k for k, r in rules.items() if r["name"] == "prod-allow-workers-egress-google-apis"]
    del rules[key]


WORKERS_TO_GOOGLE = {"Pub/Sub -> worker", "worker -> GCS (batch files)", "worker -> Vertex AI"}


BROKEN = {  # a broken fixture per edge of the batch path and the sign-in: what it blocks
    "api key without identitytoolkit": ("dev", drop_api_target, {"browser -> Identity Platform"}),
    "postgres egress without the job's tag": ("prod", untag_the_job, {"db-bootstrap job -> Cloud SQL"}),
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
def test_a_broken_fixture_blocks_its_edges_only(synth_json: Stacks, fixture: str) -> None:
    env, breaks, blocked = BROKEN[fixture]
    stacks = only_env(synth_json, env)
    breaks(stacks)
    verdicts = by_edge(stacks, facts_for(env))
    assert {edge for edge, v in verdicts.items() if not v.ok} == blocked, explain(verdicts.values())


def test_a_worker_without_google_access_is_told_why(synth_json: Stacks) -> None:
    stacks = only_env(synth_json, "prod")
    workers_subnet_without_private_google_access(stacks)
    verdict = by_edge(stacks, facts_for("prod"))["worker -> Vertex AI"]
    assert failures(verdict) == ["subnet prod-workers (10.12.0.0/22) has Private Google Access"]
