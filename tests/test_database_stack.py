"""Value assertions on the synthesized `<env>-database` stacks."""

from __future__ import annotations

import json

import pytest

from iac import only, resources

EXPECTED = {
    "dev": {"availability": "ZONAL", "protected": False, "tier": "db-custom-1-3840"},
    "prod": {"availability": "REGIONAL", "protected": True, "tier": "db-custom-4-16384"},
}
PSA_NETWORK = (
    "${data.terraform_remote_state.cross-stack-reference-input-%s-network.outputs."
    "cross-stack-output-google_service_networking_connectionpsa-connectionnetwork}"
)


@pytest.fixture
def database(env, synth_json):
    return synth_json[f"{env}-database"]


@pytest.fixture
def instance(database):
    return only(database, "google_sql_database_instance")


def flags(instance: dict) -> dict[str, str]:
    return {flag["name"]: flag["value"] for flag in instance["settings"]["database_flags"]}


def test_postgres_16_enterprise_with_configured_tier(env, instance):
    assert instance["database_version"] == "POSTGRES_16"
    assert instance["name"] == f"{env}-postgres"
    assert instance["settings"]["tier"] == EXPECTED[env]["tier"]
    assert instance["settings"]["edition"] == "ENTERPRISE"


def test_private_ip_only_on_the_peered_network(env, instance):
    ip = instance["settings"]["ip_configuration"]
    assert ip["ipv4_enabled"] is False
    assert ip["private_network"] == PSA_NETWORK % env
    assert "authorized_networks" not in ip


def test_tls_required(instance):
    assert instance["settings"]["ip_configuration"]["ssl_mode"] == "ENCRYPTED_ONLY"


def test_backups_and_point_in_time_recovery(env, instance):
    backup = instance["settings"]["backup_configuration"]
    assert backup["enabled"] is True
    assert backup["point_in_time_recovery_enabled"] is True
    assert backup["transaction_log_retention_days"] == 7
    assert backup["backup_retention_settings"]["retained_backups"] == {"dev": 7, "prod": 30}[env]


def test_availability(env, instance):
    assert instance["settings"]["availability_type"] == EXPECTED[env]["availability"]


def test_deletion_protection_both_switches(env, instance):
    assert instance["deletion_protection"] is EXPECTED[env]["protected"]
    assert instance["settings"]["deletion_protection_enabled"] is EXPECTED[env]["protected"]


def test_iam_authentication_and_logging_flags(instance):
    assert flags(instance) == {
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


def test_orchestrator_database_and_iam_user(env, database):
    db = only(database, "google_sql_database")
    assert db["name"] == "orchestrator"
    account = only(database, "google_service_account")
    assert account["account_id"] == f"{env}-orchestrator"
    user = only(database, "google_sql_user")
    assert user["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    assert (
        user["name"]
        == '${trimsuffix(google_service_account.orchestrator_account_%s.email, ".gserviceaccount.com")}'
        % (account["//"]["metadata"]["uniqueId"].rsplit("_", 1)[1])
    )
    assert "password" not in user


def test_orchestrator_may_connect_to_this_instance_only(env, database):
    grants = {g["role"]: g for g in resources(database, "google_project_iam_member").values()}
    assert set(grants) == {"roles/cloudsql.client", "roles/cloudsql.instanceUser"}
    for grant in grants.values():
        assert grant["member"].startswith("${google_service_account.orchestrator_account_")
        assert grant["condition"]["expression"] == (
            'resource.type == "sqladmin.googleapis.com/Instance" && '
            f'resource.name == "projects/replace-me-{env}/instances/{env}-postgres"'
        )


def test_no_password_anywhere(database):
    text = json.dumps(database).lower()
    assert "password" not in text
    assert "random_password" not in text


def test_outputs_are_not_secrets(database):
    outputs = database["output"]
    named = {name for name in outputs if not name.startswith("cross-stack-output-")}
    assert named == {"instance_connection_name", "private_ip", "database_name", "orchestrator_service_account"}
    # What the services layer reads through remote state: identities and addresses only.
    shared = [name for name in outputs if name.startswith("cross-stack-output-")]
    assert shared and all(name.endswith(("email", "member", "private_ip_address", "name")) for name in shared)
    # Plain values, readable in `cdktf output` (cdktf itself marks cross-stack outputs sensitive).
    assert not any(outputs[name].get("sensitive") for name in named)
