"""The orchestrator's metrics (services.servicekit.metrics serves them). ``model`` is the route a
request matched, as configured (an exact name, or a prefix such as ``google/*``), never the name
a caller sent; ``backend`` is the configured backend's name: both bounded by the configuration."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.modelcalls.routing import backends_for
from services.modelcalls.settings import Route
from services.servicekit.metrics import LATENCY_BUCKETS, OTHER

# The reason the chat route gives a backend's circuit when its stream broke mid-answer.
STREAM_BROKE = "stream broke"

TTFT = Histogram(
    "orchestrator_ttft_seconds",
    "From the request's arrival to the backend's first byte of answer, by model and backend.",
    ["model", "backend"],
    buckets=LATENCY_BUCKETS,
)
DURATION = Histogram(
    "orchestrator_request_duration_seconds",
    "From the request's arrival to its answer's end, by model and backend.",
    ["model", "backend"],
    buckets=LATENCY_BUCKETS,
)
TOKENS = Counter(
    "orchestrator_tokens", "Tokens charged, by model, backend and direction.", ["model", "backend", "direction"]
)
BACKEND_ERRORS = Counter("orchestrator_backend_errors", "Backend failures, by backend and kind.", ["backend", "kind"])
QUOTA_REFUSALS = Counter("orchestrator_quota_refusals", "Requests refused for the daily token quota.", ["model"])
LEDGER_WRITE = Histogram(
    "orchestrator_ledger_write_seconds",
    "One ledger write (a reservation, an outcome), whether or not it succeeded.",
    buckets=LATENCY_BUCKETS,
)
LEDGER_WRITE_FAILURES = Counter("orchestrator_ledger_write_failures", "Ledger writes that failed.")


# Every kind backend_error_kind gives, and those the chat route and answers count themselves.
ERROR_KINDS = (
    "http_5xx",
    "http_408",
    "http_429",
    "encoding",
    "timeout",
    "unreachable",
    "stream_broke",
    "usage_invalid",
    "auth",
    "refused",
)


def preset(routes: list[Route], backends: list[str]) -> None:
    """Each labelled counter's series at zero from the start, so a dashboard or an alert on a count
    that has not happened yet reads 0, not "no data" (prometheus.io/docs/practices/instrumentation/#avoid-missing-metrics);
    the label sets are bounded by the configuration."""
    for backend in backends:
        for kind in ERROR_KINDS:
            BACKEND_ERRORS.labels(backend, kind)
    for model in (*(route.match for route in routes), OTHER):
        QUOTA_REFUSALS.labels(model)


def model_label(model: str, routes: list[Route]) -> str:
    """The configured route ``model`` matched, or OTHER."""
    return next((route.match for route in routes if backends_for(model, [route])), OTHER)


def backend_failed(backend: str, reason: str) -> None:
    BACKEND_ERRORS.labels(backend, backend_error_kind(reason)).inc()


def backend_error_kind(reason: str) -> str:
    """A BackendUnavailable's reason ("name: HTTP 503", "name: TimeoutError", ...) as a bounded kind."""
    if reason == STREAM_BROKE:
        return "stream_broke"
    detail = reason.rpartition(": ")[2]
    if detail.startswith("HTTP "):
        status = detail.removeprefix("HTTP ")
        return "http_5xx" if status.startswith("5") else f"http_{status}"  # else 408 or 429 only
    if detail.startswith("Content-Encoding"):
        return "encoding"
    return "timeout" if detail == "TimeoutError" else "unreachable"


def ledger_write(seconds: float, ok: bool) -> None:
    LEDGER_WRITE.observe(seconds)
    if not ok:
        LEDGER_WRITE_FAILURES.inc()
