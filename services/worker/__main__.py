"""The batch worker, as its image runs it: ``python -m services.worker --host HOST --port PORT``.

uvicorn serves only the health endpoint; on SIGTERM it closes that at once (Kubernetes stops
probing a terminating pod) and runs the app's shutdown, which drains the lines in flight for
SHUTDOWN_SECONDS (25) of Kubernetes' 30 s grace period (services/worker/app.py).
"""

from services.servicekit.serve import serve

if __name__ == "__main__":
    serve("services.worker.app:main", "--timeout-graceful-shutdown", "1")
