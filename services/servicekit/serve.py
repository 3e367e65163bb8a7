"""How each image starts its service: ``python -m services.<service> --host HOST --port PORT`` (the
Dockerfile's CMD) runs uvicorn on the service's app factory with the service's own options."""

from __future__ import annotations

import sys

import uvicorn


def serve(factory: str, *options: str) -> None:
    """uvicorn's command line for ``factory`` ("module:function"), then ``options``, then this
    process's arguments (the image's host and port). uvloop, with no access log: the services
    log each request themselves, with its request id (servicekit.logs)."""
    uvicorn.main(["--factory", factory, "--loop", "uvloop", "--no-access-log", *options, *sys.argv[1:]])
