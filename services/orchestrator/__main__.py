"""The orchestrator's server, as its image runs it: ``python -m services.orchestrator --host HOST --port PORT``.

One uvicorn process with uvloop and httptools: an I/O-bound async proxy keeps 80 concurrent
streams on one event loop, and per-process state stays whole. Scale with Cloud Run
instances, or raise WEB_CONCURRENCY on a many-CPU instance. Cloud Run kills the instance 10 s
after SIGTERM: requests get 4 s to finish, then queued ledger outcomes get
SHUTDOWN_DRAIN_SECONDS (3) for the database, and the process is gone by 8.
"""

from services.servicekit.serve import serve

if __name__ == "__main__":
    serve("services.orchestrator.app:main", "--http", "httptools", "--timeout-graceful-shutdown", "4")
