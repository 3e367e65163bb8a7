"""Value assertions on the synthesized `<env>-services` stacks: each edge of the diagram
is allowed by ingress, egress, DNS and IAM, and nothing else is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hybrid.components.metrics_sidecar import METRICS_PORT, SIDECAR_IMAGE
from hybrid.config import load_environment
from hybrid.topology import Topology, for_environment
from iac import ROOT, Json, Stacks, only, pointee, pointees, principal, resources
from stacks.services import EXPORTS_METRICS, HAND_BUILT
from variants import DEV_ENV, DEV_ON_CLOUD_RUN, synthesize, variant

ROLES = {"frontend", "gateway", "orchestrator"}


def generic(env: str) -> tuple[Topology, tuple[str, ...]]:
    """``env``'s topology, and its Cloud Run services the stack builds alike (none shipped yet:
    tests/test_topology.py adds one)."""
    deployed = for_environment(load_environment(ROOT / "environments" / f"{env}.toml"))
    return deployed, tuple(name for name in deployed.run_services() if name not in HAND_BUILT)


LAYER = "services"  # the conftest's ``stack`` fixture


def services(stack: Json) -> dict[str, Json]:
    return {s["name"].split("-", 1)[1]: s for s in resources(stack, "google_cloud_run_v2_service").values()}


def container(service: Json) -> Json:
    """The service's own container: the one that takes its requests (a sidecar has no port)."""
    own: Json
    (own,) = [c for c in service["template"]["containers"] if "ports" in c]
    return own


def env_vars(service: Json) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("value_source")) for e in container(service).get("env", [])}


def invokers(stacks: dict[str, Json], stack_id: str) -> dict[str, set[str]]:
    """Who may invoke each service (by role): ``allUsers``, ``serviceAccount:<id>``, ``serviceAgent:<api>``."""
    found: dict[str, set[str]] = {}
    for grant in resources(stacks[stack_id], "google_cloud_run_v2_service_iam_member").values():
        assert grant["role"] == "roles/run.invoker"
        service = pointee(stacks, stack_id, grant["name"])
        assert (service.kind, service.attr) == ("google_cloud_run_v2_service", "name")
        role = service.config["name"].split("-", 1)[1]
        found.setdefault(role, set()).add(principal(stacks, stack_id, grant["member"]))
    return found


def test_artifact_registry_is_a_layer_before_the_services(env: str, stack: Json, synth_json: Stacks) -> None:
    """A revision pulls its image when it is created: the registry must exist, and the images
    be pushed, before the services layer is applied."""
    assert resources(stack, "google_artifact_registry_repository") == {}
    (registry,) = [
        r
        for r in resources(synth_json[f"{env}-registry"], "google_artifact_registry_repository").values()
        if r["repository_id"] == f"{env}-services"
    ]
    assert (registry["format"], registry.get("mode", "STANDARD_REPOSITORY")) == ("DOCKER", "STANDARD_REPOSITORY")
    assert registry["docker_config"] == {"immutable_tags": True}
    for role in ROLES:
        image = container(services(stack)[role])["image"]
        assert image == f"us-central1-docker.pkg.dev/replace-me-{env}/{env}-services/{role}:0.1.0"


def test_reference_production_defaults_on_the_prod_gateway(synth_json: Stacks) -> None:
    gateway = services(synth_json["prod-services"])["gateway"]
    template, box = gateway["template"], container(gateway)
    assert template["scaling"] == {"min_instance_count": 1, "max_instance_count": 100}
    assert template["execution_environment"] == "EXECUTION_ENVIRONMENT_GEN2"
    assert box["resources"] == {
        "limits": {"cpu": "4", "memory": "8Gi"},
        "cpu_idle": False,
        "startup_cpu_boost": True,
    }
    assert box["startup_probe"] == {
        "http_get": {"path": "/health"},
        "initial_delay_seconds": 5,
        "period_seconds": 3,
        "failure_threshold": 5,
    }
    assert box["liveness_probe"] == {"http_get": {"path": "/health"}, "period_seconds": 30}
    assert template["timeout"] == "300s"
    assert template["max_instance_request_concurrency"] == 80
    assert box["ports"] == {"container_port": 8080}


