"""The traffic an environment expects, for `main.py cost` only (like Infracost's usage file).

No stack reads it: it changes the estimate, never what is deployed. A key left out takes the
estimate's default, printed as an assumption.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from hybrid.config.validation import Settings


class TrafficSettings(Settings):
    requests_per_day: Annotated[int, Field(ge=0)] | None = None
    input_tokens: Annotated[int, Field(ge=0)] | None = None
    output_tokens: Annotated[int, Field(ge=1)] | None = None
    page_loads_per_day: Annotated[int, Field(ge=0)] | None = None
    peak_to_average: Annotated[float, Field(ge=1)] | None = None
