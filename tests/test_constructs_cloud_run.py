"""The Cloud Run service construct alone, in process: a GPU, egress through the VPC, secrets, its
identity's roles, and IAP (the branches a shipped environment may not take)."""

from __future__ import annotations

from dataclasses import replace

from cdktf import TerraformStack
from cdktf_cdktf_provider_google_beta.provider import GoogleBetaProvider

from construct_helpers import SERVICE, STACK, account, points_at
from hybrid.components.cloud_run import CloudRunService, CloudRunServiceProps, PrivateEgress
from hybrid.config import CloudRunSizing, GpuServiceSizing
from iac import Json, only, principal, resources, synth_in_process


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