def test_config_overrides_reach_the_service(synth_json: Stacks) -> None:
    frontend = services(synth_json["dev-services"])["frontend"]
    assert container(frontend)["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert frontend["template"]["scaling"] == {"min_instance_count": 0, "max_instance_count": 5}


def test_cpu_stays_allocated_everywhere(stack: Json) -> None:
    for service in services(stack).values():
        assert container(service)["resources"]["cpu_idle"] is False


def test_ingress_public_for_the_edge_internal_for_the_rest(env: str, stack: Json) -> None:
    ingress = {role: s["ingress"] for role, s in services(stack).items()}
    # prod's [edge] is on: the public services admit only its load balancer (docs/edge.md).
    public = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER" if env == "prod" else "INGRESS_TRAFFIC_ALL"
    assert ingress.pop("frontend") == public
    assert ingress.pop("gateway") == public
    assert ingress.pop("orchestrator") == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert set(ingress.values()) <= {"INGRESS_TRAFFIC_INTERNAL_ONLY"}  # inference, where it runs on Cloud Run


def test_only_what_calls_something_private_enters_the_vpc_each_with_its_own_tag(
    env: str, stack: Json, synth_json: Stacks
) -> None:
    if env == "dev":  # connector mode: test_dev_services_share_the_connector
        return

    def direct_vpc(vpc_access: Json) -> tuple[Any, ...]:
        """(network, subnet, tags, egress) of Direct VPC egress through one interface."""
        (interface,) = vpc_access["network_interfaces"]
        here = f"{env}-services"
        return (
            pointee(synth_json, here, interface["network"]).brief,
            pointee(synth_json, here, interface["subnetwork"]).brief,
            interface["tags"],
            vpc_access["egress"],
        )

    network = f"{env}-network"
    through_the_run_subnet = (
        (network, "google_compute_network", f"{env}-vpc", "id"),
        (network, "google_compute_subnetwork", f"{env}-cloud-run", "id"),
    )
    found = services(stack)
    assert direct_vpc(found["gateway"]["template"]["vpc_access"]) == (
        *through_the_run_subnet,
        [f"{env}-run-gateway"],
        "PRIVATE_RANGES_ONLY",
    )
    assert direct_vpc(found["orchestrator"]["template"]["vpc_access"]) == (
        *through_the_run_subnet,
        [f"{env}-run-orchestrator"],
        "PRIVATE_RANGES_ONLY",
    )
    # The chat page's server calls nothing: the browser calls the gateway.
    assert "vpc_access" not in found["frontend"]["template"]
    (job,) = resources(stack, "google_cloud_run_v2_job").values()
    assert direct_vpc(job["template"]["template"]["vpc_access"]) == (
        *through_the_run_subnet,
        [f"{env}-run-db-bootstrap"],
        "PRIVATE_RANGES_ONLY",
    )


def test_each_service_runs_as_its_own_account(env: str, stack: Json, synth_json: Stacks) -> None:
    deployed, others = generic(env)
    accounts = {
        role: pointee(synth_json, f"{env}-services", s["template"]["service_account"]).brief
        for role, s in services(stack).items()
    }
    assert accounts == {
        "frontend": (f"{env}-services", "google_service_account", f"{env}-frontend", "email"),
        "gateway": (f"{env}-services", "google_service_account", f"{env}-gateway", "email"),
        # The orchestrator's account is born in the database layer, next to its database user.
        "orchestrator": (f"{env}-database", "google_service_account", f"{env}-orchestrator", "email"),
        # So is any other's that logs in to Cloud SQL.
        **{
            role: (
                f"{env}-database" if role in deployed.callers("postgres") else f"{env}-services",
                "google_service_account",
                f"{env}-{role}",
                "email",
            )
            for role in others
        },
    }


def test_who_may_invoke_whom(env: str, synth_json: Stacks) -> None:
    found = invokers(synth_json, f"{env}-services")
    assert found.pop("frontend") == {"allUsers"}
    assert found.pop("gateway") == {"allUsers"}
    assert found.pop("orchestrator") == {f"serviceAccount:{env}-gateway"}
    # Any other, by the Cloud Run services that call it.
    deployed, others = generic(env)
    assert found == {role: {f"serviceAccount:{env}-{caller}" for caller in deployed.callers(role)} for role in others}


def test_project_roles_are_least_privilege(env: str, stack: Json, synth_json: Stacks) -> None:
    grants: dict[str, set[str]] = {}
    for grant in resources(stack, "google_project_iam_member").values():
        holder = principal(synth_json, f"{env}-services", grant["member"])
        grants.setdefault(holder, set()).add(grant["role"])
    runtime = {"roles/logging.logWriter", "roles/monitoring.metricWriter"}
    assert grants.pop(f"serviceAccount:{env}-orchestrator") == runtime | {"roles/aiplatform.user"}
    _, others = generic(env)
    assert grants == {f"serviceAccount:{env}-{role}": runtime for role in ("frontend", "gateway", *others)}


def test_no_service_holds_a_secret_it_does_not_read(env: str, stack: Json) -> None:
    """UPSTREAM_API_KEY was mounted and read by nothing: the contract refuses such secrets. The
    gateway reads Memorystore's AUTH string where [redis] is on (prod)."""
    for role, service in services(stack).items():
        secrets = {name for name, value in env_vars(service).items() if isinstance(value, dict)}
        assert secrets == ({"REDIS_AUTH"} if (env, role) == ("prod", "gateway") else set())


def test_the_database_bootstrap_job_reads_only_the_admin_password_granted_before_it(env: str, stack: Json) -> None:
    (job,) = resources(stack, "google_cloud_run_v2_job").values()
    assert job["name"] == f"{env}-db-bootstrap"
    (box,) = job["template"]["template"]["containers"]
    assert box["image"] == f"us-central1-docker.pkg.dev/replace-me-{env}/{env}-services/orchestrator:0.1.0"
    assert box["command"] == ["python", "-m", "orchestrator.bootstrap"]
    variables = {e["name"]: e.get("value", e.get("value_source")) for e in box["env"]}
    assert variables["PGPASSWORD"] == {
        "secret_key_ref": {"secret": f"{env}-postgres-admin-password", "version": "latest"}
    }
    assert (variables["PGUSER"], variables["PGSSLMODE"]) == ("postgres", "verify-ca")
    orchestrator = env_vars(services(stack)["orchestrator"])
    # It verifies the server against the instance's CA, as the orchestrator does.
    assert variables["DATABASE_SERVER_CA"] == orchestrator["DATABASE_SERVER_CA"]
    assert variables["GRANTEE"] == orchestrator["PGUSER"] and variables["PGHOST"] == orchestrator["PGHOST"]
    ((key, grant),) = [
        (k, g)
        for k, g in resources(stack, "google_secret_manager_secret_iam_member").items()
        # The gateway's, where [redis] is on; the metrics sidecars' configurations.
        if g["secret_id"] != f"{env}-redis-auth" and not g["secret_id"].endswith("-rungmp")
    ]
    assert (grant["secret_id"], grant["role"]) == (
        f"{env}-postgres-admin-password",
        "roles/secretmanager.secretAccessor",
    )
    assert grant["member"] == job["template"]["template"]["service_account"].replace("email}", "member}")
    assert job["depends_on"] == [f"google_secret_manager_secret_iam_member.{key}"]


def test_orchestrator_is_wired_to_database_inference_and_vertex(env: str, stack: Json, synth_json: Stacks) -> None:
    wiring = env_vars(services(stack)["orchestrator"])
    here, database = f"{env}-services", f"{env}-database"
    assert pointee(synth_json, here, wiring["PGHOST"]).brief == (
        database,
        "google_sql_database_instance",
        f"{env}-postgres",
        "private_ip_address",
    )
    assert pointee(synth_json, here, wiring["PGDATABASE"]).brief == (
        database,
        "google_sql_database",
        "orchestrator",
        "name",
    )
    # The IAM database user's name: the orchestrator's email without ".gserviceaccount.com".
    assert wiring["PGUSER"].startswith("${trimsuffix(")
    assert [p.brief for p in pointees(synth_json, here, wiring["PGUSER"])] == [
        (database, "google_service_account", f"{env}-orchestrator", "email")
    ]
    assert (wiring["PGSSLMODE"], wiring["DATABASE_AUTH"]) == ("verify-ca", "iam")
    # The server's certificate is checked against the instance's own server CA.
    assert pointee(synth_json, here, wiring["DATABASE_SERVER_CA"]).brief == (
        database,
        "google_sql_database_instance",
        f"{env}-postgres",
        "server_ca_cert[0].cert",
    )
    backends = json.loads(wiring["BACKENDS"])
    assert backends["vertex"] == {"kind": "vertex", "project": f"replace-me-{env}", "location": "us-central1"}
    # The address the network layer reserves for the model servers' internal load balancer; no token.
    addresses = resources(synth_json[f"{env}-network"], "google_compute_address").values()
    (address,) = [a["address"] for a in addresses if a["name"] == f"{env}-inference-lb"]
    # vLLM's /metrics on the same address: the orchestrator reads the pool's saturation there.
    assert backends["self-hosted"] == {
        "kind": "openai",
        "auth": "none",
        "url": f"http://{address}:8000/v1",
        "metrics_url": f"http://{address}:8000/metrics",
    }
    model = {"dev": "mistralai/Mistral-7B-Instruct-v0.3", "prod": "meta-llama/Llama-3.1-8B-Instruct"}[env]
    # The GKE server's --max-model-len, which GET /v1/models lists and the chat page bounds by.
    context = {"dev": 8192, "prod": 16384}[env]
    # prod spills its self-hosted model to Vertex AI when the pool is saturated or down.
    spill = {
        "dev": {},
        "prod": {
            "spill_to": "vertex",
            "spill_model": "google/gemini-3.5-flash-lite",
            "spill_waiting": 8,
            "spill_kv_cache": 0.95,
            "batch_share": 0.5,
            "batch_spill": False,
        },
    }[env]
    assert json.loads(wiring["ROUTES"]) == [
        {"match": model, "backends": ["self-hosted"], "max_model_len": context, **spill},
        {"match": "google/*", "backends": ["vertex"]},
    ]


def test_gateway_calls_the_orchestrator_url_and_frontend_the_gateway(env: str, stack: Json, synth_json: Stacks) -> None:
    here = f"{env}-services"
    if env == "prod":
        assert pointee(synth_json, here, env_vars(services(stack)["gateway"])["ORCHESTRATOR_URL"]).brief == (
            here,
            "google_cloud_run_v2_service",
            f"{env}-orchestrator",
            "uri",
        )
    else:  # connector mode: test_dev_gateway_calls_the_orchestrators_internal_load_balancer
        assert "run.app" not in env_vars(services(stack)["gateway"])["ORCHESTRATOR_URL"]
    gateway_url = env_vars(services(stack)["frontend"])["GATEWAY_URL"]
    if env == "prod":  # behind the edge, the page calls its API on its own origin (docs/edge.md)
        assert gateway_url == "https://chat.replace-me.example.com"
        return
    assert pointee(synth_json, here, gateway_url).brief == (
        here,
        "google_cloud_run_v2_service",
        f"{env}-gateway",
        "uri",
    )


@pytest.fixture(scope="module")
def cloud_run_gpu(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Json]:
    """dev, with its model on a Cloud Run L4 instead of GKE: its stacks by layer."""
    gpu = variant(DEV_ON_CLOUD_RUN, {"name": "gpu", "inference.cloud_run.secrets": {"HF_TOKEN": "gpu-hf-token"}})
    return synthesize(gpu, tmp_path_factory.mktemp("cloud-run-gpu"))


def test_inference_on_a_cloud_run_l4_when_config_says_so(cloud_run_gpu: Stacks) -> None:
    assert sorted(cloud_run_gpu) == [
        "gpu-analytics",
        "gpu-database",
        "gpu-network",
        "gpu-observability",
        "gpu-registry",
        "gpu-services",
    ]  # no cluster
    stack = cloud_run_gpu["gpu-services"]
    inference = services(stack)["inference"]
    template, box = inference["template"], container(inference)
    assert template["node_selector"] == {"accelerator": "nvidia-l4"}
    assert box["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    assert box["resources"]["cpu_idle"] is False
    assert template["scaling"] == {"min_instance_count": 0, "max_instance_count": 5}
    assert template["gpu_zonal_redundancy_disabled"] is True
    assert "vpc_access" not in template  # it calls nothing private
    assert inference["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert box["args"] == ["--model", "google/gemma-3-4b-it", "--port", "8000"]
    assert box["ports"] == {"container_port": 8000}
    orchestrator = services(stack)["orchestrator"]
    assert invokers(cloud_run_gpu, "gpu-services")["inference"] == {"serviceAccount:gpu-orchestrator"}
    # It admits only the orchestrator's identity: the orchestrator sends an ID token for it, and
    # the self-hosted google/gemma-3-4b-it is routed there before google/* goes to Vertex AI.
    self_hosted = json.loads(env_vars(orchestrator)["BACKENDS"])["self-hosted"]
    assert (self_hosted["kind"], self_hosted["auth"]) == ("openai", "google-id-token")
    assert self_hosted["url"].endswith("}/v1")
    assert [p.brief for p in pointees(cloud_run_gpu, "gpu-services", self_hosted["url"])] == [
        ("gpu-services", "google_cloud_run_v2_service", "gpu-inference", "uri")
    ]
    # No max_model_len: on Cloud Run vLLM takes the model's own, which the catalog does not hold.
    assert json.loads(env_vars(orchestrator)["ROUTES"])[0] == {
        "match": "google/gemma-3-4b-it",
        "backends": ["self-hosted"],
    }
    # Its own secrets (a Hugging Face token) are readable before its revision is created.
    assert env_vars(inference)["HF_TOKEN"] == {"secret_key_ref": {"secret": "gpu-hf-token", "version": "latest"}}
    grants = {
        k: g
        for k, g in resources(stack, "google_secret_manager_secret_iam_member").items()
        if g["secret_id"] == "gpu-hf-token"
    }
    ((grant_key, grant),) = grants.items()
    assert grant["member"] == inference["template"]["service_account"].replace("email}", "member}")
    assert f"google_secret_manager_secret_iam_member.{grant_key}" in inference["depends_on"]


def test_shipped_environments_serve_models_from_gke(stack: Json) -> None:
    assert "inference" not in services(stack)


def test_deletion_protection_follows_config(env: str, stack: Json) -> None:
    assert all(s["deletion_protection"] is (env == "prod") for s in services(stack).values())


def test_frontend_behind_iap_when_config_says_so(tmp_path: Path) -> None:
    iap = variant(
        DEV_ENV,
        {"name": "iap", "services.iap_members": ["group:ai-team@example.com"], "services.frontend.access": "iap"},
    )
    stacks = synthesize(iap, tmp_path)
    stack = stacks["iap-services"]
    frontend = services(stack)["frontend"]
    assert frontend["provider"] == "google-beta"
    assert frontend["iap_enabled"] is True
    assert frontend["ingress"] == "INGRESS_TRAFFIC_ALL"
    agent = only(stack, "google_project_service_identity")
    assert (agent["service"], agent["provider"]) == ("iap.googleapis.com", "google-beta")
    # Only IAP's service agent invokes it: whoever gets through IAP.
    assert invokers(stacks, "iap-services")["frontend"] == {"serviceAgent:iap.googleapis.com"}
    access = only(stack, "google_iap_web_cloud_run_service_iam_member")
    assert access["member"] == "group:ai-team@example.com"
    assert access["role"] == "roles/iap.httpsResourceAccessor"
    assert pointee(stacks, "iap-services", access["cloud_run_service_name"]).brief == (
        "iap-services",
        "google_cloud_run_v2_service",
        "iap-frontend",
        "name",
    )
    assert stack["terraform"]["required_providers"]["google-beta"]["version"] == "6.50.0"


def test_the_chat_page_signs_in_with_identity_platform_and_a_restricted_browser_key(env: str, stack: Json) -> None:
    config = only(stack, "google_identity_platform_config")
    assert config["sign_in"]["email"] == {"enabled": True, "password_required": True}
    key = only(stack, "google_apikeys_key")
    origin = f"https://{env}-frontend-${{data.google_project.project.number}}.us-central1.run.app"
    if env == "prod":  # prod's [edge] is on: the page is at its domain (docs/edge.md)
        origin = "https://chat.replace-me.example.com"
    assert key["restrictions"]["browser_key_restrictions"] == {"allowed_referrers": [f"{origin}/*"]}
    assert [t["service"] for t in key["restrictions"]["api_targets"]] == [
        "identitytoolkit.googleapis.com",
        "securetoken.googleapis.com",
    ]
    frontend, gateway = env_vars(services(stack)["frontend"]), env_vars(services(stack)["gateway"])
    assert frontend["IDENTITY_PLATFORM_API_KEY"] == "${google_apikeys_key.identity-platform-key.key_string}"
    assert (frontend["AUTH_MODE"], frontend["IDENTITY_PLATFORM_URL"]) == (
        "identity-platform",
        "https://identitytoolkit.googleapis.com",
    )
    # The gateway trusts this project's Identity Platform tokens and the chat page's origin only.
    assert gateway["JWT_ISSUER"] == f"https://securetoken.google.com/replace-me-{env}"
    assert gateway["JWT_AUDIENCE"] == f"replace-me-{env}"
    assert gateway["ALLOWED_ORIGINS"] == origin
    # The address to open is the one CORS and the key admit.
    assert stack["output"]["chat_page_url"]["value"] == origin


def test_the_gateway_and_orchestrator_export_their_metrics_by_a_sidecar_on_loopback(env: str, stack: Json) -> None:
    for name, service in services(stack).items():
        sidecars = [c for c in service["template"]["containers"] if "ports" not in c]
        if name not in EXPORTS_METRICS:
            assert sidecars == [] and "METRICS_ADDRESS" not in env_vars(service), name
            continue
        # Served on 127.0.0.1 only, apart from the public port: the sidecar reaches it, a caller cannot.
        assert env_vars(service)["METRICS_ADDRESS"] == f"127.0.0.1:{METRICS_PORT}"
        assert container(service)["ports"]["container_port"] != METRICS_PORT
        (sidecar,) = sidecars
        assert sidecar["image"] == SIDECAR_IMAGE and ":" in SIDECAR_IMAGE.rsplit("/", 1)[1]
        (mount,) = sidecar["volume_mounts"]
        (volume,) = service["template"]["volumes"]
        assert (mount["name"], mount["mount_path"]) == (volume["name"], "/etc/rungmp")
        assert volume["secret"]["items"][0]["path"] == "config.yaml"
        # Its RunMonitoring scrapes that port, from a secret the service's identity alone may read.
        secret_id = volume["secret"]["secret"]
        (version,) = [
            v
            for v in resources(stack, "google_secret_manager_secret_version").values()
            if v["secret"].endswith(f"/secrets/{secret_id}")
        ]
        assert f"port: {METRICS_PORT}" in version["secret_data"] and "kind: RunMonitoring" in version["secret_data"]
        readers = [
            m
            for m in resources(stack, "google_secret_manager_secret_iam_member").values()
            if m["secret_id"] == secret_id
        ]
        assert [m["role"] for m in readers] == ["roles/secretmanager.secretAccessor"]
        assert readers[0]["member"] == service["template"]["service_account"].replace("email}", "member}")


def test_dev_services_share_the_connector(synth_json: Stacks) -> None:
    """Connector mode: the gateway, the orchestrator and the bootstrap job send private ranges
    through dev's connector; the frontend calls nothing private."""
    stack = synth_json["dev-services"]
    found = services(stack)
    (job,) = resources(stack, "google_cloud_run_v2_job").values()
    through = {
        "gateway": found["gateway"]["template"]["vpc_access"],
        "orchestrator": found["orchestrator"]["template"]["vpc_access"],
        "db-bootstrap": job["template"]["template"]["vpc_access"],
    }
    for vpc_access in through.values():
        assert set(vpc_access) == {"connector", "egress"}
        assert vpc_access["egress"] == "PRIVATE_RANGES_ONLY"
        assert pointee(synth_json, "dev-services", vpc_access["connector"]).brief == (
            "dev-network",
            "google_vpc_access_connector",
            "dev-connector",
            "id",
        )
    assert "vpc_access" not in found["frontend"]["template"]


def test_dev_gateway_calls_the_orchestrators_internal_load_balancer(synth_json: Stacks) -> None:
    stack = synth_json["dev-services"]
    gateway = env_vars(services(stack)["gateway"])
    rule = only(stack, "google_compute_forwarding_rule")
    (key,) = resources(stack, "google_compute_forwarding_rule")
    # HTTP to the private frontend (docs/network-egress.md, "Why HTTP"); the token's audience stays run.app.
    assert gateway["ORCHESTRATOR_URL"] == f"http://${{google_compute_forwarding_rule.{key}.ip_address}}"
    assert gateway["ORCHESTRATOR_AUTH"] == "google-id-token"
    assert gateway["ORCHESTRATOR_AUDIENCE"] == env_vars(services(stack)["orchestrator"])["CALLER_AUDIENCE"]
    assert gateway["ORCHESTRATOR_AUDIENCE"].startswith("https://dev-orchestrator-")
    assert gateway["ORCHESTRATOR_AUDIENCE"].endswith(".us-central1.run.app")
    assert (rule["load_balancing_scheme"], rule["port_range"], rule["ip_protocol"]) == ("INTERNAL_MANAGED", "80", "TCP")
    assert pointee(synth_json, "dev-services", rule["ip_address"]).brief == (
        "dev-network",
        "google_compute_address",
        "dev-internal-lb",
        "address",
    )
    assert pointee(synth_json, "dev-services", rule["subnetwork"]).brief[2] == "dev-workloads"
    backend = only(stack, "google_compute_region_backend_service")
    assert backend["load_balancing_scheme"] == "INTERNAL_MANAGED"
    assert "health_checks" not in backend
    neg = only(stack, "google_compute_region_network_endpoint_group")
    assert neg["network_endpoint_type"] == "SERVERLESS"
    assert pointee(synth_json, "dev-services", neg["cloud_run"]["service"]).brief == (
        "dev-services",
        "google_cloud_run_v2_service",
        "dev-orchestrator",
        "name",
    )
    assert only(stack, "google_compute_region_url_map")["default_service"].endswith(".id}")
    assert only(stack, "google_compute_region_target_http_proxy")["url_map"].endswith(".id}")


def test_prod_has_no_connector_and_no_internal_load_balancer(synth_json: Stacks) -> None:
    assert resources(synth_json["prod-network"], "google_vpc_access_connector") == {}
    assert resources(synth_json["prod-services"], "google_compute_forwarding_rule") == {}
