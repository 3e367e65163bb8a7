"""Layer `database`: Cloud SQL for PostgreSQL on the network's private services range.

Private IP only, TLS required, backups with point-in-time recovery, IAM database
authentication. The orchestrator's identity is born here, because the database
user it logs in as must exist before any service uses it; the services layer
runs the orchestrator as this account (and so any other Cloud Run service of the
topology that calls Cloud SQL).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cdktf import TerraformOutput
from constructs import Construct

from hybrid import topology
from hybrid.components.memorystore import RedisProps, RedisStore
from hybrid.components.postgres import PostgresInstance, PostgresProps
from hybrid.components.service_account import ServiceAccount, ServiceAccountProps
from hybrid.config import Environment
from hybrid.layer import LayerStack
from stacks.network import NetworkStack

# The workloads that log in to Cloud SQL as themselves: (display name, description) of each one's account.
DATABASE_IDENTITIES = {
    "orchestrator": (
        "LLM orchestrator",
        "Runs the internal orchestrator on Cloud Run; logs in to Cloud SQL with its IAM identity.",
    ),
    "worker": (
        "Batch worker",
        "Runs the batch workers on GKE: pulls line messages, calls the models, writes results.",
    ),
}


@dataclass(frozen=True)
class DatabaseOutputs:
    """What the services layer uses of the database."""

    host: str  # the instance's private IP
    server_ca: str  # the instance's server CA certificate (PEM), which clients verify it against
    database_name: str
    # The orchestrator's identity, born here with its IAM database user; the services layer runs it.
    orchestrator_account: ServiceAccount
    orchestrator_database_user: str
    # The batch worker's identity and IAM database user, when [workers] is enabled.
    worker_account: ServiceAccount | None = None
    # The gateway's rate-limit store, when [redis] is enabled.
    redis: RedisStore | None = None
    # Every other Cloud Run service that logs in to Cloud SQL: its identity, born here with its
    # IAM database user, by service.
    service_accounts: Mapping[str, ServiceAccount] = field(default_factory=dict)


class DatabaseStack(LayerStack):
    def __init__(self, scope: Construct, env: Environment, network: NetworkStack) -> None:
        super().__init__(scope, env, "database", network)

        db = env.database
        self.postgres = PostgresInstance(
            self,
            "postgres",
            PostgresProps(
                name=env.names.sql_instance,
                region=env.region,
                private_network=network.outputs.private_services_network,
                settings=db,
                replica_name=env.names.sql_replica(db.replica_region) if db.replica_region else None,
            ),
        )
        self.orchestrator_database = self.postgres.add_database(db.database_name)

        self.orchestrator = self._database_identity("orchestrator", env.names.orchestrator_account)
        self.worker = self._database_identity("worker", env.names.worker_account) if env.workers.enabled else None
        deployed = topology.for_environment(env)
        service_accounts = {
            name: self._database_identity(name, env.names.service[name])
            for name in deployed.callers("postgres")
            if name != "orchestrator" and name in deployed.run_services()
        }
        # The gateway's shared rate limit: a data store on the same private range as Cloud SQL.
        self.redis = self._redis(network.outputs.private_services_network) if env.redis.enabled else None

        TerraformOutput(self, "instance_connection_name", value=self.postgres.instance.connection_name)
        TerraformOutput(self, "private_ip", value=self.postgres.instance.private_ip_address)
        TerraformOutput(self, "database_name", value=self.orchestrator_database.name)
        TerraformOutput(self, "orchestrator_service_account", value=self.orchestrator.email)

        self.outputs = DatabaseOutputs(
            host=self.postgres.instance.private_ip_address,
            server_ca=self.postgres.server_ca_pem,
            database_name=self.orchestrator_database.name,
            orchestrator_account=self.orchestrator,
            orchestrator_database_user=self.orchestrator.database_user_name,
            worker_account=self.worker,
            redis=self.redis,
            service_accounts=service_accounts,
        )

    def _database_identity(self, id_: str, account_id: str) -> ServiceAccount:
        """A workload's account, born here with the IAM database user it logs in as."""
        # Another Cloud Run service of the topology that calls Cloud SQL gets a plain description.
        display_name, description = DATABASE_IDENTITIES.get(
            id_,
            (f"{id_} (Cloud Run)", f"Runs the {id_} Cloud Run service; logs in to Cloud SQL with its IAM identity."),
        )
        account = ServiceAccount(self, id_, ServiceAccountProps(account_id, display_name, description))
        self.postgres.add_iam_user(account, project=self.env.project_id)
        return account

    def _redis(self, private_services_network: str) -> RedisStore:
        env = self.env
        return RedisStore(
            self,
            "redis",
            RedisProps(
                name=env.names.redis_instance,
                project=env.project_id,
                region=env.region,
                private_services_network=private_services_network,
                psa_range=env.names.psa_range,
                auth_secret_id=env.names.redis_auth_secret,
                settings=env.redis,
            ),
        )
