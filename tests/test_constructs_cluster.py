"""The cluster and the model server constructs alone, in process: the Autopilot control plane's
endpoints and node account, and vLLM's weights, quantization, token and reachable port."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from construct_helpers import CLUSTER, MIRROR, STACK, account, points_at, repository_readers
from hybrid.components.autopilot_cluster import AutopilotCluster
from hybrid.components.control_plane import ClusterPlacement, ControlPlane, ControlPlaneAccess
from hybrid.components.vllm_server import VllmServer, VllmServerProps
from hybrid.config import GkeModelServerSettings
from iac import Json, only, pointee, principal, resources, synth_in_process


def autopilot(props: ClusterPlacement) -> Json:
    return synth_in_process(
        lambda stack: AutopilotCluster(
            stack, "models", props, node_account=account(stack, account_id="nodes"), pulls_from=(MIRROR,)
        )
    )


def test_dns_endpoint_only_by_default() -> None:
    cluster = only(autopilot(CLUSTER), "google_container_cluster")
    assert cluster["control_plane_endpoints_config"] == {
        "dns_endpoint_config": {"allow_external_traffic": True},
        "ip_endpoints_config": {"enabled": False},
    }
    assert "master_authorized_networks_config" not in cluster
    assert (cluster["release_channel"], cluster["deletion_protection"]) == ({"channel": "STABLE"}, True)
    assert cluster["workload_identity_config"] == {"workload_pool": "p.svc.id.goog"}
    assert cluster["ip_allocation_policy"] == {
        "cluster_secondary_range_name": "pod-range",
        "services_secondary_range_name": "service-range",
    }


def test_authorized_networks_open_the_ip_endpoint_to_them_only() -> None:
    props = replace(
        CLUSTER,
        control_plane=ControlPlane(ControlPlaneAccess.AUTHORIZED_NETWORKS, ("203.0.113.0/24", "198.51.100.0/24")),
    )
    cluster = only(autopilot(props), "google_container_cluster")
    assert cluster["control_plane_endpoints_config"] == {
        "dns_endpoint_config": {"allow_external_traffic": False},
        "ip_endpoints_config": {"enabled": True},
    }
    assert cluster["master_authorized_networks_config"] == {
        "gcp_public_cidrs_access_enabled": False,
        "cidr_blocks": [
            {"cidr_block": "203.0.113.0/24", "display_name": "203.0.113.0/24"},
            {"cidr_block": "198.51.100.0/24", "display_name": "198.51.100.0/24"},
        ],
    }


def test_nodes_run_as_the_node_account_with_its_two_roles() -> None:
    out = autopilot(CLUSTER)
    defaults = only(out, "google_container_cluster")["cluster_autoscaling"]["auto_provisioning_defaults"]
    assert points_at(out, defaults["service_account"]) == ("google_service_account", "nodes", "email")
    roles = {
        (b["role"], principal({STACK: out}, STACK, b["member"]))
        for b in resources(out, "google_project_iam_member").values()
    }
    assert roles == {("roles/container.defaultNodeServiceAccount", "serviceAccount:nodes")}
    # Images are read from the repositories the nodes pull from, not from the whole project's.
    assert repository_readers(out) == {
        ("us-central1", "mirror", "roles/artifactregistry.reader", "serviceAccount:nodes")
    }


def server(quantization: str | None = None, port: int = 8000, **settings: Any) -> VllmServerProps:
    """A server whose [inference.gke] is the file's defaults but for ``settings``."""
    return VllmServerProps(
        project="p",
        namespace="inference",
        service_account="vllm",
        image="vllm:1",
        settings=GkeModelServerSettings(
            **{"model": "mistralai/Mistral-7B-Instruct-v0.3", "gpu_type": "nvidia-l4", **settings}
        ),
        quantization=quantization,
        port=port,
        load_balancer_ip="10.0.0.5",
        allowed_sources=("10.8.0.0/24",),
    )


SERVER = server()


def vllm(props: VllmServerProps) -> Json:
    return synth_in_process(lambda stack: VllmServer(stack, "vllm", props))


def deployment(out: Json) -> Json:
    return only(out, "kubernetes_deployment_v1")


def the_container(out: Json) -> Json:
    box: Json
    (box,) = deployment(out)["spec"]["template"]["spec"]["container"]
    return box


