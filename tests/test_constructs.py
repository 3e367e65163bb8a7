"""Each construct built alone, in process, from props of its own: the values that matter, one by one.

The stack tests check the shipped environments through a real synth; these cover the branches a
shipped environment does not take (a Cloud Run GPU, authorized networks, quantization, no token)
without a subprocess per variant.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from cdktf import TerraformStack
from cdktf_cdktf_provider_google_beta.provider import GoogleBetaProvider
from cdktf_cdktf_provider_kubernetes.namespace_v1 import NamespaceV1, NamespaceV1Metadata

from hybrid.components.autopilot_cluster import AutopilotCluster
from hybrid.components.batch_bucket import BatchBucket, BatchBucketProps
from hybrid.components.batch_worker import BatchWorker, BatchWorkerProps
from hybrid.components.budget import Budget, BudgetProps
from hybrid.components.cloud_run import CloudRunService, CloudRunServiceProps, PrivateEgress
from hybrid.components.control_plane import ClusterPlacement, ControlPlane, ControlPlaneAccess
from hybrid.components.database_bootstrap import DatabaseBootstrapJob, DatabaseBootstrapProps
from hybrid.components.firewall import Firewall, FirewallProps, Rule
from hybrid.components.grants import (
    ALL_USERS,
    Bucket,
    Condition,
    Principal,
    Project,
    Repository,
    RunService,
    Secret,
    role_id,
)
from hybrid.components.postgres import PostgresInstance, PostgresProps
from hybrid.components.pubsub_queue import PubSubQueue, PubSubQueueProps
from hybrid.components.roles import INVOKER, LOG_WRITER, OBJECT_VIEWER
from hybrid.components.service_account import ServiceAccount, ServiceAccountProps
from hybrid.components.standard_cluster import NodePoolProps, StandardCluster, StandardClusterProps
from hybrid.components.vllm_server import VllmServer, VllmServerProps
from hybrid.components.workload_identity import WorkloadIdentity, WorkloadIdentityProps
from hybrid.config import CloudRunSizing, ClusterSettings, DatabaseSettings, GkeModelServerSettings, GpuServiceSizing
from hybrid.config.workers import QueueSettings, WorkerDeploymentSettings
from iac import Json, only, pointee, principal, resources, synth_in_process

STACK = "test"


def account(stack: TerraformStack, id_: str = "identity", account_id: str = "svc") -> ServiceAccount:
    return ServiceAccount(stack, id_, ServiceAccountProps(account_id=account_id, display_name="d", description="x"))


def points_at(synthesized: Json, value: str) -> tuple[str, Any, str]:
    """(kind, the resource's own name or account id, attribute) of the reference ``value``."""
    _, kind, name, attr = pointee({STACK: synthesized}, STACK, value).brief
    return kind, name, attr


# --- grants


def test_each_target_binds_its_own_kind_of_iam_member() -> None:
    def build(stack: TerraformStack) -> None:
        to = account(stack, account_id="reader")
        Project("p").grant_role(stack, LOG_WRITER, to)
        Secret("token").grant_read(stack, to)
        Bucket("weights").bind(stack, "bucket", OBJECT_VIEWER, to.member)
        RunService("p", "r", "svc").bind(stack, "run", INVOKER, ALL_USERS.member)

    out = synth_in_process(build)
    members = {
        kind: [principal({STACK: out}, STACK, b["member"]) for b in resources(out, kind).values()]
        for kind in (
            "google_project_iam_member",
            "google_secret_manager_secret_iam_member",
            "google_storage_bucket_iam_member",
            "google_cloud_run_v2_service_iam_member",
        )
    }
    assert members == {
        "google_project_iam_member": ["serviceAccount:reader"],
        "google_secret_manager_secret_iam_member": ["serviceAccount:reader"],
        "google_storage_bucket_iam_member": ["serviceAccount:reader"],
        "google_cloud_run_v2_service_iam_member": ["allUsers"],
    }
    project = only(out, "google_project_iam_member")
    assert (project["project"], project["role"]) == ("p", "roles/logging.logWriter")
    assert "condition" not in project
    assert only(out, "google_secret_manager_secret_iam_member")["secret_id"] == "token"
    assert only(out, "google_storage_bucket_iam_member")["bucket"] == "weights"
    run = only(out, "google_cloud_run_v2_service_iam_member")
    assert (run["project"], run["location"], run["name"]) == ("p", "r", "svc")


def test_a_conditional_project_grant_carries_its_condition() -> None:
    def build(stack: TerraformStack) -> None:
        where = Condition(title="only one", expression='resource.name == "x"')
        Project("p", where).bind(stack, "g", "roles/cloudsql.client", Principal("user:a@example.com").member)

    binding = only(synth_in_process(build), "google_project_iam_member")
    assert binding["member"] == "user:a@example.com"
    assert binding["condition"] == {"title": "only one", "expression": 'resource.name == "x"'}


def test_invokers_are_granted_by_intent_and_named_for_the_caller() -> None:
    def build(stack: TerraformStack) -> None:
        callee = CloudRunService(stack, "svc", SERVICE, service_account=account(stack, account_id="runner"))
        caller = CloudRunService(
            stack, "caller", replace(SERVICE, name="caller"), service_account=account(stack, "caller-id", "caller")
        )
        callee.grant_invoke(caller)
        caller.grant_public_invoke()

    out = synth_in_process(build)
    invokers = {
        next(part for part in key.split("_") if part.startswith("invoker-")): (
            b["role"],
            principal({STACK: out}, STACK, b["member"]),
            points_at(out, b["name"])[1],
        )
        for key, b in resources(out, "google_cloud_run_v2_service_iam_member").items()
    }
    assert invokers == {
        "invoker-caller-id": (INVOKER, "serviceAccount:caller", "svc"),
        "invoker-public": (INVOKER, "allUsers", "caller"),
    }


def test_a_project_roles_binding_is_named_by_the_role() -> None:
    assert role_id("roles/monitoring.viewer") == "role-monitoring.viewer"
    assert role_id("roles/iam.workloadIdentityUser") == "role-iam.workloadIdentityUser"


# --- Workload Identity


def test_workload_identity_pairs_the_kubernetes_account_with_its_google_account() -> None:
    def build(stack: TerraformStack) -> None:
        namespace = NamespaceV1(stack, "namespace", metadata=NamespaceV1Metadata(name="inference"))
        google = account(stack, account_id="model-server")
        WorkloadIdentity(
            stack, "ksa", WorkloadIdentityProps(project="proj", name="vllm"), namespace=namespace, google_account=google
        )

    out = synth_in_process(build)
    ksa = only(out, "kubernetes_service_account_v1")["metadata"]
    assert ksa["name"] == "vllm"
    # The namespace's reference, so the account is created after it.
    namespace = pointee({STACK: out}, STACK, ksa["namespace"])
    assert (namespace.kind, namespace.config["metadata"]["name"]) == ("kubernetes_namespace_v1", "inference")
    assert points_at(out, ksa["annotations"]["iam.gke.io/gcp-service-account"]) == (
        "google_service_account",
        "model-server",
        "email",
    )
    binding = only(out, "google_service_account_iam_member")
    assert binding["role"] == "roles/iam.workloadIdentityUser"
    assert binding["member"] == "serviceAccount:proj.svc.id.goog[inference/vllm]"
    assert points_at(out, binding["service_account_id"]) == ("google_service_account", "model-server", "name")


def test_workload_identity_needs_a_namespace_with_a_literal_name() -> None:
    def build(stack: TerraformStack) -> None:
        other = NamespaceV1(stack, "other", metadata=NamespaceV1Metadata(name="other"))
        derived = NamespaceV1(stack, "derived", metadata=NamespaceV1Metadata(name=other.metadata.name))
        WorkloadIdentity(
            stack, "ksa", WorkloadIdentityProps(project="p", name="a"), namespace=derived, google_account=account(stack)
        )

    with pytest.raises(ValueError, match="namespace derived has no literal name"):
        synth_in_process(build)


# --- Cloud Run

SERVICE = CloudRunServiceProps(
    name="svc",
    project="p",
    region="r",
    image="img",
    deletion_protection=False,
    egress=None,
    settings=CloudRunSizing(max_instances=10, ingress="INGRESS_TRAFFIC_INTERNAL_ONLY"),
)


def cloud_run(props: CloudRunServiceProps, *, iap_members: tuple[str, ...] | None = None) -> Json:
    def build(stack: TerraformStack) -> None:
        service = CloudRunService(stack, "svc", props, service_account=account(stack, account_id="runner"))
        if iap_members is not None:
            service.require_iap(members=list(iap_members), beta=GoogleBetaProvider(stack, "google-beta"))

    return synth_in_process(build)


def test_a_gpu_service_asks_for_its_gpu_and_a_long_startup() -> None:
    gpu = GpuServiceSizing(model="google/gemma-3-4b-it", zonal_redundancy=False)
    out = cloud_run(replace(SERVICE, settings=gpu))
    template = only(out, "google_cloud_run_v2_service")["template"]
    (box,) = template["containers"]
    assert template["node_selector"] == {"accelerator": "nvidia-l4"}
    assert template["gpu_zonal_redundancy_disabled"] is True
    assert box["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    assert (box["startup_probe"]["period_seconds"], box["startup_probe"]["failure_threshold"]) == (10, 60)


def test_a_service_without_a_gpu_or_egress_has_neither() -> None:
    out = cloud_run(SERVICE)
    template = only(out, "google_cloud_run_v2_service")["template"]
    (box,) = template["containers"]
    for absent in ("node_selector", "gpu_zonal_redundancy_disabled", "vpc_access"):
        assert absent not in template
    assert box["resources"]["limits"] == {"cpu": "4", "memory": "8Gi"}
    assert (box["startup_probe"]["period_seconds"], box["startup_probe"]["failure_threshold"]) == (3, 5)
    assert "args" not in box


def test_egress_sends_private_ranges_from_the_subnet_with_the_tag() -> None:
    egress = PrivateEgress(network="net", subnetwork="sub", tag="t")
    template = only(cloud_run(replace(SERVICE, egress=egress)), "google_cloud_run_v2_service")["template"]
    assert template["vpc_access"] == {
        "network_interfaces": [{"network": "net", "subnetwork": "sub", "tags": ["t"]}],
        "egress": "PRIVATE_RANGES_ONLY",
    }


def test_secrets_are_granted_before_the_revision_and_read_as_latest() -> None:
    # The file's secrets and the stack's own, one grant per secret.
    settings = CloudRunSizing(secrets={"KEY": "tok"})
    props = replace(SERVICE, settings=settings, env=(("B", "2"), ("A", "1")), secrets=(("TOKEN", "tok"),))
    out = cloud_run(props)
    service = only(out, "google_cloud_run_v2_service")
    (box,) = service["template"]["containers"]
    assert box["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
        {"name": "KEY", "value_source": {"secret_key_ref": {"secret": "tok", "version": "latest"}}},
        {"name": "TOKEN", "value_source": {"secret_key_ref": {"secret": "tok", "version": "latest"}}},
    ]
    ((key, secret_grant),) = resources(out, "google_secret_manager_secret_iam_member").items()  # one per secret
    assert (secret_grant["secret_id"], secret_grant["role"]) == ("tok", "roles/secretmanager.secretAccessor")
    assert principal({STACK: out}, STACK, secret_grant["member"]) == "serviceAccount:runner"
    assert service["depends_on"] == [f"google_secret_manager_secret_iam_member.{key}"]


def test_a_service_s_identity_may_write_logs_and_metrics() -> None:
    out = cloud_run(SERVICE)
    roles = {
        (b["role"], principal({STACK: out}, STACK, b["member"]))
        for b in resources(out, "google_project_iam_member").values()
    }
    assert roles == {
        ("roles/logging.logWriter", "serviceAccount:runner"),
        ("roles/monitoring.metricWriter", "serviceAccount:runner"),
    }


def test_behind_iap_only_the_listed_members_get_through() -> None:
    out = cloud_run(replace(SERVICE, settings=CloudRunSizing()), iap_members=("group:team@example.com",))
    service = only(out, "google_cloud_run_v2_service")
    assert (service["provider"], service["iap_enabled"]) == ("google-beta", True)
    (invoker,) = resources(out, "google_cloud_run_v2_service_iam_member").values()
    assert principal({STACK: out}, STACK, invoker["member"]) == "serviceAgent:iap.googleapis.com"
    access = only(out, "google_iap_web_cloud_run_service_iam_member")
    assert (access["member"], access["role"], access["provider"]) == (
        "group:team@example.com",
        "roles/iap.httpsResourceAccessor",
        "google-beta",
    )
    assert points_at(out, access["cloud_run_service_name"]) == ("google_cloud_run_v2_service", "svc", "name")


# --- the cluster

CLUSTER = ClusterPlacement(
    name="models",
    project="p",
    region="r",
    network="net",
    subnetwork="sub",
    pods_range="pod-range",
    services_range="service-range",
    settings=ClusterSettings(release_channel="STABLE", deletion_protection=True),
    control_plane=ControlPlane(ControlPlaneAccess.DNS),
)


MIRROR = Repository(project="p", location="us-central1", repository="mirror")


def repository_readers(out: Json) -> set[tuple[str, str, str, str]]:
    return {
        (b["location"], b["repository"], b["role"], principal({STACK: out}, STACK, b["member"]))
        for b in resources(out, "google_artifact_registry_repository_iam_member").values()
    }


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


# --- the model server


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


# --- the rest


def test_a_budget_alerts_each_address_at_each_threshold() -> None:
    props = BudgetProps(
        env_name="dev",
        project_id="p",
        billing_account="0-0-0",
        amount_usd=100,
        thresholds=(0.5, 1.0),
        spend_basis="FORECASTED_SPEND",
        notification_emails=("a@example.com", "b@example.com"),
    )
    out = synth_in_process(lambda stack: Budget(stack, "budget", props))
    budget = only(out, "google_billing_budget")
    assert budget["amount"] == {"specified_amount": {"currency_code": "USD", "units": "100"}}
    assert budget["threshold_rules"] == [
        {"threshold_percent": 0.5, "spend_basis": "FORECASTED_SPEND"},
        {"threshold_percent": 1.0, "spend_basis": "FORECASTED_SPEND"},
    ]
    channels = [points_at(out, c) for c in budget["all_updates_rule"]["monitoring_notification_channels"]]
    assert [kind for kind, _, attr in channels] == ["google_monitoring_notification_channel"] * 2
    emails = sorted(
        c["labels"]["email_address"] for c in resources(out, "google_monitoring_notification_channel").values()
    )
    assert emails == ["a@example.com", "b@example.com"]


def test_a_firewall_rule_allows_or_denies_what_it_lists_and_logs_it() -> None:
    rules = (
        Rule(
            name="deny-all",
            description="d",
            direction="EGRESS",
            action="deny",
            destination_ranges=("0.0.0.0/0",),
            priority=65534,
        ),
        Rule(
            name="allow-pg",
            description="a",
            direction="EGRESS",
            action="allow",
            target_tags=("t",),
            protocol="tcp",
            ports=("5432",),
        ),
    )
    out = synth_in_process(lambda stack: Firewall(stack, "firewall", FirewallProps(network="net", rules=rules)))
    found = {r["name"]: r for r in resources(out, "google_compute_firewall").values()}
    assert found["deny-all"]["deny"] == [{"protocol": "all"}] and "allow" not in found["deny-all"]
    assert found["allow-pg"]["allow"] == [{"protocol": "tcp", "ports": ["5432"]}] and "deny" not in found["allow-pg"]
    assert found["allow-pg"]["target_tags"] == ["t"] and "source_ranges" not in found["allow-pg"]
    assert all(r["log_config"] == {"metadata": "INCLUDE_ALL_METADATA"} for r in found.values())


def test_an_iam_database_user_may_connect_to_its_instance_only() -> None:
    props = PostgresProps(
        name="pg",
        region="r",
        private_network="net",
        settings=DatabaseSettings(tier="db-custom-1-3840", availability="ZONAL", deletion_protection=False),
    )

    def build(stack: TerraformStack) -> None:
        PostgresInstance(stack, "postgres", props).add_iam_user(account(stack, "app", "app"), project="p")

    out = synth_in_process(build)
    user = only(out, "google_sql_user")
    assert user["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    assert points_at(out, user["instance"]) == ("google_sql_database_instance", "pg", "name")
    grants = {g["role"]: g for g in resources(out, "google_project_iam_member").values()}
    # Clients connect to the private IP directly, with no Cloud SQL connector: logging in is all.
    assert set(grants) == {"roles/cloudsql.instanceUser"}
    for binding in grants.values():
        assert principal({STACK: out}, STACK, binding["member"]) == "serviceAccount:app"
        assert binding["condition"]["expression"].endswith('resource.name == "projects/p/instances/pg"')


def test_the_bootstrap_job_reads_the_password_it_is_granted_first() -> None:
    props = DatabaseBootstrapProps(
        name="boot",
        region="r",
        image="img",
        egress=PrivateEgress(network="net", subnetwork="sub", tag="t"),
        database_host="10.0.0.3",
        database_server_ca="PEM",
        database_name="db",
        grantee="app",
        admin_password_secret="pw",
        deletion_protection=False,
    )
    out = synth_in_process(
        lambda stack: DatabaseBootstrapJob(stack, "boot", props, account=account(stack, account_id="boot"))
    )
    job = only(out, "google_cloud_run_v2_job")
    (box,) = job["template"]["template"]["containers"]
    env = {e["name"]: e.get("value", e.get("value_source")) for e in box["env"]}
    assert (env["PGHOST"], env["PGDATABASE"], env["GRANTEE"]) == ("10.0.0.3", "db", "app")
    # The admin's password goes only to a server the instance's CA vouches for.
    assert (env["PGSSLMODE"], env["DATABASE_SERVER_CA"]) == ("verify-ca", "PEM")
    assert env["PGPASSWORD"] == {"secret_key_ref": {"secret": "pw", "version": "latest"}}
    ((key, access),) = resources(out, "google_secret_manager_secret_iam_member").items()
    assert (access["secret_id"], principal({STACK: out}, STACK, access["member"])) == ("pw", "serviceAccount:boot")
    assert job["depends_on"] == [f"google_secret_manager_secret_iam_member.{key}"]
    assert job["template"]["template"]["vpc_access"]["network_interfaces"] == [
        {"network": "net", "subnetwork": "sub", "tags": ["t"]}
    ]


# --- the workers tier

STANDARD = StandardClusterProps(
    replace(
        CLUSTER,
        name="workers",
        settings=ClusterSettings(release_channel="STABLE", deletion_protection=False),
        control_plane=ControlPlane(ControlPlaneAccess.AUTHORIZED_NETWORKS, ("203.0.113.0/24",)),
    ),
    pools=(
        NodePoolProps(name="cheap", machine_type="e2-standard-2", min_nodes=0, max_nodes=7, spot=True),
        NodePoolProps(name="steady", machine_type="n2-standard-4", min_nodes=2, max_nodes=4, spot=False),
    ),
)


def test_standard_cluster_has_only_its_own_pools_and_taints_the_spot_one() -> None:
    out = synth_in_process(
        lambda stack: StandardCluster(
            stack, "workers", STANDARD, node_account=account(stack, account_id="nodes"), pulls_from=(MIRROR,)
        )
    )
    cluster = only(out, "google_container_cluster")
    assert (cluster["remove_default_node_pool"], cluster["initial_node_count"]) == (True, 1)
    # The default pool lives until Terraform deletes it: its node runs as the nodes' account too.
    assert points_at(out, cluster["node_config"]["service_account"]) == ("google_service_account", "nodes", "email")
    assert cluster["node_config"]["oauth_scopes"] == ["https://www.googleapis.com/auth/cloud-platform"]
    assert cluster["node_config"]["workload_metadata_config"] == {"mode": "GKE_METADATA"}
    assert cluster["node_config"]["shielded_instance_config"] == {
        "enable_secure_boot": True,
        "enable_integrity_monitoring": True,
    }
    assert cluster["private_cluster_config"] == {"enable_private_nodes": True}
    assert cluster["workload_identity_config"] == {"workload_pool": "p.svc.id.goog"}
    # The control plane as the props say, by the same rules as the Autopilot cluster.
    assert cluster["control_plane_endpoints_config"]["ip_endpoints_config"] == {"enabled": True}
    assert cluster["master_authorized_networks_config"]["cidr_blocks"] == [
        {"cidr_block": "203.0.113.0/24", "display_name": "203.0.113.0/24"}
    ]
    pools = {p["name"]: p for p in resources(out, "google_container_node_pool").values()}
    assert set(pools) == {"cheap", "steady"}
    cheap, steady = pools["cheap"], pools["steady"]
    assert (cheap["node_config"]["spot"], steady["node_config"]["spot"]) == (True, False)
    assert cheap["node_config"]["taint"] == [
        {"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NO_SCHEDULE"}
    ]
    assert "taint" not in steady["node_config"]
    assert (cheap["autoscaling"]["total_min_node_count"], cheap["autoscaling"]["total_max_node_count"]) == (0, 7)
    assert (steady["autoscaling"]["total_min_node_count"], steady["autoscaling"]["total_max_node_count"]) == (2, 4)
    assert steady["node_config"]["machine_type"] == "n2-standard-4"
    for pool in pools.values():
        assert points_at(out, pool["cluster"]) == ("google_container_cluster", "workers", "id")
        assert points_at(out, pool["node_config"]["service_account"]) == ("google_service_account", "nodes", "email")
        assert pool["node_config"]["workload_metadata_config"] == {"mode": "GKE_METADATA"}
    roles = {g["role"] for g in resources(out, "google_project_iam_member").values()}
    assert roles == {"roles/container.defaultNodeServiceAccount"}
    assert repository_readers(out) == {
        ("us-central1", "mirror", "roles/artifactregistry.reader", "serviceAccount:nodes")
    }


AGENT = Principal("serviceAccount:service-123@gcp-sa-pubsub.iam.gserviceaccount.com")
QUEUE = PubSubQueueProps(
    topic="t",
    subscription="s",
    dead_letter_topic="dt",
    dead_letter_subscription="ds",
    settings=QueueSettings(
        ack_deadline_seconds=120,
        min_backoff_seconds=5,
        max_backoff_seconds=300,
        max_delivery_attempts=9,
        retention_days=2,
    ),
)


def test_queue_dead_letters_after_max_attempts_and_lets_pubsub_move_them() -> None:
    out = synth_in_process(lambda stack: PubSubQueue(stack, "queue", QUEUE, messages="lines", dead_letter_agent=AGENT))
    subscriptions = {s["name"]: s for s in resources(out, "google_pubsub_subscription").values()}
    source = subscriptions["s"]
    assert points_at(out, source["topic"]) == ("google_pubsub_topic", "t", "id")
    assert source["ack_deadline_seconds"] == 120
    assert source["retry_policy"] == {"minimum_backoff": "5s", "maximum_backoff": "300s"}
    assert source["dead_letter_policy"]["max_delivery_attempts"] == 9
    assert points_at(out, source["dead_letter_policy"]["dead_letter_topic"]) == ("google_pubsub_topic", "dt", "id")
    assert points_at(out, subscriptions["ds"]["topic"]) == ("google_pubsub_topic", "dt", "id")
    assert all(sub["message_retention_duration"] == "172800s" for sub in subscriptions.values())
    agent = AGENT.member
    (publisher,) = resources(out, "google_pubsub_topic_iam_member").values()
    (subscriber,) = resources(out, "google_pubsub_subscription_iam_member").values()
    assert (publisher["member"], publisher["role"]) == (agent, "roles/pubsub.publisher")
    assert points_at(out, publisher["topic"]) == ("google_pubsub_topic", "dt", "id")
    assert (subscriber["member"], subscriber["role"]) == (agent, "roles/pubsub.subscriber")
    assert points_at(out, subscriber["subscription"]) == ("google_pubsub_subscription", "s", "id")


def test_bucket_grants_on_a_prefix_carry_the_literal_condition() -> None:
    def build(stack: TerraformStack) -> None:
        bucket = BatchBucket(stack, "files", BatchBucketProps(name="b-batch", location="r", delete_after_days=3))
        bucket.grant_read(account(stack), prefix="out/")

    out = synth_in_process(build)
    bucket = only(out, "google_storage_bucket")
    assert bucket["lifecycle_rule"] == [{"condition": {"age": 3}, "action": {"type": "Delete"}}]
    assert (bucket["uniform_bucket_level_access"], bucket["public_access_prevention"]) == (True, "enforced")
    ((key, binding),) = resources(out, "google_storage_bucket_iam_member").items()
    assert key.startswith("identity-reads-out")  # <grantee>-<intent>-<prefix>, at the stack's top level
    assert (binding["role"], principal({STACK: out}, STACK, binding["member"])) == (OBJECT_VIEWER, "serviceAccount:svc")
    assert points_at(out, binding["bucket"]) == ("google_storage_bucket", "b-batch", "name")
    assert binding["condition"] == {
        "title": "only out/",
        "expression": 'resource.name.startsWith("projects/_/buckets/b-batch/objects/out/")',
    }


WORKER = BatchWorkerProps(
    namespace="jobs",
    service_account="runner",
    image="registry.example/worker:1",
    settings=WorkerDeploymentSettings(
        cpu="500m", memory="512Mi", min_replicas=2, max_replicas=6, target_undelivered_per_replica=7
    ),
    env=(("TOPIC", "projects/p/topics/t"),),
    port=9000,
    shutdown_seconds=40,
    subscription="s",
)


def test_batch_worker_scales_on_its_subscription_and_drains_before_it_is_killed() -> None:
    out = synth_in_process(lambda stack: BatchWorker(stack, "worker", WORKER))
    deployment = only(out, "kubernetes_deployment_v1")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["container"]
    assert pod["service_account_name"] == "runner"
    assert pod["termination_grace_period_seconds"] == 45
    assert container["env"] == [{"name": "TOPIC", "value": "projects/p/topics/t"}]
    assert container["port"] == [{"name": "health", "container_port": 9000}]
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "512Mi"}
    hpa = only(out, "kubernetes_horizontal_pod_autoscaler_v2")["spec"]
    assert (hpa["min_replicas"], hpa["max_replicas"]) == (2, 6)
    (metric,) = hpa["metric"]
    assert metric["external"]["metric"]["selector"] == [{"match_labels": {"resource.labels.subscription_id": "s"}}]
    assert metric["external"]["target"] == {"type": "AverageValue", "average_value": "7"}
    budget = only(out, "kubernetes_pod_disruption_budget_v1")
    assert budget["spec"]["selector"] == {"match_labels": deployment["spec"]["selector"]["match_labels"]}


def test_a_queue_s_consumer_and_publisher_are_granted_by_intent_and_named_for_it() -> None:
    def build(stack: TerraformStack) -> None:
        queue = PubSubQueue(stack, "queue", QUEUE, messages="lines", dead_letter_agent=AGENT)
        queue.grant_consume(account(stack, "worker", "worker"))
        queue.grant_publish(account(stack, "sender", "sender"))

    out = synth_in_process(build)
    held = {
        key: (
            b["role"],
            principal({STACK: out}, STACK, b["member"]),
            points_at(out, b.get("topic") or b["subscription"])[1],
        )
        for kind in ("google_pubsub_topic_iam_member", "google_pubsub_subscription_iam_member")
        for key, b in resources(out, kind).items()
        if not key.startswith("queue")  # the agent's, inside the queue
    }
    assert held == {
        "worker-pulls-lines": ("roles/pubsub.subscriber", "serviceAccount:worker", "s"),
        "worker-pulls-dead-letters": ("roles/pubsub.subscriber", "serviceAccount:worker", "ds"),
        "worker-republishes-lines": ("roles/pubsub.publisher", "serviceAccount:worker", "t"),
        "worker-publishes-dead-letters": ("roles/pubsub.publisher", "serviceAccount:worker", "dt"),
        "sender-publishes-lines": ("roles/pubsub.publisher", "serviceAccount:sender", "t"),
    }
