"""The one-time database bootstrap as a Cloud Run job: grants the orchestrator's IAM database
user what its migrations need (services/orchestrator/bootstrap.py).

It runs the orchestrator's own image as the built-in ``postgres`` user, whose password the
operator sets and stores in Secret Manager once (docs/deploying.md, "Deploying to a real project"):
the stacks never hold it. Its identity may read that one secret and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_google.cloud_run_v2_job import (
    CloudRunV2Job,
    CloudRunV2JobTemplate,
    CloudRunV2JobTemplateTemplate,
    CloudRunV2JobTemplateTemplateContainers,
    CloudRunV2JobTemplateTemplateContainersEnv,
    CloudRunV2JobTemplateTemplateContainersEnvValueSource,
    CloudRunV2JobTemplateTemplateContainersEnvValueSourceSecretKeyRef,
    CloudRunV2JobTemplateTemplateContainersResources,
)
from constructs import Construct

from hybrid.components.cloud_run import Egress
from hybrid.components.grants import Secret
from hybrid.components.service_account import ServiceAccount

ADMIN_USER = "postgres"  # Cloud SQL's built-in admin, a member of cloudsqlsuperuser


@dataclass(frozen=True)
class DatabaseBootstrapProps:
    name: str
    region: str
    image: str  # the orchestrator's: it carries the bootstrap module
    egress: Egress
    database_host: str
    database_server_ca: str  # the instance's server CA (PEM), which the job verifies the server against
    database_name: str
    grantee: str  # the IAM database user the orchestrator logs in as
    admin_password_secret: str
    deletion_protection: bool


class DatabaseBootstrapJob(Construct):
    def __init__(self, scope: Construct, id_: str, props: DatabaseBootstrapProps, *, account: ServiceAccount) -> None:
        super().__init__(scope, id_)
        # Granted before the job exists, so its first execution can read the password.
        password_access = Secret(props.admin_password_secret).grant_read(self, account, id_="admin-password-access")
        plain = {
            "PGHOST": props.database_host,
            "PGDATABASE": props.database_name,
            "PGUSER": ADMIN_USER,
            # The instance's ssl_mode is ENCRYPTED_ONLY; the admin's password goes only to a server
            # its CA vouches for (services/orchestrator/bootstrap.py).
            "PGSSLMODE": "verify-ca",
            "DATABASE_SERVER_CA": props.database_server_ca,
            "GRANTEE": props.grantee,
        }
        self.job = CloudRunV2Job(
            self,
            "job",
            name=props.name,
            location=props.region,
            deletion_protection=props.deletion_protection,
            depends_on=[password_access],
            template=CloudRunV2JobTemplate(
                task_count=1,
                template=CloudRunV2JobTemplateTemplate(
                    service_account=account.email,
                    max_retries=1,
                    timeout="120s",
                    vpc_access=props.egress.job_vpc_access(),
                    containers=[
                        CloudRunV2JobTemplateTemplateContainers(
                            image=props.image,
                            command=["python", "-m", "orchestrator.bootstrap"],
                            resources=CloudRunV2JobTemplateTemplateContainersResources(
                                limits={"cpu": "1", "memory": "512Mi"}
                            ),
                            env=[
                                *(
                                    CloudRunV2JobTemplateTemplateContainersEnv(name=key, value=value)
                                    for key, value in sorted(plain.items())
                                ),
                                CloudRunV2JobTemplateTemplateContainersEnv(
                                    name="PGPASSWORD",
                                    value_source=CloudRunV2JobTemplateTemplateContainersEnvValueSource(
                                        secret_key_ref=CloudRunV2JobTemplateTemplateContainersEnvValueSourceSecretKeyRef(
                                            secret=props.admin_password_secret, version="latest"
                                        )
                                    ),
                                ),
                            ],
                        )
                    ],
                ),
            ),
        )
