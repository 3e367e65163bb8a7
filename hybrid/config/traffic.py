"""The traffic an environment expects, for `main.py cost` only (like Infracost's usage file).

No stack reads it: it changes the estimate, never what is deployed. A key left out takes the
estimate's default, printed as an assumption.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from hybrid.config.validation import Settings, between


class TrafficSettings(Settings):
    # Chat completions a day through the gateway, batch lines included: what the model tiers and
    # the Cloud Run services are priced for.
    requests_per_day: Annotated[int, between(0, 1_000_000_000)] | None = None
    # Prompt tokens a request, on average: what the per-token model APIs are priced for.
    input_tokens: Annotated[int, between(0, 10_000_000)] | None = None
    # Completion tokens a request, on average: they set a replica's busy time and the per-token price.
    output_tokens: Annotated[int, between(1, 10_000_000)] | None = None
    # Chat page loads a day: the frontend's requests.
    page_loads_per_day: Annotated[int, between(0, 1_000_000_000)] | None = None
    # The busiest hour's traffic over the day's average: how many model replicas the peak needs.
    peak_to_average: Annotated[float, Field(ge=1)] | None = None
