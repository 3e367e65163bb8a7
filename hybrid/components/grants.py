"""Where roles are granted. A target (the project, a secret, a bucket, a repository, a Pub/Sub
topic or subscription, a service account, a Cloud Run service) binds a role with ``bind``; what
the stacks call are methods named for what a grant allows: on the construct that owns the
resource (``PubSubQueue.grant_consume``/``grant_publish``, ``BatchBucket.grant_write``/
``grant_read``/``grant_admin``, ``CloudRunService.grant_invoke``/``grant_public_invoke``/
``grant_project_role``, ``PostgresInstance.grant_connect``, ``ServiceAccount.grant_project_role``),
and on the targets of resources made elsewhere (``Project.grant_role``, ``Secret.grant_read``,
``Bucket.grant_read``, ``Repository.grant_pull``). Every role is named in ``roles``.

A principal is anything ``Grantable``: it has an IAM ``member`` (a ServiceAccount, a service
agent, or a ``Principal`` such as ``ALL_USERS``). Every binding is additive (an ``*_iam_member``
resource), so it never takes a role away from anyone this code does not know about.

A binding's construct path is its Terraform address, derived from the call: renaming one replaces
the binding, and the replacement's create and the old one's destroy race to the same member, so
the ids below are the ones deployed before the methods existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from cdktf import TerraformProvider, TerraformResource, TerraformStack
from cdktf_cdktf_provider_google.artifact_registry_repository_iam_member import ArtifactRegistryRepositoryIamMember
from cdktf_cdktf_provider_google.cloud_run_v2_service_iam_member import CloudRunV2ServiceIamMember
from cdktf_cdktf_provider_google.project_iam_member import ProjectIamMember, ProjectIamMemberCondition
from cdktf_cdktf_provider_google.pubsub_subscription_iam_member import PubsubSubscriptionIamMember
from cdktf_cdktf_provider_google.pubsub_topic_iam_member import PubsubTopicIamMember
from cdktf_cdktf_provider_google.secret_manager_secret_iam_member import SecretManagerSecretIamMember
from cdktf_cdktf_provider_google.service_account_iam_member import ServiceAccountIamMember
from cdktf_cdktf_provider_google.storage_bucket_iam_member import (
    StorageBucketIamMember,
    StorageBucketIamMemberCondition,
)
from cdktf_cdktf_provider_google_beta.google_iap_web_cloud_run_service_iam_member import (
    GoogleIapWebCloudRunServiceIamMember,
)
from constructs import Construct

from hybrid.components import roles

if TYPE_CHECKING:  # it imports this module: its ``target`` is a GoogleServiceAccount
    from hybrid.components.service_account import ServiceAccount


class Grantable(Protocol):
    @property
    def member(self) -> str:
        """The IAM principal, e.g. ``serviceAccount:<email>``, ``user:<email>``, ``allUsers``."""
        ...


@dataclass(frozen=True)
class Principal:
    """A principal this code does not create: a listed user or group, or everyone."""

    member: str


ALL_USERS = Principal("allUsers")


Binding = TypeVar("Binding", bound=TerraformResource, covariant=True)
ConditionBlock = TypeVar("ConditionBlock", ProjectIamMemberCondition, StorageBucketIamMemberCondition)


class Target(Protocol[Binding]):
    def bind(self, scope: Construct, id_: str, role: str, member: str) -> Binding: ...


@dataclass(frozen=True)
class Condition:
    """An IAM condition (cloud.google.com/iam/docs/conditions-overview): the grant holds only where it is true."""

    title: str
    expression: str

    def block(self, kind: type[ConditionBlock]) -> ConditionBlock:
        return kind(title=self.title, expression=self.expression)


def role_id(role: str) -> str:
    """The construct id of a project role's binding: the role's last segment, ``role-<name>``."""
    return f"role-{role.rsplit('/', 1)[1]}"


def grant_in_stack(of: Construct, to: ServiceAccount, intent: str, role: str, on: Target[Binding]) -> Binding:
    """``to`` holds ``role`` on ``on``: the binding ``<to's id>-<intent>`` (``worker-pulls-lines``) at
    the top level of ``of``'s stack, for a grantee from another stack, with no construct here."""
    return on.bind(TerraformStack.of(of), f"{to.node.id}-{intent}", role, to.member)


@dataclass(frozen=True)
class Project:
    project: str
    condition: Condition | None = None

    def bind(self, scope: Construct, id_: str, role: str, member: str) -> ProjectIamMember:
        return ProjectIamMember(
            scope,
            id_,
            project=self.project,
            role=role,
            member=member,
            condition=self.condition.block(ProjectIamMemberCondition) if self.condition else None,
        )

    def grant_role(self, holder: Construct, role: str, to: Grantable) -> ProjectIamMember:
        """``to`` holds ``role`` on the project: the binding ``holder/role-<name>``, ``holder`` being
        what the role is for (the grantee's own construct, or the service that runs as it)."""
        return self.bind(holder, role_id(role), role, to.member)


