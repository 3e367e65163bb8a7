"""[redis]: Memorystore for the gateway's shared rate limit (prod), private, AUTH and TLS, its
AUTH string read by the gateway alone from Secret Manager; none in dev."""

from __future__ import annotations

from iac import Json, Stacks, only, pointee, resources
from services.gateway.settings import FALLBACK_MESSAGE

PROD_SERVICES, PROD_DATABASE, PROD_NETWORK = "prod-services", "prod-database", "prod-network"


def gateway(synth_json: Stacks) -> Json:
    return next(
        s
        for s in resources(synth_json[PROD_SERVICES], "google_cloud_run_v2_service").values()
        if s["name"] == "prod-gateway"
    )


def test_prod_keeps_the_rate_limit_in_a_private_memorystore_with_auth_and_tls(synth_json: Stacks) -> None:
    instance = only(synth_json[PROD_DATABASE], "google_redis_instance")
    assert (instance["name"], instance["tier"], instance["memory_size_gb"]) == ("prod-ratelimit", "STANDARD_HA", 1)
    assert (instance["connect_mode"], instance["reserved_ip_range"]) == ("PRIVATE_SERVICE_ACCESS", "prod-psa")
    assert pointee(synth_json, PROD_DATABASE, instance["authorized_network"]).brief[1:] == (
        "google_service_networking_connection",
        None,
        "network",
    )
    assert instance["auth_enabled"] is True
    assert instance["transit_encryption_mode"] == "SERVER_AUTHENTICATION"
    secret = only(synth_json[PROD_DATABASE], "google_secret_manager_secret")
    version = only(synth_json[PROD_DATABASE], "google_secret_manager_secret_version")
    assert secret["secret_id"] == "prod-redis-auth"
    assert version["secret"] == "projects/replace-me-prod/secrets/prod-redis-auth"
    assert version["secret_data"].endswith(".auth_string}")


def test_the_gateway_reads_it_over_tls_with_the_auth_string_from_secret_manager(synth_json: Stacks) -> None:
    env = {e["name"]: e for e in gateway(synth_json)["template"]["containers"][0]["env"]}
    assert env["REDIS_PORT"]["value"] == "6378"
    for variable, attribute in (("REDIS_HOST", "host"), ("REDIS_SERVER_CA", "server_ca_certs[0].cert")):
        assert pointee(synth_json, PROD_SERVICES, env[variable]["value"]).brief == (
            PROD_DATABASE,
            "google_redis_instance",
            "prod-ratelimit",
            attribute,
        )
    assert env["REDIS_AUTH"]["value_source"]["secret_key_ref"] == {"secret": "prod-redis-auth", "version": "latest"}
    readers = [
        g["member"]
        for g in resources(synth_json[PROD_SERVICES], "google_secret_manager_secret_iam_member").values()
        if g["secret_id"] == "prod-redis-auth"
    ]
    assert len(readers) == 1 and "gateway" in readers[0]


def test_the_network_lets_only_the_gateway_out_to_it_and_enables_its_api(synth_json: Stacks) -> None:
    rule = next(
        r
        for r in resources(synth_json[PROD_NETWORK], "google_compute_firewall").values()
        if r["name"] == "prod-allow-gateway-egress-redis"
    )
    assert (rule["direction"], rule["target_tags"], rule["allow"]) == (
        "EGRESS",
        ["prod-run-gateway"],
        [{"protocol": "tcp", "ports": ["6378"]}],
    )
    apis = {s["service"] for s in resources(synth_json[PROD_NETWORK], "google_project_service").values()}
    assert "redis.googleapis.com" in apis


def test_dev_has_no_memorystore(synth_json: Stacks) -> None:
    assert not any(
        resources(config, "google_redis_instance") for stack, config in synth_json.items() if stack.startswith("dev-")
    )
    apis = {s["service"] for s in resources(synth_json["dev-network"], "google_project_service").values()}
    assert "redis.googleapis.com" not in apis


def test_a_log_based_metric_counts_the_gateways_fallback_warnings(synth_json: Stacks) -> None:
    metric = only(synth_json[PROD_SERVICES], "google_logging_metric")
    assert metric["name"] == "prod-gateway-rate-limit-fallback"
    assert 'resource.labels.service_name="prod-gateway"' in metric["filter"]
    # The very message the gateway logs (services.gateway.ratelimit).
    assert f'jsonPayload.message="{FALLBACK_MESSAGE}"' in metric["filter"]
    assert (metric["metric_descriptor"]["metric_kind"], metric["metric_descriptor"]["value_type"]) == ("DELTA", "INT64")
    assert not resources(synth_json["dev-services"], "google_logging_metric")
