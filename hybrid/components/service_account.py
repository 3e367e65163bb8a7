"""A dedicated service account for one workload; never the default compute one."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cdktf import Fn
from cdktf_cdktf_provider_google.service_account import ServiceAccount as GoogleServiceAccount
from constructs import Construct

from hybrid.components import grants


@dataclass(frozen=True)
class ServiceAccountProps:
    account_id: str
    display_name: str
    description: str


class ServiceAccount(Construct):
    def __init__(self, scope: Construct, id_: str, props: ServiceAccountProps) -> None:
        super().__init__(scope, id_)
        # The props are the resource's own fields.
        self.resource = GoogleServiceAccount(self, "account", **asdict(props))

    @property
    def email(self) -> str:
        return self.resource.email

    @property
    def member(self) -> str:
        """The IAM principal, ``serviceAccount:<email>``."""
        return self.resource.member

    @property
    def database_user_name(self) -> str:
        # Cloud SQL names IAM service-account users by the email without
        # ".gserviceaccount.com" (cloud.google.com/sql/docs/postgres/add-manage-iam-users).
        return Fn.trimsuffix(self.resource.email, ".gserviceaccount.com")

    @property
    def target(self) -> grants.GoogleServiceAccount:
        """This account as a resource others are granted roles on (who may act as it)."""
        return grants.GoogleServiceAccount(self.resource.name)

    def grant_project_role(self, role: str, *, project: str) -> None:
        """This account holds ``role`` on ``project``: the binding is this construct's ``role-<name>``."""
        grants.Project(project).grant_role(self, role, self)
