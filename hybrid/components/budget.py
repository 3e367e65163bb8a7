"""A Cloud Billing budget on one project, alerting by email at each threshold.

The budget lives on the billing account but watches only this environment's project, so each
environment's file states its own. Alerts reach the addresses through Cloud Monitoring email
channels (cloud.google.com/billing/docs/how-to/budgets-notification-recipients); the billing
account's admins are notified too (the API's default).
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktf_cdktf_provider_google.billing_budget import (
    BillingBudget,
    BillingBudgetAllUpdatesRule,
    BillingBudgetAmount,
    BillingBudgetAmountSpecifiedAmount,
    BillingBudgetBudgetFilter,
    BillingBudgetThresholdRules,
)
from cdktf_cdktf_provider_google.data_google_project import DataGoogleProject
from cdktf_cdktf_provider_google.monitoring_notification_channel import MonitoringNotificationChannel
from cdktf_cdktf_provider_google.project_service import ProjectService
from constructs import Construct

from hybrid.config import BudgetSettings


@dataclass(frozen=True)
class BudgetProps:
    env_name: str
    project_id: str
    # The environment file's [budget]: account, amount, thresholds, spend basis, addresses.
    settings: BudgetSettings


class Budget(Construct):
    def __init__(self, scope: Construct, id_: str, props: BudgetProps) -> None:
        super().__init__(scope, id_)
        api = ProjectService(self, "api", service="billingbudgets.googleapis.com", disable_on_destroy=False)
        project = DataGoogleProject(self, "project", project_id=props.project_id)
        self.channels = [
            MonitoringNotificationChannel(
                self,
                f"email-{index}",
                display_name=f"{props.env_name} budget alerts: {email}",
                type="email",
                labels={"email_address": email},
            )
            for index, email in enumerate(props.settings.notification_emails)
        ]
        self.budget = BillingBudget(
            self,
            "budget",
            billing_account=props.settings.billing_account,
            display_name=f"{props.env_name} monthly budget",
            # The budget API names projects by number (cloud.google.com/billing/docs/reference/budget/rest/v1/billingAccounts.budgets#filter).
            budget_filter=BillingBudgetBudgetFilter(projects=[f"projects/{project.number}"], calendar_period="MONTH"),
            amount=BillingBudgetAmount(
                specified_amount=BillingBudgetAmountSpecifiedAmount(
                    currency_code="USD", units=str(props.settings.amount_usd)
                )
            ),
            threshold_rules=[
                BillingBudgetThresholdRules(threshold_percent=t, spend_basis=props.settings.spend_basis)
                for t in props.settings.thresholds
            ],
            all_updates_rule=BillingBudgetAllUpdatesRule(
                monitoring_notification_channels=[channel.id for channel in self.channels]
            ),
            depends_on=[api],
        )
