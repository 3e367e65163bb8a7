"""Broken copies of the synth's cross-region ways: a further region's orchestrator to Cloud SQL
and to the models' internal load balancer, each caught on the edge it breaks, for its reason."""

from __future__ import annotations

from iac import Stacks
from reachability_helpers import REGIONAL_EDGES, by_edge, explain, facts_for, failures, only_env

TO_SQL, TO_MODELS = REGIONAL_EDGES


def test_both_cross_region_edges_hold_in_prod(synth_json: Stacks) -> None:
    verdicts = by_edge(only_env(synth_json, "prod"), facts_for("prod"))
    assert all(verdicts[edge].ok for edge in REGIONAL_EDGES), explain(verdicts[e] for e in REGIONAL_EDGES)


def test_without_global_access_the_other_region_cannot_reach_the_models(synth_json: Stacks) -> None:
    stacks = only_env(synth_json, "prod")
    services = stacks["prod-inference"]["resource"]["kubernetes_service_v1"].values()
    (lb,) = [s for s in services if s["spec"].get("type") == "LoadBalancer"]
    del lb["metadata"]["annotations"]["networking.gke.io/internal-load-balancer-allow-global-access"]
    verdicts = by_edge(stacks, facts_for("prod"))
    assert verdicts["orchestrator -> inference"].ok  # the same region needs no global access
    assert failures(verdicts[TO_MODELS]) == [
        "the internal load balancer's networking.gke.io/internal-load-balancer-allow-global-access is 'unset': "
        "clients in us-east4 cannot reach it"
    ], explain([verdicts[TO_MODELS]])


def test_the_models_firewall_must_admit_the_other_regions_subnet(synth_json: Stacks) -> None:
    stacks = only_env(synth_json, "prod")
    rules = stacks["prod-network"]["resource"]["google_compute_firewall"]
    (rule,) = [r for r in rules.values() if r["name"] == "prod-allow-cloud-run-to-inference"]
    rule["source_ranges"] = ["10.8.0.0/22"]  # the us-central1 subnet only
    verdicts = by_edge(stacks, facts_for("prod"))
    assert verdicts["orchestrator -> inference"].ok
    assert not verdicts[TO_MODELS].ok
    assert any("INGRESS" in text or "ingress" in text for text in failures(verdicts[TO_MODELS])), explain(
        [verdicts[TO_MODELS]]
    )


def test_the_other_regions_orchestrator_needs_its_postgres_egress(synth_json: Stacks) -> None:
    stacks = only_env(synth_json, "prod")
    services = stacks["prod-services"]["resource"]["google_cloud_run_v2_service"]
    (orchestrator,) = [s for s in services.values() if s["name"] == "prod-orchestrator" and s["location"] == "us-east4"]
    # Its Direct VPC egress loses its network tag: the postgres egress rule no longer matches it.
    orchestrator["template"]["vpc_access"]["network_interfaces"][0]["tags"] = []
    verdicts = by_edge(stacks, facts_for("prod"))
    assert verdicts["orchestrator -> Cloud SQL"].ok
    assert not verdicts[TO_SQL].ok
    assert any("denied" in text for text in failures(verdicts[TO_SQL])), explain([verdicts[TO_SQL]])
