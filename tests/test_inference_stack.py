"""Value assertions on the synthesized `<env>-inference` stacks: vLLM on GKE, reachable from
the Cloud Run services' subnet only, autoscaled on vLLM's queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iac import Json, Stacks, pointee, resources

EXPECTED: dict[str, dict[str, Any]] = {
    "dev": {"model": "mistralai/Mistral-7B-Instruct-v0.3", "len": "8192", "replicas": (1, 1), "weights": "pvc"},
    "prod": {"model": "meta-llama/Llama-3.1-8B-Instruct", "len": "16384", "replicas": (2, 8), "weights": "streamer"},
}


LAYER = "inference"  # the conftest's ``stack`` fixture


def account(synth_json: Stacks, env: str, member_or_email: str) -> tuple[str, str]:
    """The Google service account (in this stack) a member or an email refers to, and which of the two."""
    found = pointee(synth_json, f"{env}-inference", member_or_email)
    assert (found.stack, found.kind) == (f"{env}-inference", "google_service_account")
    return found.config["account_id"], found.attr


def named(stack: Json, kind: str, name: str) -> Json:
    found: Json
    (found,) = [r for r in resources(stack, kind).values() if r["metadata"]["name"] == name]
    return found


@pytest.fixture
def pod(stack: Json) -> Json:
    spec: Json = named(stack, "kubernetes_deployment_v1", "vllm")["spec"]["template"]["spec"]
    return spec


@pytest.fixture
def server(pod: Json) -> Json:
    container: Json
    (container,) = pod["container"]
    return container


def test_kubernetes_provider_from_the_cluster_with_a_short_lived_token(env: str, stack: Json) -> None:
    (provider,) = stack["provider"]["kubernetes"]
    assert provider == {
        "host": "https://${data.google_container_cluster.cluster.control_plane_endpoints_config[0]"
        ".dns_endpoint_config[0].endpoint}",
        "token": "${data.google_client_config.client.access_token}",
    }
    cluster = stack["data"]["google_container_cluster"]["cluster"]
    assert (cluster["name"], cluster["location"]) == (f"{env}-models", "us-central1")
    assert "client" in stack["data"]["google_client_config"]


def test_namespace_and_workload_identity(env: str, stack: Json, synth_json: Stacks) -> None:
    namespace = named(stack, "kubernetes_namespace_v1", "inference")
    assert namespace["metadata"]["labels"] == {"pod-security.kubernetes.io/enforce": "baseline"}
    ksa = named(stack, "kubernetes_service_account_v1", "vllm")
    annotation = ksa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert account(synth_json, env, annotation) == (f"{env}-vllm", "email")
    # Each Kubernetes account may act as its own Google account, and only as that one.
    bindings = resources(stack, "google_service_account_iam_member").values()
    assert {b["member"]: account(synth_json, env, b["service_account_id"]) for b in bindings} == {
        f"serviceAccount:replace-me-{env}.svc.id.goog[inference/vllm]": (f"{env}-vllm", "name"),
        f"serviceAccount:replace-me-{env}.svc.id.goog[custom-metrics/custom-metrics-stackdriver-adapter]": (
            f"{env}-metrics-adapter",
            "name",
        ),
    }
    assert all(b["role"] == "roles/iam.workloadIdentityUser" for b in bindings)


def test_model_server_identity_gets_only_the_token_and_the_weights(env: str, stack: Json, synth_json: Stacks) -> None:
    (token,) = resources(stack, "google_secret_manager_secret_iam_member").values()
    assert (token["secret_id"], token["role"]) == (f"{env}-hf-token", "roles/secretmanager.secretAccessor")
    assert account(synth_json, env, token["member"]) == (f"{env}-vllm", "member")
    weights = list(resources(stack, "google_storage_bucket_iam_member").values())
    if EXPECTED[env]["weights"] != "pvc":
        (grant,) = weights
        assert (grant["bucket"], grant["role"]) == ("replace-me-prod-model-weights", "roles/storage.objectViewer")
        assert account(synth_json, env, grant["member"]) == (f"{env}-vllm", "member")
    else:
        assert weights == []
    (project_grant,) = resources(stack, "google_project_iam_member").values()
    assert project_grant["role"] == "roles/monitoring.viewer"
    assert account(synth_json, env, project_grant["member"]) == (f"{env}-metrics-adapter", "member")


def test_vllm_runs_the_configured_model(env: str, server: Json) -> None:
    # Docker Hub's image, pulled through the registry layer's remote repository.
    tag = {"dev": "v0.10.1", "prod": "v0.11.1"}[env]  # prod's streamer needs 0.11.1
    assert server["image"] == f"us-central1-docker.pkg.dev/replace-me-{env}/{env}-dockerhub/vllm/vllm-openai:{tag}"
    assert server["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    model = EXPECTED[env]["model"]
    # prod streams the weights from its bucket and keeps serving them under the model's name.
    streamed = ["--load-format", "runai_streamer", "--served-model-name", model]
    assert server["args"] == [
        "--model",
        {"dev": model, "prod": f"gs://replace-me-prod-model-weights/{model}"}[env],
        "--tensor-parallel-size",
        "1",
        "--max-model-len",
        EXPECTED[env]["len"],
        "--gpu-memory-utilization",
        "0.9",
        "--port",
        "8000",
        *{"dev": [], "prod": streamed}[env],
    ]


def test_gpu_node_selector_and_requests_equal_limits(env: str, pod: Json, server: Json) -> None:
    # prod's ladder names the GPUs in its ComputeClass (tests/test_gpu_ladder.py); dev's Pod names them itself.
    assert (
        pod["node_selector"]
        == {
            "dev": {"cloud.google.com/gke-accelerator": "nvidia-l4", "cloud.google.com/gke-accelerator-count": "1"},
            "prod": {"cloud.google.com/compute-class": "model-servers"},
        }[env]
    )
    resources_ = server["resources"]
    assert resources_["requests"] == resources_["limits"]
    assert resources_["limits"] == {
        "cpu": "8",
        "memory": "32Gi",
        "nvidia.com/gpu": "1",
        "ephemeral-storage": {"dev": "50Gi", "prod": "100Gi"}[env],
    }


def test_long_startup_then_readiness_and_liveness_on_health(server: Json) -> None:
    startup = server["startup_probe"]
    assert startup["http_get"] == {"path": "/health", "port": "8000"}
    assert startup["period_seconds"] * startup["failure_threshold"] == 1800
    assert server["readiness_probe"]["http_get"] == {"path": "/health", "port": "8000"}
    assert server["liveness_probe"]["http_get"] == {"path": "/health", "port": "8000"}


def test_weights_volume_per_config(env: str, stack: Json, pod: Json, server: Json) -> None:
    volumes = {v["name"]: v for v in pod["volume"]}
    mounts = {m["name"]: m for m in server["volume_mount"]}
    assert mounts["model-cache"]["mount_path"] == "/data/models"
    env_vars = {e["name"]: e["value"] for e in server["env"]}
    assert env_vars["HF_HOME"] == "/data/models"
    if env == "dev":
        claim = named(stack, "kubernetes_persistent_volume_claim_v1", "model-cache")["spec"]
        assert claim["storage_class_name"] == "premium-rwo"
        assert claim["access_modes"] == ["ReadWriteOnce"]
        assert claim["resources"]["requests"] == {"storage": "100Gi"}
        assert volumes["model-cache"]["persistent_volume_claim"]["claim_name"].endswith(".metadata[0].name}")
    else:
        # The streamer writes only the tokenizer and config to disk; the weights go to GPU memory.
        assert volumes["model-cache"]["empty_dir"] == {"size_limit": "10Gi"}
        assert env_vars["HF_HUB_OFFLINE"] == "1"
        deployment = named(stack, "kubernetes_deployment_v1", "vllm")
        assert "annotations" not in deployment["spec"]["template"]["metadata"]


def test_rollout_strategy_fits_the_weights_volume(env: str, stack: Json) -> None:
    """A ReadWriteOnce weights disk attaches to one Pod: the default RollingUpdate would surge a
    second Pod that cannot start. Shared GCS FUSE weights roll one extra server at a time."""
    strategy = named(stack, "kubernetes_deployment_v1", "vllm")["spec"]["strategy"]
    if EXPECTED[env]["weights"] == "pvc":
        assert strategy == {"type": "Recreate"}
    else:
        assert strategy == {"type": "RollingUpdate", "rolling_update": {"max_surge": "1", "max_unavailable": "0"}}


def test_hugging_face_token_comes_from_secret_manager(env: str, stack: Json, pod: Json, server: Json) -> None:
    (provider_class,) = [
        m["manifest"]
        for m in resources(stack, "kubernetes_manifest").values()
        if m["manifest"]["kind"] == "SecretProviderClass"
    ]
    assert provider_class["spec"]["parameters"]["secrets"] == (
        f'- resourceName: "projects/replace-me-{env}/secrets/{env}-hf-token/versions/latest"\n  path: "token"\n'
    )
    volume = next(v for v in pod["volume"] if v["name"] == "hf-token")
    assert volume["csi"]["driver"] == "secrets-store-gke.csi.k8s.io"
    assert volume["csi"]["volume_attributes"] == {"secretProviderClass": provider_class["metadata"]["name"]}
    assert {e["name"]: e["value"] for e in server["env"]}["HF_TOKEN_PATH"] == "/var/run/secrets/huggingface/token"
    assert "HF_TOKEN" not in {e["name"] for e in server["env"]}


def test_secret_provider_class_is_the_csi_crd_with_the_gke_provider(stack: Json) -> None:
    """GKE's Secret Manager add-on serves the Secrets Store CSI CRD, with provider "gke"; the
    add-on's name appears only as the Pod volume's CSI driver."""
    (provider_class,) = [
        m["manifest"]
        for m in resources(stack, "kubernetes_manifest").values()
        if m["manifest"]["kind"] == "SecretProviderClass"
    ]
    assert provider_class["apiVersion"] == "secrets-store.csi.x-k8s.io/v1"
    assert provider_class["spec"]["provider"] == "gke"


# Where the orchestrator's calls come from: dev's connector (a /28), prod's Direct VPC egress subnet.
RUN_CIDR = {"dev": "10.8.0.0/28", "prod": "10.8.0.0/22"}
# Who may call the model servers: the orchestrator (Cloud Run), and in prod the batch workers' Pods.
# In prod, the orchestrators of both regions (us-central1 and us-east4).
CALLERS = {"dev": [RUN_CIDR["dev"]], "prod": [RUN_CIDR["prod"], "10.8.4.0/22", "10.24.0.0/16"]}
# Prod's orchestrators in a second region reach the internal load balancer only with global access.
ANNOTATIONS = {
    "dev": {"networking.gke.io/load-balancer-type": "Internal"},
    "prod": {
        "networking.gke.io/load-balancer-type": "Internal",
        "networking.gke.io/internal-load-balancer-allow-global-access": "true",
    },
}


def test_internal_load_balancer_on_the_reserved_address_for_its_callers_only(
    env: str, stack: Json, synth_json: Stacks
) -> None:
    service = named(stack, "kubernetes_service_v1", "vllm")
    assert service["metadata"]["annotations"] == ANNOTATIONS[env]
    spec = service["spec"]
    assert spec["type"] == "LoadBalancer"
    assert spec["load_balancer_source_ranges"] == CALLERS[env]
    assert pointee(synth_json, f"{env}-inference", spec["load_balancer_ip"]).brief == (
        f"{env}-network",
        "google_compute_address",
        f"{env}-inference-lb",
        "address",
    )
    assert spec["port"] == [{"name": "http", "port": 8000, "target_port": "8000", "protocol": "TCP"}]
    assert spec["external_traffic_policy"] == "Local"


def test_network_policy_admits_callers_health_checks_and_prometheus_only(env: str, stack: Json) -> None:
    policy = named(stack, "kubernetes_network_policy_v1", "vllm")["spec"]
    assert policy["policy_types"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "8000", "protocol": "TCP"}]
    assert rule["from"] == [
        *({"ip_block": {"cidr": cidr}} for cidr in CALLERS[env]),
        {"ip_block": {"cidr": "35.191.0.0/16"}},
        {"ip_block": {"cidr": "130.211.0.0/22"}},
        {"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": "gke-gmp-system"}}},
    ]


def test_network_policy_admits_managed_prometheus_on_the_port_it_scrapes(stack: Json, server: Json) -> None:
    """On Autopilot the managed collectors run in gke-gmp-system, not gmp-system, and they
    scrape the container port the PodMonitoring names: that port must be the one admitted."""
    monitoring = next(
        m["manifest"]
        for m in resources(stack, "kubernetes_manifest").values()
        if m["manifest"]["kind"] == "PodMonitoring"
    )
    (endpoint,) = monitoring["spec"]["endpoints"]
    (scraped,) = [p["container_port"] for p in server["port"] if p["name"] == endpoint["port"]]
    policy = named(stack, "kubernetes_network_policy_v1", "vllm")["spec"]
    from_prometheus = [
        rule
        for rule in policy["ingress"]
        if {"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": "gke-gmp-system"}}} in rule["from"]
    ]
    assert from_prometheus, "no ingress rule admits the gke-gmp-system namespace"
    assert all({"port": str(scraped), "protocol": "TCP"} in rule["ports"] for rule in from_prometheus)
    assert not any(
        peer.get("namespace_selector", {}).get("match_labels", {}).get("kubernetes.io/metadata.name") == "gmp-system"
        for rule in policy["ingress"]
        for peer in rule["from"]
    )


def test_disruption_budget(stack: Json) -> None:
    budget = named(stack, "kubernetes_pod_disruption_budget_v1", "vllm")["spec"]
    assert budget["max_unavailable"] == "1"
    assert budget["selector"] == {"match_labels": {"app": "vllm", "tier": "inference"}}


def test_autoscaling_on_vllm_queue_length_not_cpu(env: str, stack: Json) -> None:
    monitoring = next(
        m["manifest"]
        for m in resources(stack, "kubernetes_manifest").values()
        if m["manifest"]["kind"] == "PodMonitoring"
    )
    assert monitoring["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    hpa = named(stack, "kubernetes_horizontal_pod_autoscaler_v2", "vllm")["spec"]
    assert (hpa["min_replicas"], hpa["max_replicas"]) == EXPECTED[env]["replicas"]
    assert hpa["scale_target_ref"] == {"api_version": "apps/v1", "kind": "Deployment", "name": "vllm"}
    (metric,) = hpa["metric"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "prometheus.googleapis.com|vllm:num_requests_waiting|gauge"
    assert metric["pods"]["target"] == {"type": "AverageValue", "average_value": "10"}
    deployment = named(stack, "kubernetes_deployment_v1", "vllm")
    assert deployment["lifecycle"] == {"ignore_changes": ["spec[0].replicas"]}


def test_custom_metrics_adapter_with_its_rbac(env: str, stack: Json, synth_json: Stacks) -> None:
    adapter = named(stack, "kubernetes_deployment_v1", "custom-metrics-stackdriver-adapter")
    assert adapter["metadata"]["namespace"] == "custom-metrics"
    (container,) = adapter["spec"]["template"]["spec"]["container"]
    assert "--use-new-resource-model=true" in container["command"]
    apis = {a["metadata"]["name"] for a in resources(stack, "kubernetes_api_service_v1").values()}
    assert apis == {"v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io"}
    cluster_roles = {
        f"${{kubernetes_cluster_role_v1.{key}.metadata[0].name}}": role["metadata"]["name"]
        for key, role in resources(stack, "kubernetes_cluster_role_v1").items()
    }
    bound = {
        cluster_roles.get(b["role_ref"]["name"], b["role_ref"]["name"]): {s["name"] for s in b["subject"]}
        for b in resources(stack, "kubernetes_cluster_role_binding_v1").values()
    }
    assert bound == {
        "system:auth-delegator": {"custom-metrics-stackdriver-adapter"},
        "custom-metrics-resource-reader": {"custom-metrics-stackdriver-adapter"},
        "external-metrics-reader": {"horizontal-pod-autoscaler"},
    }
    (reader,) = resources(stack, "kubernetes_role_binding_v1").values()
    assert (reader["metadata"]["namespace"], reader["role_ref"]["name"]) == (
        "kube-system",
        "extension-apiserver-authentication-reader",
    )
    ksa = named(stack, "kubernetes_service_account_v1", "custom-metrics-stackdriver-adapter")
    annotation = ksa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert account(synth_json, env, annotation) == (f"{env}-metrics-adapter", "email")


def test_custom_metrics_adapter_runs_hardened_on_the_port_the_control_plane_reaches(stack: Json) -> None:
    """A private cluster's control plane reaches Pods on 443 and 10250 only, so the adapter keeps
    443 (as upstream) and its image's root user, with every capability dropped but binding that
    port, no privilege escalation, and its self-signed certificate in an emptyDir (the root
    filesystem stays read-only)."""
    adapter = named(stack, "kubernetes_deployment_v1", "custom-metrics-stackdriver-adapter")
    pod = adapter["spec"]["template"]["spec"]
    (container,) = pod["container"]
    assert pod["security_context"] == {"seccomp_profile": {"type": "RuntimeDefault"}}
    hardened = container["security_context"]
    assert hardened["read_only_root_filesystem"] is True
    assert hardened["allow_privilege_escalation"] is False
    assert hardened["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert "run_as_non_root" not in hardened  # the distroless image has no other user

    flags = dict(arg.split("=", 1) for arg in container["command"][1:])
    mounts = {m["mount_path"]: m["name"] for m in container["volume_mount"]}
    volumes = {v["name"]: v for v in pod["volume"]}
    assert "empty_dir" in volumes[mounts[flags["--cert-dir"]]]

    secure_port = int(flags["--secure-port"])
    assert secure_port == 443
    (port,) = container["port"]
    assert (port["container_port"], port["protocol"]) == (secure_port, "TCP")
    service = named(stack, "kubernetes_service_v1", "custom-metrics-stackdriver-adapter")
    (service_port,) = service["spec"]["port"]
    assert service_port["port"] == 443
    assert service_port["target_port"] in (port["name"], str(secure_port))
    for api in resources(stack, "kubernetes_api_service_v1").values():
        assert api["spec"]["service"].get("port", 443) == 443


def test_weights_bucket_is_made_before_the_layer_that_grants_on_it(
    env: str, synth_json: Stacks, synth_dir: Path
) -> None:
    buckets = list(resources(synth_json[f"{env}-registry"], "google_storage_bucket").values())
    if EXPECTED[env]["weights"] != "pvc":
        (bucket,) = buckets
        assert (bucket["name"], bucket["location"]) == ("replace-me-prod-model-weights", "us-central1")
        assert bucket["uniform_bucket_level_access"] is True
        assert bucket["public_access_prevention"] == "enforced"
        assert bucket["force_destroy"] is False
    else:
        assert buckets == []
    # The registry layer is deployed first (docs/deploying.md, step 1), so the weights can be staged before
    # the servers start, and the inference layer's grant on the bucket comes after it.
    manifest = json.loads((synth_dir / "manifest.json").read_text())
    assert f"{env}-registry" in manifest["stacks"][f"{env}-inference"]["dependencies"]


def test_docker_hub_is_mirrored_by_a_remote_repository(env: str, synth_json: Stacks) -> None:
    repositories = {
        r["repository_id"]: r
        for r in resources(synth_json[f"{env}-registry"], "google_artifact_registry_repository").values()
    }
    mirror = repositories[f"{env}-dockerhub"]
    assert (mirror["location"], mirror["format"], mirror["mode"]) == ("us-central1", "DOCKER", "REMOTE_REPOSITORY")
    assert mirror["remote_repository_config"]["docker_repository"] == {"public_repository": "DOCKER_HUB"}
