"""The gateway's metrics (services.servicekit.metrics serves them): requests by route template and
status, their latency, refused tokens by reason, rate-limit refusals by limit."""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from starlette.types import Scope

from services.servicekit.metrics import LATENCY_BUCKETS, OTHER

REQUESTS = Counter("gateway_requests", "Requests answered, by route template and status.", ["route", "status"])
DURATION = Histogram(
    "gateway_request_duration_seconds",
    "From the request's head to its answer's end, by route template.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
AUTH_FAILURES = Counter("gateway_auth_failures", "Bearer tokens refused, by reason.", ["reason"])
RATE_LIMITED = Counter("gateway_rate_limited", "Requests refused by a rate limit, by limit.", ["limit"])
# Each limit's series from the start, at 0: an alert on its rate then has a series to read
# (prometheus.io/docs/practices/instrumentation/#avoid-missing-metrics).
for _limit in ("requests", "uploads"):
    RATE_LIMITED.labels(_limit)

# The reasons servicekit.jwks and gateway.auth give, less their variable parts (the algorithm
# named, PyJWT's exception class): each reason here is one of these, or OTHER.
AUTH_REASONS = (
    "no Authorization header",
    "not a bearer token",
    "token too large",
    "malformed token",
    "algorithm not allowed",
    "no key id",
    "unknown key id",
    "key does not match the algorithm",
    "bad subject",
    "ExpiredSignatureError",
    "ImmatureSignatureError",
    "InvalidAudienceError",
    "InvalidIssuerError",
    "InvalidSignatureError",
    "MissingRequiredClaimError",
    "DecodeError",
)


def auth_reason(reason: str) -> str:
    """A refusal's reason as a bounded label value."""
    return next((known for known in AUTH_REASONS if reason.startswith(known)), OTHER)


def route_of(scope: Scope) -> str:
    """The template of the route that served the request (``/v1/batches/{batch_id}``), which the
    router leaves in the scope; never its raw path: a path holds ids, so as a label it would make
    a series per object. OTHER for a path no route serves."""
    return str(getattr(scope.get("route"), "path", OTHER))
