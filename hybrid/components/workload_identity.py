"""Workload Identity: a Kubernetes service account that acts as a Google service account.

Both halves are written here, once (cloud.google.com/kubernetes-engine/docs/how-to/workload-identity,
"Alternative: link Kubernetes ServiceAccounts to IAM"): the Kubernetes ServiceAccount is annotated
``iam.gke.io/gcp-service-account: <the Google account's email>``, and the Google account grants
``roles/iam.workloadIdentityUser`` to ``serviceAccount:PROJECT_ID.svc.id.goog[NAMESPACE/KSA_NAME]``,
the Kubernetes account's principal in the cluster's workload pool.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf import TerraformStack, Token
from cdktf_cdktf_provider_google.service_account_iam_member import ServiceAccountIamMember
from cdktf_cdktf_provider_kubernetes.namespace_v1 import NamespaceV1
from cdktf_cdktf_provider_kubernetes.service_account_v1 import ServiceAccountV1, ServiceAccountV1Metadata
from constructs import Construct

from hybrid.components.roles import WORKLOAD_IDENTITY_USER
from hybrid.components.service_account import ServiceAccount

GCP_SERVICE_ACCOUNT_ANNOTATION = "iam.gke.io/gcp-service-account"


@dataclass(frozen=True)
class WorkloadIdentityProps:
    project: str  # its workload pool, PROJECT.svc.id.goog, is the cluster's (AutopilotCluster)
    name: str  # the Kubernetes service account's


class WorkloadIdentity:
    """The Kubernetes service account ``props.name`` in ``namespace``, acting as ``google_account``.

    Not a construct node of its own: cdktf derives a resource's Terraform address from its
    construct path, and each half belongs where it is addressed: the Kubernetes account at
    ``scope/id_``, beside the workload that runs as it, the binding under the Google account.

    The binding names a principal of the cluster's workload pool, which exists only once a cluster
    of the project enables Workload Identity: GKE creates the pool PROJECT_ID.svc.id.goog
    (cloud.google.com/kubernetes-engine/docs/how-to/workload-identity), and a grant to it before
    fails with "Identity Pool does not exist" (github.com/google/kctf/issues/193). So it is made in
    ``scope``'s stack, whose Kubernetes provider is configured from the cluster and is applied after
    it: under the Google account when that account lives in the same stack, else under ``scope``.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        props: WorkloadIdentityProps,
        *,
        namespace: NamespaceV1,
        google_account: ServiceAccount,
    ) -> None:
        namespace_name = _literal_name(namespace)
        same_stack = TerraformStack.of(google_account) is TerraformStack.of(scope)
        self.binding: ServiceAccountIamMember = google_account.target.bind(
            google_account if same_stack else scope,
            f"workload-identity-{namespace_name}-{props.name}",
            WORKLOAD_IDENTITY_USER,
            f"serviceAccount:{props.project}.svc.id.goog[{namespace_name}/{props.name}]",
        )
        self.account = ServiceAccountV1(
            scope,
            id_,
            metadata=ServiceAccountV1Metadata(
                name=props.name,
                # The reference, not the literal: the account is created after its namespace.
                namespace=namespace.metadata.name,
                annotations={GCP_SERVICE_ACCOUNT_ANNOTATION: google_account.email},
            ),
        )

    @property
    def name(self) -> str:
        """The Kubernetes service account's name, as a reference: a Pod that runs as it waits for it."""
        return self.account.metadata.name


def _literal_name(namespace: NamespaceV1) -> str:
    """The name ``namespace`` was given: the IAM member and the binding's id need it as text,
    where ``metadata.name`` is a reference resolved only at apply time."""
    metadata = namespace.metadata_input
    if metadata is None or metadata.name is None or Token.is_unresolved(metadata.name):
        raise ValueError(f"namespace {namespace.node.id} has no literal name for its Workload Identity members")
    return metadata.name
