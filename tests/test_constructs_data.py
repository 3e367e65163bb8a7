"""The smaller constructs alone, in process: a budget's alerts, a firewall rule, an IAM database
user, and the database bootstrap job."""

from __future__ import annotations

from cdktf import TerraformStack

from construct_helpers import STACK, account, points_at
from hybrid.components.budget import Budget, BudgetProps
from hybrid.components.cloud_run import PrivateEgress
from hybrid.components.database_bootstrap import DatabaseBootstrapJob, DatabaseBootstrapProps
from hybrid.components.firewall import Firewall, FirewallProps, Rule
from hybrid.components.postgres import PostgresInstance, PostgresProps
from hybrid.config import DatabaseSettings
from iac import only, principal, resources, synth_in_process


def test_a_budget_alerts_each_address_at_each_threshold() -> None:
    props = BudgetProps(
        env_name="dev",
        project_id="p",
        billing_account="0-0-0",
        amount_usd=100,
        thresholds=(0.5, 1.0),
        spend_basis="FORECASTED_SPEND",
        notification_emails=("a@example.com", "b@example.com"),
    )
    out = synth_in_process(lambda stack: Budget(stack, "budget", props))
    budget = only(out, "google_billing_budget")
    assert budget["amount"] == {"specified_amount": {"currency_code": "USD", "units": "100"}}
    assert budget["threshold_rules"] == [
        {"threshold_percent": 0.5, "spend_basis": "FORECASTED_SPEND"},
        {"threshold_percent": 1.0, "spend_basis": "FORECASTED_SPEND"},
    ]
    channels = [points_at(out, c) for c in budget["all_updates_rule"]["monitoring_notification_channels"]]
    assert [kind for kind, _, attr in channels] == ["google_monitoring_notification_channel"] * 2
    emails = sorted(
        c["labels"]["email_address"] for c in resources(out, "google_monitoring_notification_channel").values()
    )
    assert emails == ["a@example.com", "b@example.com"]


def test_a_firewall_rule_allows_or_denies_what_it_lists_and_logs_it() -> None:
    rules = (
        Rule(
            name="deny-all",
            description="d",
            direction="EGRESS",
            action="deny",
            destination_ranges=("0.0.0.0/0",),
            priority=65534,
        ),
        Rule(
            name="allow-pg",
            description="a",
            direction="EGRESS",
            action="allow",
            target_tags=("t",),
            protocol="tcp",
            ports=("5432",),
        ),
    )
    out = synth_in_process(lambda stack: Firewall(stack, "firewall", FirewallProps(network="net", rules=rules)))
    found = {r["name"]: r for r in resources(out, "google_compute_firewall").values()}
    assert found["deny-all"]["deny"] == [{"protocol": "all"}] and "allow" not in found["deny-all"]
    assert found["allow-pg"]["allow"] == [{"protocol": "tcp", "ports": ["5432"]}] and "deny" not in found["allow-pg"]
    assert found["allow-pg"]["target_tags"] == ["t"] and "source_ranges" not in found["allow-pg"]
    assert all(r["log_config"] == {"metadata": "INCLUDE_ALL_METADATA"} for r in found.values())


def test_an_iam_database_user_may_connect_to_its_instance_only() -> None:
    props = PostgresProps(
        name="pg",
        region="r",
        private_network="net",
        settings=DatabaseSettings(tier="db-custom-1-3840", availability="ZONAL", deletion_protection=False),
    )

    def build(stack: TerraformStack) -> None:
        PostgresInstance(stack, "postgres", props).add_iam_user(account(stack, "app", "app"), project="p")

    out = synth_in_process(build)
    user = only(out, "google_sql_user")
    assert user["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    assert points_at(out, user["instance"]) == ("google_sql_database_instance", "pg", "name")
    grants = {g["role"]: g for g in resources(out, "google_project_iam_member").values()}
    # Clients connect to the private IP directly, with no Cloud SQL connector: logging in is all.
    assert set(grants) == {"roles/cloudsql.instanceUser"}
    for binding in grants.values():
        assert principal({STACK: out}, STACK, binding["member"]) == "serviceAccount:app"
        assert binding["condition"]["expression"].endswith('resource.name == "projects/p/instances/pg"')


def test_the_bootstrap_job_reads_the_password_it_is_granted_first() -> None:
    props = DatabaseBootstrapProps(
        name="boot",
        region="r",
        image="img",
        egress=PrivateEgress(network="net", subnetwork="sub", tag="t"),
        database_host="10.0.0.3",
        database_server_ca="PEM",
        database_name="db",
        grantee="app",
        admin_password_secret="pw",
        deletion_protection=False,
    )
    out = synth_in_process(
        lambda stack: DatabaseBootstrapJob(stack, "boot", props, account=account(stack, account_id="boot"))
    )
    job = only(out, "google_cloud_run_v2_job")
    (box,) = job["template"]["template"]["containers"]
    env = {e["name"]: e.get("value", e.get("value_source")) for e in box["env"]}
    assert (env["PGHOST"], env["PGDATABASE"], env["GRANTEE"]) == ("10.0.0.3", "db", "app")
    # The admin's password goes only to a server the instance's CA vouches for.
    assert (env["PGSSLMODE"], env["DATABASE_SERVER_CA"]) == ("verify-ca", "PEM")
    assert env["PGPASSWORD"] == {"secret_key_ref": {"secret": "pw", "version": "latest"}}
    ((key, access),) = resources(out, "google_secret_manager_secret_iam_member").items()
    assert (access["secret_id"], principal({STACK: out}, STACK, access["member"])) == ("pw", "serviceAccount:boot")
    assert job["depends_on"] == [f"google_secret_manager_secret_iam_member.{key}"]
    assert job["template"]["template"]["vpc_access"]["network_interfaces"] == [
        {"network": "net", "subnetwork": "sub", "tags": ["t"]}
    ]
