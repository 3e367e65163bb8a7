"""What the construct tests share: a stack's name, a service account to grant to, and where a
reference in the synthesized JSON points."""

from __future__ import annotations

from typing import Any

from cdktf import TerraformStack

from hybrid.components.cloud_run import CloudRunServiceProps
from hybrid.components.control_plane import ClusterPlacement, ControlPlane, ControlPlaneAccess
from hybrid.components.grants import Repository
from hybrid.components.service_account import ServiceAccount, ServiceAccountProps
from hybrid.config import CloudRunSizing, ClusterSettings
from iac import Json, pointee, principal, resources

STACK = "test"


def account(stack: TerraformStack, id_: str = "identity", account_id: str = "svc") -> ServiceAccount:
    return ServiceAccount(stack, id_, ServiceAccountProps(account_id=account_id, display_name="d", description="x"))


def points_at(synthesized: Json, value: str) -> tuple[str, Any, str]:
    """(kind, the resource's own name or account id, attribute) of the reference ``value``."""
    _, kind, name, attr = pointee({STACK: synthesized}, STACK, value).brief
    return kind, name, attr


SERVICE = CloudRunServiceProps(
    name="svc",
    project="p",
    region="r",
    image="img",
    deletion_protection=False,
    egress=None,
    settings=CloudRunSizing(max_instances=10, ingress="INGRESS_TRAFFIC_INTERNAL_ONLY"),
)


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
