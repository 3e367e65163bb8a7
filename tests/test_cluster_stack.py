"""Value assertions on the synthesized `<env>-cluster` stacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from iac import Json, Stacks, only, pointee, resources
from variants import DEV_ENV, synthesize, variant

LAYER = "cluster"  # the conftest's ``stack`` fixture


@pytest.fixture
def cluster(stack: Json) -> Json:
    return only(stack, "google_container_cluster")


def test_autopilot_in_the_network_subnet_and_ranges(env: str, cluster: Json, synth_json: Stacks) -> None:
    assert cluster["name"] == f"{env}-models"
    assert cluster["enable_autopilot"] is True
    assert cluster["location"] == "us-central1"
    here, network = f"{env}-cluster", f"{env}-network"
    vpc, subnet = (pointee(synth_json, here, cluster[key]).brief for key in ("network", "subnetwork"))
    assert vpc == (network, "google_compute_network", f"{env}-vpc", "id")
    assert subnet == (network, "google_compute_subnetwork", f"{env}-workloads", "id")
    assert cluster["ip_allocation_policy"] == {
        "cluster_secondary_range_name": "pods",
        "services_secondary_range_name": "services",
    }


def test_private_nodes_and_a_dns_endpoint_for_ci(cluster: Json) -> None:
    assert cluster["private_cluster_config"] == {"enable_private_nodes": True}
    assert cluster["control_plane_endpoints_config"] == {
        "dns_endpoint_config": {"allow_external_traffic": True},
        "ip_endpoints_config": {"enabled": False},
    }
    assert "master_authorized_networks_config" not in cluster


def test_authorized_networks_instead_when_config_says_so(tmp_path: Path) -> None:
    authorized = variant(
        DEV_ENV,
        {
            "name": "an",
            "cluster.control_plane_access": "authorized_networks",
            "cluster.authorized_networks": ["203.0.113.0/24"],
        },
    )
    stacks = synthesize(authorized, tmp_path)
    cluster = only(stacks["an-cluster"], "google_container_cluster")
    assert cluster["control_plane_endpoints_config"] == {
        "dns_endpoint_config": {"allow_external_traffic": False},
        "ip_endpoints_config": {"enabled": True},
    }
    assert cluster["master_authorized_networks_config"] == {
        "gcp_public_cidrs_access_enabled": False,
        "cidr_blocks": [{"cidr_block": "203.0.113.0/24", "display_name": "203.0.113.0/24"}],
    }
    (provider,) = stacks["an-inference"]["provider"]["kubernetes"]
    assert provider["host"] == "https://${data.google_container_cluster.cluster.endpoint}"
    assert provider["cluster_ca_certificate"] == (
        "${base64decode(data.google_container_cluster.cluster.master_auth[0].cluster_ca_certificate)}"
    )


def test_workload_identity_prometheus_gcsfuse_secrets_release_channel(env: str, cluster: Json) -> None:
    assert cluster["workload_identity_config"] == {"workload_pool": f"replace-me-{env}.svc.id.goog"}
    assert cluster["monitoring_config"] == {"managed_prometheus": {"enabled": True}}
    assert cluster["addons_config"] == {"gcs_fuse_csi_driver_config": {"enabled": True}}
    assert cluster["secret_manager_config"] == {"enabled": True}
    assert cluster["release_channel"] == {"channel": "REGULAR"}


def test_deletion_protection_in_prod_only(env: str, cluster: Json) -> None:
    assert cluster["deletion_protection"] is (env == "prod")


def test_nodes_run_as_a_least_privilege_account(env: str, stack: Json, cluster: Json, synth_json: Stacks) -> None:
    account = only(stack, "google_service_account")
    assert account["account_id"] == f"{env}-gke-nodes"
    defaults = cluster["cluster_autoscaling"]["auto_provisioning_defaults"]
    assert pointee(synth_json, f"{env}-cluster", defaults["service_account"]).brief == (
        f"{env}-cluster",
        "google_service_account",
        f"{env}-gke-nodes",
        "email",
    )
    assert defaults["oauth_scopes"] == ["https://www.googleapis.com/auth/cloud-platform"]
    roles = sorted(g["role"] for g in resources(stack, "google_project_iam_member").values())
    assert roles == ["roles/container.defaultNodeServiceAccount"]
    # The nodes pull vLLM's image through the registry layer's Docker Hub mirror, and read only it.
    (reader,) = resources(stack, "google_artifact_registry_repository_iam_member").values()
    assert (reader["project"], reader["location"], reader["repository"], reader["role"]) == (
        f"replace-me-{env}",
        "us-central1",
        f"{env}-dockerhub",
        "roles/artifactregistry.reader",
    )
    assert pointee(synth_json, f"{env}-cluster", reader["member"]).brief[2] == f"{env}-gke-nodes"


def test_labels_reach_the_cluster_through_the_provider(env: str, stack: Json) -> None:
    (provider,) = stack["provider"]["google"]
    assert provider["default_labels"]["environment"] == env
    assert provider["default_labels"]["layer"] == "cluster"


def test_hardening(cluster: Json) -> None:
    assert cluster["datapath_provider"] == "ADVANCED_DATAPATH"  # enforces the NetworkPolicy
    assert cluster["master_auth"] == {"client_certificate_config": {"issue_client_certificate": False}}
    assert cluster["binary_authorization"] == {"evaluation_mode": "PROJECT_SINGLETON_POLICY_ENFORCE"}
