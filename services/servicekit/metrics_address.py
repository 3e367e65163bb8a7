"""Where a service serves its metrics (METRICS_ADDRESS): the settings' type, apart from
servicekit.metrics so that the settings models, which the stacks load, import no prometheus_client
(a services-only package)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

ADDRESS_VARIABLE = "METRICS_ADDRESS"


def parse_address(address: str) -> tuple[str, int]:
    """("host", port) of "host:port"; a clear error naming the variable otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{ADDRESS_VARIABLE} must be host:port (e.g. 127.0.0.1:9464), not {address!r}")
    return host, int(port)


def _checked(address: str | None) -> str | None:
    if address is not None:
        parse_address(address)
    return address


# A settings field (metrics_address, read from METRICS_ADDRESS): where /metrics is served; None: nowhere.
MetricsAddress = Annotated[str | None, AfterValidator(_checked)]
