"""The edge's reachability rules, each proven by a broken copy of prod's synth
(analysis/reachability/loadbalancer.py): every public backend has a Cloud Armor policy, no public
service answers at run.app while the edge is on, HTTP only redirects, the sign-in key follows the domain."""

from __future__ import annotations

from iac import Json, Stacks
from reachability_helpers import by_edge, facts_for, failures, only_env, resources, service


def prod(synth_json: Stacks) -> Stacks:
    return only_env(synth_json, "prod")


def backend(stacks: Stacks, role: str) -> Json:
    return next(
        b
        for b in resources(stacks, "prod-edge", "google_compute_backend_service").values()
        if b["name"] == f"prod-edge-{role}"
    )


def test_the_shipped_edge_holds(synth_json: Stacks) -> None:
    verdicts = by_edge(prod(synth_json), facts_for("prod"))
    for edge in (
        "internet -> load balancer",
        "load balancer -> frontend",
        "load balancer -> gateway",
        "browser -> gateway",
    ):
        assert verdicts[edge].ok, failures(verdicts[edge])


def test_a_backend_without_cloud_armor_is_blocked(synth_json: Stacks) -> None:
    stacks = prod(synth_json)
    del backend(stacks, "gateway")["security_policy"]
    verdicts = by_edge(stacks, facts_for("prod"))
    assert failures(verdicts["load balancer -> gateway"]) == ["prod-edge-gateway: Cloud Armor policy none"]
    assert not verdicts["browser -> gateway"].ok and verdicts["load balancer -> frontend"].ok


def test_a_public_service_open_at_run_app_is_blocked(synth_json: Stacks) -> None:
    stacks = prod(synth_json)
    service(stacks, "frontend", "prod")["ingress"] = "INGRESS_TRAFFIC_ALL"
    verdict = by_edge(stacks, facts_for("prod"))["browser -> frontend"]
    assert failures(verdict) == ["prod-frontend: ingress INGRESS_TRAFFIC_ALL: its run.app URL is open to the internet"]


def test_a_classic_scheme_is_blocked(synth_json: Stacks) -> None:
    stacks = prod(synth_json)
    backend(stacks, "frontend")["load_balancing_scheme"] = "EXTERNAL"
    assert failures(by_edge(stacks, facts_for("prod"))["load balancer -> frontend"]) == [
        "prod-edge-frontend: scheme EXTERNAL"
    ]


def test_a_neg_naming_another_service_leaves_the_service_unreached(synth_json: Stacks) -> None:
    stacks = prod(synth_json)
    for neg in resources(stacks, "prod-edge", "google_compute_region_network_endpoint_group").values():
        if neg["cloud_run"]["service"] == "prod-gateway":
            neg["cloud_run"]["service"] = "prod-gatewy"
    assert failures(by_edge(stacks, facts_for("prod"))["load balancer -> gateway"]) == [
        "a backend service with a serverless NEG for prod-gateway"
    ]


def test_http_that_serves_instead_of_redirecting_is_blocked(synth_json: Stacks) -> None:
    stacks = prod(synth_json)
    for url_map in resources(stacks, "prod-edge", "google_compute_url_map").values():
        url_map.pop("default_url_redirect", None)
    assert failures(by_edge(stacks, facts_for("prod"))["internet -> load balancer"]) == [
        "port 80 redirects to HTTPS, and serves nothing"
    ]


def test_a_sign_in_key_still_on_run_app_is_blocked(synth_json: Stacks) -> None:
    stacks = prod(synth_json)
    (key,) = resources(stacks, "prod-services", "google_apikeys_key").values()
    key["restrictions"]["browser_key_restrictions"]["allowed_referrers"] = [
        "https://prod-frontend-123.us-central1.run.app/*"
    ]
    (failure,) = failures(by_edge(stacks, facts_for("prod"))["browser -> Identity Platform"])
    assert failure.startswith("the key admits the chat page (https://chat.replace-me.example.com/)")
