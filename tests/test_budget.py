"""The optional [budget] table: a Cloud Billing budget with email alerts, in the network layer."""

from __future__ import annotations

import json
from pathlib import Path

from iac import ROOT, only, pointees, resources, run_main
from variants import DEV_ENV, toml_text, variant, write_environment

BUDGETED = variant(
    DEV_ENV,
    {
        "budget": {
            "billing_account": "012345-6789AB-CDEF01",
            "amount_usd": 3000,
            "thresholds": [0.5, 0.9, 1.2],
            "spend_basis": "FORECASTED_SPEND",
            "notification_emails": ["finops@example.com", "oncall@example.com"],
        }
    },
)


def with_budget(**mistake: object) -> str:
    """dev with the budget above, one of its settings replaced by a mistake, as a file's text."""
    data = BUDGETED.model_dump(mode="json", exclude_none=True)
    return toml_text({**data, "budget": {**data["budget"], **mistake}})


def test_budget_synthesizes_with_its_thresholds_and_channels(tmp_path: Path) -> None:
    env = write_environment(BUDGETED, tmp_path / "dev.toml")
    outdir = tmp_path / "out"
    result = run_main(outdir, "--env", str(env))
    assert result.returncode == 0, result.stderr
    stack = json.loads((outdir / "stacks" / "dev-network" / "cdk.tf.json").read_text())
    budget = only(stack, "google_billing_budget")
    assert budget["billing_account"] == "012345-6789AB-CDEF01"
    assert budget["amount"] == {"specified_amount": {"currency_code": "USD", "units": "3000"}}
    assert budget["budget_filter"]["calendar_period"] == "MONTH"
    (project,) = budget["budget_filter"]["projects"]
    # The budget API names projects by number: read from the project itself.
    assert project.startswith("projects/${")
    ((kind, config, attr),) = [
        (p.kind, p.config, p.attr) for p in pointees({"dev-network": stack}, "dev-network", project)
    ]
    assert (kind, config["project_id"], attr) == ("data.google_project", "replace-me-dev", "number")
    assert budget["threshold_rules"] == [
        {"threshold_percent": t, "spend_basis": "FORECASTED_SPEND"} for t in (0.5, 0.9, 1.2)
    ]
    channels = resources(stack, "google_monitoring_notification_channel")
    assert sorted(c["labels"]["email_address"] for c in channels.values()) == [
        "finops@example.com",
        "oncall@example.com",
    ]
    assert len(budget["all_updates_rule"]["monitoring_notification_channels"]) == 2
    assert any(
        s["service"] == "billingbudgets.googleapis.com" for s in resources(stack, "google_project_service").values()
    )


def test_budget_mistakes_are_refused(tmp_path: Path) -> None:
    env = tmp_path / "dev.toml"
    env.write_text(with_budget(billing_account="12345"))
    result = run_main(tmp_path / "out", "--env", str(env))
    assert result.returncode == 2
    assert (
        f"{env}: budget.billing_account = '12345': must be a billing account id like 012345-6789AB-CDEF01"
        in result.stderr
    )
    env.write_text(with_budget(thresholds=[0.9, 0.5]))
    result = run_main(tmp_path / "out", "--env", str(env))
    assert result.returncode == 2
    assert (
        f"{env}: budget.thresholds = [0.9, 0.5]: must be distinct fractions of the amount in increasing order"
        in result.stderr
    )


def test_shipped_environments_have_no_budget_and_cost_shows_one_when_set(tmp_path: Path) -> None:
    assert "[budget]" not in (ROOT / "environments" / "prod.toml").read_text()
    env = write_environment(BUDGETED, tmp_path / "dev.toml")
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "main.py", "cost", "--env", str(env), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["budget_usd"] == 3000
