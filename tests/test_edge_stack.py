"""The edge ([edge], on in prod): the load balancer's parts, the services behind it, the cost,
and the placeholder domain refused (stacks/edge.py, hybrid/components/load_balancer.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.cost.estimate import estimate
from analysis.cost.prices import load_prices
from hybrid.config import load_environment
from iac import ROOT, Json, Stacks
from reachability_helpers import container_env, resources, service
from scripts.up import UpError, refuse_placeholder
from variants import synthesize, variant

PROD_ENV = load_environment(ROOT / "environments" / "prod.toml")
DOMAIN = "chat.replace-me.example.com"


def edge(stacks: Stacks, kind: str, env: str = "prod") -> list[Json]:
    return list(resources(stacks, f"{env}-edge", kind).values())


def test_every_part_of_the_load_balancer_is_external_managed(synth_json: Stacks) -> None:
    schemes = [
        r["load_balancing_scheme"]
        for kind in ("google_compute_backend_service", "google_compute_global_forwarding_rule")
        for r in edge(synth_json, kind)
    ]
    assert schemes == ["EXTERNAL_MANAGED"] * 4


def test_one_serverless_neg_per_region_and_service(synth_json: Stacks) -> None:
    negs = {
        (n["region"], n["cloud_run"]["service"], n["network_endpoint_type"])
        for n in edge(synth_json, "google_compute_region_network_endpoint_group")
    }
    # prod runs the stateless tier in us-central1 and us-east4 ([edge] regions).
    assert negs == {
        (region, f"prod-{service}", "SERVERLESS")
        for region in ("us-central1", "us-east4")
        for service in ("frontend", "gateway")
    }


def test_http_redirects_to_https_and_https_serves_the_managed_certificate(synth_json: Stacks) -> None:
    (cert,) = edge(synth_json, "google_compute_managed_ssl_certificate")
    assert cert["managed"]["domains"] == [DOMAIN]
    rules = {r["port_range"]: r for r in edge(synth_json, "google_compute_global_forwarding_rule")}
    assert "target_http_proxy" in rules["80"]["target"] and "target_https_proxy" in rules["443"]["target"]
    redirect, routed = sorted(edge(synth_json, "google_compute_url_map"), key=lambda m: "default_url_redirect" not in m)
    assert redirect["default_url_redirect"] == {
        "https_redirect": True,
        "strip_query": False,
        "redirect_response_code": "MOVED_PERMANENTLY_DEFAULT",
    }
    # Path routing: /v1/* is the gateway's, everything else the page's.
    (matcher,) = routed["path_matcher"]
    assert routed["host_rule"] == [{"hosts": [DOMAIN], "path_matcher": "paths"}]
    assert matcher["path_rule"][0]["paths"] == ["/v1/*"] and "backend-gateway" in matcher["path_rule"][0]["service"]
    assert "backend-frontend" in routed["default_service"]


def test_backends_carry_cloud_armor_and_outlier_detection(synth_json: Stacks) -> None:
    for backend in edge(synth_json, "google_compute_backend_service"):
        assert backend["security_policy"].startswith("${google_compute_security_policy.")
        assert backend["outlier_detection"]["consecutive_errors"] == 5
        assert "iap" not in backend  # prod's frontend is public


def test_behind_the_edge_run_app_closes_and_the_origin_follows_the_domain(synth_json: Stacks) -> None:
    origin = f"https://{DOMAIN}"
    frontend, gateway = service(synth_json, "frontend", "prod"), service(synth_json, "gateway", "prod")
    assert (frontend["ingress"], gateway["ingress"]) == ("INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",) * 2
    assert container_env(gateway)["ALLOWED_ORIGINS"]["value"] == origin
    assert container_env(frontend)["GATEWAY_URL"]["value"] == origin
    services = synth_json["prod-services"]["resource"]
    (key,) = services["google_apikeys_key"].values()
    assert key["restrictions"]["browser_key_restrictions"]["allowed_referrers"] == [f"{origin}/*"]
    (idp,) = services["google_identity_platform_config"].values()
    assert idp["authorized_domains"] == [DOMAIN]
    assert synth_json["prod-services"]["output"]["chat_page_url"]["value"] == origin


def test_dev_keeps_the_edge_off(synth_json: Stacks) -> None:
    assert "dev-edge" not in synth_json
    assert service(synth_json, "gateway")["ingress"] == "INGRESS_TRAFFIC_ALL"
    (idp,) = synth_json["dev-services"]["resource"]["google_identity_platform_config"].values()
    assert "authorized_domains" not in idp


def test_prods_second_region_has_its_negs_and_iap_moves_to_the_load_balancer(tmp_path: Path) -> None:
    env = variant(
        PROD_ENV,
        {
            "services.frontend.access": "iap",
            "services.iap_members": ["group:team@example.com"],
        },
    )
    stacks = synthesize(env, tmp_path)
    negs = sorted(
        (n["cloud_run"]["service"], n["region"]) for n in edge(stacks, "google_compute_region_network_endpoint_group")
    )
    assert negs == [
        ("prod-frontend", "us-central1"),
        ("prod-frontend", "us-east4"),
        ("prod-gateway", "us-central1"),
        ("prod-gateway", "us-east4"),
    ]
    backends = {b["name"]: b for b in edge(stacks, "google_compute_backend_service")}
    assert [len(b["backend"]) for b in backends.values()] == [2, 2]
    assert backends["prod-edge-frontend"]["iap"] == {"enabled": True} and "iap" not in backends["prod-edge-gateway"]
    (access,) = edge(stacks, "google_iap_web_backend_service_iam_member")
    assert (access["role"], access["member"]) == ("roles/iap.httpsResourceAccessor", "group:team@example.com")
    # The Cloud Run service has no IAP of its own; IAP's agent may invoke it, and no one else.
    frontend = service(stacks, "frontend", "prod")
    assert "iap_enabled" not in frontend
    invokers = sorted(
        (g["location"], g["member"])
        for g in stacks["prod-services"]["resource"]["google_cloud_run_v2_service_iam_member"].values()
        if "frontend" in g["name"]
    )
    # One invoker on each region's frontend: IAP's agent.
    assert [location for location, _ in invokers] == ["us-central1", "us-east4"]
    assert all("google_project_service_identity" in member for _, member in invokers)


def test_the_placeholder_domain_is_refused() -> None:
    real = variant(PROD_ENV, {"project_id": "my-prod-project"})
    with pytest.raises(UpError, match=r"edge.domain = 'chat.replace-me.example.com' is the shipped placeholder"):
        refuse_placeholder(Path("prod.toml"), real)
    # Its own alert address too, which is refused as well (tests/test_up.py).
    refuse_placeholder(
        Path("prod.toml"), variant(real, {"edge.domain": "chat.example.org", "slo.notify.emails": ["ops@acme.test"]})
    )


def test_cost_prices_the_load_balancer_and_cloud_armor() -> None:
    est = estimate(PROD_ENV, load_prices("us-central1"))
    lines = {(i.resource, i.component): i for i in est.items if i.layer == "edge"}
    assert lines[
        "global external Application Load Balancer", "forwarding rules (443, 80)"
    ].monthly_usd == pytest.approx(36.50)
    assert lines["Cloud Armor", "security policy"].monthly_usd == pytest.approx(5.00)
    assert lines["Cloud Armor", "rules (6)"].monthly_usd == pytest.approx(6.00)
    # 50,000 chat requests and 10,000 page loads a day, 730/24 days: 1.825 million requests at $0.75.
    assert lines["Cloud Armor", "requests evaluated"].monthly_usd == pytest.approx(1.825 * 0.75)
    assert lines["Cloud Armor", "security policy"].price_key == "network.armor_policy"
    assert est.stack_totals()["prod-edge"] == pytest.approx(49.30, abs=0.01)
    dev = estimate(load_environment(ROOT / "environments" / "dev.toml"), load_prices("us-central1"))
    assert not [i for i in dev.items if i.layer == "edge"]
