"""The gateway's server, as its image runs it: ``python -m services.gateway --host HOST --port PORT``.

One uvicorn process with uvloop and httptools: an I/O-bound async proxy keeps 80 concurrent
streams on one event loop, and per-process state (rate limits, key and token caches) stays
whole. Scale with Cloud Run instances, or raise WEB_CONCURRENCY on a many-CPU instance.
uvicorn's only read timeout is --timeout-keep-alive (idle between requests, restarted by
every byte): services.gateway.protocol is httptools with a deadline for each request's head
(HEADER_TIMEOUT_SECONDS); the app bounds the body (BODY_*_TIMEOUT_SECONDS).
"""

from services.servicekit.serve import serve

if __name__ == "__main__":
    serve(
        "services.gateway.app:main",
        "--http",
        "services.gateway.protocol:HttpToolsWithHeaderDeadline",
        "--timeout-graceful-shutdown",
        "10",
    )
