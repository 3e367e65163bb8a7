"""Cloud SQL for PostgreSQL on a private IP only, TLS required, IAM database authentication."""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_google.sql_database import SqlDatabase
from cdktf_cdktf_provider_google.sql_database_instance import (
    SqlDatabaseInstance,
    SqlDatabaseInstanceSettings,
    SqlDatabaseInstanceSettingsBackupConfiguration,
    SqlDatabaseInstanceSettingsBackupConfigurationBackupRetentionSettings,
    SqlDatabaseInstanceSettingsDatabaseFlags,
    SqlDatabaseInstanceSettingsInsightsConfig,
    SqlDatabaseInstanceSettingsIpConfiguration,
    SqlDatabaseInstanceSettingsMaintenanceWindow,
)
from cdktf_cdktf_provider_google.sql_user import SqlUser
from constructs import Construct

from hybrid.components.grants import Condition, Project
from hybrid.components.roles import DATABASE_LOGIN
from hybrid.components.service_account import ServiceAccount
from hybrid.config import DatabaseSettings

# IAM database authentication, plus the logging flags the CIS GCP benchmark (section 6.2)
# and checkov's CKV_GCP_51..57/108..111 and CKV2_GCP_13 expect of a PostgreSQL instance.
DATABASE_FLAGS = {
    "cloudsql.iam_authentication": "on",
    "cloudsql.enable_pgaudit": "on",
    "pgaudit.log": "ddl,role",
    "log_checkpoints": "on",
    "log_connections": "on",
    "log_disconnections": "on",
    "log_duration": "on",
    "log_lock_waits": "on",
    "log_hostname": "on",
    "log_error_verbosity": "default",
    "log_min_messages": "warning",
    "log_min_error_statement": "error",
    "log_min_duration_statement": "-1",
    "log_statement": "ddl",
    "log_temp_files": "0",
}


@dataclass(frozen=True)
class PostgresProps:
    name: str
    region: str
    private_network: str
    # The environment file's [database]: version, size, backups, maintenance. Its defaults are the instance's.
    settings: DatabaseSettings
    # Its cross-region read replica's name, in settings.replica_region, where there is one.
    replica_name: str | None = None


class PostgresInstance(Construct):
    def __init__(self, scope: Construct, id_: str, props: PostgresProps) -> None:
        super().__init__(scope, id_)
        self.instance_name = props.name
        db = props.settings
        self.instance = SqlDatabaseInstance(
            self,
            "instance",
            name=props.name,
            region=props.region,
            database_version=db.version,
            deletion_protection=db.deletion_protection,
            settings=_settings(
                props,
                availability=db.availability,
                backup_configuration=SqlDatabaseInstanceSettingsBackupConfiguration(
                    enabled=True,
                    point_in_time_recovery_enabled=True,
                    start_time=db.backup_start_time,
                    transaction_log_retention_days=db.log_retention_days,
                    backup_retention_settings=SqlDatabaseInstanceSettingsBackupConfigurationBackupRetentionSettings(
                        retained_backups=db.retained_backups, retention_unit="COUNT"
                    ),
                ),
            ),
        )
        self.replica = self._replica(props, props.replica_name) if props.replica_name else None

    def _replica(self, props: PostgresProps, name: str) -> SqlDatabaseInstance:
        """A read replica in another region, kept by asynchronous replication, for disaster recovery:
        promoted by hand, it becomes a primary in its region
        (cloud.google.com/sql/docs/postgres/replication/cross-region-replicas; docs/disaster-recovery.md)."""
        db = props.settings
        return SqlDatabaseInstance(
            self,
            "replica",
            name=name,
            region=db.replica_region,
            database_version=db.version,
            master_instance_name=self.instance.name,
            deletion_protection=db.deletion_protection,
            # A replica has no backups of its own: they are configured on the primary
            # (cloud.google.com/sql/docs/postgres/replication#requirements); one zone, as it only stands by.
            settings=_settings(props, availability="ZONAL", backup_configuration=None),
        )

    @property
    def server_ca_pem(self) -> str:
        """The instance's server CA certificate (PEM), which its server certificate chains to: what
        clients verify the server against with sslmode verify-ca
        (registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/sql_database_instance,
        server_ca_cert)."""
        return self.instance.server_ca_cert.get(0).cert

    def add_database(self, name: str) -> SqlDatabase:
        return SqlDatabase(self, f"database-{name}", name=name, instance=self.instance.name)

    def add_iam_user(self, account: ServiceAccount, *, project: str) -> SqlUser:
        """A database user for ``account``'s IAM identity, which may connect to this instance."""
        user = SqlUser(
            self,
            f"iam-user-{account.node.id}",
            instance=self.instance.name,
            name=account.database_user_name,
            type="CLOUD_IAM_SERVICE_ACCOUNT",
        )
        self.grant_connect(account, project=project)
        return user

    def grant_connect(self, account: ServiceAccount, *, project: str) -> None:
        """``account`` may log in to this instance, and no other, with IAM database authentication
        (roles.DATABASE_LOGIN): ``<postgres>/<account>-instanceUser``."""
        # cloud.google.com/sql/docs/postgres/iam-conditions: limit the grant to one instance.
        this_instance = Condition(
            title=f"only {self.instance_name}",
            expression=(
                'resource.type == "sqladmin.googleapis.com/Instance" && '
                f'resource.name == "projects/{project}/instances/{self.instance_name}"'
            ),
        )
        role_name = DATABASE_LOGIN.rsplit(".", 1)[1]
        Project(project, condition=this_instance).bind(
            self, f"{account.node.id}-{role_name}", DATABASE_LOGIN, account.member
        )


def _settings(
    props: PostgresProps,
    *,
    availability: str,
    backup_configuration: SqlDatabaseInstanceSettingsBackupConfiguration | None,
) -> SqlDatabaseInstanceSettings:
    """What the primary and its replica share: size, private IP with TLS, maintenance, the flags.
    A promoted replica then serves as the primary did."""
    db = props.settings
    return SqlDatabaseInstanceSettings(
        tier=db.tier,
        # db-custom tiers belong to the Enterprise edition; PostgreSQL 16+ would
        # otherwise default to Enterprise Plus (cloud.google.com/sql/docs/editions-intro).
        edition="ENTERPRISE",
        availability_type=availability,
        disk_type="PD_SSD",
        disk_size=db.disk_size_gb,
        disk_autoresize=True,
        deletion_protection_enabled=db.deletion_protection,
        ip_configuration=SqlDatabaseInstanceSettingsIpConfiguration(
            ipv4_enabled=False,
            private_network=props.private_network,
            ssl_mode="ENCRYPTED_ONLY",
        ),
        backup_configuration=backup_configuration,
        maintenance_window=SqlDatabaseInstanceSettingsMaintenanceWindow(
            day=db.maintenance_day, hour=db.maintenance_hour, update_track="stable"
        ),
        insights_config=SqlDatabaseInstanceSettingsInsightsConfig(
            query_insights_enabled=True, record_application_tags=False, record_client_address=False
        ),
        database_flags=[
            SqlDatabaseInstanceSettingsDatabaseFlags(name=flag, value=value) for flag, value in DATABASE_FLAGS.items()
        ],
    )