@dataclass(frozen=True)
class Secret:
    secret_id: str

    def bind(self, scope: Construct, id_: str, role: str, member: str) -> SecretManagerSecretIamMember:
        return SecretManagerSecretIamMember(scope, id_, secret_id=self.secret_id, role=role, member=member)

    def grant_read(
        self, holder: Construct, reader: Grantable, *, id_: str | None = None
    ) -> SecretManagerSecretIamMember:
        """``reader`` may read the secret's versions: ``holder/secret-<secret id>``, or ``holder/id_``
        for the two bindings deployed under a name of their own before this method."""
        return self.bind(holder, id_ or f"secret-{self.secret_id}", roles.SECRET_ACCESSOR, reader.member)


@dataclass(frozen=True)
class Bucket:
    name: str
    condition: Condition | None = None

    def bind(self, scope: Construct, id_: str, role: str, member: str) -> StorageBucketIamMember:
        return StorageBucketIamMember(
            scope,
            id_,
            bucket=self.name,
            role=role,
            member=member,
            condition=self.condition.block(StorageBucketIamMemberCondition) if self.condition else None,
        )

    def grant_read(self, holder: Construct, reader: Grantable, *, id_: str) -> StorageBucketIamMember:
        """``reader`` may read the bucket's objects (under the condition, if any): ``holder/id_``."""
        return self.bind(holder, id_, roles.OBJECT_VIEWER, reader.member)


def objects_under(bucket: str, prefix: str) -> Condition:
    """Only ``bucket``'s objects whose names start with ``prefix`` (an object's resource.name is
    projects/_/buckets/<bucket>/objects/<name>: cloud.google.com/storage/docs/access-control/iam#conditions).
    ``bucket`` is the literal name: cdktf's HCL output mangles a reference inside a quoted string."""
    return Condition(
        title=f"only {prefix}",
        expression=f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/{prefix}")',
    )


@dataclass(frozen=True)
class Repository:
    """An Artifact Registry repository, by its id (made in the registry layer): who may read it."""

    project: str
    location: str
    repository: str

    def bind(self, scope: Construct, id_: str, role: str, member: str) -> ArtifactRegistryRepositoryIamMember:
        return ArtifactRegistryRepositoryIamMember(
            scope,
            id_,
            project=self.project,
            location=self.location,
            repository=self.repository,
            role=role,
            member=member,
        )

    def grant_pull(self, puller: ServiceAccount) -> ArtifactRegistryRepositoryIamMember:
        """``puller`` may pull the repository's images: ``puller/reads-<repository>``."""
        return self.bind(puller, f"reads-{self.repository}", roles.IMAGE_READER, puller.member)


@dataclass(frozen=True)
class Topic:
    """A Pub/Sub topic, by its id (projects/<project>/topics/<name>) or name."""

    topic: str

    def bind(self, scope: Construct, id_: str, role: str, member: str) -> PubsubTopicIamMember:
        return PubsubTopicIamMember(scope, id_, topic=self.topic, role=role, member=member)


@dataclass(frozen=True)
class Subscription:
    """A Pub/Sub subscription, by its id or name."""

    subscription: str

    def bind(self, scope: Construct, id_: str, role: str, member: str) -> PubsubSubscriptionIamMember:
        return PubsubSubscriptionIamMember(scope, id_, subscription=self.subscription, role=role, member=member)


@dataclass(frozen=True)
class GoogleServiceAccount:
    """A service account as a resource: who may act as it."""

    name: str  # its resource name, projects/<project>/serviceAccounts/<email>

    def bind(self, scope: Construct, id_: str, role: str, member: str) -> ServiceAccountIamMember:
        return ServiceAccountIamMember(scope, id_, service_account_id=self.name, role=role, member=member)


@dataclass(frozen=True)
class RunService:
    """A Cloud Run service: who may invoke it."""

    project: str
    location: str
    name: str

    def bind(self, scope: Construct, id_: str, role: str, member: str) -> CloudRunV2ServiceIamMember:
        return CloudRunV2ServiceIamMember(
            scope, id_, project=self.project, location=self.location, name=self.name, role=role, member=member
        )


@dataclass(frozen=True)
class IapRunService:
    """A Cloud Run service behind Identity-Aware Proxy: who gets through it. hashicorp/google
    6.50.0 has this resource in its beta provider only, hence ``beta``."""

    project: str
    location: str
    name: str
    beta: TerraformProvider

    def bind(self, scope: Construct, id_: str, role: str, member: str) -> GoogleIapWebCloudRunServiceIamMember:
        return GoogleIapWebCloudRunServiceIamMember(
            scope,
            id_,
            project=self.project,
            location=self.location,
            cloud_run_service_name=self.name,
            role=role,
            member=member,
            provider=self.beta,
        )
