"""The batch worker's metrics (services.servicekit.metrics serves them)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.servicekit.metrics import LATENCY_BUCKETS

LINES = Counter("worker_lines", "Batch lines finished by this worker, by outcome (done or failed).", ["outcome"])
# Both outcomes' series from the start, at 0 (prometheus.io/docs/practices/instrumentation/#avoid-missing-metrics).
for _outcome in ("done", "failed"):
    LINES.labels(_outcome)
CHARGE_FAILURES = Counter(
    "worker_charge_failures", "Attempts to record a line's end and its charge that the database did not take."
)
# The worker extends no lease itself: Google's client library extends the lease of every message
# the worker holds (cloud.google.com/pubsub/docs/lease-management). What is counted is each time
# the worker keeps a message waiting on purpose (the database away, another delivery's claim, a
# message handed over after SIGTERM), which lives on those extensions.
LEASE_EXTENSIONS = Counter(
    "worker_lease_extensions", "Waits for which the worker kept a message, its lease extended by the client."
)
FINALIZE = Histogram(
    "worker_finalize_seconds", "Writing a finished batch's files and ending it.", buckets=LATENCY_BUCKETS
)
