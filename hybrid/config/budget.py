"""Typed settings for the optional Cloud Billing budget and its email alerts."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from hybrid.config.validation import Settings, between, invalid, matching

# cloud.google.com/billing/docs/how-to/manage-billing-account: a billing account id is three
# groups of six hexadecimal digits.
BillingAccount = Annotated[
    str, matching(r"[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}", "a billing account id like 012345-6789AB-CDEF01")
]
Email = Annotated[str, matching(r"[^@\s]+@[^@\s]+\.[^@\s]+", "an email address")]


class BudgetSettings(Settings):
    """A Cloud Billing budget on the environment's project, with alerts by email."""

    billing_account: BillingAccount
    amount_usd: Annotated[int, between(1, 10_000_000)]
    # Fractions of the amount that alert, e.g. 0.5 = 50% (the budget API's threshold_percent).
    thresholds: list[float] = Field(default_factory=lambda: [0.5, 0.9, 1.0], min_length=1)
    # CURRENT_SPEND alerts on what was spent; FORECASTED_SPEND on what the month is heading to.
    spend_basis: Literal["CURRENT_SPEND", "FORECASTED_SPEND"] = "CURRENT_SPEND"
    notification_emails: list[Email] = Field(min_length=1)

    @model_validator(mode="after")
    def _thresholds(self) -> BudgetSettings:
        if any(not 0 < t <= 10 for t in self.thresholds) or sorted(set(self.thresholds)) != self.thresholds:
            raise invalid("thresholds", "must be distinct fractions of the amount in increasing order, each in (0, 10]")
        return self
