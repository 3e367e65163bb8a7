"""Value assertions on the synthesized `<env>-database` stacks."""

from __future__ import annotations

import json

import pytest

from hybrid.components.postgres import DATABASE_FLAGS
from iac import Json, Stacks, only, pointee, pointees, resources

EXPECTED = {
    "dev": {"availability": "ZONAL", "protected": False, "tier": "db-custom-1-3840"},
    "prod": {"availability": "REGIONAL", "protected": True, "tier": "db-custom-4-16384"},
}


LAYER = "database"  # the conftest's ``stack`` fixture


@pytest.fixture
def instance(stack: Json) -> Json:
    """The primary: the one instance that replicates from none."""
    primaries = [
        i for i in resources(stack, "google_sql_database_instance").values() if "master_instance_name" not in i
    ]
    assert len(primaries) == 1, primaries
    return primaries[0]


def test_a_cross_region_replica_in_prod_only(env: str, stack: Json, instance: Json) -> None:
    replicas = [i for i in resources(stack, "google_sql_database_instance").values() if "master_instance_name" in i]
    if env == "dev":
        assert replicas == []
        return
    (replica,) = replicas
    assert replica["name"] == "prod-postgres-us-east4"
    assert replica["region"] == "us-east4" != instance["region"]
    assert replica["master_instance_name"].startswith("${google_sql_database_instance.postgres_instance_")
    assert replica["database_version"] == instance["database_version"]
    # Backups are the primary's; the replica only stands by, in one zone, on the same private network.
    assert "backup_configuration" not in replica["settings"]
    assert replica["settings"]["availability_type"] == "ZONAL"
    assert replica["settings"]["ip_configuration"] == instance["settings"]["ip_configuration"]
    assert flags(replica) == DATABASE_FLAGS
    assert replica["deletion_protection"] is True


def flags(instance: Json) -> dict[str, str]:
    return {flag["name"]: flag["value"] for flag in instance["settings"]["database_flags"]}


def test_postgres_16_enterprise_with_configured_tier(env: str, instance: Json) -> None:
    assert instance["database_version"] == "POSTGRES_16"
    assert instance["name"] == f"{env}-postgres"
    assert instance["settings"]["tier"] == EXPECTED[env]["tier"]
    assert instance["settings"]["edition"] == "ENTERPRISE"


def test_private_ip_only_on_the_peered_network(env: str, instance: Json, synth_json: Stacks) -> None:
    ip = instance["settings"]["ip_configuration"]
    assert ip["ipv4_enabled"] is False
    # The VPC read from the peering: the instance is created after the peering exists.
    network = pointee(synth_json, f"{env}-database", ip["private_network"])
    assert (network.stack, network.kind, network.attr) == (
        f"{env}-network",
        "google_service_networking_connection",
        "network",
    )
    assert network.config["service"] == "servicenetworking.googleapis.com"
    assert "authorized_networks" not in ip


def test_tls_required(instance: Json) -> None:
    assert instance["settings"]["ip_configuration"]["ssl_mode"] == "ENCRYPTED_ONLY"


def test_backups_and_point_in_time_recovery(env: str, instance: Json) -> None:
    backup = instance["settings"]["backup_configuration"]
    assert backup["enabled"] is True
    assert backup["point_in_time_recovery_enabled"] is True
    assert backup["transaction_log_retention_days"] == 7
    assert backup["backup_retention_settings"]["retained_backups"] == {"dev": 7, "prod": 30}[env]


def test_availability(env: str, instance: Json) -> None:
    assert instance["settings"]["availability_type"] == EXPECTED[env]["availability"]


def test_deletion_protection_both_switches(env: str, instance: Json) -> None:
    assert instance["deletion_protection"] is EXPECTED[env]["protected"]
    assert instance["settings"]["deletion_protection_enabled"] is EXPECTED[env]["protected"]


def test_iam_authentication_and_logging_flags(instance: Json) -> None:
    assert flags(instance) == DATABASE_FLAGS
    # What the logins and the audit depend on, whatever else the list grows to.
    essential = ("cloudsql.iam_authentication", "cloudsql.enable_pgaudit", "log_connections", "log_disconnections")
    assert {flag: flags(instance)[flag] for flag in essential} == dict.fromkeys(essential, "on")
    assert flags(instance)["pgaudit.log"] == "ddl,role"


# The identities that log in to Cloud SQL with IAM: the orchestrator, and prod's batch worker.
LOGINS = {"dev": ["dev-orchestrator"], "prod": ["prod-orchestrator", "prod-worker"]}


def test_orchestrator_database_and_iam_users(env: str, stack: Json, synth_json: Stacks) -> None:
    db = only(stack, "google_sql_database")
    assert db["name"] == "orchestrator"
    accounts = sorted(a["account_id"] for a in resources(stack, "google_service_account").values())
    assert accounts == LOGINS[env]
    users = list(resources(stack, "google_sql_user").values())
    for user in users:
        assert user["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
        # Cloud SQL's IAM user for a service account: its email without ".gserviceaccount.com".
        assert user["name"].startswith("${trimsuffix(")
        assert user["name"].endswith(', ".gserviceaccount.com")}')
        assert "password" not in user
    assert sorted(p.brief for user in users for p in pointees(synth_json, f"{env}-database", user["name"])) == [
        (f"{env}-database", "google_service_account", account, "email") for account in LOGINS[env]
    ]


def test_iam_logins_may_connect_to_this_instance_only(env: str, stack: Json, synth_json: Stacks) -> None:
    grants = list(resources(stack, "google_project_iam_member").values())
    held = sorted((pointee(synth_json, f"{env}-database", g["member"]).brief[2], g["role"]) for g in grants)
    # Direct private-IP connections, no Auth Proxy: cloudsql.instances.login is all they need.
    assert held == [(account, "roles/cloudsql.instanceUser") for account in LOGINS[env]]
    for grant in grants:
        assert grant["condition"]["expression"] == (
            'resource.type == "sqladmin.googleapis.com/Instance" && '
            f'resource.name == "projects/replace-me-{env}/instances/{env}-postgres"'
        )


def test_no_password_anywhere(stack: Json) -> None:
    text = json.dumps(stack).lower()
    assert "password" not in text
    assert "random_password" not in text


def test_outputs_are_not_secrets(env: str, stack: Json, synth_json: Stacks) -> None:
    outputs = stack["output"]
    ours = {"instance_connection_name", "private_ip", "database_name", "orchestrator_service_account"}
    # Plain values, readable in `cdktf output`; cdktf marks the outputs it adds for remote state sensitive.
    assert {name for name, output in outputs.items() if not output.get("sensitive")} == ours
    # What the services layer reads through remote state: identities, addresses and the server's
    # CA certificate (public: clients verify the server with it).
    shared = outputs.keys() - ours
    read = {
        (p.kind, p.attr) for name in shared for p in pointees(synth_json, f"{env}-database", outputs[name]["value"])
    }
    expected = {
        ("google_service_account", "email"),
        ("google_service_account", "member"),
        ("google_sql_database_instance", "private_ip_address"),
        ("google_sql_database_instance", "server_ca_cert[0].cert"),
        ("google_sql_database", "name"),
    }
    if env == "prod":  # the batch worker's account also by resource name: workers-k8s binds its Workload Identity
        expected.add(("google_service_account", "name"))
        # [redis]: the gateway is told where Memorystore is and which CA signed its certificate.
        expected |= {("google_redis_instance", "host"), ("google_redis_instance", "server_ca_certs[0].cert")}
    assert read == expected