def test_weights_on_a_disk_recreate_the_pod_and_mount_the_claim_writable() -> None:
    out = vllm(SERVER)
    assert deployment(out)["spec"]["strategy"] == {"type": "Recreate"}
    claim = only(out, "kubernetes_persistent_volume_claim_v1")
    assert claim["spec"]["resources"]["requests"] == {"storage": "100Gi"}
    volumes = {v["name"]: v for v in deployment(out)["spec"]["template"]["spec"]["volume"]}
    claimed = pointee({STACK: out}, STACK, volumes["model-cache"]["persistent_volume_claim"]["claim_name"])
    assert (claimed.kind, claimed.config["metadata"]["name"]) == (
        "kubernetes_persistent_volume_claim_v1",
        "model-cache",
    )
    mounts = {m["name"]: m for m in the_container(out)["volume_mount"]}
    assert mounts["model-cache"]["read_only"] is False
    assert "HF_HUB_OFFLINE" not in {e["name"] for e in the_container(out)["env"]}


def test_weights_from_a_bucket_roll_one_server_at_a_time_read_only_and_offline() -> None:
    out = vllm(server(weights="gcsfuse", weights_bucket="bucket"))
    assert deployment(out)["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rolling_update": {"max_surge": "1", "max_unavailable": "0"},
    }
    assert resources(out, "kubernetes_persistent_volume_claim_v1") == {}
    pod = deployment(out)["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"gke-gcsfuse/volumes": "true"}
    volumes = {v["name"]: v for v in pod["spec"]["volume"]}
    assert volumes["model-cache"]["csi"]["volume_attributes"]["bucketName"] == "bucket"
    mounts = {m["name"]: m for m in the_container(out)["volume_mount"]}
    assert mounts["model-cache"]["read_only"] is True
    assert {e["name"]: e["value"] for e in the_container(out)["env"]}["HF_HUB_OFFLINE"] == "1"


def test_quantization_reaches_the_server_only_when_the_model_has_one() -> None:
    assert "--quantization" not in the_container(vllm(SERVER))["args"]
    args = the_container(vllm(server(quantization="awq")))["args"]
    assert args[args.index("--quantization") + 1] == "awq"


def test_the_hugging_face_token_is_mounted_from_secret_manager_only_when_set() -> None:
    without = vllm(SERVER)
    assert "hf-token" not in {v["name"] for v in deployment(without)["spec"]["template"]["spec"]["volume"]}
    assert resources(without, "kubernetes_manifest") and all(
        m["manifest"]["kind"] != "SecretProviderClass" for m in resources(without, "kubernetes_manifest").values()
    )
    out = vllm(server(hf_token_secret="tok"))
    (provider_class,) = [
        m["manifest"]
        for m in resources(out, "kubernetes_manifest").values()
        if m["manifest"]["kind"] == "SecretProviderClass"
    ]
    assert 'resourceName: "projects/p/secrets/tok/versions/latest"' in provider_class["spec"]["parameters"]["secrets"]
    env = {e["name"]: e["value"] for e in the_container(out)["env"]}
    assert env["HF_TOKEN_PATH"] == "/var/run/secrets/huggingface/token"


def test_the_server_is_reached_on_its_port_from_the_allowed_sources() -> None:
    out = vllm(server(port=9000))
    box = the_container(out)
    assert box["port"] == [{"name": "http", "container_port": 9000}]
    assert box["args"][box["args"].index("--port") + 1] == "9000"
    for probe in ("startup_probe", "readiness_probe", "liveness_probe"):
        assert box[probe]["http_get"] == {"path": "/health", "port": "9000"}
    spec = only(out, "kubernetes_service_v1")["spec"]
    assert (spec["load_balancer_ip"], spec["load_balancer_source_ranges"]) == ("10.0.0.5", ["10.8.0.0/24"])
    (rule,) = only(out, "kubernetes_network_policy_v1")["spec"]["ingress"]
    assert rule["ports"] == [{"port": "9000", "protocol": "TCP"}]
    assert rule["from"][0] == {"ip_block": {"cidr": "10.8.0.0/24"}}
    hpa = only(out, "kubernetes_horizontal_pod_autoscaler_v2")["spec"]
    assert (hpa["min_replicas"], hpa["max_replicas"]) == (1, 1)
