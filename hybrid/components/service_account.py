"""A dedicated service account for one workload; never the default compute one."""

from __future__ import annotations

from cdktf import Fn
from cdktf_cdktf_provider_google.service_account import ServiceAccount as GoogleServiceAccount
from constructs import Construct


class ServiceAccount(Construct):
    def __init__(self, scope: Construct, id_: str, *, account_id: str, display_name: str, description: str) -> None:
        super().__init__(scope, id_)
        self.resource = GoogleServiceAccount(
            self, "account", account_id=account_id, display_name=display_name, description=description
        )

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
