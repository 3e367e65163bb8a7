"""Each construct built alone, in process, from props of its own: the values that matter, one by one.

The stack tests check the shipped environments through a real synth; these cover the branches a
shipped environment does not take without a subprocess per variant. Here: grants by intent
(hybrid/components/grants.py) and Workload Identity."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cdktf import TerraformStack
from cdktf_cdktf_provider_kubernetes.namespace_v1 import NamespaceV1, NamespaceV1Metadata

from construct_helpers import SERVICE, STACK, account, points_at
from hybrid.components.cloud_run import CloudRunService
from hybrid.components.grants import (
    ALL_USERS,
    Bucket,
    Condition,
    Principal,
    Project,
    RunService,
    Secret,
    role_id,
)
from hybrid.components.roles import INVOKER, LOG_WRITER, OBJECT_VIEWER
from hybrid.components.workload_identity import WorkloadIdentity, WorkloadIdentityProps
from iac import only, pointee, principal, resources, synth_in_process


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
